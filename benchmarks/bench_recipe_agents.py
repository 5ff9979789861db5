"""Throughput of the recipe's online agents: d3rlpy SAC vs TD3, one update per env step (Hopper-v5).

Usage: ``OMP_NUM_THREADS=1 python3 benchmarks/bench_recipe_agents.py {sac,td3} STEPS``. Runs 1,000
uniform-random warm-up steps (one update per step from step 999 on), then times STEPS steps of
action + env step + update with 256x256 networks and batch 256 (the ``cpu`` recipe's settings).
Prints env steps/s and the milliseconds per update and per action.
"""

from __future__ import annotations

import logging
import sys
import time

import d3rlpy
import gymnasium as gym
import numpy as np
import structlog
import torch
from d3rlpy.dataset import TransitionMiniBatch


def main(agent: str, steps: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    torch.set_num_threads(1)
    env = gym.make("Hopper-v5")
    obs_dim, act_dim = 11, 3
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=[256, 256])
    if agent == "sac":
        cfg = d3rlpy.algos.SACConfig(batch_size=256, actor_encoder_factory=enc, critic_encoder_factory=enc,
                                     actor_learning_rate=3e-4, critic_learning_rate=3e-4,
                                     temp_learning_rate=3e-4)
    else:
        cfg = d3rlpy.algos.TD3Config(batch_size=256, actor_encoder_factory=enc, critic_encoder_factory=enc)
    algo = cfg.create(device="cpu:0")
    algo.create_impl((obs_dim,), act_dim)
    n = 1000 + steps
    ob = np.zeros((n, obs_dim), np.float32)
    nx = ob.copy()
    ac = np.zeros((n, act_dim), np.float32)
    rw = np.zeros(n, np.float32)
    te = np.zeros(n, np.float32)
    ones = np.ones((256, 1), np.float32)
    rng = np.random.default_rng(0)
    o = env.reset(seed=0)[0].astype(np.float32)
    t0 = 0.0
    tu = ta = 0.0
    for t in range(n):
        if t == 1000:
            t0 = time.perf_counter()
        s = time.perf_counter()
        if t < 1000:
            a = rng.uniform(-1, 1, act_dim).astype(np.float32)
        elif agent == "sac":
            a = np.asarray(algo.sample_action(o[None]))[0]
        else:
            a = algo.predict(o[None])[0] + 0.1 * rng.standard_normal(act_dim)
            a = np.clip(a, -1, 1).astype(np.float32)
        ta += time.perf_counter() - s if t >= 1000 else 0
        o2, r, term, trunc, _ = env.step(a)
        ob[t], ac[t], rw[t], nx[t], te[t] = o, a, r, o2, term
        o = env.reset()[0].astype(np.float32) if term or trunc else o2.astype(np.float32)
        if t >= 999:
            s = time.perf_counter()
            idx = rng.integers(0, t + 1, 256)
            algo.update(TransitionMiniBatch(observations=ob[idx], actions=ac[idx], rewards=rw[idx, None],
                                            next_observations=nx[idx], next_actions=ac[idx],
                                            terminals=te[idx, None], intervals=ones, transitions=[]))
            if t >= 1000:
                tu += time.perf_counter() - s
    el = time.perf_counter() - t0
    print(f"{agent}: {steps / el:.1f} env steps/s (update {1000 * tu / steps:.2f} ms, "
          f"act {1000 * ta / steps:.2f} ms)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
