"""Does E_Theta's action gradient align with the critic's when it trains longer? (AEPO, Eq. 26.)

Loads a cached AEPO model (eps_theta, critics and table are kept), continues E_Theta's regression
(:func:`augment.planners.aepo_train.train_energy`, the same Eq. 25 target) in chunks, and after each chunk
measures on fixed dataset states what ``benchmarks/probe_aepo_guidance.py`` measures (cos(grad E_Theta,
Q'(mu~)) and the guidance / prior ratio per t), plus the mean Q and the share of saturated coordinates of
the actions AEPO samples at the config's omega. Nothing is written to the cache.

``--beta B`` asks the other question, whether a smaller inverse temperature aligns it (Eq. 25's variance
term grows as beta^2, its linear term as beta): E_Theta is re-initialised and trained on the Eq. 25 target
at beta = B for the config's ``energy_steps`` (the same budget as the cached model's), then the chunks
continue from there; the probe rows and AEPO's sampling use B as well.

    OMP_NUM_THREADS=1 python3 benchmarks/probe_aepo_energy_dose.py --seed 0 --chunks 20000,20000
    OMP_NUM_THREADS=1 python3 benchmarks/probe_aepo_energy_dose.py --seed 0 --beta 0.3 --chunks 0 \
        --evaluate 10

Prints one markdown row per chunk; ``--out FILE.json`` writes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling probe, also when imported by a test

import probe_aepo_guidance as probe  # noqa: E402

from augment.planners.aepo import AEPOPlanner, sample_actions  # noqa: E402
from augment.planners.aepo_train import build_networks, train_energy  # noqa: E402
from augment.planners.run import planner_config  # noqa: E402
from baselines.seeding import derive_seed  # noqa: E402
from stores.datasets import load_dataset  # noqa: E402

TIMES = (0.01, 0.1, 0.3, 0.5)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="hopper-medium-replay")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunks", default="20000,20000", help="extra E_Theta steps per chunk, comma-separated")
    ap.add_argument("--states", type=int, default=1024)
    ap.add_argument("--beta", type=float, default=None,
                    help="train a fresh E_Theta at this beta first (default: keep the cached one)")
    ap.add_argument("--omega", type=float, default=None,
                    help="guidance degree for the probe rows and the evaluation (default: the profile's)")
    ap.add_argument("--evaluate", type=int, default=0, metavar="EPISODES",
                    help="then score AEPO with the final E_Theta (and beta) in the env: EPISODES episodes on "
                         "10 envs, the acting and evaluation seeds of `augment plan` (0: no evaluation)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    dataset = load_dataset(args.dataset, profile=args.profile)
    config = planner_config("aepo", args.profile, dataset.name, None, seed=args.seed)
    planner = AEPOPlanner(config, progress=True)
    planner.fit(dataset)
    chunks = [int(c) for c in args.chunks.split(",") if c.strip()]
    config, rows = dose_rows(planner, config, dataset, chunks=chunks, states=args.states, seed=args.seed,
                             beta=args.beta, omega=args.omega)
    score = evaluation_row(planner, config, dataset, args.seed, args.evaluate) if args.evaluate else None
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"seed": args.seed, "beta": config.beta, "omega": config.omega,
                                        "times": TIMES, "rows": rows, "evaluation": score}, indent=2))


def dose_rows(planner: AEPOPlanner, config: Any, dataset: Any, *, chunks: list[int], states: int, seed: int,
              beta: float | None = None, omega: float | None = None,
              progress: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    """Train the fitted ``planner``'s E_Theta further, chunk by chunk, and probe it after each.

    chunks: extra E_Theta steps per chunk (a first row, before any extra step, is always measured).
    states: dataset states probed (drawn with ``seed``). beta: re-initialise E_Theta and train it at this
    inverse temperature for the config's ``energy_steps`` first; omega: the guidance degree of the rows.
    Changes ``planner.models.energy_net`` in memory only (nothing is written to the cache). Returns the
    config the rows used and one row per chunk: ``energy_steps`` (E_Theta steps in total), ``loss`` (the
    standardised Eq. 25 regression loss of the chunk; NaN for the first row), ``q_of_samples`` (mean
    Q(s, a) of AEPO's sampled actions), ``saturated`` (share of action coordinates with |a| > 0.99),
    ``cos`` and ``ratio`` (per time in ``TIMES``, from ``probe_aepo_guidance.probe``).
    """
    models = planner.models
    tr = dataset.transitions
    s_all = torch.from_numpy(np.ascontiguousarray(tr.observations, dtype=np.float32))
    s_n_all = models.norm_obs(tr.observations)
    a_all = torch.from_numpy(np.ascontiguousarray(tr.actions, dtype=np.float32))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(tr.observations), size=states)
    s_raw, a0 = s_all[idx], a_all[idx]
    rows = []
    done = int(config.energy_steps)
    chunks = [0] + [int(c) for c in chunks if int(c) > 0]
    if omega is not None:
        config = dataclasses.replace(config, omega=float(omega))
        config.validate()
    if beta is not None:  # a fresh E_Theta at the new beta, trained for the cached model's budget
        config = dataclasses.replace(config, beta=float(beta))
        config.validate()
        fresh = build_networks(config, dataset.observation_size, dataset.action_size)[1]
        models.energy_net = fresh.to(next(models.energy_net.parameters()).device)
        chunks[0], done = int(config.energy_steps), 0
    print(f"beta {config.beta}; | E_Theta steps | loss | cos(grad E, Q') at t = {TIMES} | guidance / prior | "
          "mean Q of samples | saturated share |", flush=True)
    for k, steps in enumerate(chunks):
        loss = float("nan")
        if steps:
            rec = train_energy(models, s_all, s_n_all, a_all, steps=steps, batch=int(config.energy_batch),
                               lr=float(config.energy_lr), beta=float(config.beta), nu=float(config.nu),
                               clip_mu=bool(config.clip_mu), baseline=config.energy_baseline,
                               seed=derive_seed(seed, f"aepo-energy-dose-{k}"), progress=progress)
            loss = float(rec["final_loss_standardised"])
            done += steps
        gen = torch.Generator().manual_seed(seed)
        per_t = [probe.probe(models, config, s_raw, a0, t, gen) for t in TIMES]
        acts = sample_actions(models, s_raw.numpy(), config, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            q = float(models.critic.q(s_raw, torch.from_numpy(acts)).mean())
        rows.append({"energy_steps": done, "loss": loss, "q_of_samples": q,
                     "saturated": float((np.abs(acts) > 0.99).mean()),
                     "cos": [r["cos_gradE_gradQ_mean"] for r in per_t],
                     "ratio": [r["guidance_over_prior_median"] for r in per_t]})
        r = rows[-1]
        cos_txt = " / ".join(f"{c:.2f}" for c in r["cos"])
        ratio_txt = " / ".join(f"{x:.2f}" for x in r["ratio"])
        sat = r["saturated"]
        print(f"| {done} | {loss:.3f} | {cos_txt} | {ratio_txt} | {q:.2f} | {sat:.2f} |", flush=True)
    return config, rows


def evaluation_row(planner: AEPOPlanner, config: Any, dataset: Any, seed: int,
                   episodes: int) -> dict[str, Any]:
    """Score ``planner`` acting under ``config`` (the probe's beta) as ``augment plan`` does
    (:func:`augment.planners.run.evaluate_planner`, 10 envs): normalized mean, mean return and mean episode
    length over ``episodes`` episodes."""
    from augment.planners.run import evaluate_planner
    from baselines.loop import score_name_for

    planner.config = config
    env = dataset.env_id
    result = evaluate_planner(planner, env, seed=seed, episodes=episodes,
                              score_name=score_name_for(dataset, env))
    out = {"episodes": episodes, "normalized": float(result.normalized_mean), "return": float(result.mean),
           "length": float(result.lengths.mean()),
           "seconds_per_action": planner.acting_stats()["seconds_per_action"]}
    print(f"beta {config.beta}: score {out['normalized']:.2f} (normalized), return {out['return']:.1f}, "
          f"mean length {out['length']:.1f}", flush=True)
    return out


if __name__ == "__main__":
    main()
