"""Termination rules agree with the real Gymnasium MuJoCo envs' ``terminated`` on real rollouts."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

from augment.world import termination
from augment.world.termination import (
    env_family,
    has_rule,
    hopper_terminal,
    never_terminal,
    register_termination,
    termination_fn,
)


def _rollout_flags(env_id: str, episodes: int, seed: int,
                   max_steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Random-action rollouts until termination (or max_steps): observations after each step (N, obs)
    and the env's ``terminated`` flags (N,)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs_list, flags = [], []
    for k in range(episodes):
        env.reset(seed=seed + k)
        for _ in range(max_steps):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            obs_list.append(obs)
            flags.append(terminated)
            if terminated or truncated:
                break
    env.close()
    return np.asarray(obs_list), np.asarray(flags, dtype=bool)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Hopper-v4", "Walker2d-v4", "Walker2d-v5"])
def test_rule_matches_env_terminated_on_random_rollouts(env_id: str) -> None:
    obs, flags = _rollout_flags(env_id, episodes=15, seed=3)
    assert flags.sum() == 15, "every random-action episode should end by termination"
    rule = termination_fn(env_id)
    np.testing.assert_array_equal(rule(obs), flags)
    # the toolkit stores observations as float32; the rule must still agree
    np.testing.assert_array_equal(rule(obs.astype(np.float32)), flags)


def test_halfcheetah_never_terminates() -> None:
    obs, flags = _rollout_flags("HalfCheetah-v5", episodes=1, seed=0, max_steps=300)
    assert not flags.any()
    assert not termination_fn("HalfCheetah-v5")(obs).any()
    assert termination_fn("HalfCheetah-v4") is never_terminal


def test_hopper_rule_edges() -> None:
    healthy = np.zeros((1, 11))
    healthy[0, 0] = 1.25
    cases = {"healthy": (healthy, False)}
    for name, (i, v) in {"low": (0, 0.7), "tilt+": (1, 0.2), "tilt-": (1, -0.2), "joint": (3, 100.0),
                         "velocity": (8, -100.0), "nan": (4, np.nan), "inf_z": (0, np.inf)}.items():
        o = healthy.copy()
        o[0, i] = v
        cases[name] = (o, True)
    for name, (o, expected) in cases.items():
        assert bool(hopper_terminal(o)[0]) is expected, name


@pytest.fixture
def fresh_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private copy of the module's rule registry and an empty warn-once set for one test, restored
    afterwards: the tests below register a rule and trip the warn-once flag, process-wide state that
    would otherwise leak into a second pytest run in the same process (mutmut does that)."""
    monkeypatch.setattr(termination, "_RULES", dict(termination._RULES))
    monkeypatch.setattr(termination, "_WARNED", set())


@pytest.mark.usefixtures("fresh_rules")
def test_env_family_and_registration() -> None:
    assert env_family("Hopper-v5") == "hopper"
    assert env_family("Walker2d-v4") == "walker2d"
    assert env_family("ns/HalfCheetah-v1") == "halfcheetah"
    assert not has_rule("UnitTestRobot-v0")
    register_termination("UnitTestRobot", lambda o: o[:, 0] < 0.0)  # the family is case-insensitive
    assert has_rule("UnitTestRobot-v3")
    flags = termination_fn("UnitTestRobot-v3")(np.array([[-1.0], [1.0]]))
    np.testing.assert_array_equal(flags, [True, False])


@pytest.mark.usefixtures("fresh_rules")
def test_unknown_env_falls_back_to_never_with_one_warning() -> None:
    with pytest.warns(UserWarning, match="no termination rule for env 'FallbackBot-v0'"):
        rule = termination_fn("FallbackBot-v0")
    assert rule is never_terminal
    np.testing.assert_array_equal(rule(np.ones((3, 4))), [False, False, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        termination_fn("FallbackBot-v0")  # warned once already


def test_rules_reject_non_batched_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, obs\)"):
        hopper_terminal(np.ones(11))
