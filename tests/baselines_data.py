"""Tiny real data for the baselines tests: Hopper-v5 episodes of uniformly random actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from stores.schema import Episode, OfflineDataset


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
