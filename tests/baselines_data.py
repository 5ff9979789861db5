"""Tiny real data for the baselines tests: Hopper-v5 episodes of uniformly random actions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np

from stores.schema import Episode, OfflineDataset


def load_benchmark(script: str) -> ModuleType:
    """Import ``benchmarks/<script>.py`` as the module ``<script>_under_test`` (registered in sys.modules,
    so dataclasses in the script resolve their annotations)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"{script}_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tanh_linear_rows(observations: np.ndarray, w: np.ndarray) -> np.ndarray:
    """tanh(s W) for each row of ``observations`` (B, obs) -> (B, act) float32, one row at a time.

    Row by row so that a batch of envs gets bit-for-bit the actions of a one-env run: a batched matmul
    may sum in another order than a one-row one (1 ulp in an action moves a return by ~1e-9), and the
    harness tests compare returns exactly.
    """
    return np.stack([np.tanh(row @ w) for row in observations]).astype(np.float32)


def hopper_random_dataset(episodes: int = 20, seed: int = 0, max_steps: int = 200) -> OfflineDataset:
    """``episodes`` Hopper-v5 episodes of random actions (random hoppers fall within ~10-60 steps)."""
    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    eps = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + k)
        observations, actions, rewards, terminated, truncated = [obs], [], [], [], []
        for t in range(max_steps):
            a = rng.uniform(-1.0, 1.0, size=env.action_space.shape).astype(np.float32)
            obs, r, term, trunc, _ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(r)
            terminated.append(term)
            truncated.append(trunc or (t == max_steps - 1 and not term))
            if term or trunc:
                break
        eps.append(Episode(observations=np.asarray(observations, np.float32),
                           actions=np.asarray(actions, np.float32), rewards=np.asarray(rewards, np.float32),
                           terminated=np.asarray(terminated, bool), truncated=np.asarray(truncated, bool)))
    env.close()
    return OfflineDataset(name="hopper-random", episodes=tuple(eps), env_id="Hopper-v5",
                          provenance={"source": "test", "policy": "uniform random", "seed": seed})


def planner_dataset() -> OfflineDataset:
    """The tiny Hopper data the planner tests (DMEMM, Trajectory Diffuser) fit their smoke planners on:
    12 random episodes of at most 60 steps, seed 3."""
    return hopper_random_dataset(episodes=12, seed=3, max_steps=60)


def linear_system_npz(path, b: np.ndarray, *, decay: float, episodes: int, steps: int, seed: int = 0,
                      fail_above: float | None = None):
    """An env-less D4RL-layout ``.npz``: s' = decay s + b a + 0.01 noise, r = -|s|^2, s_0 ~ N(0, 0.5^2),
    a ~ U(-1, 1); obs / act sizes from ``b`` (obs, act). An episode terminates when |s'_0| > fail_above
    (None: never), else times out after ``steps``. No env id anywhere in the file."""
    rng = np.random.default_rng(seed)
    obs, act = b.shape
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                              "terminals", "timeouts")}
    for _ in range(episodes):
        s = rng.normal(scale=0.5, size=obs)
        for t in range(steps):
            a = rng.uniform(-1, 1, size=act)
            s2 = decay * s + b @ a + 0.01 * rng.normal(size=obs)
            term = fail_above is not None and bool(abs(s2[0]) > fail_above)
            for key, value in (("observations", s), ("actions", a), ("rewards", -float(s @ s)),
                               ("next_observations", s2), ("terminals", term),
                               ("timeouts", t == steps - 1 and not term)):
                rows[key].append(value)
            s = s2
            if term:
                break
    np.savez(path, **{k: np.asarray(v, dtype=bool if k in ("terminals", "timeouts") else np.float32)
                      for k, v in rows.items()})
    return path
