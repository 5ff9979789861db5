"""A sweep's state on disk: the manifest, one state file and one lock per cell, and ``sweep status``.

* ``ROOT/sweep.json`` (the manifest): the grid's spec, the grid (every cell any invocation named: a
  narrower sweep on the root adds to it and never drops cells) and one line per invocation. A root keeps
  one budget (profile and TrainConfig overrides): sweeping it again with another budget is refused.
* ``ROOT/sweep.lock``: held by the driver (``augment sweep``) while it runs, so two drivers never share
  a root.
* ``ROOT/cells/<cell id>.json``: ``status`` (running / done / failed) and every attempt (invocation,
  engine, host, pid, start and end time, the checkpoint step it resumed from, the error and traceback).
  Only the process running the cell writes it, or the driver after that process died.
* ``ROOT/cells/<cell id>.lock``: held by the process running the cell. A killed process loses its lock,
  so "running" in a state file whose lock is free means *interrupted* (resumed by the next sweep).
* ``ROOT/cells/<cell id>.progress.json``: while the cell runs, what its latest progress bar reported
  (:mod:`augment.progress`: a model fit's or the learner's step, with an ETA); status shows it.

Status of a cell: ``done`` (its run directory holds results.json), ``running`` (its lock is held),
``failed`` (the last attempt failed), else ``pending`` (never started, or interrupted; the detail says
from which checkpoint it will resume). The locks are ``fcntl.flock`` locks: they work across processes
on one machine and across machines on a shared filesystem that supports them (NFSv4, CephFS, Lustre
mounted with ``flock``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.progress import describe_progress, read_progress
from baselines.runs import latest_checkpoint, read_json, write_json
from baselines.sweep_grid import Cell, SweepSpec
from stores.errors import UserInputError

try:  # POSIX only; elsewhere nothing is locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

MANIFEST = "sweep.json"
CELLS_DIR = "cells"
STATUSES: tuple[str, ...] = ("done", "running", "failed", "pending")


def manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST


def state_path(root: Path, cell_id: str) -> Path:
    return Path(root) / CELLS_DIR / f"{cell_id}.json"


def lock_path(root: Path, cell_id: str) -> Path:
    return Path(root) / CELLS_DIR / f"{cell_id}.lock"


def progress_path(root: Path, cell_id: str) -> Path:
    """Where a running cell's progress bars report (:mod:`augment.progress`); not committed."""
    return Path(root) / CELLS_DIR / f"{cell_id}.progress.json"


def host_name() -> str:
    return socket.gethostname()


