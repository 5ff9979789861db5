"""Tests that kill the surviving mutants of the replay store
(benchmarks/mutation/stores_replay_py_survivors.txt).

Each test names the mutants it kills; the expected values are written out by hand from the spec
(``docs/store-format.md``) or computed on paper, never by a second call of the code under test. The
survivors left out are equivalent (see benchmarks/RESULTS.md, "Mutation testing"): dtype arguments whose
result is cast right after, the fast chunk writer switched off (``_ChunkFiles.matches`` /
``files = None``), initial shapes and fill values of zero-length arrays, ``itemsize > 5`` for ``> 4``,
``"XXiuXX"`` for ``"iu"``, ``full = False`` (the mask of a full batch is all True) and an empty buffer
piece kept as ``[arr[0:0]]``.
"""

from __future__ import annotations

import errno
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from stores import guards
from stores import replay as replay_module
from stores.errors import UserInputError
from stores.replay import ReplayStore, _grown_capacity
from stores.schema import TrajectoryBatch

OBS, ACT = 3, 2


def chained(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One trajectory of ``n`` rows whose next_observations[i] == observations[i+1]; ends in a timeout."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n + 1, OBS)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[-1] = True
    return {"observations": states[:-1], "next_observations": states[1:],
            "actions": rng.normal(size=(n, ACT)).astype(np.float32),
            "rewards": np.arange(n, dtype=np.float32), "terminals": np.zeros(n, bool), "timeouts": timeouts}


def make_store(path: Path, lengths: tuple[int, ...], chunk_rows: int = 4) -> Path:
    """A store holding one chained trajectory per entry of ``lengths`` (rows in that order)."""
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT, chunk_rows=chunk_rows) as store:
        for i, n in enumerate(lengths):
            store.append_transitions(chained(n, seed=i), np.array([0]))
    return path


# ------------------------------------------------------------------ validate: the trajectory boundaries


def _set_boundaries(path: Path, starts: list[int], trajectory: list[int] | None = None) -> None:
    """Rewrite trajectory_starts (and E), and the trajectory column when given, with plain zarr."""
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    boundary = group["trajectory_starts"].with_config({"write_empty_chunks": True})
    boundary.resize((len(starts),))
    boundary[:] = np.array(starts, dtype=np.int64)
    if trajectory is not None:
        column = group["trajectory"].with_config({"write_empty_chunks": True})
        column[:len(trajectory)] = np.array(trajectory, dtype=np.int64)
    group.update_attributes({"committed_trajectories": len(starts)})


def test_validate_rejects_a_repeated_trajectory_start(tmp_path: Path) -> None:
    """validate__mutmut_18 (``<= 0`` made ``< 0``). Rows 0-2 and 3-5; the starts [0, 3, 3] make
    trajectory 1 empty while every other invariant still holds (the trajectory column [0,0,0,2,2,2] is
    what starts [0, 3, 3] with N = 6 imply), so only the strictly-increasing check can catch it."""
    path = make_store(tmp_path / "s.zarr", (3, 3))
    with ReplayStore.open(path) as store:
        store.validate()  # sound before the damage
    _set_boundaries(path, [0, 3, 3], [0, 0, 0, 2, 2, 2])
    with ReplayStore.open(path) as store:
        assert store.num_trajectories == 3 and len(store) == 6
        np.testing.assert_array_equal(store.episode_starts(), [0, 3, 3, 6])
        with pytest.raises(UserInputError, match=r"trajectory 1 is empty: trajectory_starts\[1\] and "
                                                 r"trajectory_starts\[2\] are both 3 \(a repeated start"):
            store.validate()


@pytest.mark.parametrize("starts,message", [
    # N = 6 rows; the boundary check runs before the trajectory column is compared
    ([0, 6], r"trajectory 1 is empty: trajectory_starts\[1\] is 6, the committed row count"),
    ([0, 4, 3], r"trajectory_starts decreases at index 2: 4 then 3 \(the starts must increase strictly\)"),
    ([0, 7], r"trajectory_starts\[1\] is 7, beyond the 6 committed rows"),
])
def test_validate_names_each_boundary_problem(tmp_path: Path, starts: list[int], message: str) -> None:
    path = make_store(tmp_path / "s.zarr", (3, 3))
    _set_boundaries(path, starts)
    with ReplayStore.open(path) as store, pytest.raises(UserInputError, match=message):
        store.validate()


