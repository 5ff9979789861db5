"""The planner harness: the observe hook of evaluate(), the planner registry and overrides, the compare
arms, and bad input through the real ``augment`` entry point (one line, exit 2)."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from augment.planners.base import (
    PLANNERS,
    ObservingPolicy,
    apply_overrides,
    check_planner,
    parse_overrides,
    planner_class,
    registered_planners,
)
from baselines.evaluate import episode_seed, evaluate
from stores.errors import UserInputError
from tests.baselines_data import hopper_random_dataset, tanh_linear_rows
from tests.cli_helpers import run_cli


class RecordingPolicy:
    """a = tanh(W s), deterministic; records every observe() call."""

    def __init__(self) -> None:
        self.w = np.random.default_rng(0).normal(scale=0.3, size=(11, 3)).astype(np.float32)
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.resets: list[int] = []

    def act(self, observations: np.ndarray) -> np.ndarray:
        return tanh_linear_rows(observations, self.w)

    def reset(self, n: int) -> None:
        self.resets.append(n)

    def observe(self, rewards: np.ndarray, observations: np.ndarray, dones: np.ndarray) -> None:
        self.calls.append((rewards.copy(), observations.copy(), dones.copy()))


def _replay(policy: RecordingPolicy, seed: int, episode: int,
            max_steps: int) -> tuple[list[float], np.ndarray]:
    """The episode's rewards and last observation, stepped by hand (independent of evaluate)."""
    env = gym.make("Hopper-v5")
    obs, _ = env.reset(seed=episode_seed(seed, episode))
    rewards = []
    for _ in range(max_steps):
        a = np.clip(policy.act(obs[None].astype(np.float32))[0], -1, 1)
        obs, r, term, trunc, _ = env.step(a)
        rewards.append(float(r))
        if term or trunc:
            break
    env.close()
    return rewards, obs.astype(np.float32)


def test_observe_gets_each_steps_rewards_observations_and_dones() -> None:
    policy = RecordingPolicy()
    assert isinstance(policy, ObservingPolicy)
    result = evaluate(policy, "Hopper-v5", episodes=3, seed=4, num_envs=2, max_steps=12)
    assert policy.resets == [2, 1]
    wave1 = [_replay(policy, 4, k, 12) for k in (0, 1)]
    wave2 = [_replay(policy, 4, 2, 12)]
    n1 = max(len(r) for r, _ in wave1)
    calls1, calls2 = policy.calls[:n1], policy.calls[n1:]
    assert len(calls2) == len(wave2[0][0])
    for calls, wave in ((calls1, wave1), (calls2, wave2)):
        for t, (rewards, observations, dones) in enumerate(calls):
            assert rewards.shape == (len(wave),) and dones.dtype == bool
            assert observations.shape == (len(wave), 11)
            for i, (ep_rewards, _) in enumerate(wave):
                expected = ep_rewards[t] if t < len(ep_rewards) else 0.0
                assert rewards[i] == pytest.approx(expected, abs=1e-9)
                assert bool(dones[i]) == (t >= len(ep_rewards) - 1)
            if t == len(calls) - 1:
                for i, (_, last_obs) in enumerate(wave):
                    np.testing.assert_allclose(observations[i], last_obs, rtol=1e-6)
    totals = [sum(r) for r, _ in wave1 + wave2]
    np.testing.assert_allclose(result.returns, totals, rtol=1e-9)


def test_registry_and_suggestions() -> None:
    assert "dmemm" in registered_planners() and set(registered_planners()) == set(PLANNERS)
    from augment.planners.dmemm import DMEMMPlanner

    assert planner_class("dmemm") is DMEMMPlanner
    with pytest.raises(UserInputError, match="did you mean 'dmemm'"):
        check_planner("dmem")


def test_overrides_are_typed_and_checked() -> None:
    from augment.planners.dmemm import DMEMMConfig

    base = DMEMMConfig.for_profile("smoke")
    cfg = apply_overrides(base, parse_overrides("no-tr-guide, alpha=0.01,widths=4/8,weighting=off,"
                                                "modulation_clip=none,mc_terms=3"))
    assert cfg.transition_guidance is False and cfg.alpha == 0.01 and cfg.widths == (4, 8)
    assert cfg.weighting is False and cfg.modulation_clip is None and cfg.mc_terms == 3
    assert dataclasses.replace(base, alpha=0.5).config_hash() == base.config_hash()
    with pytest.raises(UserInputError, match="did you mean 'alpha'"):
        apply_overrides(base, parse_overrides("alpah=1"))
    with pytest.raises(UserInputError, match="expected a int"):
        apply_overrides(base, parse_overrides("mc_terms=two"))
    with pytest.raises(UserInputError, match="variants are"):
        apply_overrides(base, parse_overrides("difuser-ish"))


def test_every_planner_is_a_compare_arm() -> None:
    from baselines.compare import registered_arms, resolve_arm

    arms = registered_arms()
    for name in registered_planners():
        assert name in arms and f"{name}-data" in arms
    assert resolve_arm("dmemm:diffuser").name == "dmemm:diffuser"
    assert resolve_arm("dmemm-data").name == "dmemm-data"
    with pytest.raises(UserInputError):
        resolve_arm("dmemm:lambda_trr=1")


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from stores.sources import write_npz

    code, _, err = run_cli(["plan", "dmem", "--dataset", "hopper-medium-replay", "--profile", "smoke"],
                           capsys)
    assert code == 2 and "did you mean 'dmemm'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["plan", "dmemm", "--dataset", "hopper-medium-replay", "--profile", "smok"],
                           capsys)
    assert code == 2 and "did you mean 'smoke'" in err and len(err.strip().splitlines()) == 1
    path = write_npz(hopper_random_dataset(episodes=2, seed=1, max_steps=20), tmp_path / "hopper.npz")
    code, _, err = run_cli(["plan", "dmemm", "--dataset", str(path), "--profile", "smoke", "--env",
                            "HalfCheetah-v5", "--quiet"], capsys)
    assert code == 2 and "HalfCheetah-v5 needs 17/6" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["plan", "dmemm", "--dataset", str(path), "--profile", "smoke", "--set",
                            "lambda_tr=x", "--quiet"], capsys)
    assert code == 2 and "lambda_tr=x" in err
