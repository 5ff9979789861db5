"""Dose-response of DyDiff's trajectory denoiser: how its errors fall with training steps, per design.

For every (design, training budget) point the denoiser is trained (or loaded from the model cache of
``augment.diffusion.trajectory``; budgets of one design continue one another's training, see
``fit_trajectory_diffusion(resumable=True)``), then measured two ways:

1. **data windows**: per-step error ``||s_model,t - s_t||^2`` of one diffusion sample given the real
   ``s_0`` and recorded actions of dataset windows, next to the single-step model and ``s_t = s_0``;
2. **the fixed diagnose** (``augment.diagnose``): DyDiff's rollouts for M = 0..3 against the closed-loop
   MuJoCo rollout of the same learning policy from the same ``s_0`` (one reference for every M), for
   several rollout variants (iteration rule replace / average, dynamics sample / mean, SDEdit starts),
   with the one-step consistency of the transitions DyDiff would store.

Each measured point is appended to ``<out>/points.jsonl``; a restart skips the points already there
(trained models come from the cache, the learning policy from ``<out>/policy.d3``). The points run
cheapest budget first, every design at a budget before the next budget. Single-threaded.

    OMP_NUM_THREADS=1 python benchmarks/bench_denoiser_dose.py --out runs/dose            # measure
    python benchmarks/bench_denoiser_dose.py --out runs/dose --report                     # table + plot
    OMP_NUM_THREADS=1 python benchmarks/bench_denoiser_dose.py --out /tmp/dose --smoke    # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Rollout variants measured at every point: (iteration_rule, dynamics, sdedit_sigma).
VARIANTS: tuple[tuple[str, str, float | None], ...] = (
    ("replace", "sample", None),      # the paper's text (current default)
    ("average", "mean", None),        # the official code
    ("replace", "mean", None),
    ("average", "sample", None),
    ("average", "mean", 0.5),         # SDEdit start from the previous states at sigma ~0.47
    ("average", "mean", 2.0),         # ... at sigma ~1.65
)
DESIGNS: tuple[str, ...] = ("base", "narrow", "relative", "short")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def variant_name(rule: str, dynamics: str, sdedit: float | None) -> str:
    name = f"{rule}/{dynamics}"
    return name if sdedit is None else f"{name}/sdedit{sdedit:g}"


def design_config(name: str, base: Any) -> Any:
    """The denoiser config of a design, from the profile's ``base`` TrajectoryDiffusionConfig.

    base: the profile's (cpu: L = 32, U-Net 32-64-128, 1.1M parameters); narrow: every U-Net width
    halved (~4x fewer parameters); relative: states modelled relative to s_0; short: L halved.
    """
    if name == "base":
        return base
    if name == "narrow":
        return dataclasses.replace(base, widths=tuple(max(4, w // 2) for w in base.widths))
    if name == "relative":
        return dataclasses.replace(base, relative_states=True)
    if name == "short":
        return dataclasses.replace(base, horizon=max(2, base.horizon // 2))
    raise SystemExit(f"unknown design '{name}'; use {', '.join(DESIGNS)}")


def done_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):
                continue  # a torn last line of a killed run: measured again
    return keys


def read_points(path: Path) -> list[dict[str, Any]]:
    points = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            points.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return points


def get_policy(args: argparse.Namespace, dataset: Any, profile: str) -> tuple[Any, str, dict[str, Any]]:
    """The learning policy: --policy, else ``<out>/policy.d3`` from an earlier start, else trained to the
    profile's target score (and saved there)."""
    from augment.diagnose import PolicyTarget, load_policy, train_policy_to_score

    saved = args.out / "policy.d3"
    if args.policy is not None or saved.exists():
        path = Path(args.policy) if args.policy is not None else saved
        algo, learner = load_policy(path)
        record_path = args.out / "policy.json"
        record = json.loads(record_path.read_text()) if args.policy is None and record_path.exists() else {}
        record["path"] = str(path)
        log(f"learning policy loaded from {path} ({learner})")
        return algo, learner, record
    target = PolicyTarget.for_profile(profile)
    log(f"training td3bc until normalized score {target.score:g} (cap {target.max_steps:,} updates)")
    t0 = time.perf_counter()
    algo, record = train_policy_to_score(dataset, "td3bc", target, seed=args.seed, progress=False)
    record["seconds"] = time.perf_counter() - t0
    algo.save(str(saved))
    (args.out / "policy.json").write_text(json.dumps(record, indent=2))
    if not record["reached"]:
        log(f"WARNING: the policy did NOT reach {target.score:g}: {record['score']:.1f} after "
            f"{record['steps']:,} updates (cap); measuring with it anyway")
    else:
        log(f"policy reached {record['score']:.1f} after {record['steps']:,} updates "
            f"({record['seconds']:.0f} s)")
    return algo, "td3bc", record


