"""Trajectory Diffuser's own checks (issue 11 acceptance): refinement on vs off (TD vs TD(-), paper Table 5)
and RTG conditioning at 1, 0.5 and 0 x the target (Table A4: the score should fall monotonically), over
seeds, on one dataset and profile.

Per seed the planner is trained once (or loaded from the planner cache: every setting here is an acting-only
field, so all settings share the trained networks) and evaluated with the shared harness
(:func:`baselines.evaluate.evaluate`, same acting and evaluation seeds as ``augment plan``) under each
setting. Prints a markdown table (mean +- standard error and IQM with a bootstrap CI over seeds, per-seed
scores, seconds per action, the two checks per seed)
and writes ``td_checks.json`` under ``--out``. Each finished seed is also written to ``--out/seed_N.json``
and reused by a later call with the same dataset, profile, episodes, envs, step cap and overrides, so the
seeds can be run one session at a time (``--seeds 0``, commit, ``--seeds 0,1`` later, ...).

    # the acceptance run (cpu profile, hopper-medium-replay, 3 seeds; ~77 min training per seed on one core)
    OMP_NUM_THREADS=1 nice -n 10 python3 benchmarks/bench_td.py --dataset hopper-medium-replay \\
        --profile cpu --seeds 0,1,2 --out benchmarks/td/checks_cpu
    # smoke (seconds; numbers mean nothing)
    OMP_NUM_THREADS=1 python3 benchmarks/bench_td.py --dataset FILE.npz --profile smoke --seeds 0 \\
        --episodes 2 --envs 2 --max-steps 10 --out /tmp/td_checks
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: label -> acting-only overrides (PLAN_FIELDS of TDConfig) on top of the profile's config.
SETTINGS: dict[str, dict[str, Any]] = {
    "TD (1 x RTG)": {},
    "TD(-) (no refinement)": {"refine": False},
    "TD 0.5 x RTG": {"rtg_fraction": 0.5},
    "TD 0 x RTG": {"rtg_fraction": 0.0},
}


def run_seed(dataset: Any, profile: str, seed: int, *, episodes: int, envs: int, max_steps: int | None,
             overrides: str, progress: bool) -> list[dict[str, Any]]:
    """Train (or load) TD for ``seed`` and evaluate every setting; one row per setting."""
    from augment.planners.run import evaluate_planner, make_planner
    from baselines.loop import score_name_for

    planner = make_planner("td", dataset, profile=profile, overrides=overrides, seed=seed, progress=progress)
    base = planner.config
    env = dataset.env_id
    rows = []
    for label, acting in SETTINGS.items():
        planner.config = base
        planner.set_acting(**acting)
        t0 = time.perf_counter()
        result = evaluate_planner(planner, env, seed=seed, episodes=episodes,
                                  score_name=score_name_for(dataset, env), envs=envs, max_steps=max_steps)
        stats = planner.acting_stats()
        norm = result.normalized_mean
        rows.append({"setting": label, "seed": seed, "acting": acting,
                     "score": norm if math.isfinite(norm) else result.mean,
                     "unit": "normalized" if math.isfinite(norm) else "return",
                     "return_mean": result.mean, "length_mean": float(result.lengths.mean()),
                     "target_rtg": planner.target_rtg(), "seconds_per_action": stats["seconds_per_action"],
                     "network_calls_per_act_call": stats["network_calls_per_act_call"],
                     "eval_seconds": time.perf_counter() - t0, "fit_from_cache": planner.from_cache,
                     "train_seconds": planner.train_record.get("seconds")})
        print(f"seed {seed} {label:24s} score {rows[-1]['score']:.2f} ({rows[-1]['unit']}) "
              f"{stats['seconds_per_action']:.4f} s/action", file=sys.stderr, flush=True)
    planner.config = base
    return rows


def seed_rows(path: Path, key: dict[str, Any], run: Any) -> list[dict[str, Any]]:
    """The rows of one seed: read from ``path`` when it holds a finished seed of the same ``key``,
    else ``run()``, then written to ``path`` (atomically: a killed seed leaves no file)."""
    from baselines.runs import read_json, write_json

    if path.exists():
        saved = read_json(path)
        if saved.get("key") == key:
            print(f"{path.name}: finished earlier with the same settings, reused", file=sys.stderr)
            return saved["rows"]
        print(f"{path.name}: written with other settings, rerun", file=sys.stderr)
    rows = run()
    write_json(path, {"key": key, "rows": rows})
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown: setting | mean +- s.e. | IQM [95% bootstrap CI] over seeds | per-seed | s / action, then the
    two checks per seed (refinement gain TD - TD(-); RTG monotone in 1 / 0.5 / 0 x target) and over seeds
    (mean gain with its bootstrap CI over the paired per-seed gains). Statistics: :mod:`baselines.stats`."""
    from baselines.stats import bootstrap_ci, iqm

    lines = ["| setting | score (mean +- s.e.) | IQM [95% CI] | per seed | s / action |",
             "| --- | --- | --- | --- | --- |"]
    by_seed: dict[str, dict[int, float]] = {}
    for label in SETTINGS:
        sel = [r for r in rows if r["setting"] == label]
        by_seed[label] = {int(r["seed"]): float(r["score"]) for r in sel}
        scores = np.array([r["score"] for r in sel], dtype=np.float64)
        se = scores.std(ddof=1) / np.sqrt(scores.size) if scores.size > 1 else float("nan")
        low, high = bootstrap_ci(scores, iqm)
        spa = np.mean([r["seconds_per_action"] for r in sel])
        lines.append(f"| {label} | {scores.mean():.2f} +- {se:.2f} | {iqm(scores):.1f} [{low:.1f}, "
                     f"{high:.1f}] | {', '.join(f'{s:.1f}' for s in scores)} | {spa:.4f} |")
    seeds = sorted(set.intersection(*(set(v) for v in by_seed.values())))
    td, no_refine = by_seed["TD (1 x RTG)"], by_seed["TD(-) (no refinement)"]
    half, zero = by_seed["TD 0.5 x RTG"], by_seed["TD 0 x RTG"]
    gains = np.array([td[s] - no_refine[s] for s in seeds], dtype=np.float64)
    monotone = [s for s in seeds if td[s] >= half[s] >= zero[s]]
    means = [float(np.mean([d[s] for s in seeds])) for d in (td, half, zero)]
    low, high = bootstrap_ci(gains, np.mean)
    lines.append("")
    lines.append(f"refinement gain TD - TD(-) per seed: {', '.join(f'{g:+.1f}' for g in gains)}; "
                 f"mean {gains.mean():+.2f} [95% CI {low:+.1f}, {high:+.1f}], positive in "
                 f"{int((gains > 0).sum())} of {len(seeds)} seeds")
    lines.append(f"RTG 1 / 0.5 / 0 x target (means): {' / '.join(f'{m:.2f}' for m in means)} "
                 f"({'monotone' if means[0] >= means[1] >= means[2] else 'NOT monotone'}); monotone in "
                 f"{len(monotone)} of {len(seeds)} seeds")
    return "\n".join(lines)


