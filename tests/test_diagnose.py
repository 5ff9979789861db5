"""Diagnostics against MuJoCo: the observation -> (qpos, qvel) inversion, exact replays in the real
simulator, the closed-loop reference, one-step consistency, Eq. 37 errors per M, and the JSON/PNG outputs.

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
    closed_loop_rollout,
    mean_errors,
    one_step_errors,
    qpos_qvel_from_observation,
    replay_actions,
    run_diagnosis,
    state_errors,
    stored_mask,
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
    """Single-step 'model' that is the simulator itself (exact up to float32), one env kept open."""

    def __init__(self) -> None:
        from augment.diagnose import _Simulator

        self.sim = _Simulator(ENV)

    def predict_next(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.zeros_like(obs, dtype=np.float32)
        for i in range(obs.shape[0]):
            self.sim.set_observation(obs[i])
            out[i], _ = self.sim.step(act[i])
        return out


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


def test_closed_loop_reference_and_one_step_consistency() -> None:
    ep = hopper_episode(8, 3)
    s0 = ep.observations[:2]
    states, actions, terminal = closed_loop_rollout(ENV, s0, ConstantPolicy(), 5)
    assert states.shape == (2, 6, 11) and actions.shape == (2, 5, 3) and terminal.shape == (2,)
    np.testing.assert_allclose(actions, 0.2, rtol=1e-6)
    replayed, _ = replay_actions(ENV, s0, actions)  # a constant policy: closed loop = open loop
    np.testing.assert_allclose(states, replayed, atol=1e-6)
    # the simulator's own transitions are one-step consistent; shifting s_{t+1} by 0.1 in one
    # coordinate costs exactly 0.01 per transition
    assert one_step_errors(ENV, ep.observations[None], ep.actions[None]).max() < 1e-8
    shifted = ep.observations.copy()
    shifted[1:, 2] += 0.1
    errs = one_step_errors(ENV, np.stack([np.concatenate([ep.observations[:1], shifted[1:2]])]),
                           ep.actions[None, :1])
    np.testing.assert_allclose(errs, [[0.01]], rtol=1e-3)
    # stored transitions stop at the first state Hopper's rule marks terminal (height z <= 0.7)
    fallen = np.repeat(ep.observations[:1, None], 4, axis=1).copy()
    fallen[0, 2, 0] = 0.5
    np.testing.assert_array_equal(stored_mask(ENV, fallen), [[True, True, False]])


def test_run_diagnosis_perfect_single_step_model(tmp_path) -> None:
    dataset = OfflineDataset(name="hopper-test", episodes=(hopper_episode(10, 0), hopper_episode(10, 1)),
                             env_id=ENV)
    result = run_diagnosis(dataset, ConstantPolicy(), MujocoWorld(), RepeatS0Diffusion(),
                           DiagnoseConfig(starts=3, max_iterations=2, seed=0))
    assert sorted(result.errors) == [0, 1, 2] and result.rollout_length == 6 and result.starts == 3
    # the simulator as the model and a constant policy: M = 0 equals the closed-loop reference, and its
    # transitions are one-step consistent
    assert max(result.errors[0]) < 1e-6 and max(result.one_step[0]) < 1e-6
    assert max(result.open_loop[0]["errors"]) < 1e-6
    for m in (1, 2):
        assert result.errors[m][-1] > 1e-3 and result.one_step_stored[m] > 1e-4
        np.testing.assert_allclose(result.cumulative[m], np.cumsum(result.errors[m]))
        assert result.cumulative[m][-1] >= result.cumulative[m][0]
        # a constant policy conditions every sample on the same actions: one reference for all views
        np.testing.assert_allclose(result.open_loop[m]["errors"], result.errors[m], rtol=1e-6)
    assert result.refined_beats_single_step() == {1: False, 2: False}
    # in-distribution reference: the simulator-as-model reproduces the data's own windows exactly, the
    # s0-repeating "diffusion" equals the constant-s0 baseline
    ref = result.dataset_windows
    assert ref is not None and max(ref["single_step"]) < 1e-6
    np.testing.assert_allclose(ref["diffusion"], ref["constant_s0"])
    assert ref["constant_s0"][-1] > 1e-3
    averaged = run_diagnosis(dataset, ConstantPolicy(), MujocoWorld(), RepeatS0Diffusion(),
                             DiagnoseConfig(starts=3, max_iterations=1, seed=0, iteration_rule="average"),
                             windows=False)
    # averaging an exact rollout with "s_t = s_0" halves the error vector: a quarter of the squared error
    np.testing.assert_allclose(averaged.errors[1], np.asarray(result.errors[1]) / 4, rtol=1e-4)
    assert averaged.meta["variant"] == "average/sample" and averaged.dataset_windows is None
    json_path, png_path = write_diagnosis(result, tmp_path / "diag")
    data = json.loads(json_path.read_text())
    assert set(data["errors"]) == {"0", "1", "2"} and data["summary"][0]["M"] == 0
    assert {"E@L", "1-step", "open-loop E@L"} <= set(data["summary"][1])
    assert set(data["dataset_windows"]) == {"single_step", "diffusion", "constant_s0"}
    assert data["refined_beats_single_step"] == {"1": False, "2": False}
    assert png_path.stat().st_size > 1000
    with pytest.raises(UserInputError, match="names no env"):
        run_diagnosis(OfflineDataset(name="x", episodes=dataset.episodes, env_id=None), ConstantPolicy(),
                      MujocoWorld(), RepeatS0Diffusion(), DiagnoseConfig(starts=1))


def test_load_policy_reads_a_saved_learner(tmp_path) -> None:
    from augment.diagnose import PolicyTarget, learner_name_of, load_policy
    from baselines.learners import make_learner

    dataset = OfflineDataset(name="hopper-test", episodes=(hopper_episode(10, 0),), env_id=ENV)
    algo = make_learner("td3bc", dataset, seed=0)
    (tmp_path / "run").mkdir()
    algo.save(str(tmp_path / "run" / "model.d3"))
    loaded, name = load_policy(tmp_path / "run")  # a run directory or its model.d3
    assert name == learner_name_of(algo) == "td3bc"
    obs = dataset.episodes[0].observations[:4]
    np.testing.assert_allclose(loaded.predict(obs), algo.predict(obs), rtol=1e-6)
    with pytest.raises(UserInputError, match="model.d3"):
        load_policy(tmp_path / "missing")
    assert PolicyTarget.for_profile("cpu").score == 12.0