def measure_point(dataset: Any, world: Any, model: Any, policy: Any, reference: Any, args: argparse.Namespace,
                  ) -> dict[str, Any]:
    """Data-window errors and the fixed diagnose for every variant, for one trained denoiser."""
    from augment.diagnose import DiagnoseConfig, dataset_window_errors, run_diagnosis

    length = int(model.horizon)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng([args.seed, 7])
    windows = dataset_window_errors(dataset, world, model, length, args.windows, rng)
    out["data_windows"] = windows
    out["data_windows_seconds"] = time.perf_counter() - t0
    variants: dict[str, Any] = {}
    for rule, dynamics, sdedit in VARIANTS:
        t1 = time.perf_counter()
        cfg = DiagnoseConfig(starts=args.starts, max_iterations=args.max_iterations, seed=args.seed,
                             iteration_rule=rule, dynamics=dynamics, sdedit_sigma=sdedit)
        result = run_diagnosis(dataset, policy, world, model, cfg, reference=reference, windows=False)
        name = variant_name(rule, dynamics, sdedit)
        variants[name] = {
            "E_L": {str(m): result.cumulative[m][-1] for m in sorted(result.cumulative)},
            "e_t": {str(m): result.errors[m] for m in sorted(result.errors)},
            "one_step_stored": {str(m): v for m, v in result.one_step_stored.items()},
            "stored_fraction": {str(m): v for m, v in result.stored_fraction.items()},
            "open_loop_E_L": {str(m): v["cumulative"][-1] for m, v in result.open_loop.items()},
            "refined_beats_single_step": {str(m): v for m, v in result.refined_beats_single_step().items()},
            "denoiser_calls_per_sample": int(model.network_evaluations_for(sdedit)),
            "seconds": time.perf_counter() - t1,
        }
        e = variants[name]["E_L"]
        log(f"    {name:24s} E_L " + " ".join(f"M{m}={float(v):.4g}" for m, v in e.items())
            + f" ({variants[name]['seconds']:.0f} s)")
    out["variants"] = variants
    out["reference_terminated"] = result.reference_terminated
    return out