def parse_against(spec: str) -> tuple[str, Path]:
    """``LABEL=DIR`` -> (label, dir), split at the last ``=``: labels may hold ``=`` (arm specs such as
    ``dmemm:x0_clip=5``), paths rarely do. ValueError for anything else."""
    label, sep, root = spec.rpartition("=")
    if not sep or not label or not root:
        raise ValueError(f"--against wants LABEL=DIR, got {spec!r}")
    return label, Path(root)


def against_rows(label: str, root: Path, seeds: list[int], *, profile: str,
                 episodes: int) -> list[dict[str, Any]]:
    """Scores of another planner's run records, ``root/seed_N/results.json`` per seed (as ``augment plan`` /
    ``augment compare`` write them), as rows labelled ``label``. Those runs use the same harness and the same
    evaluation seeds (``derive_seed(seed, "eval")``) as this script; a record with another evaluation seed,
    episode count or profile is refused."""
    from baselines.runs import read_json
    from baselines.seeding import derive_seed

    rows = []
    for seed in seeds:
        path = root / f"seed_{seed}" / "results.json"
        if not path.exists():
            raise SystemExit(f"--against {label}: no run record {path}")
        rec = read_json(path)
        final = rec.get("final", {})
        if final.get("seed") != derive_seed(seed, "eval"):
            raise SystemExit(f"--against {label}: {path} was evaluated with seed {final.get('seed')}, "
                             f"not derive_seed({seed}, 'eval')")
        if final.get("episodes") != episodes or rec.get("profile") != profile:
            raise SystemExit(f"--against {label}: {path} has {final.get('episodes')} episodes at profile "
                             f"{rec.get('profile')!r}; this run: {episodes} at {profile!r}")
        rows.append({"setting": label, "seed": seed, "score": float(rec["score"]),
                     "unit": rec.get("score_unit"), "episodes": episodes, "profile": profile,
                     "seconds_per_action": float(rec.get("seconds_per_action", math.nan)),
                     "run_dir": str(root)})
    return rows


