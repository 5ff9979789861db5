"""ReplayStore on real Zarr: round trips, commit semantics, attributes, bad input, damaged stores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from replay_data import ACT, OBS, expected_rows, make_batch

from stores import replay
from stores.errors import UserInputError
from stores.replay import FORMAT_VERSION, ReplayStore, sample_batch


def assert_matches(data: dict[str, np.ndarray], generators: list[str], n_batches: int, **kw: int) -> None:
    """``data`` (from load()) equals the flattened first ``n_batches`` test batches, provenance included."""
    exp = expected_rows(n_batches, **kw)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                "trajectory", "round", "learner_step", "start_index"):
        np.testing.assert_array_equal(data[key], exp[key], err_msg=key)
    np.testing.assert_array_equal(data["filter_score"], exp["filter_score"])  # NaN == NaN here
    names = np.array(generators, dtype=object)[data["generator"]]
    assert list(names) == list(exp["generator_name"])
    lengths = np.diff(data["episode_starts"])
    assert (lengths >= 1).all() and data["episode_starts"][-1] == len(data["rewards"])
    assert (np.repeat(np.arange(len(lengths)), lengths) == data["trajectory"]).all()


def tree_digest(path: Path) -> str:
    """Hash of every file name and content under ``path`` (to prove a store was left untouched)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "s.zarr"


@pytest.mark.parametrize("direct", [True, False], ids=["direct-chunks", "through-zarr"])
def test_round_trip_across_chunks_and_reopen(store_path: Path, direct: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if not direct:  # arrays whose codecs differ from ours are read and written through Zarr
        monkeypatch.setattr(replay._ChunkFiles, "matches", staticmethod(lambda array: False))
    with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, chunk_rows=16,
                            attrs={"seed": 3, "generator_name": "test"}) as store:
        for k in range(6):
            store.append(make_batch(k))
        store.flush()
        assert len(store) == len(expected_rows(6)["rewards"]) and store.pending_rows == 0
    # re-open for appending: the tail chunk, trajectory ids and generator codes continue
    with ReplayStore.open(store_path, mode="a") as store:
        for k in range(6, 9):
            store.append(make_batch(k))
    store = ReplayStore.open(store_path)
    data = store.load()
    assert_matches(data, store.generators, 9)
    assert store.num_trajectories == 9 * 5 and store.generators == ["gen-b", "gen-a"]
    plain = zarr.open_group(str(store_path), mode="r")  # what any Zarr reader sees
    for name in ("observations", "terminals", "generator", "round", "filter_score", "trajectory"):
        np.testing.assert_array_equal(plain[name][:len(store)], data[name], err_msg=name)
    np.testing.assert_array_equal(plain["trajectory_starts"][:store.num_trajectories],
                                  data["episode_starts"][:-1])
    store.validate()
    pieces = list(store.iter_chunks(rows=10))
    assert all(len(p["rewards"]) <= 10 for p in pieces)
    for key in ("observations", "generator", "trajectory"):
        np.testing.assert_array_equal(np.concatenate([p[key] for p in pieces]), data[key])
    np.testing.assert_array_equal(np.concatenate([p["row"] for p in pieces]), np.arange(len(store)))
    middle = store.read_rows(20, 45, ["actions", "start_index"])
    np.testing.assert_array_equal(middle["actions"], data["actions"][20:45])
    with pytest.raises(UserInputError, match="outside"):
        store.read_rows(0, len(store) + 1)
    with pytest.raises(UserInputError, match="unknown store column"):
        store.load(columns=["obs"])
    info = store.info()
    assert info["rows"] == len(store) and info["trajectories"] == 45 and info["seed"] == 3
    assert sum(info["generators"].values()) == len(store) and info["format_version"] == FORMAT_VERSION
    assert info["terminals"] == int(data["terminals"].sum()) and info["disk_bytes"] > 0


def test_rows_are_visible_only_after_commit(store_path: Path) -> None:
    writer = ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, chunk_rows=1000)
    writer.append(make_batch(0))
    reader = ReplayStore.open(store_path)
    assert len(reader) == 0 and len(reader.load()["rewards"]) == 0
    writer.flush()
    assert len(reader) == 0  # an open handle keeps its committed length ...
    reader.refresh()  # ... until refreshed (or re-opened)
    assert_matches(reader.load(), reader.generators, 1)
    writer.close()


def test_whole_chunks_are_written_and_whole_batches_committed(store_path: Path) -> None:
    ends = [0]
    with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, chunk_rows=8) as store:
        for k in range(5):
            store.append(make_batch(k))
            ends.append(ends[-1] + int(make_batch(k).lengths.sum()))
            seen = len(ReplayStore.open(store_path))
            assert seen in ends  # never part of a batch
            assert seen <= len(store) <= ends[-1]
        assert len(ReplayStore.open(store_path)) > 0  # full chunks were committed without flush()


