"""How well the trajectory diffusion model reproduces real windows given their s_0 and actions.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_diffusion_quality.py --dataset hopper-medium-replay \
        --profile cpu

Fits (or loads from the cache) the profile's model on the dataset, draws ``--windows`` full-length
windows of Eq. 2 (episodes of at least L steps), samples the states with Algorithm 2 given each window's
real s_0 and actions, and reports the per-step mean squared error in normalised units (each state
dimension divided by its dataset std) at a few horizons, next to two trivial predictors: holding s_0
and the dataset mean state. These are windows the model was trained on: the figure says whether training
worked and how the error grows along the window, not how it generalises (see `augment diagnose dydiff`
for rollouts of a learning policy against the simulator).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from augment.diffusion.trajectory import TrajectoryDiffusionConfig, fit_trajectory_diffusion
from stores.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--data-profile", default=None,
                        help="recipe profile of the dataset (default: --profile)")
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbatim", action="store_true",
                        help="also sample with Algorithm 2 verbatim (condition_after_churn=False)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, profile=args.data_profile or args.profile)
    config = TrajectoryDiffusionConfig.for_profile(args.profile)
    t0 = time.perf_counter()
    model = fit_trajectory_diffusion(dataset, config)
    fit_s = time.perf_counter() - t0
    length = model.horizon
    rng = np.random.default_rng(args.seed)
    long_eps = [ep for ep in dataset.episodes if len(ep) >= length]
    if not long_eps:
        raise SystemExit(f"no episode of {length} steps or more in {dataset.name}")
    picks = rng.integers(0, len(long_eps), size=args.windows)
    states, actions = [], []
    for e in picks:
        ep = long_eps[e]
        i = int(rng.integers(0, len(ep) - length + 1))
        states.append(ep.observations[i:i + length + 1])
        actions.append(ep.actions[i:i + length])
    truth = np.stack(states).astype(np.float32)
    acts = np.stack(actions).astype(np.float32)
    t0 = time.perf_counter()
    out = model.sample(truth[:, 0], acts, np.random.default_rng(args.seed + 1))
    sample_s = time.perf_counter() - t0
    std = dataset.stats.obs_std
    mean = dataset.stats.obs_mean

    def per_step(pred: np.ndarray) -> np.ndarray:
        return (((pred - truth) / std) ** 2).mean(axis=(0, 2))

    rows = {"diffusion": per_step(out), "hold s_0": per_step(np.broadcast_to(truth[:, :1], truth.shape)),
            "dataset mean": per_step(np.broadcast_to(mean, truth.shape))}
    if args.verbatim:
        model.config = replace(model.config, condition_after_churn=False)
        rows["diffusion, Algorithm 2 verbatim"] = per_step(
            model.sample(truth[:, 0], acts, np.random.default_rng(args.seed + 1)))
    horizons = sorted({h for h in (1, 2, 4, 8, 16, 32, 64, length) if h <= length})
    print(f"{dataset.name} ({dataset.num_transitions} transitions), profile {args.profile}, L = {length}, "
          f"{args.windows} windows; model {'from cache' if model.from_cache else 'trained'} "
          f"({model.meta.get('train_seconds', float('nan')):.0f} s training, final loss "
          f"{model.meta.get('final_loss', float('nan')):.4f}); sampling {sample_s:.1f} s")
    print("| predictor | " + " | ".join(f"t={h}" for h in horizons) + " | mean over t=1..L |")
    print("|---|" + "---|" * (len(horizons) + 1))
    for name, err in rows.items():
        print(f"| {name} | " + " | ".join(f"{err[h]:.4f}" for h in horizons) + f" | {err[1:].mean():.4f} |")
    if args.json:
        args.json.write_text(json.dumps({
            "dataset": dataset.name, "profile": args.profile, "horizon": length, "windows": args.windows,
            "fit_seconds": fit_s, "sample_seconds": sample_s, "train_meta": model.meta,
            "per_step_mse": {k: v.tolist() for k, v in rows.items()}}, indent=2))


if __name__ == "__main__":
    main()
