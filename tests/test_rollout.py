"""Single-step rollouts (augment/generators/rollout.py): MOPO's uncertainty and penalty against hand
computations, the rollout loop against a hand-rolled one, truncation, the profile's volume rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augment.generators.dydiff import DyDiffConfig
from augment.generators.rollout import (
    RolloutConfig,
    RolloutGenerator,
    model_rollout,
    mopo_uncertainty,
    penalized_rewards,
)
from stores.errors import UserInputError

OBS, ACT = 3, 2
B_MAT = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)


class LinearPolicy:
    def __init__(self) -> None:
        self.w = np.array([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6]], np.float32)

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.tanh(observations @ self.w.T).astype(np.float32)

    def reset(self, n: int) -> None:
        pass


class ToyWorld:
    """Two 'elites' with means s + B a (+/- 0.1) and stds 0.1 |s| and 0.2 |a|-padded; r = s[0] + a[0];
    terminal when s'[0] > 1. predict_next draws an elite's Gaussian with rng like the real WorldModel."""

    def _dist(self, obs: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = obs + act @ B_MAT.T
        means = np.stack([base + 0.1, base - 0.1])
        stds = np.stack([0.1 * np.abs(obs) + 0.01, np.full_like(obs, 0.2)])
        return means.astype(np.float32), stds.astype(np.float32)

    def predict_next_distribution(self, obs, act):
        return self._dist(obs, act)

    def predict_next(self, obs, act, rng, *, deterministic=False):
        means, stds = self._dist(obs, act)
        if deterministic:
            return means.mean(axis=0)
        k = rng.integers(0, 2, size=obs.shape[0])
        noise = rng.standard_normal(size=obs.shape).astype(np.float32)
        rows = np.arange(obs.shape[0])
        return (means[k, rows] + stds[k, rows] * noise).astype(np.float32)

    def predict_reward(self, obs, act):
        return (obs[:, 0] + act[:, 0]).astype(np.float32)

    def is_terminal(self, next_obs):
        return next_obs[:, 0] > 1.0


def test_mopo_uncertainty_is_the_largest_frobenius_norm() -> None:
    stds = np.array([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 1.0], [2.0, 2.0]]])  # (K=2, B=2, obs=2)
    np.testing.assert_allclose(mopo_uncertainty(stds), [5.0, math.sqrt(8.0)], rtol=1e-6)
    np.testing.assert_allclose(penalized_rewards(np.array([1.0, 2.0]), np.array([0.5, 1.0]), 2.0), [0.0, 0.0])


def test_rollout_matches_a_hand_rolled_loop_with_penalty() -> None:
    world, policy = ToyWorld(), LinearPolicy()
    s0 = np.random.default_rng(0).normal(scale=0.3, size=(5, OBS)).astype(np.float32)
    states, actions, rewards, uncert, flags = model_rollout(s0, policy, world, 4, np.random.default_rng(9),
                                                            penalty=0.5)
    rng = np.random.default_rng(9)
    s = s0
    for t in range(4):
        a = policy.act(s)
        _, stds = world.predict_next_distribution(s, a)
        u = np.sqrt((stds.astype(np.float64) ** 2).sum(-1)).max(0)
        nxt = world.predict_next(s, a, rng)
        np.testing.assert_allclose(actions[:, t], a, rtol=1e-6)
        np.testing.assert_allclose(uncert[:, t], u, rtol=1e-5)
        np.testing.assert_allclose(rewards[:, t], s[:, 0] + a[:, 0] - 0.5 * u, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(states[:, t + 1], nxt, rtol=1e-6)
        np.testing.assert_array_equal(flags[:, t], nxt[:, 0] > 1.0)
        s = nxt
    np.testing.assert_array_equal(states[:, 0], s0)


def _generator(horizon: int = 4, penalty: float = 0.0) -> RolloutGenerator:
    gen = RolloutGenerator(RolloutConfig(horizon=horizon, penalty=penalty, profile="smoke"), progress=False)
    gen.world = ToyWorld()
    gen.set_start_states(np.random.default_rng(1).normal(scale=0.5, size=(40, OBS)).astype(np.float32))
    return gen


def test_generator_cuts_rows_at_their_first_terminal() -> None:
    gen = _generator(horizon=6)
    batch = gen.generate(30, LinearPolicy(), np.random.default_rng(3), round=1, learner_step=7)
    batch.validate()
    assert batch.generator == "rollout" and batch.batch_size == 30
    assert np.isnan(batch.filter_score).all()  # no penalty -> nothing scored
    for b in range(batch.batch_size):
        n = int(batch.lengths[b])
        first = np.flatnonzero(batch.observations[b, 1:n + 1, 0] > 1.0)
        if batch.terminals[b].any():
            assert first.size and first[0] == n - 1 and batch.terminals[b, n - 1]
        else:
            assert n == 6 and first.size == 0
    assert batch.terminals.any() and (batch.lengths < 6).any()  # the toy world does terminate
    np.testing.assert_array_equal(batch.observations[:, 0], gen._start_states[batch.start_index])


def test_penalty_is_recorded_as_the_rows_mean_uncertainty() -> None:
    gen = _generator(horizon=3, penalty=1.0)
    batch = gen.generate(10, LinearPolicy(), np.random.default_rng(4))
    assert np.isfinite(batch.filter_score).all() and (batch.filter_score > 0).all()
    assert gen.network_evaluations() == {"policy": 3, "dynamics": 6, "reward": 3, "total": 12}


def test_profile_matches_dydiff_volume_and_bad_settings_fail() -> None:
    dy = DyDiffConfig.for_profile("cpu", "hopper-medium-replay")
    for h in (1, 5):
        cfg = RolloutConfig.for_profile("cpu", "hopper-medium-replay", horizon=h)
        assert cfg.rollout_batch == math.ceil(dy.kept_per_round * dy.rollout_length / h)
        assert (cfg.rollout_interval, cfg.real_ratio, cfg.max_synthetic) == (
            dy.rollout_interval, dy.real_ratio, dy.max_synthetic)
    with pytest.raises(UserInputError, match="horizon"):
        RolloutConfig(horizon=0)
    with pytest.raises(UserInputError, match="lambda"):
        RolloutConfig(penalty=-1.0)
    gen = RolloutGenerator(RolloutConfig(), progress=False)
    with pytest.raises(UserInputError, match="before fit"):
        gen.generate(3, LinearPolicy(), np.random.default_rng(0))
    with pytest.raises(UserInputError, match="policy"):
        _generator().generate(3, None, np.random.default_rng(0))
