"""Benchmark the DyDiff sampler (Algorithm 2): time per network evaluation vs. a bare forward pass.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_diffusion_sampler.py --profiles smoke cpu --batch 256

For each profile it builds the profile's U-Net (weights do not change the cost, so no training), and
alternates ``--rounds`` times between (a) ``2N-1`` bare forward passes ``F(x, c_noise)`` on a
(B, obs+act, L+1) batch, (b) 2N-1 preconditioned denoiser calls D(x; s), and (c) one full
``TrajectoryDiffusion.sample`` call of N Heun steps at the same batch (2N-1 network evaluations,
including the preconditioning, churn noise, Euler/Heun updates, hard replacement, normalisation and the
numpy round trip). It reports the per-evaluation times and the ratio sampler / bare (target <= 1.15:
no Python overhead worth the name in the loop), and the cost of one DyDiff refinement round with M
iterations. Times are the minimum over rounds (the least disturbed by other processes on a shared
machine); the ratio is min(sampler) / min(bare), with the median of the per-round ratios beside it.
Sizes default to Hopper's (obs 11, act 3). Prints a markdown table; ``--json PATH`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from augment.diffusion import edm
from augment.diffusion.trajectory import (
    Normalizer,
    TrajectoryDiffusion,
    TrajectoryDiffusionConfig,
    build_network,
)
from augment.nn.unet import count_parameters


def make_model(profile: str, obs: int, act: int) -> TrajectoryDiffusion:
    """The profile's (untrained) model on CPU with an identity-like normaliser."""
    config = replace(TrajectoryDiffusionConfig.for_profile(profile), device="cpu")
    network = build_network(config, obs + act)
    torch.nn.init.normal_(network.out.weight, std=0.02)  # a non-trivial output, as after training
    norm = Normalizer(np.zeros(obs, np.float32), np.ones(obs, np.float32), np.zeros(act, np.float32),
                      np.ones(act, np.float32), scale=config.edm.sigma_data)
    return TrajectoryDiffusion(config, network, norm, obs, act)


def bench_profile(profile: str, batch: int, rounds: int, obs: int, act: int, iterations: int) -> dict:
    model = make_model(profile, obs, act)
    cfg = model.config
    nfe = model.network_evaluations_per_sample
    rng = np.random.default_rng(0)
    s0 = rng.normal(size=(batch, obs)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(batch, cfg.horizon, act)).astype(np.float32)
    x = torch.randn(batch, obs + act, cfg.horizon + 1)
    noise = torch.full((batch,), edm.c_noise(1.0))
    net = model.network
    with torch.inference_mode():
        net(x, noise)  # warm-up (allocator, oneDNN primitives)
    model.sample(s0, actions, rng)
    bare, precond, samp, ratios = [], [], [], []
    for _ in range(rounds):
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(nfe):
                net(x, noise)
            b = (time.perf_counter() - t0) / nfe
            t0 = time.perf_counter()
            for _ in range(nfe):
                model.denoise(x, 1.0)
            precond.append((time.perf_counter() - t0) / nfe)
        t0 = time.perf_counter()
        model.sample(s0, actions, rng)
        s = (time.perf_counter() - t0) / nfe
        bare.append(b)
        samp.append(s)
        ratios.append(s / b)
    sample_s = min(samp) * nfe
    return {
        "profile": profile, "batch": batch, "length": cfg.horizon + 1, "channels": obs + act,
        "parameters": count_parameters(net), "heun_steps": cfg.edm.num_steps, "nfe_per_sample": nfe,
        "bare_ms_per_call": 1e3 * min(bare), "denoiser_ms_per_call": 1e3 * min(precond),
        "sampler_ms_per_nfe": 1e3 * min(samp),
        "ratio": min(samp) / min(bare), "ratio_median": statistics.median(ratios),
        "sample_seconds": sample_s, "iterations": iterations, "round_seconds": iterations * sample_s,
        "threads": torch.get_num_threads(), "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["smoke", "cpu"], choices=["smoke", "cpu", "paper"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--obs", type=int, default=11)
    parser.add_argument("--act", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2, help="M refinement iterations per DyDiff round")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [bench_profile(p, args.batch, args.rounds, args.obs, args.act, args.iterations)
            for p in args.profiles]
    print("| profile | B | L+1 x C | params | N (NFE) | bare forward F ms | preconditioned D ms "
          "| sampler ms / NFE | ratio sampler/F (median of rounds) | one sample s | DyDiff round (M) s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['profile']} | {r['batch']} | {r['length']} x {r['channels']} "
              f"| {r['parameters'] / 1e6:.2f}M | {r['heun_steps']} ({r['nfe_per_sample']}) "
              f"| {r['bare_ms_per_call']:.2f} | {r['denoiser_ms_per_call']:.2f} "
              f"| {r['sampler_ms_per_nfe']:.2f} "
              f"| {r['ratio']:.3f} ({r['ratio_median']:.3f}) "
              f"| {r['sample_seconds']:.2f} | {r['round_seconds']:.1f} (M={r['iterations']}) |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
