"""Where a sweep's runs execute. Every engine runs the same :func:`baselines.sweep_worker.run_cell`.

* :class:`InlineEngine` - one run at a time in the driver's own process (``--engine local --jobs 1``).
* :class:`LocalPoolEngine` - ``jobs`` spawned worker processes on this machine (no extra dependency).
* :class:`RayEngine` - each run is one Ray task declaring ``num_cpus`` / ``num_gpus``
  (:class:`~baselines.sweep_grid.RunResources`), on a local Ray head or a cluster at ``address``. Ray
  is the optional extra ``[distributed]``, imported only here and only when this engine is chosen.

The driver submits cells and waits for finished ones; a task the engine lost (its worker process died,
a Ray node went away) comes back as a :class:`Finished` with ``lost`` set and no outcome. Ray's own task
retries are off (``max_retries=0``): the driver retries, so every attempt is recorded the same way.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from baselines.sweep_grid import EngineOptions, RunResources
from baselines.sweep_worker import CellOutcome, CellPayload, run_cell
from stores.errors import UserInputError

RAY_MISSING = ("--engine ray needs Ray, the optional extra [distributed]: "
               "python3 -m pip install -e \".[distributed]\" (in a checkout) or "
               "python3 -m pip install \"diffusion-augment[distributed]\"")


@dataclass
class Finished:
    """A task that ended: its payload and either its outcome or why the engine lost it."""

    payload: CellPayload
    outcome: CellOutcome | None
    lost: str | None = None


class Engine(Protocol):
    """What the driver needs from an engine."""

    name: str

    def submit(self, payload: CellPayload) -> None: ...

    def wait(self) -> list[Finished]:
        """Block until at least one submitted task has ended; return every ended one."""
        ...

    def in_flight(self) -> int: ...

    def close(self, *, cancel: bool = False) -> None: ...


class InlineEngine:
    """Runs cells one by one in this process, in submission order."""

    name = "local"

    def __init__(self) -> None:
        self._queue: deque[CellPayload] = deque()

    def submit(self, payload: CellPayload) -> None:
        self._queue.append(payload)

    def wait(self) -> list[Finished]:
        payload = self._queue.popleft()
        return [Finished(payload, run_cell(payload))]

    def in_flight(self) -> int:
        return len(self._queue)

    def close(self, *, cancel: bool = False) -> None:
        self._queue.clear()


class LocalPoolEngine:
    """``jobs`` spawned worker processes (``concurrent.futures.ProcessPoolExecutor``); workers are
    reused across cells. A pool broken by a dying worker is replaced for later submissions."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool = self._new_pool()
        self._futures: dict[concurrent.futures.Future[CellOutcome], CellPayload] = {}

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(max_workers=self.jobs,
                                                      mp_context=multiprocessing.get_context("spawn"))

    def submit(self, payload: CellPayload) -> None:
        try:
            future = self._pool.submit(run_cell, payload)
        except concurrent.futures.process.BrokenProcessPool:
            self._pool = self._new_pool()
            future = self._pool.submit(run_cell, payload)
        self._futures[future] = payload

    def wait(self) -> list[Finished]:
        done, _ = concurrent.futures.wait(self._futures, return_when=concurrent.futures.FIRST_COMPLETED)
        finished = []
        for future in done:
            payload = self._futures.pop(future)
            try:
                finished.append(Finished(payload, future.result()))
            except concurrent.futures.process.BrokenProcessPool as exc:
                finished.append(Finished(payload, None, lost=f"worker process died ({exc})"))
            except Exception as exc:  # pickling and other transport errors of this task
                finished.append(Finished(payload, None, lost=f"{type(exc).__name__}: {exc}"))
        return finished

    def in_flight(self) -> int:
        return len(self._futures)

    def close(self, *, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        self._futures.clear()


def import_ray() -> Any:
    """The ``ray`` module, or a UserInputError naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise UserInputError(RAY_MISSING) from exc
    return ray


class RayEngine:
    """Each cell one Ray task with ``num_cpus=resources.cpus``, ``num_gpus=resources.gpus``.

    Uses the Ray session this process already has (``ray.init`` called before, as the tests do), else
    joins the cluster at ``address`` (``auto``, ``HOST:PORT``) or, with no address, what ``ray.init()``
    finds or starts: a local head on this machine (then shut down by :meth:`close`). Ray's usage stats
    are off unless ``RAY_USAGE_STATS_ENABLED`` says otherwise.
    """

    name = "ray"

    def __init__(self, resources: RunResources, address: str | None = None) -> None:
        self.ray = import_ray()
        self._started = False
        if not self.ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            self.ray.init(address=address, include_dashboard=False, log_to_driver=False)
            self._started = True
        total = self.ray.cluster_resources()
        if total.get("CPU", 0.0) < resources.cpus or total.get("GPU", 0.0) < resources.gpus:
            self.close()
            raise UserInputError(f"one run asks for {resources.cpus} CPU and {resources.gpus} GPU but the "
                                 f"Ray cluster has {total.get('CPU', 0.0)} CPU and {total.get('GPU', 0.0)} "
                                 "GPU; lower resources: (cpus:, gpus:) or add nodes")
        self._remote = self.ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                       max_retries=0)(run_cell)
        self._refs: dict[Any, CellPayload] = {}

    def submit(self, payload: CellPayload) -> None:
        ref = self._remote.options(name=f"sweep:{payload.cell.cell_id}").remote(payload)
        self._refs[ref] = payload

    def wait(self) -> list[Finished]:
        refs = list(self._refs)
        ready, _ = self.ray.wait(refs, num_returns=1)
        more, _ = self.ray.wait([r for r in refs if r not in ready], num_returns=len(refs) - len(ready),
                                timeout=0) if len(refs) > len(ready) else ([], [])
        finished = []
        for ref in [*ready, *more]:
            payload = self._refs.pop(ref)
            try:
                finished.append(Finished(payload, self.ray.get(ref)))
            except Exception as exc:  # RayTaskError / WorkerCrashedError / NodeDiedError / cancellation
                finished.append(Finished(payload, None, lost=f"{type(exc).__name__}: {exc}"))
        return finished

    def in_flight(self) -> int:
        return len(self._refs)

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            for ref in list(self._refs):
                self.ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
            self._started = False


def make_engine(options: EngineOptions, resources: RunResources) -> Engine:
    """The engine ``options`` name: inline for local with one job, a process pool, or Ray."""
    options.validate()
    if options.engine == "ray":
        return RayEngine(resources, address=options.address)
    return InlineEngine() if options.jobs == 1 else LocalPoolEngine(options.jobs)
