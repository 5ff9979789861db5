"""DyDiff generation speed and the share of a dydiff run's wall time spent generating vs. updating.

Part 1 (speed): fits (or loads from cache) the profile's world and diffusion models on the dataset, then
times ``DyDiffGenerator.generate`` for a few rounds with a TD3+BC rollout policy, and each stage alone
(Eq. 6 single-step rollout, one diffusion sample of Algorithm 2, one Eq. 8 relabel).
Reports synthetic transitions per second (kept by the filter, after the cut at terminals), rollout
steps per second (B_r * L), and network evaluations per trajectory.

Part 2 (time share): one dydiff run of ``--run-steps`` updates through the training loop (the profile's
TrainConfig and DyDiff schedule); reads the wall time spent generating / updating / evaluating.

``--quick-fit`` trains the profile-sized networks for only a few steps: generation speed depends on
the network sizes, B_r, L, M and the number of Heun steps, not on how well the models were trained, so
this measures the speed without the ~15-minute cpu denoiser training. ``--dataset-profile`` picks the
dataset's recipe budget independently of the models' profile.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dydiff.py --profile cpu \
        --dataset hopper-medium-replay --rounds 2 --run-steps 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def model_configs(profile: str, quick_fit: bool) -> tuple[Any, Any]:
    """(world config, diffusion config) of ``profile``; with ``quick_fit`` the same sizes, few steps."""
    from augment.diffusion.trajectory import TrajectoryDiffusionConfig
    from augment.world import WorldModelConfig

    world = WorldModelConfig.for_profile(profile)
    diffusion = TrajectoryDiffusionConfig.for_profile(profile)
    if quick_fit:
        world = dataclasses.replace(world, max_epochs=2, steps_per_epoch=20, reward_max_epochs=2,
                                    reward_steps_per_epoch=20)
        diffusion = dataclasses.replace(diffusion, train_steps=20, warmup_steps=5)
    return world, diffusion


def bench_speed(dataset: Any, profile: str, rounds: int, rollout_batch: int | None,
                iterations: int | None, quick_fit: bool) -> dict[str, Any]:
    """Generation speed of one profile (part 1)."""
    import torch

    from augment.commands import dydiff_config, make_dydiff_generator
    from augment.generators.dydiff import relabel_actions, single_step_rollout
    from baselines.learners import make_learner, rollout_policy

    cfg = dydiff_config(dataset.name, profile=profile, rollout_batch=rollout_batch, iterations=iterations)
    world_cfg, diffusion_cfg = model_configs(profile, quick_fit)
    (gen, fit_s) = _timed(make_dydiff_generator, dataset, cfg, progress=False, world_config=world_cfg,
                          diffusion_config=diffusion_cfg)
    policy = rollout_policy(make_learner("td3bc", dataset, seed=0), "td3bc")
    rng = np.random.default_rng(0)
    gen.generate(min(8, cfg.rollout_batch), policy, rng)  # warm-up (allocations, lazy imports)
    seconds, kept, transitions = [], 0, 0
    for k in range(rounds):
        batch, s = _timed(gen.generate, cfg.rollout_batch, policy, rng, round=k)
        seconds.append(s)
        kept += batch.batch_size
        transitions += batch.num_transitions
    total = float(sum(seconds))
    b = min(cfg.rollout_batch, cfg.sample_batch)
    s0 = dataset.transitions.observations[:b]
    (states, actions), t_single = _timed(single_step_rollout, s0, policy, gen.world, cfg.rollout_length, rng)
    _, t_diff = _timed(gen.diffusion.sample, s0, actions, rng)
    _, t_relabel = _timed(relabel_actions, policy, states)
    return {
        "profile": profile, "dataset": dataset.name, "dataset_transitions": dataset.num_transitions,
        "quick_fit": quick_fit, "rollout_batch": cfg.rollout_batch,
        "rollout_length": cfg.rollout_length, "iterations": cfg.iterations, "filter": cfg.filter,
        "eta": cfg.eta, "torch_threads": torch.get_num_threads(),
        "network_evaluations_per_trajectory": gen.network_evaluations(),
        "diffusion_config": dataclasses.asdict(gen.diffusion_config()),
        "denoiser_parameters": int(sum(p.numel() for p in gen.diffusion.network.parameters()))
        if hasattr(gen.diffusion, "network") else None,
        "model_fit_or_load_s": fit_s, "rounds": rounds, "seconds_per_round": total / rounds,
        "trajectories_kept_per_s": kept / total, "synthetic_transitions_per_s": transitions / total,
        "rollout_steps_per_s": rounds * cfg.rollout_batch * cfg.rollout_length / total,
        "stage_seconds_per_chunk": {"chunk": b, "single_step_eq6": t_single, "diffusion_sample": t_diff,
                                    "relabel_eq8": t_relabel},
    }


def bench_share(dataset: Any, profile: str, steps: int, out: Path, quick_fit: bool) -> dict[str, Any]:
    """Wall-time shares of one dydiff run through the loop (part 2)."""
    from augment.commands import dydiff_config, train_config, train_with_dydiff

    cfg = dydiff_config(dataset.name, profile=profile)
    world_cfg, diffusion_cfg = model_configs(profile, quick_fit)
    run_dir = out
    config = train_config(cfg, profile=profile, seed=0, steps=steps)
    result = train_with_dydiff(dataset, "td3bc", cfg, config, run_dir,
                               progress=False, world_config=world_cfg, diffusion_config=diffusion_cfg)
    times = result.times
    total = times["total"]
    return {"profile": profile, "steps": result.steps, "rounds": result.rounds,
            "synthetic_transitions": result.num_synthetic,
            "seconds": {k: times[k] for k in ("generate", "update", "evaluate", "total")},
            "share": {k: times[k] / total for k in ("generate", "update", "evaluate")},
            "updates_per_s": result.updates_per_s, "run_dir": str(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rollout-batch", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--run-steps", type=int, default=2000, help="0 skips part 2")
    parser.add_argument("--dataset-profile", default=None, help="recipe budget of the dataset [--profile]")
    parser.add_argument("--quick-fit", action="store_true", help="profile-sized networks, few train steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    import torch

    from stores.datasets import load_dataset

    torch.set_num_threads(1)
    dataset = load_dataset(args.dataset, profile=args.dataset_profile or args.profile, progress=False)
    report: dict[str, Any] = {"speed": bench_speed(dataset, args.profile, args.rounds, args.rollout_batch,
                                                   args.iterations, args.quick_fit)}
    sp = report["speed"]
    nfe = sp["network_evaluations_per_trajectory"]
    print(f"profile {sp['profile']}: B_r={sp['rollout_batch']} L={sp['rollout_length']} M={sp['iterations']} "
          f"denoiser params={sp['denoiser_parameters']}")
    print("| synthetic transitions/s | rollout steps/s | s/round | NFE/trajectory (policy, dynamics, "
          "denoiser, reward) |")
    print("| --- | --- | --- | --- |")
    print(f"| {sp['synthetic_transitions_per_s']:.0f} | {sp['rollout_steps_per_s']:.0f} | "
          f"{sp['seconds_per_round']:.2f} | {nfe['total']} ({nfe['policy']}, {nfe['dynamics']}, "
          f"{nfe['denoiser']}, {nfe['reward']}) |")
    st = sp["stage_seconds_per_chunk"]
    print(f"stages for a chunk of {st['chunk']}: single-step Eq. 6 {st['single_step_eq6']:.2f} s, "
          f"one diffusion sample {st['diffusion_sample']:.2f} s, one relabel Eq. 8 {st['relabel_eq8']:.3f} s")
    if args.run_steps > 0:
        with tempfile.TemporaryDirectory() as tmp:
            report["share"] = bench_share(dataset, args.profile, args.run_steps, Path(tmp) / "run",
                                          args.quick_fit)
        sh = report["share"]
        share = sh["share"]
        print(f"run of {sh['steps']} updates, {sh['rounds']} rounds: generate {100 * share['generate']:.1f}% "
              f"| update {100 * share['update']:.1f}% | evaluate {100 * share['evaluate']:.1f}% "
              f"of {sh['seconds']['total']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
