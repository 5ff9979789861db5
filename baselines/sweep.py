"""``augment sweep``: datasets x learners x arms x seeds on a local process pool or a Ray cluster,
resumable, with one set of tables at the end.

:func:`run_sweep` is the driver. It

1. validates the grid and resolves every arm (any registered arm: base, synthetic:STORE, dydiff,
   generators, planners) and loads every dataset once here, building a missing recipe before any run
   starts, and refuses a dataset whose content hash differs from the one the root's finished runs of
   that task used - all before ``ROOT`` or ``ROOT/sweep.lock`` is created, so bad input leaves nothing
   behind;
2. skips finished cells (results.json), resumes interrupted ones from their checkpoints (the arms' runners
   continue a partial run directory), and leaves cells that failed in an earlier invocation alone unless
   ``retry_failed``;
3. submits the rest to the engine (:mod:`baselines.sweep_engines`). Arms that train shared models (all but
   base and synthetic) run their first cell per dataset alone first ("warm-up"), so the world and
   diffusion models are trained once and their other seeds load the cache; the cache's file lock
   (:mod:`augment.cache`) makes a second concurrent training impossible anyway;
4. retries a failed cell up to ``spec.retries`` more times (not a UserInputError: the same input fails
   again), prints one line per finished run under an overall bar with an ETA;
5. writes the per-task compare tables and the all-tasks summary (:mod:`baselines.sweep_report`),
   listing every missing cell and why.

The state lives in the run root (:mod:`baselines.sweep_state`), so a killed sweep resumes where it
stopped and ``augment sweep status ROOT`` reads it from anywhere.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from baselines.sweep_engines import Engine, Finished, make_engine
from baselines.sweep_grid import (
    Cell,
    EngineOptions,
    RunResources,
    SweepSpec,
    build,
    dataset_label,
    expand,
    warmup_key,
    warmup_plan,
)
from baselines.sweep_report import SweepReport, write_reports
from baselines.sweep_state import (
    CellStatus,
    SweepStatus,
    cell_status,
    check_budget,
    check_dataset_hashes,
    driver_lock,
    lock_is_held,
    manifest_cells,
    manifest_path,
    read_manifest,
    record_failure,
    record_lost_attempt,
    sweep_status,
    write_manifest,
)
from baselines.sweep_worker import SHARED_ENV, CellOutcome, CellPayload
from stores.errors import UserInputError

__all__ = ["EngineOptions", "RunResources", "SweepResult", "SweepSpec", "SweepStatus", "add_to_grid", "build",
           "plan_sweep", "report_sweep", "run_sweep", "sweep_status"]


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: every cell's final status, the report, and this call's counts.

    status and report cover the root's whole grid (every invocation's cells); missing: this call's cells
    without a finished run (failed or still running elsewhere). seconds: the whole call; run_seconds:
    from starting the engine to the last run's end (no datasets, no tables).
    """

    root: Path
    status: SweepStatus
    report: SweepReport
    ran: int = 0
    failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    run_seconds: float = 0.0


def _shared_env() -> dict[str, str]:
    """The cache and dataset roots every worker must use (resolved here, as absolute paths)."""
    from stores.paths import augment_home, minari_root

    return {"AUGMENT_HOME": str(augment_home().resolve()),
            "MINARI_DATASETS_PATH": str(minari_root().resolve())}


def _arm_names(spec: SweepSpec) -> dict[str, str]:
    """Resolve every arm of ``spec`` (arm spec -> name); an unknown arm is a UserInputError."""
    from baselines.compare import resolve_arm

    return {a: resolve_arm(a).name for a in spec.arms}


