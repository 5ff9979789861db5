"""Crash safety and concurrent readers, with real processes: SIGKILL mid-append, reader while appending."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from replay_data import batch_ends, expected_rows

from stores.replay import ReplayStore

TESTS_DIR = Path(__file__).resolve().parent
SIZES = {"b": 40, "length": 30}  # ~600-1200 rows per batch, several 256-row chunks
CHUNK = 256

WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import zarr
    from replay_data import make_batch
    from stores.replay import ReplayStore

    path, how, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sizes = {sizes!r}
    calls = {{"n": 0}}

    def kill_on(owner, name):
        real = getattr(owner, name)
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        setattr(owner, name, wrapper)

    if how == "before-commit":      # data of the batch written, committed length not yet
        kill_on(ReplayStore, "_commit")
    elif how == "mid-write":        # some arrays of the batch written, others not
        from stores.replay import _ChunkFiles
        kill_on(_ChunkFiles, "write")
    elif how == "mid-boundary":     # all row data written, trajectory boundaries being written
        kill_on(zarr.Array, "__setitem__")
    store = ReplayStore.create(path, observation_size=11, action_size=3, chunk_rows={chunk})
    k = 0
    while how != "bounded" or k < n:
        store.append(make_batch(k, **sizes))
        store.flush()
        print(len(store), flush=True)
        k += 1
    store.close()
""").format(tests=str(TESTS_DIR), sizes=SIZES, chunk=CHUNK)


def _start_writer(tmp_path: Path, how: str, n: int) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "s.zarr"), how, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _check_recovered(path: Path, reported: list[int]) -> int:
    """The store opens, validates, holds whole batches only, at least every reported commit, the right data;
    and it can be appended to again. Returns the number of batches it held."""
    ends = batch_ends(60, **SIZES)
    store = ReplayStore.open(path)
    store.validate()
    n = len(store)
    assert n in ends, f"{n} rows is not a whole number of batches"
    assert not reported or n >= reported[-1], f"lost committed rows: {n} < {reported[-1]}"
    batches = ends.index(n)
    exp = expected_rows(batches, **SIZES)
    data = store.load()
    for key in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts",
                "trajectory", "round"):
        np.testing.assert_array_equal(data[key], exp[key], err_msg=key)
    # a new writer trims the crashed writer's uncommitted leftovers and carries on
    from replay_data import make_batch

    with ReplayStore.open(path, mode="a") as writer:
        writer.append(make_batch(batches, **SIZES))
    again = ReplayStore.open(path)
    again.validate()
    assert len(again) == ends[batches + 1]
    np.testing.assert_array_equal(again.load()["observations"],
                                  expected_rows(batches + 1, **SIZES)["observations"])
    assert not list(path.rglob("*.partial"))
    return batches


@pytest.mark.parametrize("how,n", [("before-commit", 3), ("mid-write", 47), ("mid-write", 101),
                                   ("mid-boundary", 4)])
def test_sigkill_at_the_worst_moments(tmp_path: Path, how: str, n: int) -> None:
    proc = _start_writer(tmp_path, how, n)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, err
    reported = [int(line) for line in out.split()]
    batches = _check_recovered(tmp_path / "s.zarr", reported)
    if how == "before-commit":  # killed before the 3rd commit: exactly two batches survive
        assert batches == 2
    if how == "mid-boundary":  # killed writing the 4th batch's boundaries: three survive
        assert batches == 3


def test_sigkill_at_random_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for trial in range(3):
        trial_dir = tmp_path / f"t{trial}"
        trial_dir.mkdir()
        proc = _start_writer(trial_dir, "forever", 0)
        assert proc.stdout is not None
        reported = [int(proc.stdout.readline())]  # at least one commit, then kill at a random moment
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        reported += [int(line) for line in out.split()]
        _check_recovered(trial_dir / "s.zarr", reported)


def test_concurrent_reader_sees_only_committed_batches(tmp_path: Path) -> None:
    total = 25
    ends = batch_ends(total, **SIZES)
    exp = expected_rows(total, **SIZES)
    proc = _start_writer(tmp_path, "bounded", total)
    path = tmp_path / "s.zarr"
    seen: set[int] = set()
    held: ReplayStore | None = None
    while True:
        running = proc.poll() is None
        if (path / "zarr.json").exists():
            try:
                store = ReplayStore.open(path) if held is None else held
            except Exception as exc:  # the group metadata is written last at creation
                assert "not a replay store" in str(exc)
                continue
            held = store
            store.refresh()
            data = store.load()
            n = len(data["rewards"])
            assert n in ends
            np.testing.assert_array_equal(data["observations"], exp["observations"][:n])
            np.testing.assert_array_equal(data["trajectory"], exp["trajectory"][:n])
            assert data["episode_starts"][-1] == n
            seen.add(n)
        if not running:
            break
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert len(ReplayStore.open(path)) == ends[-1]
    assert len(seen) >= 3, f"the reader saw too few states {sorted(seen)}"
