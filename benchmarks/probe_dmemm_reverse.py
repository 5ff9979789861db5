"""Where do DMEMM's over-dispersed plans come from? Reverse the trained model from real windows noised to k.

Real training windows (normalised, full length) are noised to level k (``ddpm.q_sample``) and run back
to k = 0 with the fitted planner's network (s_0 inpainted, posterior variance, like Algorithm 1 without
guidance), with and without clipping x0-hat. Prints, per k: the spread of the output states (the data's
is ~0.98 in these units), their MSE to the clean window, and the network's eps MSE at k. k = K is pure
noise, i.e. what planning does.

    OMP_NUM_THREADS=1 python3 benchmarks/probe_dmemm_reverse.py --dataset hopper-medium-replay --profile cpu \
        --overrides diffuser
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--overrides", default="diffuser")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=256)
    ap.add_argument("--clip", type=float, default=5.0,
                    help="x0-hat clip of the clipped rows (normalised units)")
    args = ap.parse_args(argv)

    from augment.diffusion import ddpm
    from augment.diffusion.windows import build_windows
    from augment.planners.dmemm_math import window_columns
    from augment.planners.run import make_planner
    from stores.datasets import load_dataset

    ds = load_dataset(args.dataset, profile=args.profile, progress=False)
    p = make_planner("dmemm", ds, profile=args.profile, overrides=args.overrides or None, seed=args.seed,
                     progress=False)
    norm, obs = p.normalizer, p.obs_dim
    w = build_windows([norm.norm_obs(e.observations) for e in ds.episodes],
                      [norm.norm_act(e.actions) for e in ds.episodes], p.config.horizon + 1)
    xw, valid = w.gather(np.random.default_rng(args.seed).integers(0, len(w), args.windows))
    tau, sv, av = window_columns(xw, valid, obs)
    full = sv.all(1) & av[:, :-1].all(1)
    x0 = torch.as_tensor(np.ascontiguousarray(tau[full])).transpose(1, 2).contiguous().to(p.device)
    net, sched = p.network, p.sched
    mask = torch.zeros_like(x0, dtype=torch.bool)
    mask[:, :obs, 0] = True
    g = torch.Generator().manual_seed(args.seed)

    def eps_fn(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return net(x, ddpm.noise_input(sched, k))

    def inpaint(x: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, x0, x)

    def randn_like(x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=g).to(x.device)

    print(f"{x0.shape[0]} windows; data state spread {float(x0[:, :obs].std()):.3f} (normalised units)")
    print("| k | x0 clip | output state spread | MSE to the clean window | eps MSE at k |")
    print("| --- | --- | --- | --- | --- |")
    with torch.no_grad():
        levels = sorted({1, 2, 5, 10, sched.num_steps * 3 // 4, sched.num_steps})
        for k in levels:
            eps = randn_like(x0)
            xk = ddpm.q_sample(x0, k, eps, sched)
            kk = torch.full((x0.shape[0],), k, dtype=torch.long, device=x0.device)
            eps_mse = float(((eps_fn(inpaint(xk), kk) - eps)[:, :, 1:] ** 2).mean())
            for clip in (None, args.clip):
                out = ddpm.reverse_loop(xk, k, eps_fn, sched, randn_like=randn_like, inpaint_fn=inpaint,
                                        variance=p.config.variance, clip_x0=clip)
                err = float(((out[:, :obs] - x0[:, :obs]) ** 2).mean())
                print(f"| {k} | {clip} | {float(out[:, :obs].std()):.3f} | {err:.3f} | {eps_mse:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