# ------------------------------------------------------------------ growth, input checks


def test_grown_capacity_doubles_in_whole_chunks_capped_at_32_chunks() -> None:
    """_grown_capacity__mutmut_8 (``2 * current`` made ``3 * current``); values worked on paper:
    capacity = max(ceil(needed / C) * C, ceil(min(2 * current, current + 32 * C) / C) * C)."""
    assert _grown_capacity(0, 5, 4) == 8            # nothing yet: two chunks hold 5 rows
    assert _grown_capacity(10, 11, 4) == 20         # min(20, 138) = 20, already whole chunks
    assert _grown_capacity(64, 65, 16) == 128       # doubled: min(128, 576)
    assert _grown_capacity(1000, 1001, 4) == 1128   # capped: min(2000, 1000 + 128)
    assert _grown_capacity(8, 100, 4) == 100        # needed beyond the doubling: ceil(100/4)*4


def test_float64_beyond_float32_is_refused_without_an_overflow_warning(tmp_path: Path) -> None:
    """_validate_batch__mutmut_156 (``np.errstate(over="ignore")`` made ``over=None``): the float32 range
    check must not emit NumPy's "overflow encountered in cast" RuntimeWarning on the way to its error."""
    b, length = 1, 2
    obs = np.zeros((b, length + 1, OBS), dtype=np.float64)
    obs[0, 1, 0] = 1e39  # finite in float64, inf in float32 (max about 3.4e38)
    batch = TrajectoryBatch(
        observations=obs, actions=np.zeros((b, length, ACT)), rewards=np.zeros((b, length)),
        terminals=np.zeros((b, length), bool), lengths=np.array([length]), generator="g",
        round=np.zeros(b, np.int64), learner_step=np.zeros(b, np.int64),
        filter_score=np.full(b, np.nan), start_index=np.zeros(b, np.int64))
    with ReplayStore.create(tmp_path / "s.zarr", observation_size=OBS, action_size=ACT) as store:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(UserInputError, match=r"'observations' holds NaN or inf \(trajectory 0, "
                                                     r"step 1\), or a value too large for float32"):
                store.append(batch)
        assert store.pending_rows == 0


# ------------------------------------------------------------------ creating


def test_create_refuses_attrs_that_are_not_json_native(tmp_path: Path) -> None:
    """create__mutmut_17 (the attrs check given None): a NumPy scalar in attrs is refused up front and
    nothing is left at the path."""
    path = tmp_path / "s.zarr"
    with pytest.raises(UserInputError, match="store attrs must be JSON-native"):
        ReplayStore.create(path, observation_size=OBS, action_size=ACT, attrs={"seed": np.int64(3)})
    assert not path.exists()