def run(args: argparse.Namespace) -> None:
    import torch

    from augment.diagnose import closed_loop_rollout, draw_start_states
    from augment.diffusion.trajectory import TrajectoryDiffusionConfig, fit_trajectory_diffusion
    from augment.world import WorldModelConfig, fit_world_model
    from baselines.learners import rollout_policy
    from stores.datasets import load_dataset

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    profile = "smoke" if args.smoke else args.profile
    data_profile = "smoke" if args.smoke else args.data_profile
    log(f"dose-response: dataset {args.dataset} ({data_profile}), models {profile}, out {args.out}")
    dataset = load_dataset(args.dataset, profile=data_profile, progress=False)
    log(f"dataset {dataset.name}: {dataset.num_transitions:,} transitions, {dataset.num_episodes} episodes")
    t0 = time.perf_counter()
    world = fit_world_model(dataset, WorldModelConfig.for_profile(profile), progress=False, cache=True)
    cached = getattr(world, "from_cache", "?")
    log(f"world model ready ({time.perf_counter() - t0:.0f} s, from cache: {cached})")
    algo, learner, policy_record = get_policy(args, dataset, profile)
    policy = rollout_policy(algo, learner)
    base = TrajectoryDiffusionConfig.for_profile(profile)
    budgets = sorted(set(args.budgets))
    points_path = args.out / "points.jsonl"
    done = done_keys(points_path)
    idx = draw_start_states(dataset, args.starts, args.seed)
    s0 = dataset.transitions.observations[idx]
    references: dict[int, Any] = {}
    for budget in budgets:
        for design in args.designs:
            cfg = dataclasses.replace(design_config(design, base), train_steps=budget)
            key = f"{design}@{budget}:{cfg.config_hash()}"
            if key in done:
                log(f"skip {design} @ {budget:,} (in {points_path.name})")
                continue
            log(f"{design} @ {budget:,} steps: training / loading (L={cfg.horizon}, widths {cfg.widths}, "
                f"relative {cfg.relative_states})")
            t1 = time.perf_counter()
            model = fit_trajectory_diffusion(dataset, cfg, progress=False, cache=True, resumable=True)
            fit_s = time.perf_counter() - t1
            meta = model.meta
            log(f"  denoiser: {meta.get('parameters', 0):,} parameters, {meta.get('train_seconds', 0):.0f} s "
                f"of training in all, loss {meta.get('final_loss', math.nan):.4f}, this call {fit_s:.0f} s "
                f"(cache hit: {model.from_cache}, resumed from step {meta.get('resumed_from_step', 0)})")
            length = int(cfg.horizon)
            if length not in references:
                references[length] = closed_loop_rollout(dataset.env_id, s0, policy, length)
            point = {"key": key, "design": design, "budget": budget, "config_hash": cfg.config_hash(),
                     "horizon": length, "widths": list(cfg.widths), "relative_states": cfg.relative_states,
                     "batch_size": cfg.batch_size, "parameters": meta.get("parameters"),
                     "train_seconds": meta.get("train_seconds"), "final_loss": meta.get("final_loss"),
                     "fit_call_seconds": fit_s, "starts": int(idx.size), "policy": policy_record,
                     "dataset": dataset.name, "profile": profile}
            t2 = time.perf_counter()
            point.update(measure_point(dataset, world, model, policy, references[length], args))
            point["measure_seconds"] = time.perf_counter() - t2
            with points_path.open("a") as fh:
                fh.write(json.dumps(point) + "\n")
            log(f"  point written ({point['measure_seconds']:.0f} s to measure)")
    log("all points done")


# ----------------------------------------------------------------------------------------------------
# --report
# ----------------------------------------------------------------------------------------------------

def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{float(x):.{digits}g}"


def report(out: Path, variants: list[str]) -> str:
    """Markdown tables of every point in ``<out>/points.jsonl`` and ``<out>/dose.png``; returns the text."""
    points = read_points(out / "points.jsonl")
    if not points:
        raise SystemExit(f"no points in {out / 'points.jsonl'} yet")
    points.sort(key=lambda p: (DESIGNS.index(p["design"]) if p["design"] in DESIGNS else 99, p["budget"]))
    policy = points[0].get("policy", {})
    lines = [f"Points: {len(points)} ({points[0]['dataset']}, {points[0]['starts']} start states; learning "
             f"policy: score {_f(policy.get('score'))} after {policy.get('steps', '?')} updates)", ""]
    lines += ["Data windows (recorded actions), mean over t of ||s_model,t - s_t||^2, and e_1:", "",
              "| design | steps | params | train s | loss | diffusion mean (e_1) | single-step mean (e_1) "
              "| s_t = s_0 mean |", "|---|---|---|---|---|---|---|---|"]
    for p in points:
        w = p.get("data_windows") or {}
        d, s, c = w.get("diffusion", [math.nan]), w.get("single_step", [math.nan]), w.get("constant_s0", [0])
        lines.append(f"| {p['design']} (L={p['horizon']}) | {p['budget']:,} | {p.get('parameters') or 0:,} | "
                     f"{_f(p.get('train_seconds'), 4)} | {_f(p.get('final_loss'))} | {_f(np.mean(d))} "
                     f"({_f(d[0])}) | {_f(np.mean(s))} ({_f(s[0])}) | {_f(np.mean(c))} |")
    for name in variants:
        lines += ["", f"Closed-loop E_L per M, variant `{name}` (one-step error of stored transitions in "
                  "brackets; bold: below M = 0):", "",
                  "| design | steps | M=0 | M=1 | M=2 | M=3 | calls / sample |",
                  "|---|---|---|---|---|---|---|"]
        for p in points:
            v = p["variants"].get(name)
            if v is None:
                continue
            e0 = float(v["E_L"]["0"])
            cells = []
            for m in ("0", "1", "2", "3"):
                if m not in v["E_L"]:
                    cells.append("-")
                    continue
                txt = f"{_f(v['E_L'][m])} ({_f(v['one_step_stored'].get(m))})"
                cells.append(f"**{txt}**" if m != "0" and float(v["E_L"][m]) < e0 else txt)
            lines.append(f"| {p['design']} (L={p['horizon']}) | {p['budget']:,} | " + " | ".join(cells)
                         + f" | {v['denoiser_calls_per_sample']} |")
    text = "\n".join(lines)
    (out / "report.md").write_text(text + "\n")
    plot(points, variants, out / "dose.png")
    return text


