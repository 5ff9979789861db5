"""Evaluation harness: explicit seeds give identical returns; any Policy; normalized scores."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.evaluate import EvalResult, episode_seed, evaluate
from stores.errors import UserInputError
from stores.scores import normalized_score
from tests.baselines_data import tanh_linear_rows


class LinearPolicy:
    """a = tanh(W s): a deterministic Policy that is not a d3rlpy learner; records reset() calls."""

    def __init__(self, obs: int, act: int, seed: int = 0) -> None:
        self.w = np.random.default_rng(seed).normal(scale=0.3, size=(obs, act)).astype(np.float32)
        self.resets: list[int] = []

    def act(self, observations: np.ndarray) -> np.ndarray:
        return tanh_linear_rows(observations, self.w)

    def reset(self, n: int) -> None:
        self.resets.append(n)


def test_same_seed_same_returns_regardless_of_width() -> None:
    p = LinearPolicy(11, 3)
    a = evaluate(p, "Hopper-v5", episodes=3, seed=7)
    b = evaluate(p, "Hopper-v5", episodes=3, seed=7, num_envs=2)
    c = evaluate(p, "Hopper-v5", episodes=3, seed=8)
    assert isinstance(a, EvalResult)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert not np.allclose(a.returns, c.returns)
    assert p.resets == [3, 2, 1, 3]
    assert a.returns.shape == (3,) and a.lengths.dtype == np.int64 and (a.lengths >= 1).all()


def test_statistics_and_normalized_score() -> None:
    import gymnasium as gym

    policy = LinearPolicy(11, 3, seed=1)
    r = evaluate(policy, "Hopper-v5", episodes=2, seed=0, max_steps=15)
    # the same episodes stepped by hand: reset seed of episode k, actions clipped to [-1, 1], <= 15 steps
    env = gym.make("Hopper-v5")
    by_hand, steps = [], []
    for k in range(2):
        obs, _ = env.reset(seed=episode_seed(0, k))
        total, n, done = 0.0, 0, False
        while not done:
            action = np.clip(np.tanh(obs.astype(np.float32) @ policy.w), -1.0, 1.0)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, n = total + float(reward), n + 1
            done = terminated or truncated or n >= 15
        by_hand.append(total)
        steps.append(n)
    env.close()
    np.testing.assert_allclose(r.returns, by_hand, rtol=1e-12)
    np.testing.assert_array_equal(r.lengths, steps)
    assert r.mean == pytest.approx(np.mean(by_hand)) and r.std == pytest.approx(np.std(by_hand))
    # D4RL's Hopper reference returns: random -20.272305, expert 3234.3
    expected = 100.0 * (np.array(by_hand) + 20.272305) / (3234.3 + 20.272305)
    np.testing.assert_allclose(r.normalized, expected, rtol=1e-10)
    assert r.normalized_mean == pytest.approx(expected.mean(), rel=1e-10)
    assert normalized_score(3234.3, "Hopper-v5") == pytest.approx(100.0)
    js = r.to_json()
    assert js["episodes"] == 2 and len(js["returns"]) == 2


def test_env_reset_seed_reaches_the_env() -> None:
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    o1, _ = env.reset(seed=episode_seed(5, 0))
    o2, _ = env.reset(seed=episode_seed(5, 0))
    o3, _ = env.reset(seed=episode_seed(5, 1))
    env.close()
    np.testing.assert_array_equal(o1, o2)
    assert not np.allclose(o1, o3)


def test_unknown_reference_gives_nan_and_bad_env_errors() -> None:
    r = evaluate(LinearPolicy(3, 1), "Pendulum-v1", episodes=1, seed=0, max_steps=5)
    assert np.isnan(r.normalized_mean) and r.lengths[0] == 5
    with pytest.raises(UserInputError, match="cannot make environment"):
        evaluate(LinearPolicy(3, 1), "NoSuchEnv-v0", episodes=1, seed=0)
    with pytest.raises(UserInputError, match="at least 1"):
        evaluate(LinearPolicy(3, 1), "Pendulum-v1", episodes=0, seed=0)
