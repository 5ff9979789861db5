"""Where AEPO's guidance points: the terms of the Eq. 25 energy target, and the guidance against the prior.

On a trained (cached) AEPO model and dataset (s, a_0) pairs, at several diffusion times t:

* the three terms of Eq. 25, ``beta Q(s, a_bar)``, ``beta Q'^T (mu~ - a_bar)`` and
  ``0.5 beta^2 sigma~^2 ||Q'||^2``: their means and standard deviations over the batch (which term the
  regression of E_Theta mostly fits);
* the guidance's size against the prior in the solver's eps form, ``||omega sigma_t grad E_Theta|| /
  ||eps_theta||`` at omega = 1 (above 1 the guidance, not the behaviour model, sets the direction);
* ``cos(grad_a E_Theta(s, a_t, t), Q'(s, mu~))``: whether the learned energy's gradient points up the
  critic at the posterior mean.

    OMP_NUM_THREADS=1 python3 benchmarks/probe_aepo_guidance.py --dataset hopper-medium-replay \\
        --profile cpu --seed 0      # seconds with the model cached (augment compare --arm aepo trains it)

Prints a markdown table; ``--out FILE.json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augment.planners.aepo import AEPOPlanner  # noqa: E402
from augment.planners.aepo_math import a_bar, posterior_mean, q_value_and_grad  # noqa: E402
from augment.planners.run import planner_config  # noqa: E402
from stores.datasets import load_dataset  # noqa: E402

TIMES = (0.01, 0.1, 0.3, 0.5, 0.8, 0.95, 1.0)


def probe(models: Any, config: Any, s_raw: torch.Tensor, a0: torch.Tensor, t_value: float,
          generator: torch.Generator) -> dict[str, float]:
    """One row: the Eq. 25 terms, the guidance / prior ratio and the gradient alignment at time t."""
    b, d = a0.shape
    s_n = models.norm_obs(s_raw.numpy())
    t = torch.full((b,), float(t_value))
    alpha = models.schedule.alpha(t).float()[:, None]
    sigma = models.schedule.sigma(t).float()[:, None]
    a_t = alpha * a0 + sigma * torch.randn(b, d, generator=generator)
    with torch.no_grad():
        eps = models.eps_net(s_n, a_t, t)
        mu = posterior_mean(a_t, eps, alpha, sigma)
        if config.clip_mu:
            low, high = models.box()
            mu = torch.clamp(mu, low, high)
    var = float(models.table(t)[0])
    q0, g0 = q_value_and_grad(models.critic.q, s_raw, a0)
    abar = a_bar(a0, g0, config.nu)
    with torch.no_grad():
        q_bar = models.critic.q(s_raw, abar).reshape(-1)
    beta = float(config.beta)
    term_q = beta * q_bar
    term_lin = beta * ((mu - abar) * g0).sum(-1)
    term_var = 0.5 * beta ** 2 * var * (g0 ** 2).sum(-1)
    grad_e = models.energy_net.grad_action(s_n, a_t, t)
    _, g_mu = q_value_and_grad(models.critic.q, s_raw, mu)
    cos = torch.nn.functional.cosine_similarity(grad_e, g_mu, dim=-1)
    ratio = (sigma * grad_e).norm(dim=-1) / eps.norm(dim=-1).clamp_min(1e-12)
    return {"t": float(t_value), "sigma_tilde2": var,
            "beta_q_mean": float(term_q.mean()), "beta_q_std": float(term_q.std()),
            "linear_mean": float(term_lin.mean()), "linear_std": float(term_lin.std()),
            "variance_mean": float(term_var.mean()), "variance_std": float(term_var.std()),
            "grad_q_norm": float(g0.norm(dim=-1).mean()),
            "guidance_over_prior_median": float(ratio.median()), "cos_gradE_gradQ_mean": float(cos.mean())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="hopper-medium-replay")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", default=None, help="AEPO overrides (training fields retrain)")
    ap.add_argument("--states", type=int, default=2048)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    dataset = load_dataset(args.dataset, profile=args.profile)
    config = planner_config("aepo", args.profile, dataset.name, args.overrides, seed=args.seed)
    planner = AEPOPlanner(config, progress=True)
    planner.fit(dataset)
    models = planner.models
    rng = np.random.default_rng(args.seed)
    idx = rng.integers(0, len(dataset.transitions.observations), size=args.states)
    s_raw = torch.from_numpy(dataset.transitions.observations[idx])
    a0 = torch.from_numpy(dataset.transitions.actions[idx])
    gen = torch.Generator().manual_seed(args.seed)
    rows = [probe(models, config, s_raw, a0, t, gen) for t in TIMES]
    print(f"### AEPO guidance probe: {dataset.name} ({args.profile}), seed {args.seed}, beta {config.beta}\n")
    print("| t | sigma~^2 | beta Q mean (std) | beta Q'^T(mu~ - a_bar) mean (std) | 0.5 beta^2 sigma~^2 "
          "norm(Q')^2 mean (std) | norm(Q') | guidance / prior (omega 1, median) | cos(grad E, Q'(mu~)) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['t']:g} | {r['sigma_tilde2']:.3g} | {r['beta_q_mean']:.1f} ({r['beta_q_std']:.1f}) | "
              f"{r['linear_mean']:.1f} ({r['linear_std']:.1f}) | {r['variance_mean']:.1f} "
              f"({r['variance_std']:.1f}) | {r['grad_q_norm']:.2f} | {r['guidance_over_prior_median']:.2f} | "
              f"{r['cos_gradE_gradQ_mean']:.2f} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"dataset": dataset.name, "profile": args.profile, "seed": args.seed,
                                        "beta": config.beta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
