"""What ``augment diagnose dydiff`` reports: :class:`DiagnosisResult` (per-M errors against MuJoCo), its
summary table, JSON and four-panel plot. Re-exported by :mod:`augment.diagnose`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Horizons the summary table shows (those within L).
HORIZONS: tuple[int, ...] = (1, 5, 10, 25, 50, 100)


@dataclass
class DiagnosisResult:
    """Per-M state errors against the simulator (:mod:`augment.diagnose` for the three views).

    errors[M] / cumulative[M]: (L,) closed-loop e_t and E_t (t = 1..L). errors_alive[M]: the same mean
    over the start states whose reference has not terminated before step t (NaN when none).
    reference_terminated: fraction of closed-loop references that hit the env's termination rule.
    one_step[M]: (L,) mean over starts of ||T_sim(s_t, a_t) - s_{t+1}||^2 for t = 0..L-1 (the stored
    transitions of iteration M); one_step_stored[M]: their mean over the transitions kept by the cut at
    the first (model-state) terminal; stored_fraction[M]: the share of transitions kept.
    open_loop[M]: {"errors", "cumulative": (L,), "terminated": float} of the open-loop replay.
    dataset_windows: per predictor, (L,) errors against the dataset's own windows, or None.
    """

    env_id: str
    dataset: str
    rollout_length: int
    starts: int
    start_index: list[int]
    errors: dict[int, list[float]] = field(default_factory=dict)
    cumulative: dict[int, list[float]] = field(default_factory=dict)
    errors_alive: dict[int, list[float]] = field(default_factory=dict)
    reference_terminated: float = 0.0
    one_step: dict[int, list[float]] = field(default_factory=dict)
    one_step_stored: dict[int, float] = field(default_factory=dict)
    stored_fraction: dict[int, float] = field(default_factory=dict)
    open_loop: dict[int, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    dataset_windows: dict[str, list[float]] | None = None

    def summary_rows(self, horizons: tuple[int, ...] = HORIZONS) -> list[dict[str, Any]]:
        """Rows (one per M): closed-loop e_t / E_t at the horizons within L, E@L, the one-step error of
        the stored transitions and the open-loop E@L."""
        rows = []
        for m in sorted(self.errors):
            row: dict[str, Any] = {"M": m}
            for t in horizons:
                if t <= self.rollout_length:
                    row[f"e@{t}"] = self.errors[m][t - 1]
            row["E@L"] = self.cumulative[m][-1]
            row["1-step"] = self.one_step_stored.get(m, math.nan)
            row["open-loop E@L"] = self.open_loop.get(m, {}).get("cumulative", [math.nan])[-1]
            rows.append(row)
        return rows

    def refined_beats_single_step(self) -> dict[int, bool]:
        """For M >= 1: is the closed-loop E_L below M = 0's (the issue's acceptance test)?"""
        base = self.cumulative[0][-1]
        return {m: bool(self.cumulative[m][-1] < base) for m in sorted(self.cumulative) if m >= 1}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("errors", "cumulative", "errors_alive", "one_step", "one_step_stored", "stored_fraction",
                    "open_loop"):
            data[key] = {str(k): v for k, v in data[key].items()}
        data["summary"] = self.summary_rows()
        data["refined_beats_single_step"] = {str(k): v for k, v in self.refined_beats_single_step().items()}
        return data


def plot_diagnosis(result: DiagnosisResult, path: Path) -> Path:
    """Four panels (log scale), one line per M: closed-loop e_t, closed-loop E_t, one-step consistency per
    step, and the open-loop replay's E_t with the data-window reference. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    steps = np.arange(1, result.rollout_length + 1)
    for m in sorted(result.errors):
        label = "M=0 (single-step model)" if m == 0 else f"M={m}"
        axes[0, 0].plot(steps, result.errors[m], label=label)
        axes[0, 1].plot(steps, result.cumulative[m], label=label)
        axes[1, 0].plot(np.arange(result.rollout_length), result.one_step[m], label=label)
        if m in result.open_loop:
            axes[1, 1].plot(steps, result.open_loop[m]["cumulative"], label=f"{label}, open-loop replay")
    if result.dataset_windows is not None:
        for name, errs in result.dataset_windows.items():
            if name != "constant_s0":
                axes[1, 1].plot(steps, np.cumsum(errs), linestyle="--", alpha=0.7,
                                label=f"{name.replace('_', '-')} on data windows (recorded actions)")
    axes[0, 0].set_title("closed loop: e_t = ||s_t - s_t^ref||^2 (one reference: pi in MuJoCo)")
    axes[0, 1].set_title("closed loop: running sum E_t")
    axes[1, 0].set_title("one-step consistency ||T_sim(s_t, a_t) - s_{t+1}||^2")
    axes[1, 1].set_title("secondary: open-loop replay E_t (own reference per M)")
    for ax in axes.ravel():
        ax.set_xlabel("rollout step t")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    variant = result.meta.get("variant", "")
    fig.suptitle(f"{result.dataset} ({result.env_id}): {result.starts} real start states, {variant}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_diagnosis(result: DiagnosisResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``diagnose.json`` and ``diagnose.png`` under ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "diagnose.json"
    json_path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=True))
    return json_path, plot_diagnosis(result, out_dir / "diagnose.png")