def _prepare(spec: SweepSpec, progress: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Resolve every arm and load every dataset once (building missing recipes); returns (arm spec ->
    name, dataset folder label -> content hash)."""
    from stores.datasets import load_dataset

    names = _arm_names(spec)
    hashes = {dataset_label(d): load_dataset(d, profile=spec.profile, progress=progress).content_hash
              for d in spec.datasets}
    return names, hashes


def _invocation_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise UserInputError(f"--root '{root}' is a file; name a directory for the sweep (it is created)")


def _line(cell: Cell, outcome: CellOutcome | None, *, done: int, total: int, note: str = "",
          metric: str = "last5") -> str:
    head = f"[{done}/{total}]"
    if outcome is not None and outcome.status == "done":
        s = outcome.scores
        norm, ret = s.get(f"{metric}_normalized"), s.get(f"{metric}_return")
        score = (f"{metric} {norm:.1f} (normalized)" if norm is not None
                 else f"{metric} return {ret:.1f}" if ret is not None else "no score")
        resumed = f", resumed from step {outcome.resumed_from_step}" if outcome.resumed_from_step else ""
        return f"{head} done    {cell.describe()}  {score}  {outcome.seconds:.1f} s{resumed}"
    return f"{head} {note:<7} {cell.describe()}"


def run_sweep(spec: SweepSpec, engine: EngineOptions | None = None, *, retry_failed: bool = False,
              progress: bool = True, log: Callable[[str], None] | None = None) -> SweepResult:
    """Run every unfinished cell of ``spec`` on ``engine`` and write the reports; see the module docstring.

    log: where the one-line-per-run messages go (default: above the progress bar on stderr; nothing when
    ``progress`` is False and no ``log`` is given).
    """
    engine = engine or EngineOptions()
    spec.validate()
    engine.validate()
    root = Path(spec.root)
    # every input check before ROOT or ROOT/sweep.lock is created: a bad arm, dataset or budget leaves nothing
    _check_root(root)
    if lock_is_held(root / "sweep.lock"):
        raise UserInputError(f"another `augment sweep` is running on {root}; wait for it to end "
                             f"(`augment sweep status {root}`) or use another root")
    check_budget(root, spec)
    names, hashes = _prepare(spec, progress)
    check_dataset_hashes(root, hashes)
    root.mkdir(parents=True, exist_ok=True)
    if log is None:
        log = (lambda text: tqdm.write(text, file=sys.stderr)) if progress else (lambda text: None)
    started = time.perf_counter()
    invocation = _invocation_id()
    with driver_lock(root):
        check_budget(root, spec)  # again under the lock: another driver may have started meanwhile
        cells = expand(spec, names)
        grid = write_manifest(root, spec, cells, invocation=invocation, engine=engine.engine)
        before = {c.cell_id: cell_status(root, c) for c in cells}
        todo = [c for c in cells if before[c.cell_id].status in ("pending", "running")
                or (before[c.cell_id].status == "failed" and retry_failed)]
        skipped_failed = [c for c in cells if before[c.cell_id].status == "failed" and not retry_failed]
        for c in skipped_failed:
            log(f"skip    {c.cell_id}: failed in an earlier sweep ({before[c.cell_id].detail}); "
                "--retry-failed runs it again")
        t_runs = time.perf_counter()
        ran, failed = _drive(spec, engine, root, cells, todo, invocation=invocation, progress=progress,
                             log=log)
        run_seconds = time.perf_counter() - t_runs
        status = SweepStatus(root=root, cells=[cell_status(root, c) for c in grid])
        rep = write_reports(root, grid, {s.cell.cell_id: s for s in status.cells}, metric=spec.metric,
                            profile=spec.profile, arm_order=grid_arm_order(grid))
    invoked = {c.cell_id for c in cells}
    missing = [s.cell.describe() for s in status.cells if s.cell.cell_id in invoked and s.status != "done"]
    return SweepResult(root=root, status=status, report=rep, ran=ran, failed=failed, missing=missing,
                       seconds=time.perf_counter() - started, run_seconds=run_seconds)


def grid_arm_order(grid: list[Cell]) -> list[str]:
    """Arm names in the order the root first met them: the first is the tables' reference arm."""
    return list(dict.fromkeys(c.arm_name for c in grid))


def _drive(spec: SweepSpec, options: EngineOptions, root: Path, cells: list[Cell], todo: list[Cell], *,
           invocation: str, progress: bool, log: Callable[[str], None]) -> tuple[int, list[str]]:
    """Submit ``todo`` to the engine with warm-up gating and bounded retries; returns (ran, failed ids)."""
    total = len(cells)
    resolved = total - len(todo)
    if not todo:
        return 0, []
    env = {k: v for k, v in _shared_env().items() if k in SHARED_ENV}
    overrides = spec.run_overrides()
    max_attempts = 1 + spec.retries

    def payload(cell: Cell, attempt: int) -> CellPayload:
        return CellPayload(root=str(root), cell=cell, profile=spec.profile, overrides=overrides,
                           threads=spec.resources.threads, env=env, invocation=invocation,
                           engine=options.engine, attempt=attempt)

    # warm-up: a model-training arm's first todo cell per dataset runs before its other cells
    finished = {k for c in cells
                if (k := warmup_key(c)) is not None and (c.run_dir(root) / "results.json").exists()}
    plan = warmup_plan(todo, finished=finished, enabled=spec.warmup)
    held, leaders = plan.held, plan.leaders

    engine: Engine = make_engine(options, spec.resources)
    bar = tqdm(total=total, initial=resolved, disable=not progress, unit="run", desc="sweep",
               dynamic_ncols=True, file=sys.stderr)
    ran, failed = 0, []
    lost: Counter[str] = Counter()
    by_id = {c.cell_id: c for c in todo}
    try:
        for cell in plan.ready:
            engine.submit(payload(cell, 1))
        while engine.in_flight():
            for fin in engine.wait():
                cell = by_id[fin.payload.cell.cell_id]
                outcome, attempt = fin.outcome, fin.payload.attempt
                retry, final_note = _judge(root, fin, invocation=invocation, max_attempts=max_attempts)
                if retry == "resubmit":  # lost before it started: not an attempt, unless it keeps happening
                    lost[cell.cell_id] += 1
                    if lost[cell.cell_id] <= max_attempts:
                        engine.submit(payload(cell, attempt))
                        continue
                    record_failure(root, cell, invocation=invocation, engine=options.engine, attempt=attempt,
                                   error=f"the engine lost the task {lost[cell.cell_id]} times before it "
                                         f"started: {fin.lost}")
                    final_note = "FAILED"
                if retry == "retry":
                    log(f"retry   {cell.describe()} (attempt {attempt} of {max_attempts} failed: "
                        f"{_error_of(fin)})")
                    engine.submit(payload(cell, attempt + 1))
                    continue
                resolved += 1
                bar.update(1)
                if outcome is not None and outcome.status == "done":
                    ran += 1
                    log(_line(cell, outcome, done=resolved, total=total, metric=spec.metric))
                else:
                    failed.append(cell.cell_id)
                    log(_line(cell, None, done=resolved, total=total, note=final_note)
                        + f": {_error_of(fin)}")
                bar.set_postfix_str(f"failed {len(failed)}", refresh=False)
                key = leaders.pop(cell.cell_id, None)
                if key is not None:
                    for follower in held.pop(key, []):
                        engine.submit(payload(follower, 1))
    except BaseException:
        engine.close(cancel=True)
        raise
    finally:
        bar.close()
    engine.close()
    return ran, failed


def _error_of(fin: Finished) -> str:
    if fin.outcome is None:
        return fin.lost or "lost"
    return fin.outcome.error or fin.outcome.status


def _judge(root: Path, fin: Finished, *, invocation: str, max_attempts: int) -> tuple[str, str]:
    """What to do with an ended task: ("", note) final, "retry" (a failed attempt with attempts left),
    or "resubmit" (lost before it started, not counted)."""
    outcome, attempt, cell = fin.outcome, fin.payload.attempt, fin.payload.cell
    if outcome is None:
        started = record_lost_attempt(root, cell, invocation=invocation, engine=fin.payload.engine,
                                      attempt=attempt, error=fin.lost or "lost")
        if not started:
            return "resubmit", ""
        return ("retry", "") if attempt < max_attempts else ("", "FAILED")
    if outcome.status == "done":
        return "", "done"
    if outcome.status == "busy":
        return "", "BUSY"
    if outcome.retryable and attempt < max_attempts:
        return "retry", ""
    return "", "FAILED"


def plan_sweep(spec: SweepSpec) -> list[CellStatus]:
    """What :func:`run_sweep` would do with ``spec``, writing nothing: each of its cells with its status
    in ``spec.root`` now (done cells are skipped, pending and interrupted ones run, failed ones wait for
    ``retry_failed``). Resolves the arms but loads no dataset (a missing recipe is built only by a run)."""
    spec.validate()
    root = Path(spec.root)
    _check_root(root)
    if manifest_path(root).exists():
        check_budget(root, spec)
    return [cell_status(root, c) for c in expand(spec, _arm_names(spec))]


def add_to_grid(spec: SweepSpec) -> list[CellStatus]:
    """Add ``spec``'s cells to the grid of ``spec.root`` and run none of them; returns their statuses.

    For a grid filled a piece at a time: once its cells are in the manifest, ``sweep status`` counts the
    ones without a run as pending and the tables list them as missing (and take in runs already in the
    root, e.g. copied from ``augment compare``), before any invocation has run them. Loads no dataset;
    refused while a driver runs on the root (its lock) or when the root has another budget.
    """
    spec.validate()
    root = Path(spec.root)
    _check_root(root)
    check_budget(root, spec)
    cells = expand(spec, _arm_names(spec))
    root.mkdir(parents=True, exist_ok=True)
    with driver_lock(root):
        write_manifest(root, spec, cells, invocation=_invocation_id(), engine="none (--add-only)")
    return [cell_status(root, c) for c in cells]


def report_sweep(root: Path) -> tuple[SweepStatus, SweepReport]:
    """Write the tables of the sweep in ``root`` from the runs finished so far (runs nothing)."""
    root = Path(root)
    manifest = read_manifest(root)
    cells = manifest_cells(manifest)
    status = sweep_status(root)
    spec = manifest["spec"]
    rep = write_reports(root, cells, {s.cell.cell_id: s for s in status.cells}, metric=spec["metric"],
                        profile=spec["profile"], arm_order=grid_arm_order(cells))
    return status, rep


def missing_cells(status: SweepStatus) -> list[CellStatus]:
    """Cells without a finished run."""
    return [s for s in status.cells if s.status != "done"]