def against_table(td_rows: list[dict[str, Any]], others: list[dict[str, Any]]) -> str:
    """Markdown: TD (1 x RTG) against each other planner on the same seeds: IQM [95% CI] per arm, TD - arm
    (mean difference, bootstrap CI), Welch p, s / action, and the per-action speed-up of TD."""
    from baselines.stats import bootstrap_ci, difference_ci, iqm, welch_p

    td = [r for r in td_rows if r["setting"] == "TD (1 x RTG)"]
    td_scores = np.array([r["score"] for r in td], dtype=np.float64)
    td_spa = float(np.mean([r["seconds_per_action"] for r in td]))
    lines = ["| planner | seeds | per seed | IQM [95% CI] | TD - planner [95% CI] | Welch p | s / action | "
             "TD faster per action |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    low, high = bootstrap_ci(td_scores, iqm)
    lines.append(f"| td (TD, 1 x RTG) | {td_scores.size} | {', '.join(f'{v:.1f}' for v in td_scores)} | "
                 f"{iqm(td_scores):.1f} [{low:.1f}, {high:.1f}] | - | - | {td_spa:.4f} | - |")
    for label in dict.fromkeys(r["setting"] for r in others):
        sel = [r for r in others if r["setting"] == label]
        x = np.array([r["score"] for r in sel], dtype=np.float64)
        spa = float(np.mean([r["seconds_per_action"] for r in sel]))
        low, high = bootstrap_ci(x, iqm)
        dlow, dhigh = difference_ci(td_scores, x)
        lines.append(f"| {label} | {x.size} | {', '.join(f'{v:.1f}' for v in x)} | {iqm(x):.1f} [{low:.1f}, "
                     f"{high:.1f}] | {td_scores.mean() - x.mean():+.1f} [{dlow:+.1f}, {dhigh:+.1f}] | "
                     f"{welch_p(td_scores, x):.3f} | {spa:.4f} | {spa / td_spa:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--envs", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--set", dest="overrides", default="", help="TD config overrides, KEY=VALUE,...")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/td/checks"))
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--against", action="append", default=[], metavar="LABEL=DIR",
                        help="another planner's run records (DIR/seed_N/results.json, same seeds) to set TD "
                             "against in a second table; repeatable")
    args = parser.parse_args(argv)
    try:
        against = [parse_against(spec) for spec in args.against]
    except ValueError as err:
        parser.error(str(err))

    import torch

    from augment.profiles import profile_banner, resolve_profile
    from stores.datasets import load_dataset

    torch.set_num_threads(args.threads)
    profile = resolve_profile(args.profile)
    if profile_banner(profile):
        print(profile_banner(profile), file=sys.stderr)
    dataset = load_dataset(args.dataset, profile=profile, progress=not args.quiet)
    if dataset.env_id is None:
        raise SystemExit(f"dataset '{dataset.name}' names no environment to evaluate in")
    rows: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    others = [row for label, root in against  # checked before any training
              for row in against_rows(label, root, seeds, profile=profile, episodes=args.episodes)]
    key = {"dataset": dataset.name, "dataset_hash": dataset.content_hash, "profile": profile,
           "episodes": args.episodes, "envs": args.envs, "max_steps": args.max_steps,
           "overrides": args.overrides}
    for seed in seeds:
        rows += seed_rows(args.out / f"seed_{seed}.json", key, lambda seed=seed: run_seed(
            dataset, profile, seed, episodes=args.episodes, envs=args.envs, max_steps=args.max_steps,
            overrides=args.overrides, progress=not args.quiet))
    table = summary(rows)
    if others:
        table += "\n\n" + against_table(rows, others)
    print(table)
    (args.out / "td_checks.json").write_text(json.dumps(
        {"dataset": dataset.name, "profile": profile, "seeds": args.seeds, "episodes": args.episodes,
         "max_steps": args.max_steps, "overrides": args.overrides, "rows": rows, "against": others,
         "table": table}, indent=2,
        default=str))
    return rows


if __name__ == "__main__":
    main()
