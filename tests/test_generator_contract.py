"""The contract every generator passes: fit, generate, store round trip, save/load, same seed same output,
provenance. Real models (smoke profile) on a tiny Hopper-v5 dataset of random actions.

Adding a generator (a planner) is one line in ``CONTRACT``: its registered name and the options to build
it with at the smoke profile (:func:`augment.generators.offline.build_generator`).
"""

from __future__ import annotations

import numpy as np
import pytest

from augment.generators.offline import build_generator, fit_generator, generate_store
from stores.replay import ReplayStore
from stores.schema import OfflineDataset, TrajectoryBatch
from tests.baselines_data import hopper_random_dataset

#: name -> build options (smoke profile). One line per generator.
CONTRACT: dict[str, dict] = {
    "dydiff": {},
    "synther": {},
    "rollout": {"horizon": 3},
}
ROUND = 12  # items (start states / transitions) asked per generate() call


class TanhPolicy:
    """a = tanh(W s) with fixed W: deterministic, so two rollouts of one rng state agree."""

    def __init__(self, obs: int, act: int) -> None:
        self.w = np.random.default_rng(7).normal(scale=0.3, size=(act, obs)).astype(np.float32)

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.tanh(observations @ self.w.T).astype(np.float32)

    def reset(self, n: int) -> None:
        pass


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return hopper_random_dataset(episodes=12, seed=3)


@pytest.fixture(scope="module")
def fitted(dataset) -> dict:
    gens = {}
    for name, options in CONTRACT.items():
        gen = build_generator(name, profile="smoke", dataset_name=dataset.name, options=options,
                              progress=False)
        fit_generator(gen, dataset)
        gens[name] = gen
    return gens


@pytest.fixture(scope="module")
def policy(dataset) -> TanhPolicy:
    return TanhPolicy(dataset.observation_size, dataset.action_size)


def _same(a: TrajectoryBatch, b: TrajectoryBatch) -> None:
    for key in ("observations", "actions", "rewards", "terminals", "lengths", "start_index"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


@pytest.mark.parametrize("name", list(CONTRACT))
def test_fit_then_generate_gives_a_valid_batch(name, fitted, dataset, policy) -> None:
    gen = fitted[name]
    assert gen.name == name
    batch = gen.generate(ROUND, policy, np.random.default_rng(0), round=2, learner_step=5)
    assert isinstance(batch, TrajectoryBatch) and batch.generator == name
    batch.validate()
    assert 1 <= batch.batch_size <= ROUND and batch.num_transitions >= 1
    assert batch.observations.shape[-1] == dataset.observation_size
    assert batch.actions.shape[-1] == dataset.action_size
    assert (batch.round == 2).all() and (batch.learner_step == 5).all()
    rows = batch.start_index[batch.start_index >= 0]
    if rows.size:  # rollouts start from real states, at the recorded rows
        np.testing.assert_array_equal(batch.observations[batch.start_index >= 0, 0],
                                      dataset.transitions.observations[rows])


@pytest.mark.parametrize("name", list(CONTRACT))
def test_store_round_trip(name, fitted, policy, dataset, tmp_path) -> None:
    batch = fitted[name].generate(ROUND, policy, np.random.default_rng(1))
    with ReplayStore.create(tmp_path / "s.zarr", observation_size=dataset.observation_size,
                            action_size=dataset.action_size) as store:
        store.append(batch)
    with ReplayStore.open(tmp_path / "s.zarr") as store:
        data = store.load()
        names = store.generators
    flat = batch.to_transitions()
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(data[key], flat[key], err_msg=key)
    assert names == [name] and len(data["episode_starts"]) == batch.batch_size + 1


@pytest.mark.parametrize("name", list(CONTRACT))
def test_same_seed_same_output_other_seed_other_output(name, fitted, policy) -> None:
    gen = fitted[name]
    a = gen.generate(ROUND, policy, np.random.default_rng(11))
    b = gen.generate(ROUND, policy, np.random.default_rng(11))
    c = gen.generate(ROUND, policy, np.random.default_rng(12))
    _same(a, b)
    assert not np.array_equal(a.observations[:, -1], c.observations[: a.batch_size, -1]) or \
        a.batch_size != c.batch_size


@pytest.mark.parametrize("name", list(CONTRACT))
def test_save_load_restores_the_same_generator(name, fitted, dataset, policy, tmp_path) -> None:
    gen = fitted[name]
    gen.save(tmp_path / "g")
    other = build_generator(name, profile="smoke", dataset_name=dataset.name, options=CONTRACT[name],
                            progress=False)
    other.load(tmp_path / "g")
    if hasattr(other, "set_start_states"):  # start states belong to the dataset, not to the saved models
        other.set_start_states(dataset.transitions.observations)
    _same(gen.generate(ROUND, policy, np.random.default_rng(5)), other.generate(ROUND, policy,
                                                                               np.random.default_rng(5)))


@pytest.mark.parametrize("name", list(CONTRACT))
def test_generate_store_writes_exactly_n_with_provenance(name, fitted, dataset, policy, tmp_path) -> None:
    out = tmp_path / f"{name}.zarr"
    result, _ = generate_store(fitted[name], dataset, 40, out, policy=policy, profile="smoke", seed=3,
                               progress=False)
    assert result.rows == 40
    with ReplayStore.open(out) as store:
        assert len(store) == 40 and store.generators == [name]
        attrs = store.attrs
    assert attrs["generator_name"] == name and attrs["source_hash"] == dataset.content_hash
    assert attrs["source_dataset"] == dataset.name and attrs["env_id"] == "Hopper-v5"
    assert attrs["seed"] == 3 and attrs["requested_transitions"] == 40
    assert attrs["termination"]["source"] == "env" and attrs["generation"]["rows"] == 40
    assert attrs["normalization"]["obs_mean"] == pytest.approx(dataset.stats.obs_mean.tolist(), rel=1e-6)
