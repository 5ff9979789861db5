"""The tables at the end of a sweep: one ``augment compare`` report per task, and an all-tasks summary.

Per task (dataset x learner): :func:`baselines.compare.report` on the finished runs, with every missing
cell listed under the table (failed, running, pending: and why), so fewer seeds are never averaged
silently.

All tasks (per learner, rliable style, :mod:`baselines.stats`): per arm the IQM over all runs of all
tasks with a stratified-bootstrap 95% CI, and the probability of improvement P(arm > reference) over the
tasks where both arms have runs, with its CI. The aggregate IQM pools scores across tasks, so it is given
only when every task's score is normalized (a task without D4RL references scores raw returns; P(X > Y)
is scale-free and is given either way). Written to ``ROOT/summary.{md,json,png}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baselines.compare import report, run_score
from baselines.runs import read_json, write_json
from baselines.stats import (
    aggregate_iqm,
    aggregate_iqm_ci,
    probability_of_improvement,
    probability_of_improvement_ci,
)
from baselines.sweep_grid import Cell
from baselines.sweep_state import CellStatus


@dataclass
class ArmOverTasks:
    """One arm of one learner over tasks: scores per task label (per-seed, seed order)."""

    learner: str
    arm: str
    scores: dict[str, np.ndarray]
    iqm: float = math.nan
    iqm_ci: tuple[float, float] = (math.nan, math.nan)
    poi: float = math.nan
    poi_ci: tuple[float, float] = (math.nan, math.nan)
    poi_tasks: int = 0

    @property
    def runs(self) -> int:
        return int(sum(v.size for v in self.scores.values()))


@dataclass
class SweepReport:
    """Files written and the summary rows; missing: one line per cell without a finished run."""

    files: dict[str, Path]
    task_files: dict[str, Path]
    rows: list[ArmOverTasks] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    normalized: bool = True


def _missing_line(status: CellStatus) -> str:
    return f"{status.cell.describe()}: {status.status} ({status.detail})" if status.detail else \
        f"{status.cell.describe()}: {status.status}"


def write_reports(root: Path, cells: Sequence[Cell], statuses: dict[str, CellStatus], *, metric: str,
                  profile: str, arm_order: Sequence[str]) -> SweepReport:
    """Per-task compare reports and the all-tasks summary for the cells' finished runs."""
    root = Path(root)
    tasks: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        tasks.setdefault(cell.task, []).append(cell)
    task_files: dict[str, Path] = {}
    missing: list[str] = []
    scores: dict[tuple[str, str], dict[str, dict[int, float]]] = {}  # (learner, arm) -> task -> seed -> s
    units: dict[str, str] = {}
    for (label, learner), task_cells in tasks.items():
        runs: dict[str, dict[int, Path]] = {a: {} for a in arm_order}
        task_missing = []
        for cell in sorted(task_cells, key=lambda c: (arm_order.index(c.arm_name), c.seed)):
            st = statuses[cell.cell_id]
            if st.status == "done":
                run_dir = cell.run_dir(root)
                runs[cell.arm_name][cell.seed] = run_dir
                value, unit = run_score(read_json(run_dir / "results.json"), metric)
                units[label] = unit if units.get(label, unit) == unit else "mixed"
                scores.setdefault((learner, cell.arm_name), {}).setdefault(label, {})[cell.seed] = value
            else:
                task_missing.append(_missing_line(st))
        missing += task_missing
        task_dir = root / label / learner
        finished = {a: r for a, r in runs.items() if r}
        if finished:
            res = report(finished, task_dir, metric=metric, title=f"{learner} on {label} ({profile})",
                         missing=task_missing)
            task_files[f"{label}/{learner}"] = res.files["markdown"]
        else:
            task_dir.mkdir(parents=True, exist_ok=True)
            md = task_dir / "compare.md"
            md.write_text(f"# {learner} on {label} ({profile})\n\nNo finished run yet.\n\n"
                          + "".join(f"- {m}\n" for m in task_missing))
            task_files[f"{label}/{learner}"] = md
    learners = list(dict.fromkeys(c.learner for c in cells))
    labels = list(dict.fromkeys(c.label for c in cells))
    normalized = all(units.get(t, "normalized") == "normalized" for t in labels)
    rows = _summary_rows(scores, learners, list(arm_order), labels, normalized)
    files = _write_summary(root, rows, labels=labels, learners=learners, reference=arm_order[0],
                           metric=metric, profile=profile, units=units, normalized=normalized,
                           missing=missing)
    return SweepReport(files=files, task_files=task_files, rows=rows, missing=missing, normalized=normalized)


