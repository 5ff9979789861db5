"""Fault suite: kill -9 at random points of import, export, merge, train and dydiff; a full disk; a
read-only target; two writers.

Each fault must end in a valid state (the output absent or complete, never half-written; a run directory
that resumes), and the resumed command must end exactly where an uninterrupted one does. Kills per command:
``AUGMENT_FAULT_KILLS`` for the store commands (default 3) and ``AUGMENT_FAULT_TRAIN_KILLS`` for train and
dydiff (default 1: each starts torch); the reliability benchmark raises both. With
``AUGMENT_RELIABILITY_LOG`` set, tallies go to that JSON-lines file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from baselines_data import hopper_random_dataset
from replay_data import make_batch

from cli import main
from stores import guards
from stores.convert import dataset_to_store
from stores.errors import UserInputError
from stores.paths import environ_set
from stores.replay import ReplayStore
from stores.schema import Episode, OfflineDataset
from stores.sources import write_npz

TESTS = Path(__file__).resolve().parent
KILLS = os.environ.get("AUGMENT_FAULT_KILLS")
SEED = int(os.environ.get("AUGMENT_FAULT_SEED", "0"))
TALLY: dict[str, dict[str, int]] = {}


def _kills(default: int, variable: str = "AUGMENT_FAULT_KILLS") -> int:
    value = os.environ.get(variable)
    return int(value) if value else default


def _tally(command: str, **counts: int) -> None:
    row = TALLY.setdefault(command, {"runs": 0, "faults_injected": 0, "finished_before_kill": 0,
                                     "stores_corrupted": 0, "silent_wrong": 0})
    for key, value in counts.items():
        row[key] += value


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    log = os.environ.get("AUGMENT_RELIABILITY_LOG")
    if log:
        with open(log, "a") as f:
            for command, counts in TALLY.items():
                f.write(json.dumps({"suite": "faults", "test": command, **counts}) + "\n")


def _quiet(args: list[str]) -> list[str]:
    return args if args[:2] == ["store", "export"] else [*args, "--quiet"]


def _run(args: list[str], *, cwd: Path) -> None:
    """``augment ARGS`` in-process in ``cwd``; must succeed."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        main(_quiet(args))
    except SystemExit as exc:
        raise AssertionError(f"augment {' '.join(args)} exited {exc.code}") from exc
    finally:
        os.chdir(old)


