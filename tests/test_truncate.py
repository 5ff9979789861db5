"""``ReplayStore.truncate``: cut to a trajectory boundary, refuse bad counts, survive kill -9 anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from replay_data import batch_ends, expected_rows, make_batch

from stores.errors import UserInputError
from stores.replay import ReplayStore

TESTS_DIR = Path(__file__).resolve().parent
SIZES = {"b": 12, "length": 20}
CHUNK = 64
BATCHES = 6
KEEP = 2  # truncate to the first KEEP batches


def _build(path: Path, batches: int = BATCHES) -> None:
    with ReplayStore.create(path, observation_size=11, action_size=3, chunk_rows=CHUNK) as store:
        for k in range(batches):
            store.append(make_batch(k, **SIZES))
            store.flush()


def _assert_prefix(path: Path, batches: int) -> None:
    store = ReplayStore.open(path)
    store.validate()
    ends = batch_ends(batches, **SIZES)
    assert len(store) == ends[-1]
    assert store.num_trajectories == batches * SIZES["b"]
    exp = expected_rows(batches, **SIZES)
    data = store.load()
    for key in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts",
                "trajectory", "round", "learner_step", "start_index"):
        np.testing.assert_array_equal(data[key], exp[key], err_msg=key)


def test_truncate_then_append_equals_a_store_that_never_held_the_cut_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _build(path)
    ends = batch_ends(BATCHES, **SIZES)
    with ReplayStore.open(path, mode="a") as store:
        store.truncate(ends[KEEP])
        assert len(store) == ends[KEEP]
        store.append(make_batch(KEEP, **SIZES))  # buffered, then discarded by the next truncate
        store.truncate(ends[KEEP])
        assert store.pending_rows == 0
        for k in range(KEEP, 4):
            store.append(make_batch(k, **SIZES))
    _assert_prefix(path, 4)
    with ReplayStore.open(path, mode="a") as store:
        store.truncate(0)
        assert len(store) == 0 and store.num_trajectories == 0
    empty = ReplayStore.open(path)
    empty.validate()
    assert len(empty) == 0


def test_truncate_refuses_bad_counts_and_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _build(path, 3)
    ends = batch_ends(3, **SIZES)
    with ReplayStore.open(path, mode="a") as store:
        for bad, words in ((-1, "choose 0.."), (ends[-1] + 1, "choose 0.."), (1, "trajectory boundary")):
            with pytest.raises(UserInputError, match=words):
                store.truncate(bad)
        with pytest.raises(UserInputError, match="row count"):
            store.truncate(2.0)  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="read-only"):
        ReplayStore.open(path).truncate(0)
    _assert_prefix(path, 3)


KILLER = textwrap.dedent("""
    import os, pathlib, signal, sys
    sys.path.insert(0, {tests!r})
    import zarr
    from stores.replay import ReplayStore

    path, how, n, keep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    calls = {{"n": 0}}

    def kill_on(owner, name):
        real = getattr(owner, name)
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        setattr(owner, name, wrapper)

    store = ReplayStore.open(path, mode="a")
    if how == "before-commit":   # the metadata rewrite that commits the new length, before its rename
        kill_on(pathlib.Path, "replace")
    elif how == "after-commit":  # committed, arrays not yet shrunk
        kill_on(ReplayStore, "_start_writing")
    elif how == "mid-shrink":    # some arrays shrunk (their metadata rewritten), others not
        kill_on(zarr.Array, "resize")
    elif how == "mid-delete":    # chunk files past the new length being deleted
        kill_on(pathlib.Path, "unlink")
    store.truncate(keep)
    print("finished", flush=True)
""").format(tests=str(TESTS_DIR))


@pytest.mark.parametrize("how,n,survivors", [("before-commit", 1, BATCHES), ("after-commit", 1, KEEP),
                                             ("mid-shrink", 4, KEEP), ("mid-delete", 3, KEEP)])
def test_kill_during_truncate_leaves_old_or_new_length(tmp_path: Path, how: str, n: int,
                                                       survivors: int) -> None:
    path = tmp_path / "s.zarr"
    _build(path)
    ends = batch_ends(BATCHES, **SIZES)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script), str(path), how, str(n), str(ends[KEEP])],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    _assert_prefix(path, survivors)
    # the next writer trims what the killed one left and continues from the surviving length
    with ReplayStore.open(path, mode="a") as store:
        store.truncate(ends[KEEP])
        store.append(make_batch(KEEP, **SIZES))
    _assert_prefix(path, KEEP + 1)
    assert not list(path.rglob("*.partial"))
