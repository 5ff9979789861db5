"""Benchmark DyDiff's world models: training time per profile, holdout errors, prediction throughput.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_world.py --dataset hopper-medium-replay --profile cpu
    python benchmarks/bench_world.py --dataset random-actions:Hopper-v5:100000 --profile cpu

``--dataset`` is anything :func:`stores.datasets.load_dataset` accepts (the project recipe is built on
demand for ``--data-profile``), or ``random-actions:ENV:N`` for N transitions of uniform random actions
(scaled by 0.5) in a Gymnasium env - a stand-in when no recipe has been built. Training never reads or
writes the cache unless ``--cache`` is given. Prints one markdown table row per profile.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from augment.world import WorldModelConfig, fit_world_model, holdout_split
from stores.recipes import collect_rollouts
from stores.schema import OfflineDataset


def random_actions_dataset(env_id: str, transitions: int, seed: int = 0) -> OfflineDataset:
    """Episodes of uniform random actions scaled by 0.5 until termination, N transitions in all."""
    rng = np.random.default_rng(seed)
    act_dim = int(np.prod(gym.make(env_id).action_space.shape))

    def act(obs: np.ndarray) -> np.ndarray:
        return (0.5 * rng.uniform(-1, 1, size=(len(obs), act_dim))).astype(np.float32)

    episodes = collect_rollouts(act, env_id, transitions=transitions, num_envs=1, seed=seed,
                                max_episode_steps=1000, progress=False)
    return OfflineDataset(name=f"random-actions:{env_id}:{transitions}", episodes=tuple(episodes),
                          env_id=env_id)


def load(spec: str, data_profile: str) -> OfflineDataset:
    if spec.startswith("random-actions:"):
        _, env_id, n = spec.split(":")
        return random_actions_dataset(env_id, int(n))
    from stores.datasets import load_dataset

    return load_dataset(spec, profile=data_profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--data-profile", default="cpu", help="profile of the dataset recipe")
    parser.add_argument("--profile", action="append", help="world-model profile(s); default cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", action="store_true",
                        help="reuse a cached model (its report keeps the figures of its training)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load(args.dataset, args.data_profile)
    tr = dataset.transitions
    print(f"dataset {dataset.name}: {len(tr)} transitions, {dataset.num_episodes} episodes; "
          f"torch threads {torch.get_num_threads()}")
    print("| profile | train rows | dynamics epochs x steps | dynamics s | reward s | elite holdout MSE "
          "(normalised) | next-state MSE: model / s'=s | reward MSE: model / var | predict_next rows/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for profile in args.profile or ["cpu"]:
        cfg = WorldModelConfig.for_profile(profile)
        model = fit_world_model(dataset, cfg, progress=True, cache=args.cache)
        rep = model.report
        _, hold = holdout_split(len(tr), cfg.holdout_ratio, cfg.max_holdout, np.random.default_rng(cfg.seed))
        still = float(np.mean((tr.next_observations[hold] - tr.observations[hold]) ** 2))
        rvar = float(np.var(tr.rewards[hold]))
        obs = tr.observations[:2048]
        act = tr.actions[:2048]
        rng = np.random.default_rng(0)
        model.predict_next(obs, act, rng)
        t0 = time.perf_counter()
        reps = 10
        for _ in range(reps):
            model.predict_next(obs, act, rng)
        rate = reps * obs.shape[0] / (time.perf_counter() - t0)
        dyn, rew = rep["dynamics"], rep["reward"]
        per_epoch = dyn["steps"] // max(dyn["epochs"], 1)
        print(f"| {profile} | {dyn['train_rows']} | {dyn['epochs']} x {per_epoch} | "
              f"{dyn['seconds']:.0f} | {rew['seconds']:.0f} | {np.mean(rep['elite_holdout_mse']):.4f} | "
              f"{rep['holdout_next_state_mse_raw']:.4f} / {still:.4f} | "
              f"{rep['holdout_reward_mse_raw']:.4f} / {rvar:.4f} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