def test_create_unstaged_builds_the_store_in_place_opened_for_appending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """create__mutmut_33/34/51/54 (staged=False: path, observation_size or the open path made None, the
    store opened read-only)."""
    monkeypatch.chdir(tmp_path)  # a mutant writing to "None" would do it here
    path = tmp_path / "direct.zarr"
    store = ReplayStore.create(path, observation_size=OBS, action_size=ACT, chunk_rows=4, staged=False)
    with store:
        assert store.mode == "a" and store.path == path
        assert (store.observation_size, store.action_size, store.schema.chunk_rows) == (OBS, ACT, 4)
        store.append_transitions(chained(5), np.array([0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct.zarr"]  # no staging temporary, no "None"
    with ReplayStore.open(path) as reopened:
        assert len(reopened) == 5 and reopened.num_trajectories == 1
        np.testing.assert_array_equal(reopened.load(["rewards"])["rewards"], [0, 1, 2, 3, 4])


def test_create_unstaged_disk_error_names_the_action(tmp_path: Path) -> None:
    """create__mutmut_45 (the action of the OSError line made None): the parent is missing (ENOENT)."""
    path = tmp_path / "missing" / "s.zarr"
    with pytest.raises(UserInputError, match=re.escape(f"cannot create replay store '{path}': ") +
                       rf".*\(errno {errno.ENOENT}\)"):
        ReplayStore.create(path, observation_size=OBS, action_size=ACT, staged=False)


def test_every_array_has_the_documented_codecs_and_fill_value(tmp_path: Path) -> None:
    """_write_empty__mutmut_78 (trajectory_starts created with Zarr's default compressors). The chain is
    copied from docs/store-format.md "Codecs and chunk encoding"; 1-byte types omit the bytes config."""
    path = make_store(tmp_path / "s.zarr", (3,))
    itemsize = {"observations": 4, "actions": 4, "rewards": 4, "next_observations": 4, "terminals": 1,
                "timeouts": 1, "generator": 2, "round": 4, "learner_step": 8, "filter_score": 4,
                "start_index": 8, "trajectory": 8, "trajectory_starts": 8}
    for name, size in itemsize.items():
        meta = json.loads((path / name / "zarr.json").read_text())
        first = {"name": "bytes"} if size == 1 else {"name": "bytes", "configuration": {"endian": "little"}}
        blosc = {"name": "blosc", "configuration": {"typesize": size, "cname": "lz4", "clevel": 5,
                                                    "shuffle": "bitshuffle", "blocksize": 0}}
        assert meta["codecs"] == [first, blosc], name
        assert meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}, name
        assert meta["fill_value"] in (0, False) and not isinstance(meta["fill_value"], str), name


# ------------------------------------------------------------------ opening


def test_open_explains_a_zarr_v2_group(tmp_path: Path) -> None:
    """open__mutmut_20/24 (the v2 hint dropped or upper-cased)."""
    path = tmp_path / "v2.zarr"
    zarr.open_group(str(path), mode="w", zarr_format=2)
    assert (path / ".zgroup").is_file() and not (path / "zarr.json").exists()
    with pytest.raises(UserInputError,
                       match=r"no Zarr v3 group metadata \(zarr.json\) \(it is a Zarr v2 group\)$"):
        ReplayStore.open(path)


def test_open_gives_no_v2_hint_for_a_plain_directory(tmp_path: Path) -> None:
    """open__mutmut_21 (the v2 hint always given)."""
    path = tmp_path / "plain"
    path.mkdir()
    with pytest.raises(UserInputError, match=r"no Zarr v3 group metadata \(zarr.json\)$") as err:
        ReplayStore.open(path)
    assert "Zarr v2" not in str(err.value)


def test_unreadable_group_is_reported_on_one_line(tmp_path: Path) -> None:
    """open__mutmut_63 (the cut at the first newline of Zarr's message undone): a zarr_format holding a
    newline makes Zarr's error message two lines long."""
    path = tmp_path / "bad.zarr"
    path.mkdir()
    (path / "zarr.json").write_text(json.dumps({"zarr_format": "3\nsecond line", "node_type": "group"}))
    with pytest.raises(UserInputError, match="is not a readable replay store: ValueError: ") as err:
        ReplayStore.open(path)
    assert "\n" not in str(err.value) and "second line" not in str(err.value)


def test_foreign_group_message_shows_its_format(tmp_path: Path) -> None:
    """_check_format__mutmut_7 (the message reads another key, showing None)."""
    path = tmp_path / "other.zarr"
    zarr.open_group(str(path), mode="w", zarr_format=3).update_attributes({"format": "someone-elses"})
    with pytest.raises(UserInputError, match=r"its attribute 'format' is 'someone-elses', expected "
                                             r"'augment-replay-store'"):
        ReplayStore.open(path)


def test_damaged_attributes_are_named(tmp_path: Path) -> None:
    """_load_metadata__mutmut_38 (the message made None)."""
    path = make_store(tmp_path / "s.zarr", (3,))
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    del meta["attributes"]["committed_rows"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UserInputError,
                       match=r"has damaged attributes \(KeyError\('committed_rows'\) missing"):
        ReplayStore.open(path)


@pytest.mark.parametrize("name,shape,dtype,what", [
    ("rewards", (0,), "float64", "dtype float64 and shape (0,)"),            # dtype alone wrong
    ("observations", (0, OBS + 2), "float32", "dtype float32 and shape (0, 5)"),  # shape alone wrong
])
def test_one_wrong_array_property_is_damage(tmp_path: Path, name: str, shape: tuple[int, ...], dtype: str,
                                            what: str) -> None:
    """_load_metadata__mutmut_64 (``or`` made ``and``: only a wrong dtype *and* shape was refused)."""
    path = tmp_path / "s.zarr"
    ReplayStore.create(path, observation_size=OBS, action_size=ACT).close()
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    group.create_array(name, shape=shape, dtype=dtype, overwrite=True)
    with pytest.raises(UserInputError, match=re.escape(f"array '{name}' has {what}")):
        ReplayStore.open(path)


# ------------------------------------------------------------------ writing and the writer lock


def test_only_whole_chunks_are_written_before_flush(tmp_path: Path) -> None:
    """_write__mutmut_18 (``count`` made None: the partial last chunk written early). With C = 4, six
    buffered rows fill chunk 0 only; chunk 1 (rows 4-5) is written by flush (module docstring, step 2)."""
    path = tmp_path / "s.zarr"
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT, chunk_rows=4) as store:
        store.append_transitions(chained(6), np.array([0]))
        for name in ("rewards", "terminals"):
            assert (store.path / name / "c" / "0").is_file(), name
            assert not (store.path / name / "c" / "1").exists(), name
        assert (store.path / "observations" / "c" / "0" / "0").is_file()
        assert not (store.path / "observations" / "c" / "1").exists()
        assert len(store) == 0 and store.pending_rows == 6  # nothing committed mid-batch
        store.flush()
        assert (store.path / "rewards" / "c" / "1").is_file() and len(store) == 6
        np.testing.assert_array_equal(store.load(["rewards"])["rewards"], [0, 1, 2, 3, 4, 5])


def test_open_for_appending_removes_leftover_temporaries(tmp_path: Path) -> None:
    """_start_writing__mutmut_3 (the ``*.partial`` pattern upper-cased): a killed writer's temporaries are
    deleted when the next writer opens the store; a reader leaves them alone."""
    path = make_store(tmp_path / "s.zarr", (3,))
    leftovers = [path / "rewards" / "c" / "0.0123456789abcdef.partial",
                 path / "observations" / "c" / "0" / "0.fedcba9876543210.partial"]
    for leftover in leftovers:
        leftover.write_bytes(b"half a chunk")
    ReplayStore.open(path).close()
    assert all(p.exists() for p in leftovers)
    with ReplayStore.open(path, mode="a") as store:
        assert not any(p.exists() for p in leftovers)
        assert len(store) == 3
        store.validate()


def test_failed_write_deletes_its_temporaries_and_releases_the_lock(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """_abandon__mutmut_8 (the ``*.partial`` pattern upper-cased): a chunk write that fails with ENOSPC
    after leaving its temporary behind; the handle is abandoned, its temporaries deleted, the lock freed."""
    path = make_store(tmp_path / "s.zarr", (3,))
    planted: list[Path] = []

    def full_disk(files: object, first_chunk: int, rows: np.ndarray) -> None:
        tmp = Path(files.folder) / f"{first_chunk}.00000000deadbeef.partial"  # type: ignore[attr-defined]
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"x")
        planted.append(tmp)
        raise OSError(errno.ENOSPC, "No space left on device")

    store = ReplayStore.open(path, mode="a")
    monkeypatch.setattr(replay_module._ChunkFiles, "write", full_disk)
    with pytest.raises(UserInputError, match=r"the disk is full.*keeps its 3 committed rows"):
        store.append_transitions(chained(4, seed=9), np.array([0]))
    assert planted and not any(p.exists() for p in planted)
    assert not list(path.rglob("*.partial"))
    assert not guards.lock_holder(path / ".writer.lock")
    monkeypatch.undo()
    with ReplayStore.open(path) as reader:
        assert len(reader) == 3


def test_close_releases_the_writer_lock_even_while_its_file_object_lives(tmp_path: Path) -> None:
    """_release_lock__mutmut_3 (``fcntl is not None`` negated): the lock must be dropped by close itself,
    not by the garbage collector; the handle is kept alive here so only close can free it."""
    path = tmp_path / "s.zarr"
    store = ReplayStore.create(path, observation_size=OBS, action_size=ACT)
    handle = store._lock_file
    assert handle is not None and guards.lock_holder(path / ".writer.lock")
    store.close()
    assert handle.closed
    assert not guards.lock_holder(path / ".writer.lock")
    ReplayStore.open(path, mode="a").close()


# ------------------------------------------------------------------ reading


def test_iter_chunks_reads_only_the_columns_asked_for(tmp_path: Path) -> None:
    """iter_chunks__mutmut_9 (``columns`` ignored)."""
    path = make_store(tmp_path / "s.zarr", (3, 4))
    with ReplayStore.open(path) as store:
        pieces = list(store.iter_chunks(rows=3, columns=["rewards", "generator"]))
    assert [sorted(p) for p in pieces] == [["generator", "rewards", "row"]] * 3
    np.testing.assert_array_equal(np.concatenate([p["rewards"] for p in pieces]), [0, 1, 2, 0, 1, 2, 3])
    np.testing.assert_array_equal(np.concatenate([p["row"] for p in pieces]), np.arange(7))
    assert [len(p["rewards"]) for p in pieces] == [3, 3, 1]


def test_decode_failure_without_text_says_no_detail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """_read__mutmut_16/17 (the "no detail" fallback reworded): an exception with an empty message, as a
    MemoryError while decoding a chunk has."""
    path = make_store(tmp_path / "s.zarr", (3,))

    def out_of_memory(files: object, start: int, stop: int) -> np.ndarray:
        raise MemoryError()

    monkeypatch.setattr(replay_module._ChunkFiles, "read", out_of_memory)
    message = r"cannot decode array 'observations' rows 0-3 \(MemoryError: no detail\); "
    with ReplayStore.open(path) as store, pytest.raises(UserInputError, match=message):
        store.load()


def test_the_largest_int32_round_is_stored(tmp_path: Path) -> None:
    """_validate_batch__mutmut_113 (``max() > high`` made ``>=``): the documented bound is inclusive, so a
    batch whose round is 2**31 - 1 (the round column is int32) is accepted and stored as it is."""
    rng = np.random.default_rng(5)
    batch = TrajectoryBatch(
        observations=rng.normal(size=(2, 4, OBS)).astype(np.float32),
        actions=rng.normal(size=(2, 3, ACT)).astype(np.float32),
        rewards=rng.normal(size=(2, 3)).astype(np.float32), terminals=np.zeros((2, 3), bool),
        lengths=np.array([3, 3], np.int64), generator="toy",
        round=np.array([2 ** 31 - 1, 0], np.int64), learner_step=np.array([0, 0], np.int64),
        filter_score=np.zeros(2, np.float32), start_index=np.array([0, 1], np.int64))
    path = tmp_path / "r.zarr"
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT) as store:
        store.append(batch)
    with ReplayStore.open(path) as store:
        np.testing.assert_array_equal(store.load()["round"], [2 ** 31 - 1] * 3 + [0] * 3)


def test_a_failed_write_closes_the_lock_file_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """_abandon__mutmut_10 (``_release_lock(None)``): the abandoned handle must release and close its own
    lock file; here a reference to the file object is kept, so the garbage collector cannot do it."""
    path = make_store(tmp_path / "s.zarr", (3,))
    store = ReplayStore.open(path, mode="a")
    handle = store._lock_file
    assert handle is not None and guards.lock_holder(path / ".writer.lock")

    def full_disk(files: object, first_chunk: int, rows: np.ndarray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(replay_module._ChunkFiles, "write", full_disk)
    with pytest.raises(UserInputError, match="the disk is full"):
        store.append_transitions(chained(4, seed=9), np.array([0]))
    monkeypatch.undo()
    assert handle.closed
    assert not guards.lock_holder(path / ".writer.lock")
    ReplayStore.open(path, mode="a").close()
