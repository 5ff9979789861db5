"""Diagnostics against MuJoCo: the observation -> (qpos, qvel) inversion, exact replays in the real
simulator, Eq. 37 errors per M, and the JSON/PNG outputs.

A "perfect" single-step model is built from MuJoCo itself (set the state from the observation, step
once), so the M = 0 error must vanish; a diffusion stand-in that ignores the actions (it repeats s0)
must show a positive, growing running error.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from augment.diagnose import (
    DiagnoseConfig,
    alive_mask,
    mean_errors,
    qpos_qvel_from_observation,
    replay_actions,
    run_diagnosis,
    state_errors,
    write_diagnosis,
)
from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset

ENV = "Hopper-v5"


def hopper_episode(steps: int = 12, seed: int = 0) -> Episode:
    env = gym.make(ENV)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    observations, actions = [obs], []
    for _ in range(steps):
        a = rng.uniform(-0.3, 0.3, 3).astype(np.float32)
        obs, _, term, trunc, _ = env.step(a)
        observations.append(obs)
        actions.append(a)
        if term or trunc:
            break
    env.close()
    t = len(actions)
    return Episode(observations=np.asarray(observations, np.float32), actions=np.asarray(actions, np.float32),
                   rewards=np.ones(t, np.float32), terminated=np.zeros(t, bool),
                   truncated=np.eye(1, t, t - 1, dtype=bool)[0])


class MujocoWorld:
    """Single-step 'model' that is the simulator itself (exact up to float32)."""

    def predict_next(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sims, _ = replay_actions(ENV, obs, act[:, None, :])
        return sims[:, 1]


class RepeatS0Diffusion:
    """Ignores the actions: every state equals s0 (a bad model of the dynamics)."""

    horizon = 6

    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.repeat(s0[:, None], actions.shape[1] + 1, axis=1).astype(np.float32)


class ConstantPolicy:
    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.full((observations.shape[0], 3), 0.2, np.float32)

    def reset(self, n: int) -> None:
        pass


def test_observation_inverts_to_state_and_replays_exactly() -> None:
    ep = hopper_episode()
    env = gym.make(ENV)
    core = env.unwrapped
    obs0 = ep.observations[0].astype(np.float64)
    qpos, qvel = qpos_qvel_from_observation(obs0, core.model.nq, core.model.nv)
    assert qpos.shape == (6,) and qpos[0] == 0.0 and qvel.shape == (6,)
    env.close()
    sims, terminal = replay_actions(ENV, ep.observations[:1], ep.actions[None])
    # x is not observed, and Hopper's dynamics do not depend on it: the replay reproduces the episode
    np.testing.assert_allclose(sims[0], ep.observations, atol=1e-4)
    assert terminal.shape == (1,)
    assert state_errors(sims, ep.observations[None]).max() < 1e-6
    with pytest.raises(UserInputError, match="qpos"):
        qpos_qvel_from_observation(np.zeros(5), 6, 6)


def test_errors_alive_mask_and_means() -> None:
    a = np.zeros((2, 4, 3))
    b = np.ones((2, 4, 3))
    np.testing.assert_array_equal(state_errors(a, b), np.full((2, 3), 3.0))
    mask = alive_mask(np.array([-1, 0]), 3)
    np.testing.assert_array_equal(mask, [[True, True, True], [True, False, False]])
    per = np.array([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])
    np.testing.assert_allclose(mean_errors(per, mask), [3.0, 2.0, 3.0])
    np.testing.assert_allclose(mean_errors(per), [3.0, 4.0, 5.0])


def test_run_diagnosis_perfect_single_step_model(tmp_path) -> None:
    dataset = OfflineDataset(name="hopper-test", episodes=(hopper_episode(10, 0), hopper_episode(10, 1)),
                             env_id=ENV)
    result = run_diagnosis(dataset, ConstantPolicy(), MujocoWorld(), RepeatS0Diffusion(),
                           DiagnoseConfig(starts=3, max_iterations=2, seed=0))
    assert sorted(result.errors) == [0, 1, 2] and result.rollout_length == 6 and result.starts == 3
    assert max(result.errors[0]) < 1e-6  # the simulator as the model: no error at M = 0
    for m in (1, 2):
        assert result.errors[m][-1] > 1e-3
        np.testing.assert_allclose(result.cumulative[m], np.cumsum(result.errors[m]))
        assert result.cumulative[m][-1] >= result.cumulative[m][0]
    # in-distribution reference: the simulator-as-model reproduces the data's own windows exactly, the
    # s0-repeating "diffusion" equals the constant-s0 baseline
    ref = result.dataset_windows
    assert ref is not None and max(ref["single_step"]) < 1e-6
    np.testing.assert_allclose(ref["diffusion"], ref["constant_s0"])
    assert ref["constant_s0"][-1] > 1e-3
    json_path, png_path = write_diagnosis(result, tmp_path / "diag")
    data = json.loads(json_path.read_text())
    assert set(data["errors"]) == {"0", "1", "2"} and data["summary"][0]["M"] == 0
    assert set(data["dataset_windows"]) == {"single_step", "diffusion", "constant_s0"}
    assert png_path.stat().st_size > 1000
    with pytest.raises(UserInputError, match="names no env"):
        run_diagnosis(OfflineDataset(name="x", episodes=dataset.episodes, env_id=None), ConstantPolicy(),
                      MujocoWorld(), RepeatS0Diffusion(), DiagnoseConfig(starts=1))