# ------------------------------------------------------------------------------------------- locks
def _try_lock(handle: Any) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def held_lock(path: Path, *, wait_s: float = 0.0) -> Iterator[bool]:
    """Try to hold an exclusive lock on ``path`` for the block, for up to ``wait_s`` seconds; yields
    whether it is held (the block runs either way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait_s
        got = _try_lock(handle)
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
            got = _try_lock(handle)
        try:
            yield got
        finally:
            if got and fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def lock_is_held(path: Path) -> bool:
    """True when another process holds the lock on ``path`` (probes it without waiting)."""
    if not path.exists():
        return False
    with held_lock(path) as got:
        return not got


@contextlib.contextmanager
def driver_lock(root: Path) -> Iterator[None]:
    """Hold ``ROOT/sweep.lock`` for a driver; UserInputError when another driver holds it."""
    path = Path(root) / "sweep.lock"
    with held_lock(path) as got:
        if not got:
            raise UserInputError(f"another `augment sweep` is running on {root}; wait for it to end "
                                 f"(`augment sweep status {root}`) or use another root")
        yield


# ------------------------------------------------------------------------------------------- manifest
def read_manifest(root: Path) -> dict[str, Any]:
    path = manifest_path(root)
    if not path.exists():
        raise UserInputError(f"{root} holds no {MANIFEST}: not a sweep run root (start one with "
                             "`augment sweep SWEEP.yaml`)")
    return read_json(path)


def check_budget(root: Path, spec: SweepSpec) -> None:
    """UserInputError when ``root`` was swept before with another budget (profile, overrides)."""
    path = manifest_path(root)
    if path.exists():
        old = read_json(path)
        if old.get("budget") != _jsonable_budget(spec):
            raise UserInputError(
                f"{root} was swept with {old.get('budget')}; this sweep asks for {_jsonable_budget(spec)}. "
                "Runs in one root share one budget: use another root, or the same profile and overrides")


def recorded_dataset_hashes(root: Path, label: str) -> Counter[str]:
    """Content hash -> number of finished runs (a results.json beside the config.json) of task folder
    ``label`` in ``root`` trained on the dataset with that hash."""
    counts: Counter[str] = Counter()
    for config in sorted((Path(root) / label).glob("*/runs/*/seed_*/config.json")):
        if (config.parent / "results.json").exists():
            digest = read_json(config).get("dataset", {}).get("content_hash")
            if digest:
                counts[str(digest)] += 1
    return counts


def check_dataset_hashes(root: Path, loaded: dict[str, str]) -> None:
    """UserInputError when a task's finished runs in ``root`` used another dataset than the one loaded now.

    loaded: task folder label -> content hash of the dataset this sweep would train on. A task's runs in
    one root must share one dataset, or its table would average runs of different data (a recipe rebuilt
    on another machine type can differ: docs/datasets.md, "Guarantees")."""
    for label, digest in loaded.items():
        found = recorded_dataset_hashes(root, label)
        other = {h: n for h, n in found.items() if h != digest}
        if other:
            was = ", ".join(f"{h} ({n} run{'s' if n != 1 else ''})" for h, n in sorted(other.items()))
            raise UserInputError(
                f"{root} holds finished {label} runs trained on dataset {was}, but {label} here has content "
                f"hash {digest}; one task's runs in a root share one dataset. Load that dataset (carry it, "
                f"or rebuild it as its provenance says), or sweep into another root (docs/sweeps.md)")


#: the spec fields that name the grid's axes; a manifest's spec holds the union of its invocations' values
GRID_AXES = ("datasets", "arms", "learners", "seeds")


def write_manifest(root: Path, spec: SweepSpec, cells: list[Cell], *, invocation: str,
                   engine: str) -> list[Cell]:
    """Add this invocation's ``cells`` to the root's grid and record the invocation; returns the grid.

    The grid is the union of every invocation's cells, in the order they were first named: a narrower
    sweep on a root (one dataset, one arm, a few seeds) runs only its cells but keeps the others in the
    manifest, the status and the tables. ``spec`` describes the grid: its datasets, arms, learners and seeds
    are the union of every invocation's (first named first; :func:`grid_spec`), its other fields the latest
    invocation's, so rerunning it runs the whole grid; each history line holds the datasets, arms, learners
    and seeds that invocation asked for. Refuses a root swept before with another budget.
    """
    check_budget(root, spec)
    path = manifest_path(root)
    history: list[dict[str, Any]] = []
    grid: list[Cell] = []
    old_spec: dict[str, Any] | None = None
    if path.exists():
        old = read_json(path)
        history = list(old.get("invocations", []))
        grid = manifest_cells(old)
        old_spec = old.get("spec")
    known = {c.cell_id for c in grid}
    grid += [c for c in cells if c.cell_id not in known]
    new_spec = spec.to_json()
    asked = {k: new_spec[k] for k in GRID_AXES}
    history.append({"invocation": invocation, "engine": engine, "host": host_name(), "pid": os.getpid(),
                    "started": time.time(), "cells": len(cells), "asked": asked})
    write_json(path, {"spec": grid_spec(old_spec, new_spec), "budget": _jsonable_budget(spec),
                      "cells": [c.to_json() for c in grid], "invocations": history})
    return grid


def grid_spec(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The manifest's spec after an invocation: ``new`` (a ``SweepSpec.to_json()``) with each of
    :data:`GRID_AXES` the union of ``old``'s values and ``new``'s, in the order first named."""
    merged = dict(new)
    for axis in GRID_AXES:
        values = list((old or {}).get(axis, []))
        merged[axis] = values + [v for v in new[axis] if v not in values]
    return merged


def _jsonable_budget(spec: SweepSpec) -> dict[str, Any]:
    import json

    from baselines.runs import to_jsonable

    return json.loads(json.dumps(to_jsonable(spec.budget())))


def manifest_cells(manifest: dict[str, Any]) -> list[Cell]:
    return [Cell(**c) for c in manifest["cells"]]


# ------------------------------------------------------------------------------------------- cell state
def read_state(root: Path, cell_id: str) -> dict[str, Any] | None:
    path = state_path(root, cell_id)
    if not path.exists():
        return None
    try:
        return read_json(path)
    except ValueError:  # a torn file from a crash mid-write cannot happen (atomic), but be safe
        return None


def write_state(root: Path, cell_id: str, state: dict[str, Any]) -> None:
    path = state_path(root, cell_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, state)


def checkpoint_step(run_dir: Path) -> int:
    """Step of the newest complete checkpoint of ``run_dir`` (0 when none)."""
    ckpt = latest_checkpoint(run_dir)
    return int(ckpt.name.split("_")[-1]) if ckpt is not None else 0


def begin_attempt(root: Path, cell: Cell, *, invocation: str, engine: str, attempt: int) -> dict[str, Any]:
    """Mark ``cell`` running and append an attempt record (called by the process that runs it, which
    holds the cell's lock). An earlier attempt still marked running was killed with its process (the
    lock was free): it is closed as ``interrupted`` (``ended`` stays None: when it died is unknown), so
    the record tells a resumed cell from one that ran through; it does not count as a failure."""
    state = read_state(root, cell.cell_id) or {"cell": cell.to_json(), "attempts": []}
    for earlier in state["attempts"]:
        if earlier.get("outcome") == "running":
            earlier["outcome"] = "interrupted"
    record = {"attempt": attempt, "invocation": invocation, "engine": engine, "host": host_name(),
              "pid": os.getpid(), "started": time.time(), "ended": None, "seconds": None,
              "resumed_from_step": checkpoint_step(cell.run_dir(root)), "outcome": "running",
              "error": None, "error_type": None, "traceback": None}
    state["attempts"].append(record)
    state["status"] = "running"
    write_state(root, cell.cell_id, state)
    return state


