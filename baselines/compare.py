"""A/B comparisons: several arms x seeds on one dataset and learner, with statistics, tables and plots.

An **arm** is a name plus a runner ``RunRequest -> run directory``: ``base`` (plain training) and
``synthetic:STORE`` (training with a fixed synthetic store mixed in at the real ratio) are built in;
other packages add arms with :func:`register_arm` (e.g. ``dydiff``), or in a module listed in
:data:`ARM_PLUGIN_MODULES` that registers them on import (so ``--jobs`` worker processes find them too).

Statistics over seeds (per arm, :mod:`baselines.stats`, shared with ``augment sweep``): mean +/- std,
the interquartile mean (IQM, the mean of the middle 50%, Agarwal et al. 2021) with a 95%
percentile-bootstrap CI, and for every arm against the first (the reference): the difference of means
with a bootstrap CI (seeds resampled within each arm) and Welch's t-test p-value.
"""

from __future__ import annotations

import csv
import functools
import math
import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baselines.learners import check_learner
from baselines.runs import read_json, read_metrics, write_json
from baselines.stats import (  # noqa: F401  (re-exported: the statistics moved to baselines.stats)
    ArmSummary,
    bootstrap_ci,
    difference_ci,
    iqm,
    summarise,
    welch_p,
)
from stores.errors import UserInputError, did_you_mean

#: Modules imported (when present) before an unknown arm prefix is reported; they call register_arm.
ARM_PLUGIN_MODULES: tuple[str, ...] = ("augment.arms", "augment.generators.arms", "augment.planners.arms")


@dataclass(frozen=True)
class RunRequest:
    """What an arm's runner is asked to produce: one seed's run directory.

    dataset: name or path for ``stores.datasets.load_dataset``; learner: td3bc / cql / iql;
    profile: budget profile; overrides: TrainConfig fields to override (None values ignored).
    """

    dataset: str
    learner: str
    seed: int
    profile: str
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = False


ArmRunner = Callable[[RunRequest], Path]


@dataclass(frozen=True)
class Arm:
    """A comparison arm: ``name`` and a picklable ``runner`` (module-level function or partial)."""

    name: str
    runner: ArmRunner


ArmFactory = Callable[[str | None], Arm]
_ARM_FACTORIES: dict[str, ArmFactory] = {}


def register_arm(prefix: str, factory: ArmFactory) -> None:
    """Make ``prefix`` and ``prefix:ARG`` usable as arm specs; ``factory(ARG or None)`` builds the Arm."""
    _ARM_FACTORIES[prefix] = factory


def registered_arms() -> list[str]:
    _load_plugins()
    return sorted(_ARM_FACTORIES)


def _load_plugins() -> None:
    for module in ARM_PLUGIN_MODULES:
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def resolve_arm(spec: str | Arm) -> Arm:
    """An Arm from ``base``, ``synthetic:PATH`` or any registered ``prefix[:arg]``."""
    if isinstance(spec, Arm):
        return spec
    prefix, _, arg = spec.partition(":")
    if prefix not in _ARM_FACTORIES:
        _load_plugins()
    if prefix not in _ARM_FACTORIES:
        raise UserInputError(did_you_mean(prefix, _ARM_FACTORIES,
                                          hint=f"arms are: {', '.join(sorted(_ARM_FACTORIES))}"))
    return _ARM_FACTORIES[prefix](arg or None)


# ------------------------------------------------------------------------------------------- built-in arms
def train_request(request: RunRequest, *, synthetic_store: str | None = None) -> Path:
    """Runner of ``base`` / ``synthetic:STORE``: load the dataset, train, return the run directory."""
    from baselines.loop import TrainConfig, train
    from stores.datasets import load_dataset

    dataset = load_dataset(request.dataset, profile=request.profile, progress=request.progress)
    config = TrainConfig.for_profile(request.profile, seed=request.seed, **request.overrides)
    synthetic = None
    extra: dict[str, Any] = {"arm_dataset": request.dataset}
    if synthetic_store is not None:
        synthetic = load_synthetic_store(synthetic_store)
        extra["synthetic_store"] = str(synthetic_store)
    train(dataset, request.learner, config, request.run_dir, synthetic=synthetic,
          progress=request.progress, extra_config=extra)
    return request.run_dir


