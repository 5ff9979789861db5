"""Converters on real libraries: OfflineDataset, D4RL HDF5, npz, Minari and d3rlpy, both ways; merge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from replay_data import ACT, OBS, make_batch

from stores.convert import (
    d3rlpy_to_dataset,
    dataset_to_store,
    export_store,
    import_source,
    merge_stores,
    read_d3rlpy,
    store_to_dataset,
    to_d3rlpy,
    write_d3rlpy,
)
from stores.errors import UserInputError
from stores.replay import ReplayStore
from stores.schema import Episode, OfflineDataset

ALL = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "round",
       "learner_step", "filter_score", "start_index", "trajectory", "episode_starts")


def synthetic_store(path: Path, batches: int = 4, first: int = 0) -> ReplayStore:
    """A store of test batches with generator provenance and an env id."""
    attrs = {"env_id": "Hopper-v5", "generator_name": "test-gen", "generator_config": {"horizon": 7},
             "seed": 5}
    with ReplayStore.create(path, observation_size=OBS, action_size=ACT, attrs=attrs, chunk_rows=32) as store:
        for k in range(first, first + batches):
            store.append(make_batch(k))
    return ReplayStore.open(path)


def assert_same_store(a: ReplayStore, b: ReplayStore, *, provenance: bool = True) -> None:
    da, db = a.load(), b.load()
    keys = ALL if provenance else ("observations", "actions", "rewards", "next_observations", "terminals",
                                   "timeouts", "trajectory", "episode_starts")
    for key in keys:
        np.testing.assert_array_equal(da[key], db[key], err_msg=key)
    if provenance:
        names_a = np.array(a.generators, dtype=object)[da["generator"]]
        names_b = np.array(b.generators, dtype=object)[db["generator"]]
        assert list(names_a) == list(names_b)


def tiny_dataset() -> OfflineDataset:
    rng = np.random.default_rng(0)
    episodes = []
    for i, t in enumerate((5, 9, 3, 12)):
        terminated = np.zeros(t, bool)
        truncated = np.zeros(t, bool)
        (terminated if i % 2 else truncated)[-1] = True
        episodes.append(Episode(observations=rng.standard_normal((t + 1, OBS)).astype(np.float32),
                                actions=rng.uniform(-1, 1, (t, ACT)).astype(np.float32),
                                rewards=rng.standard_normal(t).astype(np.float32),
                                terminated=terminated, truncated=truncated))
    return OfflineDataset(name="tiny", episodes=tuple(episodes), env_id="Hopper-v5",
                          provenance={"source": "test"})


def test_dataset_store_round_trip(tmp_path: Path) -> None:
    ds = tiny_dataset()
    store = dataset_to_store(ds, tmp_path / "d.zarr", chunk_rows=8, progress=False)
    store.validate()
    assert len(store) == ds.num_transitions and store.num_trajectories == ds.num_episodes
    attrs = store.attrs
    assert attrs["source_dataset"] == "tiny" and attrs["source_hash"] == ds.content_hash
    assert attrs["env_id"] == "Hopper-v5"
    assert attrs["normalization"]["obs_mean"] == ds.stats.to_json()["obs_mean"]
    data = store.load()
    np.testing.assert_array_equal(data["start_index"], np.repeat(ds.transitions.episode_starts[:-1],
                                                                 np.diff(ds.transitions.episode_starts)))
    assert store.generators == ["real"]
    back = store_to_dataset(store)
    assert back.content_hash == ds.content_hash and back.env_id == "Hopper-v5"
    with pytest.raises(UserInputError, match="already exists"):
        dataset_to_store(ds, tmp_path / "d.zarr", progress=False)


@pytest.mark.parametrize("fmt,name", [("hdf5", "x.hdf5"), ("npz", "x.npz"), ("d3rlpy", "x.h5")])
def test_file_exports_round_trip_with_provenance(tmp_path: Path, fmt: str, name: str) -> None:
    store = synthetic_store(tmp_path / "s.zarr")
    out = export_store(store, fmt, tmp_path / name)
    dataset, prov = import_source(str(out))
    assert prov is not None and len(prov) == len(store)
    again = dataset_to_store(dataset, tmp_path / "again.zarr", provenance=prov, progress=False)
    assert_same_store(store, again)
    again.validate()
    attrs = again.attrs
    assert attrs["generator_name"] == "test-gen" and attrs["generator_config"] == {"horizon": 7}
    assert attrs["seed"] == 5 and attrs["env_id"] == "Hopper-v5"


def test_minari_export_round_trip(tmp_path: Path) -> None:
    store = synthetic_store(tmp_path / "s.zarr")
    root = tmp_path / "minari"
    export_store(store, "minari", "augment/store-test-v0", minari_root=root)
    from stores.sources import read_minari

    dataset = read_minari("augment/store-test-v0", root=root)
    again = dataset_to_store(dataset, tmp_path / "again.zarr", progress=False)
    assert_same_store(store, again, provenance=False)
    assert dataset.env_id == "Hopper-v5"


def test_d3rlpy_buffer_transitions_are_the_store_rows(tmp_path: Path) -> None:
    from d3rlpy.dataset import BasicTransitionPicker

    store = synthetic_store(tmp_path / "s.zarr")
    data = store.load()
    buffer = to_d3rlpy(store)
    assert buffer.transition_count == len(store)
    picker = BasicTransitionPicker()
    row = 0
    for ep in buffer.episodes:
        for i in range(ep.transition_count):
            tr = picker(ep, i)
            np.testing.assert_array_equal(tr.observation, data["observations"][row])
            np.testing.assert_array_equal(tr.action, data["actions"][row])
            assert tr.reward[0] == data["rewards"][row]
            assert tr.terminal == float(data["terminals"][row])
            expected_next = 0.0 * data["next_observations"][row] if data["terminals"][row] \
                else data["next_observations"][row]
            np.testing.assert_array_equal(tr.next_observation, expected_next)
            row += 1
        assert ep.terminated == bool(data["terminals"][row - 1])
        assert ep.terminated or data["timeouts"][row - 1]
    assert row == len(store) and data["terminals"].any() and data["timeouts"].any()
    batch = buffer.sample_transition_batch(16)
    assert batch.observations.shape == (16, OBS)
    # a dump without our extras (as d3rlpy itself writes it) reads back with zero terminal next states
    plain = tmp_path / "plain.h5"
    with open(plain, "w+b") as f:
        buffer.dump(f)
    dataset, prov = read_d3rlpy(plain, env_id="Hopper-v5")
    assert prov is None and dataset.num_transitions == len(store)
    flat = dataset.transitions
    np.testing.assert_array_equal(flat.observations, data["observations"])
    np.testing.assert_array_equal(flat.next_observations[~data["terminals"]],
                                  data["next_observations"][~data["terminals"]])
    assert not flat.next_observations[data["terminals"]].any()
    np.testing.assert_array_equal(flat.timeouts, data["timeouts"])


def test_d3rlpy_dump_and_misc_refusals(tmp_path: Path) -> None:
    store = synthetic_store(tmp_path / "s.zarr")
    path = write_d3rlpy(store, tmp_path / "buf.h5")
    from d3rlpy.dataset import InfiniteBuffer, ReplayBuffer

    with open(path, "rb") as f:
        loaded = ReplayBuffer.load(f, InfiniteBuffer())
    assert loaded.transition_count == len(store)
    with pytest.raises(UserInputError, match="not a d3rlpy"):
        read_d3rlpy(tmp_path / "s.zarr" / "zarr.json")
    with pytest.raises(UserInputError, match="unknown export format"):
        export_store(store, "csv", tmp_path / "x.csv")
    with pytest.raises(UserInputError, match="no transitions"):
        d3rlpy_to_dataset([])


def test_merge_keeps_provenance(tmp_path: Path) -> None:
    a = synthetic_store(tmp_path / "a.zarr", batches=3)
    b = synthetic_store(tmp_path / "b.zarr", batches=2, first=3)
    merged = merge_stores([a, b], tmp_path / "c.zarr", progress=False)
    merged.validate()
    assert len(merged) == len(a) + len(b) and merged.num_trajectories == a.num_trajectories + 10
    dm, da, db = merged.load(), a.load(), b.load()
    for key in ("observations", "round", "learner_step", "filter_score", "start_index", "terminals"):
        np.testing.assert_array_equal(dm[key], np.concatenate([da[key], db[key]]), err_msg=key)
    names = list(np.array(merged.generators, dtype=object)[dm["generator"]])
    assert names == list(np.array(a.generators, dtype=object)[da["generator"]]) + \
        list(np.array(b.generators, dtype=object)[db["generator"]])
    np.testing.assert_array_equal(dm["trajectory"][len(a):], db["trajectory"] + a.num_trajectories)
    attrs = merged.attrs
    assert attrs["generator_name"] == "test-gen" and len(attrs["merged_from"]) == 2
    assert attrs["merged_from"][1]["rows"] == len(b)
    other = ReplayStore.create(tmp_path / "o.zarr", observation_size=4, action_size=ACT)
    other.close()
    with pytest.raises(UserInputError, match="different observation/action sizes"):
        merge_stores([a, other], tmp_path / "d.zarr", progress=False)
    with pytest.raises(UserInputError, match="new path"):
        merge_stores([a, b], tmp_path / "a.zarr", overwrite=True, progress=False)