def end_attempt(root: Path, cell: Cell, state: dict[str, Any], *, outcome: str, error: str | None = None,
                error_type: str | None = None, traceback: str | None = None) -> dict[str, Any]:
    """Close the last attempt with ``outcome`` (done / failed) and set the cell's status."""
    record = state["attempts"][-1]
    record.update(ended=time.time(), outcome=outcome, error=error, error_type=error_type, traceback=traceback)
    record["seconds"] = record["ended"] - record["started"]
    state["status"] = outcome
    write_state(root, cell.cell_id, state)
    return state


def record_lost_attempt(root: Path, cell: Cell, *, invocation: str, engine: str, attempt: int,
                        error: str) -> bool:
    """After the engine lost a task (worker died): close its open attempt as failed and return True, or
    return False when the cell never started in this invocation (it may simply be submitted again)."""
    state = read_state(root, cell.cell_id)
    if not state or not state.get("attempts"):
        return False
    last = state["attempts"][-1]
    if last.get("invocation") != invocation or last.get("attempt") != attempt:
        return False
    if last.get("outcome") == "running":
        end_attempt(root, cell, state, outcome="failed", error=error, error_type="WorkerDied")
    return True


def record_failure(root: Path, cell: Cell, *, invocation: str, engine: str, attempt: int, error: str,
                   error_type: str = "WorkerDied") -> None:
    """Record a failed attempt on behalf of a task that never reported (written by the driver)."""
    state = read_state(root, cell.cell_id) or {"cell": cell.to_json(), "attempts": []}
    now = time.time()
    state["attempts"].append({"attempt": attempt, "invocation": invocation, "engine": engine,
                              "host": host_name(), "pid": os.getpid(), "started": now, "ended": now,
                              "seconds": 0.0, "resumed_from_step": checkpoint_step(cell.run_dir(root)),
                              "outcome": "failed", "error": error, "error_type": error_type,
                              "traceback": None})
    state["status"] = "failed"
    write_state(root, cell.cell_id, state)


# ------------------------------------------------------------------------------------------- status
@dataclass
class CellStatus:
    """Where a cell stands: ``status`` one of :data:`STATUSES`, a one-line ``detail``, its attempts."""

    cell: Cell
    status: str
    detail: str = ""
    attempts: int = 0
    error: str | None = None
    score: float | None = None


@dataclass
class SweepStatus:
    """Every cell's status and the counts per status."""

    root: Path
    cells: list[CellStatus] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(s.status for s in self.cells)
        return {k: c.get(k, 0) for k in STATUSES}

    def line(self) -> str:
        c = self.counts
        return (f"{len(self.cells)} cells: done {c['done']}, running {c['running']}, failed {c['failed']}, "
                f"pending {c['pending']}")


def first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cell_status(root: Path, cell: Cell) -> CellStatus:
    """The status of one cell from its run directory, state file and lock."""
    run_dir = cell.run_dir(root)
    state = read_state(root, cell.cell_id) or {}
    attempts = state.get("attempts", [])
    last = attempts[-1] if attempts else {}
    if (run_dir / "results.json").exists():
        return CellStatus(cell, "done", detail=f"{len(attempts)} attempt(s)" if attempts else "",
                          attempts=len(attempts))
    if lock_is_held(lock_path(root, cell.cell_id)):
        step = checkpoint_step(run_dir)
        where = f"on {last.get('host')} pid {last.get('pid')}" if last else ""
        detail = f"{where}, checkpoint at step {step}".strip(", ")
        report = read_progress(progress_path(root, cell.cell_id))
        if report is not None:
            detail += f"; now {describe_progress(report)}"
        return CellStatus(cell, "running", detail=detail, attempts=len(attempts))
    if state.get("status") == "failed":
        err = f"{last.get('error_type')}: {first_line(last.get('error'))}"
        return CellStatus(cell, "failed", detail=f"after {len(attempts)} attempt(s): {err}",
                          attempts=len(attempts), error=err)
    step = checkpoint_step(run_dir)
    if state.get("status") == "running":
        detail = (f"interrupted (attempt {last.get('attempt')} on {last.get('host')}); "
                  f"resumes from step {step}")
        report = read_progress(progress_path(root, cell.cell_id))  # left by the killed attempt
        if report is not None:
            detail += f"; last report {describe_progress(report, eta=False)}"
    elif step:
        detail = f"resumes from step {step}"
    else:
        detail = "not started"
    return CellStatus(cell, "pending", detail=detail, attempts=len(attempts))


def sweep_status(root: Path) -> SweepStatus:
    """The status of every cell of the sweep in ``root``: the grid of all its invocations."""
    root = Path(root)
    cells = manifest_cells(read_manifest(root))
    return SweepStatus(root=root, cells=[cell_status(root, c) for c in cells])
