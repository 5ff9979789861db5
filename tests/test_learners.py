"""Learners: d3rlpy configs with the papers' hyper-parameters, scalers from stats, real updates."""

from __future__ import annotations

import d3rlpy
import numpy as np
import pytest
from baselines_data import hopper_random_dataset

from baselines.learners import (
    LEARNERS,
    LearnerPolicy,
    iql_reward_multiplier,
    make_learner,
    rollout_policy,
)
from baselines.protocols import Policy
from baselines.sampler import MixedSampler
from stores.errors import UserInputError
from stores.schema import OfflineDataset


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return hopper_random_dataset(episodes=8, seed=1)


def test_hyperparameters_and_scalers(dataset: OfflineDataset) -> None:
    td3 = make_learner("td3bc", dataset)
    assert isinstance(td3.config, d3rlpy.algos.TD3PlusBCConfig)
    assert td3.config.alpha == 2.5 and td3.config.update_actor_interval == 2
    iql = make_learner("iql", dataset, total_steps=1000)
    assert iql.config.expectile == 0.7 and iql.config.weight_temp == 3.0
    assert iql.config.reward_scaler.multiplier == pytest.approx(iql_reward_multiplier(dataset.stats))
    cql = make_learner("cql", dataset, batch_size=32)
    assert cql.config.conservative_weight == d3rlpy.algos.CQLConfig().conservative_weight
    assert cql.config.batch_size == 32
    for algo in (td3, iql, cql):
        scaler = algo.config.observation_scaler
        np.testing.assert_array_equal(scaler.mean, dataset.stats.obs_mean)
        np.testing.assert_array_equal(scaler.std, dataset.stats.obs_std)
        assert algo.impl is not None


@pytest.mark.parametrize("name", LEARNERS)
def test_update_on_sampler_batches_and_act(name: str, dataset: OfflineDataset) -> None:
    algo = make_learner(name, dataset, batch_size=32, seed=0)
    sampler = MixedSampler(dataset.transitions, batch_size=32, seed=0)
    before = algo.predict(dataset.transitions.observations[:4]).copy()
    for _ in range(2):
        losses = algo.update(sampler.sample())
    assert losses and all(np.isfinite(v) for v in losses.values())
    assert algo.grad_step == 2
    policy = LearnerPolicy(algo)
    assert isinstance(policy, Policy)
    acts = policy.act(dataset.transitions.observations[:4])
    assert acts.shape == (4, dataset.action_size) and acts.dtype == np.float32
    assert np.abs(acts).max() <= 1.0 + 1e-6
    assert not np.allclose(acts, before), "two updates should move the actor's output"


def test_seed_decides_initial_weights(dataset: OfflineDataset) -> None:
    obs = dataset.transitions.observations[:5]
    a = make_learner("td3bc", dataset, seed=3).predict(obs)
    b = make_learner("td3bc", dataset, seed=3).predict(obs)
    c = make_learner("td3bc", dataset, seed=4).predict(obs)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_rollout_policy_is_stochastic_for_gaussian_actors(dataset: OfflineDataset) -> None:
    assert rollout_policy(make_learner("td3bc", dataset), "td3bc").stochastic is False
    iql_policy = rollout_policy(make_learner("iql", dataset), "iql")
    assert iql_policy.stochastic is True
    obs = np.repeat(dataset.transitions.observations[:1], 6, axis=0)
    acts = iql_policy.act(obs)
    assert not np.allclose(acts[0], acts[1])


def test_unknown_learner_suggests_a_name(dataset: OfflineDataset) -> None:
    with pytest.raises(UserInputError, match="did you mean 'td3bc'"):
        make_learner("td3_bc", dataset)
