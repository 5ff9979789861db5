"""Rollouts for the recipes: evaluation returns and recorded episodes of a batched policy.

A policy here is an ``ActFn``: (K, obs) float32 -> (K, act) float32, called once per vector step for the K
environments stepped together. Environments are Gymnasium envs made with an explicit time limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from stores.schema import Episode

ActFn = Callable[[np.ndarray], np.ndarray]


def make_env(env_id: str, max_episode_steps: int) -> Any:
    """``gym.make(env_id, max_episode_steps=...)``, MuJoCo's warnings routed to the log (no
    ``MUJOCO_LOG.TXT`` in the working directory, :func:`stores.sources.install_mujoco_warning_handler`)."""
    import gymnasium as gym

    from stores.sources import install_mujoco_warning_handler

    install_mujoco_warning_handler()
    return gym.make(env_id, max_episode_steps=max_episode_steps)


def episode_from_lists(obs: list[np.ndarray], act: list[np.ndarray], rew: list[float],
                       terminated: bool) -> Episode:
    """An :class:`Episode` from T+1 observations, T actions and T rewards; the last step ends it
    (terminated, or truncated when ``terminated`` is False)."""
    t = len(act)
    term = np.zeros(t, dtype=bool)
    trunc = np.zeros(t, dtype=bool)
    if terminated:
        term[-1] = True
    else:
        trunc[-1] = True
    return Episode(observations=np.asarray(obs, dtype=np.float32), actions=np.asarray(act, dtype=np.float32),
                   rewards=np.asarray(rew, dtype=np.float32), terminated=term, truncated=trunc)


def evaluate_returns(act_fn: ActFn, env_id: str, *, episodes: int, seed: int,
                     max_episode_steps: int) -> np.ndarray:
    """Undiscounted returns (episodes,) of ``act_fn`` (batched: (K, obs) float32 -> (K, act)), one episode
    per environment, env ``k`` reset with ``seed + k``."""
    envs = [make_env(env_id, max_episode_steps) for _ in range(episodes)]
    try:
        obs = np.stack([env.reset(seed=seed + k)[0] for k, env in enumerate(envs)]).astype(np.float32)
        returns = np.zeros(episodes, dtype=np.float64)
        alive = np.ones(episodes, dtype=bool)
        while alive.any():
            idx = np.flatnonzero(alive)
            actions = act_fn(obs[idx])
            for j, k in enumerate(idx.tolist()):
                o, r, term, trunc, _ = envs[k].step(actions[j])
                returns[k] += float(r)
                obs[k] = o
                if term or trunc:
                    alive[k] = False
        return returns
    finally:
        for env in envs:
            env.close()


def cut_episode(ep: Episode, steps: int) -> Episode:
    """The first ``steps`` steps of an episode, ending truncated."""
    trunc = np.zeros(steps, dtype=bool)
    trunc[-1] = True
    return Episode(observations=ep.observations[:steps + 1], actions=ep.actions[:steps],
                   rewards=ep.rewards[:steps], terminated=np.zeros(steps, dtype=bool), truncated=trunc)


def collect_rollouts(act_fn: ActFn, env_id: str, *, transitions: int, num_envs: int, seed: int,
                     max_episode_steps: int, desc: str = "rollouts", progress: bool = True) -> list[Episode]:
    """Roll out ``act_fn`` in ``num_envs`` environments until ``transitions`` steps of finished episodes.

    Episodes are kept in the order they finish (ties by env index); the one that crosses the total is cut
    to hit ``transitions`` exactly and marked truncated; unfinished episodes are dropped.
    """
    from tqdm.auto import tqdm

    envs = [make_env(env_id, max_episode_steps) for _ in range(num_envs)]
    finished: list[Episode] = []
    total = 0
    try:
        cur_obs: list[list[np.ndarray]] = []
        for k, env in enumerate(envs):
            cur_obs.append([np.asarray(env.reset(seed=seed + k)[0], dtype=np.float32)])
        cur_act: list[list[np.ndarray]] = [[] for _ in envs]
        cur_rew: list[list[float]] = [[] for _ in envs]
        with tqdm(total=transitions, desc=desc, unit="step", disable=not progress, leave=False) as bar:
            while total < transitions:
                obs = np.stack([o[-1] for o in cur_obs])
                actions = act_fn(obs)
                for k, env in enumerate(envs):
                    o, r, term, trunc, _ = env.step(actions[k])
                    cur_obs[k].append(np.asarray(o, dtype=np.float32))
                    cur_act[k].append(np.asarray(actions[k], dtype=np.float32))
                    cur_rew[k].append(float(r))
                    if term or trunc:
                        ep = episode_from_lists(cur_obs[k], cur_act[k], cur_rew[k], bool(term))
                        take = min(len(ep), transitions - total)
                        if take > 0:
                            if take < len(ep):
                                ep = cut_episode(ep, take)
                            finished.append(ep)
                            total += take
                            bar.update(take)
                        cur_obs[k] = [np.asarray(env.reset()[0], dtype=np.float32)]
                        cur_act[k], cur_rew[k] = [], []
    finally:
        for env in envs:
            env.close()
    return finished


def uniform_policy(rng: np.random.Generator, act_dim: int) -> ActFn:
    """Uniform random actions in [-1, 1]^act_dim."""
    def act(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(obs.shape[0], act_dim)).astype(np.float32)

    return act


def buffer_episodes(obs: np.ndarray, act: np.ndarray, rew: np.ndarray, nxt: np.ndarray, term: np.ndarray,
                    trunc: np.ndarray, n: int) -> list[Episode]:
    """Split the first ``n`` rows of a replay buffer into episodes; an unfinished tail ends truncated.

    obs / nxt: (N, obs); act: (N, act); rew: (N,); term / trunc: (N,) bool.
    """
    ends = np.flatnonzero(term[:n] | trunc[:n])
    if ends.size == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    episodes = []
    start = 0
    for end in ends.tolist():
        stop = end + 1
        t = stop - start
        terminated = np.zeros(t, dtype=bool)
        truncated = np.zeros(t, dtype=bool)
        if term[end]:
            terminated[-1] = True
        else:
            truncated[-1] = True
        episodes.append(Episode(observations=np.concatenate([obs[start:stop], nxt[end:end + 1]]),
                                actions=act[start:stop].copy(), rewards=rew[start:stop].copy(),
                                terminated=terminated, truncated=truncated))
        start = stop
    return episodes


def episodes_to_arrays(episodes: list[Episode], prefix: str) -> dict[str, np.ndarray]:
    """Episodes as flat arrays (for checkpoints): ``<prefix>obs`` (sum T+1, obs), ``<prefix>act``,
    ``<prefix>rew``, ``<prefix>term``, ``<prefix>trunc`` (sum T), ``<prefix>len`` (E,) T per episode."""
    if not episodes:
        return {f"{prefix}len": np.zeros(0, dtype=np.int64)}
    return {
        f"{prefix}obs": np.concatenate([e.observations for e in episodes]),
        f"{prefix}act": np.concatenate([e.actions for e in episodes]),
        f"{prefix}rew": np.concatenate([e.rewards for e in episodes]),
        f"{prefix}term": np.concatenate([e.terminated for e in episodes]),
        f"{prefix}trunc": np.concatenate([e.truncated for e in episodes]),
        f"{prefix}len": np.array([len(e) for e in episodes], dtype=np.int64),
    }


def episodes_from_arrays(arrays: Any, prefix: str) -> list[Episode]:
    """Inverse of :func:`episodes_to_arrays`."""
    lengths = np.asarray(arrays[f"{prefix}len"], dtype=np.int64)
    if lengths.size == 0:
        return []
    obs, act = np.asarray(arrays[f"{prefix}obs"]), np.asarray(arrays[f"{prefix}act"])
    rew, term = np.asarray(arrays[f"{prefix}rew"]), np.asarray(arrays[f"{prefix}term"])
    trunc = np.asarray(arrays[f"{prefix}trunc"])
    out = []
    o = s = 0
    for t in lengths.tolist():
        out.append(Episode(observations=obs[o:o + t + 1].copy(), actions=act[s:s + t].copy(),
                           rewards=rew[s:s + t].copy(), terminated=term[s:s + t].copy(),
                           truncated=trunc[s:s + t].copy()))
        o += t + 1
        s += t
    return out