def test_append_transitions_and_attrs(store_path: Path) -> None:
    exp = expected_rows(2)
    starts = np.flatnonzero(np.diff(np.concatenate([[-1], exp["trajectory"]])))
    with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT,
                            attrs={"source_dataset": "toy", "custom": {"a": [1, 2]}}) as store:
        store.append_transitions({k: exp[k] for k in ("observations", "actions", "rewards",
                                                      "next_observations", "terminals", "timeouts")},
                                 starts, generator="real")
        store.update_attrs(seed=7, normalization={"obs_mean": [0.0] * OBS})
        with pytest.raises(UserInputError, match="managed by the store"):
            store.update_attrs(committed_rows=3)
        with pytest.raises(UserInputError, match="JSON-native"):
            store.update_attrs(seed=np.int64(3))
    store = ReplayStore.open(store_path)
    data = store.load()
    np.testing.assert_array_equal(data["observations"], exp["observations"])
    np.testing.assert_array_equal(data["episode_starts"][:-1], starts)
    np.testing.assert_array_equal(data["start_index"], np.repeat(starts, np.diff(data["episode_starts"])))
    assert (data["round"] == -1).all() and np.isnan(data["filter_score"]).all()
    attrs = store.attrs
    assert attrs["source_dataset"] == "toy" and attrs["custom"] == {"a": [1, 2]} and attrs["seed"] == 7
    assert attrs["committed_rows"] == len(exp["rewards"]) and attrs["generators"] == ["real"]
    json.dumps(attrs)
    with pytest.raises(UserInputError, match="read-only"):
        store.update_attrs(seed=1)
    store.validate()


def test_sample_batch_numpy_and_torch(store_path: Path) -> None:
    with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT) as store:
        store.append(make_batch(0))
    data = ReplayStore.open(store_path).load()
    batch = sample_batch(data, 32, rng=0)
    assert batch["observations"].shape == (32, OBS) and batch["terminals"].dtype == np.bool_
    again = sample_batch(data, 32, rng=0)
    np.testing.assert_array_equal(batch["actions"], again["actions"])
    tensors = sample_batch(data, 8, rng=1, device="cpu")
    assert tuple(tensors["next_observations"].shape) == (8, OBS)
    assert str(tensors["rewards"].dtype) == "torch.float32"


def test_second_writer_is_refused(store_path: Path) -> None:
    with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT):
        with pytest.raises(UserInputError, match="another writer"):
            ReplayStore.open(store_path, mode="a")
        assert len(ReplayStore.open(store_path, mode="r")) == 0
    ReplayStore.open(store_path, mode="a").close()  # lock released by close()


def _bad_batches() -> list[tuple[str, object]]:
    good = make_batch(0)
    nan_obs = good.observations.copy()
    nan_obs[1, 0, 2] = np.nan
    inf_rew = good.rewards.copy()
    inf_rew[0, 3] = np.inf
    early = good.terminals.copy()
    early[0, 0] = True
    return [
        ("observations", replace(good, observations=good.observations[..., :5])),
        ("actions", replace(good, actions=np.zeros((5, 7, 4), np.float32))),
        ("rewards", replace(good, rewards=good.rewards[:, :3])),
        ("observations", replace(good, observations=good.observations.astype(np.int32))),
        ("terminals", replace(good, terminals=good.terminals.astype(np.float32))),
        ("round", replace(good, round=good.round.astype(np.float64))),
        ("observations", replace(good, observations=nan_obs)),
        ("rewards", replace(good, rewards=inf_rew)),
        ("actions", replace(good, actions=np.full_like(good.actions, 1e39, dtype=np.float64))),
        ("lengths", replace(good, lengths=np.full(5, 9))),
        ("terminals", replace(good, terminals=early)),
        ("filter_score", replace(good, filter_score=np.full(5, np.inf, np.float32))),
        ("generator", replace(good, generator="")),
    ]


@pytest.mark.parametrize("field,batch", _bad_batches())
def test_bad_batch_is_refused_and_store_untouched(store_path: Path, field: str, batch: object) -> None:
    store = ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, chunk_rows=16)
    store.append(make_batch(1))
    store.flush()
    before = tree_digest(store_path)
    with pytest.raises(UserInputError, match=f"'{field}'"):
        store.append(batch)  # type: ignore[arg-type]
    assert store.pending_rows == 0
    store.flush()
    assert tree_digest(store_path) == before
    store.close()
    data = ReplayStore.open(store_path).load()
    np.testing.assert_array_equal(data["observations"], make_batch(1).to_transitions()["observations"])