def plot(points: list[dict[str, Any]], variants: list[str], path: Path) -> None:
    """Panel 1: data-window error vs training steps per design; then per variant E_L(M)/E_L(0) vs steps
    (below 1: refined rollouts beat single-step ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = [d for d in DESIGNS if any(p["design"] == d for p in points)]
    fig, axes = plt.subplots(1, 1 + len(variants), figsize=(5 * (1 + len(variants)), 4.2), squeeze=False)
    ax0 = axes[0, 0]
    colors = {d: f"C{i}" for i, d in enumerate(designs)}
    for d in designs:
        ps = sorted((p for p in points if p["design"] == d), key=lambda p: p["budget"])
        xs = [p["budget"] for p in ps]
        ax0.plot(xs, [np.mean(p["data_windows"]["diffusion"]) for p in ps], "o-", color=colors[d],
                 label=f"{d} diffusion")
        ax0.plot(xs, [np.mean(p["data_windows"]["single_step"]) for p in ps], ":", color=colors[d],
                 label=f"{d} single-step (L={ps[0]['horizon']})")
    ax0.set_title("data windows: mean per-step error")
    for k, name in enumerate(variants, start=1):
        ax = axes[0, k]
        for d in designs:
            ps = sorted((p for p in points if p["design"] == d and name in p["variants"]),
                        key=lambda p: p["budget"])
            if not ps:
                continue
            xs = [p["budget"] for p in ps]
            for m, style in (("1", "o-"), ("2", "s--"), ("3", "^:")):
                ys = [float(p["variants"][name]["E_L"].get(m, math.nan))
                      / float(p["variants"][name]["E_L"]["0"]) for p in ps]
                ax.plot(xs, ys, style, color=colors[d], label=f"{d} M={m}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_title(f"closed loop E_L(M) / E_L(M=0), {name}")
    for ax in axes.ravel():
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("denoiser training steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True,
                    help="Output folder (points.jsonl, policy.d3, report).")
    ap.add_argument("--dataset", default="hopper-medium-replay")
    ap.add_argument("--data-profile", default="cpu", help="Profile of the dataset recipe.")
    ap.add_argument("--profile", default="cpu", help="Profile of the world model and the base denoiser.")
    ap.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1000, 3000, 10000, 30000])
    ap.add_argument("--designs", type=lambda s: s.split(","), default=list(DESIGNS))
    ap.add_argument("--starts", type=int, default=64)
    ap.add_argument("--windows", type=int, default=128, help="Data windows per point.")
    ap.add_argument("--max-iterations", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default=None, help="A saved learner (model.d3) instead of training one.")
    ap.add_argument("--smoke", action="store_true", help="Smoke data and models, for a test in seconds.")
    ap.add_argument("--report", action="store_true",
                    help="Only write report.md and dose.png from points.jsonl.")
    ap.add_argument("--report-variants", type=lambda s: s.split(","),
                    default=["replace/sample", "average/mean", "average/mean/sdedit0.5"])
    args = ap.parse_args(argv)
    if args.report:
        print(report(args.out, args.report_variants))
        return
    if args.smoke:
        args.budgets = [b for b in args.budgets if b <= 100] or [10, 20]
        args.starts = min(args.starts, 4)
        args.windows = min(args.windows, 8)
    run(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