def _timed(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    _run(args, cwd=cwd)
    return time.perf_counter() - t0


def _kill_at(delay: float, args: list[str], cwd: Path, preload: str = "") -> int:
    """Run ``augment ARGS --quiet`` in a subprocess and SIGKILL it ``delay`` s into the command."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path),
           "FAULT_PRELOAD": preload}
    proc = subprocess.run([sys.executable, str(TESTS / "fault_driver.py"), f"{delay:.3f}", *_quiet(args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-2000:]
    return proc.returncode


def _hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if guards.TMP_TAG in p.name or guards.TRASH_TAG in p.name)


def _same_store(a: Path, b: Path) -> bool:
    da, db = ReplayStore.open(a).load(), ReplayStore.open(b).load()
    return da.keys() == db.keys() and all(np.array_equal(da[k], db[k], equal_nan=da[k].dtype.kind == "f")
                                          for k in da)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hop.npz (random Hopper-v5 episodes) and s.zarr / t.zarr (stores with several chunks)."""
    root = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(60):  # ~6k rows: enough chunks that kills land inside the writes
        t = int(rng.integers(60, 140))
        truncated = np.zeros(t, bool)
        truncated[-1] = True
        episodes.append(Episode(rng.standard_normal((t + 1, 11)).astype(np.float32),
                                rng.uniform(-1, 1, (t, 3)).astype(np.float32),
                                rng.standard_normal(t).astype(np.float32), np.zeros(t, bool), truncated))
    big = OfflineDataset("big", tuple(episodes), "Hopper-v5")
    write_npz(big, root / "big.npz")
    dataset_to_store(big, root / "s.zarr", chunk_rows=256, progress=False)
    with ReplayStore.create(root / "t.zarr", observation_size=11, action_size=3, chunk_rows=256) as store:
        for k in range(12):
            store.append(make_batch(k, b=20, length=30))
    write_npz(hopper_random_dataset(episodes=8, max_steps=60), root / "hop.npz")
    return root


# ------------------------------------------------------------------------------------------ kill -9


@pytest.mark.parametrize("command", ["import", "export", "merge"])
def test_kill_during_store_commands_leaves_old_or_complete_output(command: str, data: Path,
                                                                  tmp_path: Path) -> None:
    rng = np.random.default_rng([SEED, ["import", "export", "merge"].index(command)])
    formats = (["npz", "hdf5", "d3rlpy", "minari"] if KILLS else ["npz", "hdf5"]) if command == "export" \
        else ["store"]

    def args(fmt: str, out: str) -> list[str]:
        if command == "import":
            return ["store", "import", str(data / "big.npz"), "--out", out, "--chunk-rows", "128"]
        if command == "merge":
            return ["store", "merge", str(data / "s.zarr"), str(data / "t.zarr"), "--out", out]
        out_arg = f"test/{Path(out).stem}-v0" if fmt == "minari" else out
        extra = ["--minari-root", str(Path(out).parent / "minari")] if fmt == "minari" else []
        return ["store", "export", str(data / "s.zarr"), "--format", fmt, "--out", out_arg, *extra]

    for trial in range(_kills(3)):
        fmt = formats[trial % len(formats)]
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        name = {"npz": "x.npz", "hdf5": "x.hdf5", "d3rlpy": "x.h5", "minari": "x"}[fmt] \
            if command == "export" else "out.zarr"
        ref = folder / f"ref-{name}"
        seconds = _timed(args(fmt, str(ref)), folder)
        target = folder / name
        code = _kill_at(float(rng.uniform(0.0, 1.5 * seconds)), args(fmt, str(target)), folder,
                        preload="stores.convert,stores.datasets,h5py,zarr")
        _tally(command, runs=1, faults_injected=int(code != 0), finished_before_kill=int(code == 0))
        published = (folder / "minari" / "test" / "x-v0") if fmt == "minari" else target
        visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert not [v for v in visible if v.endswith((".tmp", ".partial"))], visible
        if published.exists():  # the kill came after the output was complete: it must be whole
            _check_complete(command, fmt, published, ref, folder)
            continue
        _run(args(fmt, str(target)), cwd=folder)  # the user runs the same command again
        _check_complete(command, fmt, published, ref, folder)
        assert _hidden_leftovers(folder) == [] and _hidden_leftovers(published.parent) == []


def _check_complete(command: str, fmt: str, out: Path, ref: Path, folder: Path) -> None:
    if command in ("import", "merge"):
        try:
            ReplayStore.open(out).validate()
        except UserInputError:
            _tally(command, stores_corrupted=1)
            raise
        same = _same_store(out, ref)
    elif fmt == "minari":
        from stores.datasets import load_dataset

        with environ_set("MINARI_DATASETS_PATH", str(folder / "minari")):
            a = load_dataset(f"minari:test/{out.name}")
            b = load_dataset("minari:test/ref-x-v0")
        same = a.content_hash == b.content_hash
    else:
        from stores.convert import import_source

        a, pa = import_source(str(out), progress=False)
        b, pb = import_source(str(ref), progress=False)
        same = a.content_hash == b.content_hash and pa is not None and pb is not None and all(
            np.array_equal(pa.columns[k], pb.columns[k], equal_nan=True) for k in pa.columns)
    _tally(command, silent_wrong=int(not same))
    assert same, f"{out} differs from an uninterrupted {command}"


def _comparable_results(run: Path) -> dict[str, Any]:
    res = json.loads((run / "results.json").read_text())
    for key in ("wall_time", "updates_per_s"):
        res.pop(key, None)
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if not (name.startswith("time_") or name in
                                                         ("wall_time", "updates_per_s"))]
    return {"results": res, "metrics": [[r[i] for i in keep] for r in rows]}


TRAIN = ["train", "--policy", "td3bc", "--dataset", "hop.npz", "--profile", "smoke", "--steps", "40",
         "--eval-every", "20", "--eval-episodes", "1", "--checkpoint-every", "10", "--batch-size", "32"]