def test_nan_beyond_lengths_is_padding(store_path: Path) -> None:
    batch = make_batch(2)
    obs, rew = batch.observations.copy(), batch.rewards.copy()
    short = int(np.argmin(batch.lengths))
    obs[short, batch.lengths[short] + 1:] = np.nan
    rew[short, batch.lengths[short]:] = np.nan
    with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT) as store:
        store.append(replace(batch, observations=obs, rewards=rew))
    ReplayStore.open(store_path).validate()


def _one_line(exc: pytest.ExceptionInfo[UserInputError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_opening_things_that_are_not_stores(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no replay store") as exc:
        ReplayStore.open(tmp_path / "missing.zarr")
    _one_line(exc)
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserInputError, match="not a replay store") as exc:
        ReplayStore.open(tmp_path / "plain")
    _one_line(exc)
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(UserInputError, match="not a replay store"):
        ReplayStore.open(tmp_path / "file.txt")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["x"] = 1
    with pytest.raises(UserInputError, match="not a replay store") as exc:
        ReplayStore.open(tmp_path / "other.zarr")
    _one_line(exc)
    garbage = tmp_path / "garbage.zarr"
    garbage.mkdir()
    (garbage / "zarr.json").write_text("{not json")
    with pytest.raises(UserInputError, match="not a readable replay store") as exc:
        ReplayStore.open(garbage)
    _one_line(exc)


def test_newer_format_version_is_refused(store_path: Path) -> None:
    ReplayStore.create(store_path, observation_size=OBS, action_size=ACT).close()
    zarr.open_group(str(store_path), mode="r+").update_attributes({"format_version": FORMAT_VERSION + 1})
    with pytest.raises(UserInputError, match="newer") as exc:
        ReplayStore.open(store_path)
    _one_line(exc)


def _filled(store_path: Path) -> None:
    with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, chunk_rows=8) as store:
        for k in range(3):
            store.append(make_batch(k))


def test_corrupted_chunk_gives_one_line(store_path: Path) -> None:
    _filled(store_path)
    chunk = store_path / "observations" / "c" / "1" / "0"
    chunk.write_bytes(b"\x00garbage" * 7)
    store = ReplayStore.open(store_path)
    for call in (store.load, store.validate, lambda: list(store.iter_chunks())):
        with pytest.raises(UserInputError, match="damaged.*'observations'") as exc:
            call()
        _one_line(exc)
    (store_path / "rewards" / "c" / "0").write_bytes(b"")
    with pytest.raises(UserInputError, match="damaged.*'rewards'") as exc:
        store.info()
    _one_line(exc)


def test_missing_chunk_and_missing_array(store_path: Path) -> None:
    _filled(store_path)
    (store_path / "rewards" / "c" / "0").unlink()
    with pytest.raises(UserInputError, match="chunk 0 of array 'rewards'.*missing"):
        ReplayStore.open(store_path).load()
    (store_path / "actions" / "zarr.json").unlink()
    with pytest.raises(UserInputError, match="'actions' is missing"):
        ReplayStore.open(store_path)


def test_validate_finds_nan_and_broken_boundaries(store_path: Path) -> None:
    _filled(store_path)
    ReplayStore.open(store_path).validate()
    group = zarr.open_group(str(store_path), mode="r+")
    saved = group["rewards"][3]
    group["rewards"][3] = np.nan
    with pytest.raises(UserInputError, match="'rewards' holds NaN or inf at row 3"):
        ReplayStore.open(store_path).validate()
    group["rewards"][3] = saved
    group["terminals"][0] = True  # row 0 is inside trajectory 0 (length 7)
    with pytest.raises(UserInputError, match="'terminals' is True at row 0"):
        ReplayStore.open(store_path).validate()
    group["terminals"][0] = False
    group["next_observations"][2] = group["next_observations"][2] + 1.0
    with pytest.raises(UserInputError, match="row 3: observations differ"):
        ReplayStore.open(store_path).validate()


def test_create_refuses_existing_and_bad_sizes(store_path: Path) -> None:
    ReplayStore.create(store_path, observation_size=OBS, action_size=ACT).close()
    with pytest.raises(UserInputError, match="already exists"):
        ReplayStore.create(store_path, observation_size=OBS, action_size=ACT)
    with pytest.raises(UserInputError, match="observation_size"):
        ReplayStore.create(store_path, observation_size=0, action_size=ACT, overwrite=True)
    with pytest.raises(UserInputError, match="managed by the store"):
        ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, overwrite=True,
                           attrs={"committed_rows": 5})
    store = ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, overwrite=True)
    assert len(store) == 0 and store.mode == "a"
    store.close()
