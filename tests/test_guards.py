"""stores.guards: what --overwrite may delete, staged outputs, leftovers, locks, disk-error lines."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_data import make_batch

from stores import guards
from stores.errors import UserInputError
from stores.guards import (
    check_replaceable,
    remove_replaceable,
    run_lock,
    sniff,
    staged_dir,
    staged_file,
    sweep_leftovers,
)
from stores.replay import ReplayStore


def _store(path: Path, batches: int = 1) -> Path:
    with ReplayStore.create(path, observation_size=11, action_size=3) as store:
        for k in range(batches):
            store.append(make_batch(k))
    return path


def _unrelated(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("precious")
    (path / "sub").mkdir()
    (path / "sub" / "zarr.json").write_text(json.dumps({"attributes": {"format": "something-else"}}))
    return path


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


def test_overwrite_replaces_only_what_the_toolkit_made(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr")
    run = tmp_path / "run"
    run.mkdir()
    (run / guards.RUN_MARKER).write_text("")
    legacy = tmp_path / "legacy-run"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"learner": "td3bc", "train": {}, "dataset": {}}))
    folder = _unrelated(tmp_path / "folder")
    plain = tmp_path / "plain.npz"
    np.savez(plain, observations=np.zeros((2, 2)))

    assert check_replaceable(tmp_path / "missing", ("store",)) is None
    assert check_replaceable(store, ("store",)) == "store"
    assert check_replaceable(run, ("run",)) == "run"
    assert check_replaceable(legacy, ("run",)) == "run"
    for path, allowed, words in ((folder, ("store", "run"), "a directory augment did not make"),
                                 (plain, ("store", "export"), "a file augment did not make"),
                                 (store, ("run",), "is a replay store"),
                                 (run, ("store",), "is a run directory")):
        with pytest.raises(UserInputError, match=words) as info:
            remove_replaceable(path, allowed)
        assert str(path) in str(info.value)
    assert (folder / "notes.txt").read_text() == "precious" and plain.is_file()
    assert remove_replaceable(store, ("store",)) == "store" and not store.exists()
    assert remove_replaceable(run, ("run",)) == "run" and not run.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "legacy-run", "plain.npz"]


def test_overwrite_never_deletes_what_a_writer_holds(tmp_path: Path) -> None:
    path = _store(tmp_path / "s.zarr")
    writer = ReplayStore.open(path, mode="a")
    with pytest.raises(UserInputError, match="in use by another writer"):
        remove_replaceable(path, ("store",))
    with pytest.raises(UserInputError, match="in use by another writer"):
        ReplayStore.create(path, observation_size=11, action_size=3, overwrite=True)
    writer.append(make_batch(1))
    writer.close()  # the writer ends with both batches committed
    assert len(ReplayStore.open(path)) == int(make_batch(0).lengths.sum() + make_batch(1).lengths.sum())
    run = tmp_path / "run"
    run.mkdir()
    (run / guards.RUN_MARKER).write_text("")
    with run_lock(run):
        with pytest.raises(UserInputError, match="in use by another"):
            remove_replaceable(run, ("run",))
        with pytest.raises(UserInputError, match=r"in use by another `augment train` \(pid \d+\)"), \
                run_lock(run):
            pass
    assert remove_replaceable(run, ("run",)) == "run"


def test_staged_dir_publishes_whole_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError), staged_dir(target) as tmp:
        _store(tmp)
        raise RuntimeError("input damaged half way")
    assert list(tmp_path.iterdir()) == []
    with staged_dir(target) as tmp:
        _store(tmp, 1)
        assert not target.exists()
    assert len(ReplayStore.open(target)) == int(make_batch(0).lengths.sum())
    with pytest.raises(UserInputError, match="already exists"), staged_dir(target):
        pass
    with pytest.raises(RuntimeError), staged_dir(target, overwrite=True) as tmp:
        _store(tmp, 2)
        raise RuntimeError("fails before the swap")
    assert len(ReplayStore.open(target)) == int(make_batch(0).lengths.sum())  # old one untouched
    with staged_dir(target, overwrite=True) as tmp:
        _store(tmp, 2)
    assert len(ReplayStore.open(target)) == int(make_batch(0).lengths.sum() + make_batch(1).lengths.sum())
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"]


@pytest.mark.parametrize("unnamed", [True, False])
def test_staged_file_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         unnamed: bool) -> None:
    if not unnamed:
        monkeypatch.setattr(guards, "_unnamed_file", lambda directory: None)
    target = tmp_path / "x.npz"
    with staged_file(target) as f:
        np.savez(f, a=np.arange(3))
        # with O_TMPFILE the file has no name while written: a kill -9 here leaves nothing behind
        assert (list(tmp_path.iterdir()) == []) == (unnamed and guards._unnamed_file(tmp_path) is not None)
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError), staged_file(target, overwrite=True, guard=False) as f:
        f.write(b"half")
        raise ValueError("writer failed")
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
    with pytest.raises(UserInputError, match="is a directory"), staged_file(tmp_path):
        pass


def test_sweep_removes_leftovers_of_dead_processes_only(tmp_path: Path) -> None:
    target = tmp_path / "s.zarr"
    dead, alive = _dead_pid(), os.getpid()
    stale = tmp_path / f".s.zarr.augment-tmp-{dead}-0123456789ab"
    stale.mkdir()
    live = tmp_path / f".s.zarr.augment-tmp-{alive}-0123456789ab"
    live.mkdir()
    stale_file = tmp_path / f".s.zarr.augment-tmp-{dead}-abcdef012345.npz"
    stale_file.write_bytes(b"x")
    other = tmp_path / f".t.zarr.augment-tmp-{dead}-0123456789ab"
    other.mkdir()
    trash = tmp_path / f".s.zarr.augment-trash-{dead}-0123456789ab"
    _store(trash)  # killed between "old -> trash" and "new -> target": the old version comes back
    removed = sweep_leftovers(target)
    assert sorted(p.name for p in removed) == sorted([stale.name, stale_file.name])
    assert live.exists() and other.exists() and not stale.exists()
    assert len(ReplayStore.open(target)) == int(make_batch(0).lengths.sum())


def test_disk_error_lines() -> None:
    line = guards.os_error_line(OSError(errno.ENOSPC, "No space left on device"), "/d/x.zarr")
    assert line == ("cannot write '/d/x.zarr': No space left on device (errno 28); the disk is full; free "
                    "space or choose another location")
    assert "read-only" in guards.os_error_line(OSError(errno.EROFS, "Read-only file system"), "/d")
    assert "permission denied" in guards.os_error_line(OSError(errno.EACCES, "Permission denied"), "/d")
    with pytest.raises(UserInputError, match="errno 30"), guards.disk_errors("/d"):
        raise OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(KeyError), guards.disk_errors("/d"):  # other errors pass through
        raise KeyError("x")


def test_sniff(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros(2))
    np.save(tmp_path / "a.npy", np.zeros(2))
    (tmp_path / "t.npz").write_text("observations,actions\n1,2\n")
    (tmp_path / "e.npz").write_bytes(b"")
    (tmp_path / "p.npz").write_bytes(b"\x80\x04\x95" + bytes(20))
    import h5py

    with h5py.File(tmp_path / "h.hdf5", "w") as f:
        f["x"] = np.zeros(2)
    kinds = {name: sniff(tmp_path / name) for name in ("a.npz", "a.npy", "t.npz", "e.npz", "p.npz", "h.hdf5")}
    assert kinds == {"a.npz": "zip", "a.npy": "npy", "t.npz": "text", "e.npz": "empty", "p.npz": "pickle",
                     "h.hdf5": "hdf5"}
    assert sniff(tmp_path) == "directory" and sniff(tmp_path / "nope") == "missing"