DYDIFF = ["dydiff", "--policy", "td3bc", "--dataset", "hop.npz", "--profile", "smoke", "--steps", "120"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "dydiff"])
def test_kill_during_training_resumes_to_the_uninterrupted_result(command: str, data: Path,
                                                                  tmp_path: Path) -> None:
    rng = np.random.default_rng([SEED, 7 + len(command)])
    base = TRAIN if command == "train" else DYDIFF
    (tmp_path / "hop.npz").write_bytes((data / "hop.npz").read_bytes())
    seconds = _timed([*base, "--out", "ref"], tmp_path)
    reference = _comparable_results(tmp_path / "ref")
    for trial in range(_kills(1, "AUGMENT_FAULT_TRAIN_KILLS")):
        run = f"run{trial}"
        code = _kill_at(float(rng.uniform(0.0, seconds)), [*base, "--out", run], tmp_path,
                        preload="torch,d3rlpy,baselines.loop,augment.commands")
        _tally(command, runs=1, faults_injected=int(code != 0), finished_before_kill=int(code == 0))
        if (tmp_path / run).exists():
            _run([*base, "--out", run], cwd=tmp_path)  # resume (or start over when nothing was kept)
        else:  # killed before the run directory existed: the command simply runs
            _run([*base, "--out", run], cwd=tmp_path)
        same = _comparable_results(tmp_path / run) == reference
        if command == "dydiff":
            ReplayStore.open(tmp_path / run / "synthetic.zarr").validate()
            same = same and _same_store(tmp_path / run / "synthetic.zarr",
                                        tmp_path / "ref" / "synthetic.zarr")
        _tally(command, silent_wrong=int(not same))
        assert same, f"{command} killed at a random point and resumed differs from an uninterrupted run"


# ------------------------------------------------------------------------------------------ full disk


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``path`` (root with mount rights only); yields whether it is mounted."""
    path.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                        capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", str(path)], capture_output=True)


class _SmallDisk:
    """A write layer that fails with ENOSPC after ``budget`` bytes (injected where no tmpfs can be
    mounted): wraps the files of stores.guards.staged_file and the chunk writes of the replay store."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
        import stores.replay as replay

        self.left = budget
        real_write = replay._ChunkFiles.write
        disk = self

        def chunk_write(files: Any, first_chunk: int, rows: np.ndarray) -> None:
            disk.spend(rows.nbytes)
            real_write(files, first_chunk, rows)

        monkeypatch.setattr(replay._ChunkFiles, "write", chunk_write)
        real_unnamed = guards._unnamed_file

        def unnamed(directory: Path) -> Any:
            handle = real_unnamed(directory)
            return None if handle is None else _Limited(handle, disk)

        monkeypatch.setattr(guards, "_unnamed_file", unnamed)

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise OSError(errno.ENOSPC, "No space left on device")


class _Limited:
    def __init__(self, handle: Any, disk: _SmallDisk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data: Any) -> int:
        self._disk.spend(len(memoryview(data).cast("B")))
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_full_disk_is_one_line_and_leaves_nothing(how: str, data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    disk = tmp_path / "disk"
    with _tmpfs(disk if how == "tmpfs" else tmp_path / "unused", "size=384k") as mounted:
        if how == "tmpfs" and not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root); the injected case covers ENOSPC")
        small = _SmallDisk(monkeypatch, 300_000) if how == "injected" else None
        disk.mkdir(exist_ok=True)
        for args in (["store", "import", str(data / "big.npz"), "--out", str(disk / "s.zarr"), "--chunk-rows",
                      "256", "--quiet"],
                     ["store", "export", str(data / "s.zarr"), "--format", "npz", "--out",
                      str(disk / "x.npz")]):
            with pytest.raises(SystemExit) as info:
                main(args)
            err = capfd.readouterr().err.strip().splitlines()
            assert info.value.code == 2 and len(err) == 1, err
            assert "No space left on device (errno 28)" in err[0], err
            assert sorted(p.name for p in disk.iterdir()) == [], "a failed write left files behind"
        if how == "tmpfs":  # a training run whose first checkpoint does not fit: one line, no run directory
            (disk / "hop.npz").write_bytes((data / "hop.npz").read_bytes())
            with pytest.raises(SystemExit) as info:
                main([*TRAIN[:4], str(disk / "hop.npz"), *TRAIN[5:], "--out", str(disk / "run"), "--quiet"])
            err = capfd.readouterr().err.strip().splitlines()
            assert info.value.code == 2 and len(err) == 1 and "No space left on device" in err[0], err
            assert sorted(p.name for p in disk.iterdir()) == ["hop.npz"]
            (disk / "hop.npz").unlink()
        # the Python API: the handle's rows up to the last commit survive, the lock is released
        if small is not None:
            small.left = 20_000
        store = ReplayStore.create(disk / "w.zarr", observation_size=11, action_size=3, chunk_rows=64)
        committed = 0
        with pytest.raises(UserInputError, match="No space left on device") as info:
            for k in range(10_000):
                store.append(make_batch(k, b=2, length=10))
                store.flush()
                committed = len(store)
        assert committed > 0 and f"keeps its {committed} committed rows" in str(info.value)
        with ReplayStore.open(disk / "w.zarr", mode="a") as again:  # the lock was released
            assert len(again) == committed
        ReplayStore.open(disk / "w.zarr").validate()
        assert not list((disk / "w.zarr").rglob("*.partial"))
        _tally(f"full disk ({how})", runs=1, faults_injected=4 if how == "tmpfs" else 3)