def load_synthetic_store(path: str | Path) -> dict[str, np.ndarray]:
    """Flat transition arrays of a ReplayStore (UserInputError when it is missing or empty)."""
    from stores.replay import ReplayStore

    if not Path(path).exists():
        raise UserInputError(f"synthetic store {path} does not exist; make one with `augment dydiff` or "
                             "`augment store` commands")
    with ReplayStore.open(path) as store:
        if len(store) == 0:
            raise UserInputError(f"synthetic store {path} holds no transitions")
        return store.load()


register_arm("base", lambda arg: Arm("base", train_request))
register_arm("synthetic", lambda arg: _synthetic_arm(arg))


def _synthetic_arm(path: str | None) -> Arm:
    if not path:
        raise UserInputError("arm 'synthetic' needs a store: synthetic:PATH/TO/STORE.zarr")
    return Arm(f"synthetic:{Path(path).name}", functools.partial(train_request, synthetic_store=path))


# ------------------------------------------------------------------------------------------- running
@dataclass
class CompareResult:
    """Outputs of :func:`compare`: summaries per arm, the run dirs, and the files written."""

    metric: str
    summaries: list[ArmSummary]
    runs: dict[str, dict[int, Path]]
    files: dict[str, Path]


def safe_name(name: str) -> str:
    """Arm name usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "arm"


def _run_spec(spec: str, request: RunRequest, threads: int) -> Path:
    """Worker entry for ``--jobs``: quiet logs, ``threads`` torch threads, resolve the arm here, run it."""
    import logging

    import structlog
    import torch

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    torch.set_num_threads(threads)
    return resolve_arm(spec).runner(request)


def compare(arms: Sequence[str | Arm], *, dataset: str, learner: str, seeds: Sequence[int], profile: str,
            out_dir: Path, jobs: int = 1, overrides: dict[str, Any] | None = None,
            existing: dict[str, list[Path]] | None = None, metric: str = "last5",
            progress: bool = True) -> CompareResult:
    """Run (or collect) every arm x seed, then write the statistics, tables and plots to ``out_dir``.

    Run directories are ``out_dir/runs/<arm>/seed_<s>``; one that already holds results.json is reused,
    a partial one resumes. existing: extra finished run dirs per arm name (collected, not run).
    metric: ``last5`` (mean of the last five evaluations) or ``final`` (the last evaluation).
    jobs: worker processes (spawned) running seeds in parallel; string arms only.
    """
    check_learner(learner)
    if metric not in ("last5", "final"):
        raise UserInputError(f"metric must be 'last5' or 'final', got '{metric}'")
    out_dir = Path(out_dir)
    resolved = [resolve_arm(a) for a in arms]
    names = [a.name for a in resolved]
    if len(set(names)) != len(names):
        raise UserInputError(f"arm names repeat: {names}")
    runs: dict[str, dict[int, Path]] = {a.name: {} for a in resolved}
    todo: list[tuple[str | Arm, Arm, RunRequest]] = []
    for spec, arm in zip(arms, resolved, strict=True):
        for seed in seeds:
            run_dir = out_dir / "runs" / safe_name(arm.name) / f"seed_{seed}"
            runs[arm.name][int(seed)] = run_dir
            if not (run_dir / "results.json").exists():
                todo.append((spec, arm, RunRequest(dataset=dataset, learner=learner, seed=int(seed),
                                                   profile=profile, run_dir=run_dir,
                                                   overrides=dict(overrides or {}),
                                                   progress=progress and jobs <= 1)))
    for name, dirs in (existing or {}).items():
        runs.setdefault(name, {})
        for d in dirs:
            res = read_json(Path(d) / "results.json") if (Path(d) / "results.json").exists() else None
            if res is None:
                raise UserInputError(f"{d} holds no results.json (not a finished run)")
            runs[name][int(res["seed"])] = Path(d)
    if jobs > 1 and todo:
        if not all(isinstance(spec, str) for spec, _, _ in todo):
            raise UserInputError("--jobs > 1 needs arms given by name (strings), not Arm objects")
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            futures = [pool.submit(_run_spec, spec, req, threads) for spec, _, req in todo]
            for f in futures:
                f.result()
    else:
        for _, arm, req in todo:
            arm.runner(req)
    return report(runs, out_dir, metric=metric, title=f"{learner} on {Path(dataset).name} ({profile})")


def run_score(res: dict[str, Any], metric: str) -> tuple[float, str]:
    """(score, unit) of one results.json: normalized when known, else the raw return."""
    norm = res.get(f"{metric}_normalized")
    if norm is not None and math.isfinite(norm):
        return float(norm), "normalized"
    return float(res[f"{metric}_return"]), "return"


def report(runs: dict[str, dict[int, Path]], out_dir: Path, *, metric: str = "last5",
           title: str = "", missing: Sequence[str] = ()) -> CompareResult:
    """Statistics, markdown/CSV/JSON tables and the two PNG plots for finished runs ``{arm: {seed: dir}}``.

    missing: one line per cell that has no finished run and why (``augment sweep`` fills it), listed
    under the table and in compare.json so fewer seeds are never averaged silently.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_run: list[dict[str, Any]] = []
    scores: dict[str, np.ndarray] = {}
    seeds_of: dict[str, list[int]] = {}
    curves: dict[str, list[list[dict[str, float]]]] = {}
    unit = "normalized"
    for arm, dirs in runs.items():
        vals = []
        seeds_of[arm] = sorted(dirs)
        curves[arm] = []
        for seed in seeds_of[arm]:
            res = read_json(dirs[seed] / "results.json")
            value, unit = run_score(res, metric)
            vals.append(value)
            per_run.append({"arm": arm, "seed": seed, "score": value, "unit": unit,
                            "final_normalized": res.get("final_normalized"),
                            "last5_normalized": res.get("last5_normalized"),
                            "final_return": res.get("final_return"), "steps": res.get("steps"),
                            "wall_time_s": (res.get("wall_time") or {}).get("total"),
                            "run_dir": str(dirs[seed])})
            curves[arm].append(read_metrics(dirs[seed] / "metrics.csv"))
        scores[arm] = np.asarray(vals, np.float64)
    arms = list(runs)
    if not arms or any(scores[a].size == 0 for a in arms):
        raise UserInputError("every arm needs at least one finished run to compare")
    ref = arms[0]
    summaries = [summarise(a, seeds_of[a], scores[a], reference=None if a == ref else scores[ref])
                 for a in arms]
    files = {"markdown": out_dir / "compare.md", "csv": out_dir / "compare.csv",
             "json": out_dir / "compare.json", "curves": out_dir / "curves.png",
             "finals": out_dir / "finals.png"}
    files["markdown"].write_text(markdown_table(summaries, metric=metric, unit=unit, title=title,
                                                missing=missing))
    with files["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(per_run[0]))
        w.writeheader()
        w.writerows(per_run)
    write_json(files["json"], {
        "title": title, "metric": metric, "unit": unit, "reference": ref, "runs": per_run,
        "missing": list(missing),
        "arms": [{"arm": s.arm, "seeds": s.seeds, "scores": s.scores, "mean": s.mean, "std": s.std,
                  "iqm": s.iqm, "iqm_ci95": s.iqm_ci, "diff_vs_reference": s.diff, "diff_ci95": s.diff_ci,
                  "welch_p": s.p_value} for s in summaries]})
    plot_curves(curves, files["curves"], unit=unit, title=title)
    plot_finals(summaries, files["finals"], unit=unit, metric=metric, title=title)
    return CompareResult(metric=metric, summaries=summaries, runs=runs, files=files)


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if not math.isfinite(x) else f"{x:.{digits}f}"


def markdown_table(summaries: list[ArmSummary], *, metric: str, unit: str, title: str = "",
                   missing: Sequence[str] = ()) -> str:
    """The comparison as a markdown table (differences against the first arm), then the missing cells."""
    ref = summaries[0].arm
    lines = [f"# {title}".rstrip() if title else "# Comparison", "",
             f"Score: {metric} evaluation(s), {unit} (per-seed scores; CI = 95% percentile bootstrap).", "",
             f"| arm | seeds | mean +/- std | IQM [95% CI] | diff vs {ref} [95% CI] | Welch p |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in summaries:
        diff = "-" if s.arm == ref else f"{_fmt(s.diff)} [{_fmt(s.diff_ci[0])}, {_fmt(s.diff_ci[1])}]"
        p = "-" if not math.isfinite(s.p_value) else f"{s.p_value:.3f}"
        lines.append(f"| {s.arm} | {len(s.seeds)} | {_fmt(s.mean)} +/- {_fmt(s.std)} | {_fmt(s.iqm)} "
                     f"[{_fmt(s.iqm_ci[0])}, {_fmt(s.iqm_ci[1])}] | {diff} | {p} |")
    if missing:
        lines += ["", f"Missing cells ({len(missing)}; not in the statistics above):", ""]
        lines += [f"- {m}" for m in missing]
    return "\n".join(lines) + "\n"


def _curve_matrix(rows_per_seed: list[list[dict[str, float]]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps common to every seed and a (S, steps) matrix of ``key`` at them."""
    steps = None
    for rows in rows_per_seed:
        s = {int(r["step"]) for r in rows}
        steps = s if steps is None else steps & s
    grid = np.array(sorted(steps or []), dtype=np.int64)
    mat = np.array([[next(r[key] for r in rows if int(r["step"]) == g) for g in grid]
                    for rows in rows_per_seed], dtype=np.float64)
    return grid, mat.reshape(len(rows_per_seed), grid.size)


def plot_curves(curves: dict[str, list[list[dict[str, float]]]], path: Path, *, unit: str,
                title: str = "") -> None:
    """Learning curves: mean over seeds with a band of +/- one std, per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "eval_normalized" if unit == "normalized" else "eval_return_mean"
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for arm, rows in curves.items():
        grid, mat = _curve_matrix(rows, key)
        if grid.size == 0:
            continue
        mean = mat.mean(axis=0)
        std = mat.std(axis=0)
        ax.plot(grid, mean, label=f"{arm} (n={mat.shape[0]})")
        ax.fill_between(grid, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("learner updates")
    ax.set_ylabel("normalized score" if unit == "normalized" else "return")
    ax.set_title(title or "learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_finals(summaries: list[ArmSummary], path: Path, *, unit: str, metric: str, title: str = "") -> None:
    """Per-seed scores per arm (dots), with the mean (bar) and the IQM 95% CI (error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(summaries), 4.0))
    for i, s in enumerate(summaries):
        ax.bar(i, s.mean, width=0.6, alpha=0.35)
        jitter = np.linspace(-0.15, 0.15, s.scores.size) if s.scores.size > 1 else np.zeros(1)
        ax.scatter(i + jitter, s.scores, zorder=3, color="black", s=18)
        lo, hi = s.iqm_ci
        if math.isfinite(lo) and math.isfinite(hi):
            ax.errorbar(i + 0.3, s.iqm, yerr=[[s.iqm - lo], [hi - s.iqm]], fmt="D", color="C3",
                        capsize=4, markersize=4, label="IQM, 95% CI" if i == 0 else None)
    ax.set_xticks(range(len(summaries)), [s.arm for s in summaries], rotation=15)
    ax.set_ylabel(f"{metric} {'normalized score' if unit == 'normalized' else 'return'}")
    ax.set_title(title or "final scores per seed")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