def _summary_rows(scores: dict[tuple[str, str], dict[str, dict[int, float]]], learners: list[str],
                  arms: list[str], labels: list[str], normalized: bool) -> list[ArmOverTasks]:
    rows = []
    for learner in learners:
        ref = scores.get((learner, arms[0]), {})
        for arm in arms:
            per_task = scores.get((learner, arm), {})
            row = ArmOverTasks(learner=learner, arm=arm, scores={
                t: np.array([per_task[t][s] for s in sorted(per_task[t])]) for t in labels if t in per_task})
            if row.scores and normalized:
                row.iqm = aggregate_iqm(list(row.scores.values()))
                row.iqm_ci = aggregate_iqm_ci(list(row.scores.values()))
            shared = [t for t in labels if t in row.scores and t in ref]
            if arm != arms[0] and shared:
                x = [row.scores[t] for t in shared]
                y = [np.array([ref[t][s] for s in sorted(ref[t])]) for t in shared]
                row.poi = probability_of_improvement(x, y)
                row.poi_ci = probability_of_improvement_ci(x, y)
                row.poi_tasks = len(shared)
            rows.append(row)
    return rows


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(value: float, ci: tuple[float, float], digits: int = 1) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{_fmt(value, digits)} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def summary_markdown(rows: list[ArmOverTasks], *, labels: list[str], learners: list[str], reference: str,
                     metric: str, profile: str, units: dict[str, str], normalized: bool,
                     missing: Sequence[str]) -> str:
    """The all-tasks summary as markdown: one table per learner, scores per task, missing cells."""
    lines = [f"# Sweep summary ({profile}, {metric})", "",
             f"Tasks: {', '.join(labels)}. Reference arm: {reference}. IQM over tasks = IQM of every run of "
             "every task pooled; P(arm > reference) = mean over tasks of P(X_m > Y_m); CIs: 95% stratified "
             "percentile bootstrap (runs resampled within each task).", ""]
    if not normalized:
        raw = [t for t in labels if units.get(t) != "normalized"]
        lines += [f"IQM over tasks not given: {', '.join(raw)} score raw returns (no D4RL references), "
                  "which cannot be pooled with other tasks.", ""]
    for learner in learners:
        lines += [f"## {learner}", "", f"| arm | tasks | runs | IQM over tasks [95% CI] | "
                  f"P(arm > {reference}) [95% CI] | tasks compared |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in (r for r in rows if r.learner == learner):
            poi = "-" if r.arm == reference else _ci(r.poi, r.poi_ci, 2)
            lines.append(f"| {r.arm} | {len(r.scores)} | {r.runs} | {_ci(r.iqm, r.iqm_ci)} | {poi} | "
                         f"{r.poi_tasks if r.arm != reference else '-'} |")
        lines += ["", "Mean score per task (runs):", "",
                  "| task | unit | " + " | ".join(r.arm for r in rows if r.learner == learner) + " |",
                  "| --- | --- |" + " --- |" * sum(1 for r in rows if r.learner == learner)]
        for t in labels:
            cells = [f"{_fmt(float(r.scores[t].mean()))} ({r.scores[t].size})" if t in r.scores else "- (0)"
                     for r in rows if r.learner == learner]
            lines.append(f"| {t} | {units.get(t, '-')} | " + " | ".join(cells) + " |")
        lines.append("")
    if missing:
        lines += [f"## Missing cells ({len(missing)}, not in any statistic)", ""]
        lines += [f"- {m}" for m in missing]
        lines.append("")
    return "\n".join(lines)


def _write_summary(root: Path, rows: list[ArmOverTasks], *, labels: list[str], learners: list[str],
                   reference: str, metric: str, profile: str, units: dict[str, str], normalized: bool,
                   missing: list[str]) -> dict[str, Path]:
    files = {"markdown": root / "summary.md", "json": root / "summary.json", "plot": root / "summary.png"}
    files["markdown"].write_text(summary_markdown(rows, labels=labels, learners=learners, reference=reference,
                                                  metric=metric, profile=profile, units=units,
                                                  normalized=normalized, missing=missing))
    payload: dict[str, Any] = {
        "profile": profile, "metric": metric, "reference": reference, "tasks": labels, "units": units,
        "normalized": normalized, "missing": missing,
        "arms": [{"learner": r.learner, "arm": r.arm, "runs": r.runs,
                  "scores": {t: v for t, v in r.scores.items()}, "iqm_over_tasks": r.iqm,
                  "iqm_ci95": r.iqm_ci, "poi_vs_reference": r.poi, "poi_ci95": r.poi_ci,
                  "poi_tasks": r.poi_tasks} for r in rows]}
    write_json(files["json"], payload)
    plot_summary(rows, files["plot"], learners=learners, reference=reference, normalized=normalized)
    return files


def plot_summary(rows: list[ArmOverTasks], path: Path, *, learners: list[str], reference: str,
                 normalized: bool) -> None:
    """Interval plots per learner: IQM over tasks with its CI, and P(arm > reference) with its CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms_per = max(1, max((sum(1 for r in rows if r.learner == lr) for lr in learners), default=1))
    fig, axes = plt.subplots(len(learners), 2, figsize=(9.0, 0.6 + (0.45 * arms_per + 0.8) * len(learners)),
                             squeeze=False)
    for i, learner in enumerate(learners):
        mine = [r for r in rows if r.learner == learner]
        ax = axes[i][0]
        for k, r in enumerate(mine):
            if math.isfinite(r.iqm):
                lo, hi = r.iqm_ci
                ax.errorbar(r.iqm, k, xerr=[[r.iqm - lo], [hi - r.iqm]], fmt="o", capsize=4, color=f"C{k}")
        ax.set_yticks(range(len(mine)), [r.arm for r in mine])
        ax.invert_yaxis()
        ax.set_xlabel("IQM over tasks" + ("" if normalized else " (not given: raw returns)"))
        ax.set_title(learner)
        ax.grid(axis="x", alpha=0.3)
        ax = axes[i][1]
        others = [r for r in mine if r.arm != reference]
        for k, r in enumerate(others):
            if math.isfinite(r.poi):
                lo, hi = r.poi_ci
                ax.errorbar(r.poi, k, xerr=[[r.poi - lo], [hi - r.poi]], fmt="s", capsize=4,
                            color=f"C{k + 1}")
        ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_xlim(0.0, 1.0)
        ax.set_yticks(range(len(others)), [r.arm for r in others])
        ax.invert_yaxis()
        ax.set_xlabel(f"P(arm > {reference})")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
