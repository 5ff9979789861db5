"""AEPO diagnostics and latency: what each training stage cost, the sigma~^2(t) table, the energy fit, and
seconds per ``act`` call of one batched guided DPM-Solver solve.

    python benchmarks/bench_aepo.py --dataset hopper-medium-replay --profile cpu --seeds 0,1,2

For every seed it fits AEPO (or loads it from the planner cache, so running this after
``augment compare ... --arm aepo`` costs no training), then prints and writes (``--out``, JSON + markdown):

* per stage: seconds (eps_theta, d3rlpy IQL, table, energy), final losses, IQL updates/s and the
  reward multiplier beta's Q is measured in;
* the sigma~^2 table: Var(a_0), its first / middle / last values, how many grid points were clamped;
* latency: seconds per act call at B = 1 and B = ``--envs`` for omega = 0 (eps_theta only) and the
  config's omega (eps_theta + grad E per model call), and network calls per act call;
* a guidance check on dataset states: mean Q(s, a) of the actions each arm samples (IQL's own actor
  included), under the same critic (``q_reduction``) - the quantity guidance is meant to raise.

Scores come from ``augment compare`` (see docs/planners.md, section AEPO); this script does not run episodes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment.planners.aepo import AEPOPlanner, sample_actions
from augment.planners.base import apply_overrides, parse_overrides
from augment.planners.run import planner_config
from stores.datasets import load_dataset

ARMS = ("aepo", "aepo:unguided", "aepo:omega=3", "aepo:no-rescale,omega=3", "aepo:iql-actor")


def _latency(planner: AEPOPlanner, obs: np.ndarray, repeats: int) -> float:
    planner.act(obs)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        planner.act(obs)
    return (time.perf_counter() - t0) / repeats


def _action_stats(acts: np.ndarray, data_acts: np.ndarray) -> dict[str, float]:
    """Of sampled actions (S, act) against the dataset's actions at the same states (S, act): mean |a|,
    the share of coordinates with |a| > 0.99 (saturated at the [-1, 1] bounds) and the mean L2 distance."""
    a = np.asarray(acts, dtype=np.float64)
    return {"mean_abs": float(np.abs(a).mean()), "saturated": float((np.abs(a) > 0.99).mean()),
            "dist_to_data": float(np.linalg.norm(a - data_acts, axis=1).mean())}


def _arm_config(base: Any, arm: str) -> Any:
    _, _, arg = arm.partition(":")
    return apply_overrides(base, parse_overrides(arg))


def bench_seed(dataset: Any, profile: str, seed: int, *, envs: int, repeats: int, states: int,
               overrides: str | None, arms: tuple[str, ...] = ARMS) -> dict[str, Any]:
    config = planner_config("aepo", profile, dataset.name, overrides, seed=seed)
    planner = AEPOPlanner(config, progress=True)
    t0 = time.perf_counter()
    planner.fit(dataset)
    fit_s = time.perf_counter() - t0
    rec = planner.train_record
    models = planner.models
    table = models.table
    k = len(table.values)
    out: dict[str, Any] = {
        "seed": seed, "fit_seconds": fit_s, "from_cache": planner.from_cache,
        "cache": str(planner.cache_path),
        "stages_s": {"eps_theta": rec["eps_theta"]["seconds"], "iql": rec["iql"]["seconds"],
                     "table": rec["table"]["seconds"], "energy": rec["energy"]["seconds"]},
        "eps_final_loss": rec["eps_theta"]["final_loss"], "iql_updates_per_s": rec["iql"]["updates_per_s"],
        "iql_last_losses": rec["iql"]["last_losses"], "reward_multiplier": rec["iql"]["reward_multiplier"],
        "q_reduction": rec["iql"]["q_reduction"],
        "energy_loss_standardised": rec["energy"]["final_loss_standardised"],
        "energy_target_mean": rec["energy"]["target_mean"], "energy_target_std": rec["energy"]["target_std"],
        "var_a0": models.var_a0, "table_first_mid_last": [float(table.values[0]), float(table.values[k // 2]),
                                                          float(table.values[-1])],
        "table_clamped_points": int(np.sum(table.values != table.raw)), "table_points": k,
    }
    rng = np.random.default_rng(seed)
    obs_all = dataset.transitions.observations
    latency: dict[str, float] = {}
    for omega in (0.0, float(config.omega)):
        planner.config = apply_overrides(config, {"omega": omega})
        for b in (1, envs):
            obs = obs_all[rng.integers(0, len(obs_all), size=b)]
            planner.reset_stats()
            latency[f"omega={omega:g},B={b}"] = _latency(planner, obs, repeats)
        out[f"calls_per_act_call_omega={omega:g}"] = planner.acting_stats()["network_calls_per_act_call"]
    planner.config = config
    out["seconds_per_act_call"] = latency
    idx = rng.integers(0, len(obs_all), size=states)
    s = obs_all[idx]
    s_t = torch.from_numpy(s)
    with torch.no_grad():
        q_data = float(models.critic.q(s_t, torch.from_numpy(dataset.transitions.actions[idx])).mean())
    q_of: dict[str, float] = {"dataset actions": q_data}
    data_acts = dataset.transitions.actions[idx]
    action_stats: dict[str, dict[str, float]] = {"dataset actions": _action_stats(data_acts, data_acts)}
    for arm in arms:
        cfg = _arm_config(config, arm)
        if cfg.actor == "iql":
            acts = np.asarray(models.iql.predict(s), dtype=np.float32)
        else:
            acts = sample_actions(models, s, cfg, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            q_of[arm] = float(models.critic.q(s_t, torch.from_numpy(acts)).mean())
        action_stats[arm] = _action_stats(acts, data_acts)
    out["mean_q_of_sampled_actions"] = q_of
    out["action_stats"] = action_stats
    return out


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    lines = [f"### {title}", "",
             "| seed | fit s (cache) | eps / IQL / table / energy s | IQL upd/s | eps loss "
             "| energy loss (std.) | table first/mid/last (Var a0) | s/act B=1 / B=envs (omega) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        st = r["stages_s"]
        lat = r["seconds_per_act_call"]
        lat_txt = ", ".join(f"{k}: {v * 1000:.1f} ms" for k, v in lat.items())
        tf = r["table_first_mid_last"]
        lines.append(
            f"| {r['seed']} | {r['fit_seconds']:.0f} ({'yes' if r['from_cache'] else 'no'}) | "
            f"{st['eps_theta']:.0f} / {st['iql']:.0f} / {st['table']:.1f} / {st['energy']:.0f} | "
            f"{r['iql_updates_per_s'] or float('nan'):.0f} | {r['eps_final_loss']:.3f} | "
            f"{r['energy_loss_standardised']:.3f} | "
            f"{tf[0]:.2e} / {tf[1]:.3f} / {tf[2]:.3f} ({r['var_a0']:.3f}) | "
            f"{lat_txt} |")
    lines += ["", "Mean Q(s, a) of sampled actions on dataset states (same critic):", "",
              "| seed | " + " | ".join(rows[0]["mean_q_of_sampled_actions"]) + " |",
              "| --- | " + " | ".join("---" for _ in rows[0]["mean_q_of_sampled_actions"]) + " |"]
    for r in rows:
        values = r["mean_q_of_sampled_actions"].values()
        lines.append(f"| {r['seed']} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    lines += ["", "Sampled actions on the same states: mean |a| / share saturated (|a| > 0.99) / mean L2 "
              "distance to the dataset action:", "",
              "| seed | " + " | ".join(rows[0]["action_stats"]) + " |",
              "| --- | " + " | ".join("---" for _ in rows[0]["action_stats"]) + " |"]
    for r in rows:
        cells = [f"{v['mean_abs']:.2f} / {v['saturated']:.2f} / {v['dist_to_data']:.2f}"
                 for v in r["action_stats"].values()]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="hopper-medium-replay")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", dest="overrides", default=None, help="AEPO overrides, e.g. 'eps_steps=5000'")
    ap.add_argument("--envs", type=int, default=10, help="batch size of the second latency row")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--states", type=int, default=2048, help="dataset states for the guidance check")
    ap.add_argument("--out", type=Path, default=None, help="directory for bench_aepo.json / .md")
    ap.add_argument("--arm", dest="arms", action="append", default=[],
                    help="an arm for the Q / action check (repeatable, e.g. --arm aepo:omega=0.1); "
                         f"default: {', '.join(ARMS)}")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    dataset = load_dataset(args.dataset, profile=args.profile, progress=True)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    rows = [bench_seed(dataset, args.profile, s, envs=args.envs, repeats=args.repeats, states=args.states,
                       overrides=args.overrides, arms=tuple(args.arms) or ARMS) for s in seeds]
    text = markdown(rows, f"AEPO on {dataset.name} ({args.profile})")
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_aepo.json").write_text(json.dumps(rows, indent=2))
        (args.out / "bench_aepo.md").write_text(text)


if __name__ == "__main__":
    main()