# ------------------------------------------------------------------------------------------ read-only


def test_read_only_target_is_one_line(data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    with _tmpfs(ro, "ro,size=64k") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root without mount rights: no read-only directory can be made")
            ro.chmod(0o555)
        cases = [["store", "import", str(data / "hop.npz"), "--out", str(ro / "s.zarr"), "--quiet"],
                 ["store", "export", str(data / "s.zarr"), "--format", "hdf5", "--out", str(ro / "x.hdf5")],
                 ["store", "merge", str(data / "s.zarr"), str(data / "t.zarr"), "--out", str(ro / "m.zarr"),
                  "--quiet"],
                 [*TRAIN[:4], str(data / "hop.npz"), *TRAIN[5:], "--out", str(ro / "run"), "--quiet"]]
        for args in cases:
            with pytest.raises(SystemExit) as info:
                main(args)
            err = capfd.readouterr().err.strip().splitlines()
            assert info.value.code == 2 and len(err) == 1, err
            assert "read-only" in err[0] or "permission denied" in err[0], err[0]
        with pytest.raises(UserInputError, match=r"read-only|permission denied"):
            ReplayStore.create(ro / "api.zarr", observation_size=2, action_size=1)
        _tally("read-only target", runs=1, faults_injected=len(cases) + 1)


# ------------------------------------------------------------------------------------------ two writers

HOLDER = """
import sys, time
from stores.guards import run_lock
from stores.replay import ReplayStore
kind, path = sys.argv[1], sys.argv[2]
if kind == "store":
    store = ReplayStore.open(path, mode="a")
    print("held", flush=True)
    time.sleep(600)
with run_lock(__import__("pathlib").Path(path)):
    print("held", flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def _held_by_another_process(kind: str, path: Path) -> Iterator[None]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(path)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.kill()
        proc.wait()


def test_two_writers(data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.zarr"
    dataset_to_store(hopper_random_dataset(episodes=3, max_steps=30), store, progress=False)
    rows = len(ReplayStore.open(store))
    run = tmp_path / "run"
    run.mkdir()
    (run / guards.RUN_MARKER).write_text("")
    with _held_by_another_process("store", store):
        with pytest.raises(UserInputError, match="held by another writer"):
            ReplayStore.open(store, mode="a")
        with pytest.raises(SystemExit) as info:
            main(["store", "import", str(data / "hop.npz"), "--out", str(store), "--overwrite", "--quiet"])
        assert info.value.code == 2 and "in use by another writer" in capfd.readouterr().err
    assert len(ReplayStore.open(store)) == rows  # the writer's store survived
    with _held_by_another_process("run", run):
        from baselines.loop import TrainConfig, train
        from stores.datasets import load_dataset

        ds = load_dataset(str(data / "hop.npz"))
        config = TrainConfig.for_profile("smoke", steps=2, eval_every=2, eval_episodes=1)
        with pytest.raises(UserInputError, match=r"in use by another `augment train` \(pid \d+\)"):
            train(ds, "td3bc", config, run, progress=False)
        with pytest.raises(UserInputError, match="in use by another"):
            train(ds, "td3bc", config, run, progress=False, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == sorted([guards.RUN_LOCK, guards.RUN_MARKER])  # no metrics
    _tally("two writers", runs=1, faults_injected=4)
