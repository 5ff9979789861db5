"""What runs one cell of a sweep, in whichever process the engine chose (this one, a pool worker, a Ray
worker on another machine): :func:`run_cell`.

It takes the cell's lock, records the attempt, resolves the arm by name (so arms registered by plugin
modules work in every worker), runs the arm's runner (which resumes a partial run directory from its
last checkpoint) and records the outcome. Every exception of the run is caught and returned as a failed
:class:`CellOutcome` with its traceback, so engines only ever see errors of their own (a worker that
died).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.compare import RunRequest
from baselines.sweep_grid import Cell
from baselines.sweep_state import (
    begin_attempt,
    end_attempt,
    held_lock,
    host_name,
    lock_path,
    progress_path,
    read_state,
)

#: Seconds a worker waits for a cell's lock (``augment sweep status`` probes it for an instant).
LOCK_WAIT_S = 5.0
#: Environment variables the driver hands to every run (the caches and datasets must be the same).
SHARED_ENV: tuple[str, ...] = ("AUGMENT_HOME", "MINARI_DATASETS_PATH")


@dataclass(frozen=True)
class CellPayload:
    """Everything a worker needs for one attempt of one cell (picklable, small).

    root: run root; threads: torch threads of the run; env: variables set before it runs
    (:data:`SHARED_ENV`); invocation: the driver's id; attempt: 1, 2, ... within the invocation.
    """

    root: str
    cell: Cell
    profile: str
    overrides: dict[str, Any]
    threads: int
    env: dict[str, str]
    invocation: str
    engine: str
    attempt: int = 1

    def request(self) -> RunRequest:
        return RunRequest(dataset=self.cell.dataset, learner=self.cell.learner, seed=self.cell.seed,
                          profile=self.profile, run_dir=self.cell.run_dir(Path(self.root)),
                          overrides=dict(self.overrides), progress=False)


@dataclass
class CellOutcome:
    """How one attempt ended: ``status`` done / failed / busy (another process holds the cell).

    retryable: False for a :class:`~stores.errors.UserInputError` (the same input fails again);
    score / unit: the run's score under the sweep's metric (``last5``) when done.
    """

    cell_id: str
    status: str
    seconds: float = 0.0
    host: str = ""
    error: str | None = None
    error_type: str | None = None
    retryable: bool = True
    resumed_from_step: int = 0
    scores: dict[str, float | None] = field(default_factory=dict)


def _quiet_logs() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _scores(run_dir: Path) -> dict[str, float | None]:
    from baselines.runs import read_json

    res = read_json(run_dir / "results.json")
    keys = ("last5_normalized", "final_normalized", "last5_return", "final_return")
    return {k: (float(res[k]) if res.get(k) is not None and math.isfinite(res[k]) else None) for k in keys}


def run_cell(payload: CellPayload) -> CellOutcome:
    """Run one attempt of ``payload.cell`` here; never raises for a failure of the run itself.

    While it runs, the run's progress bars (shown or not) report to the cell's progress file
    (:func:`~baselines.sweep_state.progress_path`, via :data:`augment.progress.PROGRESS_FILE_ENV`), which
    ``augment sweep status`` reads; the file is removed when the attempt ends.
    """
    import torch

    from baselines.compare import resolve_arm
    from stores.errors import UserInputError

    root, cell = Path(payload.root), payload.cell
    os.environ.update(payload.env)
    _quiet_logs()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(payload.threads)
    started = time.perf_counter()
    try:
        with held_lock(lock_path(root, cell.cell_id), wait_s=LOCK_WAIT_S) as got:
            if not got:
                return CellOutcome(cell.cell_id, "busy", host=host_name(),
                                   error="another process holds this cell's lock", retryable=False)
            run_dir = cell.run_dir(root)
            if (run_dir / "results.json").exists():  # finished by another driver meanwhile
                return CellOutcome(cell.cell_id, "done", host=host_name(), scores=_scores(run_dir))
            state = begin_attempt(root, cell, invocation=payload.invocation, engine=payload.engine,
                                  attempt=payload.attempt)
            resumed = int(state["attempts"][-1]["resumed_from_step"])
            try:
                with reporting_progress(progress_path(root, cell.cell_id)):
                    resolve_arm(cell.arm).runner(payload.request())
                if not (run_dir / "results.json").exists():
                    raise RuntimeError(f"arm '{cell.arm}' returned without writing {run_dir}/results.json")
            except Exception as exc:  # every failure of a run is recorded and returned, not raised
                error = f"{type(exc).__name__}: {exc}"
                end_attempt(root, cell, state, outcome="failed", error=str(exc),
                            error_type=type(exc).__name__, traceback=traceback.format_exc())
                return CellOutcome(cell.cell_id, "failed", seconds=time.perf_counter() - started,
                                   host=host_name(), error=error, error_type=type(exc).__name__,
                                   retryable=not isinstance(exc, UserInputError), resumed_from_step=resumed)
            end_attempt(root, cell, state, outcome="done")
            return CellOutcome(cell.cell_id, "done", seconds=time.perf_counter() - started, host=host_name(),
                               resumed_from_step=resumed, scores=_scores(run_dir))
    finally:
        torch.set_num_threads(threads_before)


@contextlib.contextmanager
def reporting_progress(path: Path) -> Iterator[None]:
    """For the block, progress bars report to ``path`` (:data:`augment.progress.PROGRESS_FILE_ENV`); a
    killed attempt's old report is removed first, and the file when the block ends."""
    from augment.progress import PROGRESS_FILE_ENV
    from stores.paths import environ_set

    path.unlink(missing_ok=True)
    try:
        with environ_set(PROGRESS_FILE_ENV, str(path)):
            yield
    finally:
        path.unlink(missing_ok=True)


def last_attempt(root: Path, cell: Cell) -> dict[str, Any] | None:
    """The newest attempt record of ``cell`` (None when it never started)."""
    state = read_state(root, cell.cell_id)
    return state["attempts"][-1] if state and state.get("attempts") else None
