"""Progress bars that also report to a file, so another process can see how far a quiet run has got.

The long loops (model fits, generation, learner updates) show a tqdm bar when ``progress`` is on. A sweep
runs its cells without bars, so ``augment sweep status`` could only say "running" for the hour a planner
fit takes. :func:`progress_bar` is tqdm's bar plus this: when the environment variable
:data:`PROGRESS_FILE_ENV` names a file, the bar's state is written there as JSON, atomically, at most
every :data:`PROGRESS_FILE_SECONDS` and when the bar closes, whether or not the bar is shown. The sweep's
worker sets the variable per cell (``cells/<cell>.progress.json``); :func:`read_progress` and
:func:`describe_progress` are what ``sweep status`` shows. Without the variable nothing is written.

The file (one bar: the latest to report): ``desc`` (the bar's label), ``n`` and ``total`` (in ``unit``;
total None when unknown), ``rate`` (units per second since the bar started, None before the first unit),
``updated`` (Unix seconds) and ``closed``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

#: Environment variable naming the file a bar reports to (unset: bars report nowhere).
PROGRESS_FILE_ENV = "AUGMENT_PROGRESS_FILE"
#: Minimum seconds between two writes of one bar (a write is a small JSON file renamed into place).
PROGRESS_FILE_SECONDS = 10.0


class ReportingBar(tqdm):  # type: ignore[misc]  # tqdm ships no type hints
    """tqdm that also writes its state to ``$AUGMENT_PROGRESS_FILE`` (see the module docstring).

    A disabled tqdm counts nothing, so the bar keeps its own count (``update(n)`` and iteration add to
    it, from ``initial``) and reports that one when disabled, tqdm's ``n`` when shown.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._report_to = os.environ.get(PROGRESS_FILE_ENV) or None
        self._label = str(kwargs.get("desc") or "")
        self._unit = str(kwargs.get("unit") or "it")
        super().__init__(*args, **kwargs)
        self._count = int(self.n)
        self._first = self._count
        self._t0 = time.monotonic()
        self._last_write = -math.inf
        self._closed_report = False
        if self._report_to is not None:
            self._report(force=True)

    def update(self, n: float | None = 1) -> bool | None:
        out = super().update(n)
        if self._report_to is not None:
            if self.disable:
                self._count += int(n or 0)
            self._report()
        return out

    def __iter__(self) -> Iterator[Any]:
        if self._report_to is None or not self.disable:  # an enabled bar's iteration calls update()
            yield from super().__iter__()
            return
        for item in self.iterable:
            yield item
            self._count += 1
            self._report()
        self.close()  # as tqdm's own iteration does at the end

    def close(self) -> None:
        if self._report_to is not None and not self._closed_report:
            self._closed_report = True
            self._report(force=True, closed=True)
        super().close()

    def _report(self, *, force: bool = False, closed: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_FILE_SECONDS:
            return
        self._last_write = now
        elapsed = now - self._t0
        count = self._count if self.disable else int(self.n)  # a disabled tqdm counts nothing
        done = count - self._first
        total = getattr(self, "total", None)
        state = {"desc": self._label, "n": count, "total": None if total is None else int(total),
                 "unit": self._unit, "rate": done / elapsed if done > 0 and elapsed > 0 else None,
                 "updated": time.time(), "closed": closed}
        write_progress(Path(self._report_to), state)  # type: ignore[arg-type]


def progress_bar(*args: Any, **kwargs: Any) -> ReportingBar:
    """A tqdm bar (same arguments) that reports to ``$AUGMENT_PROGRESS_FILE`` when it is set."""
    return ReportingBar(*args, **kwargs)


def write_progress(path: Path, state: dict[str, Any]) -> None:
    """Write one bar's ``state`` to ``path`` atomically; a failed write is dropped (progress is advice:
    a full disk must not stop the run that reports it)."""
    from stores.errors import UserInputError
    from stores.guards import write_file_atomically

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(path, json.dumps(state).encode())
    except (OSError, UserInputError):  # UserInputError: a full disk, as stores.guard_errors words it
        pass


def read_progress(path: Path) -> dict[str, Any] | None:
    """The state a bar last wrote to ``path``, or None (no file, or not one of ours)."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and {"desc", "n", "updated"} <= state.keys() else None


def describe_progress(state: dict[str, Any], now: float | None = None, *, eta: bool = True) -> str:
    """One line for a status table: ``'td (GPT + diffusion + f_phi)' 1,968/20,000 step, ETA 55:00
    (reported 00:12 ago)``, times as tqdm writes them; the ETA is left out when the total or the rate is
    unknown, or with ``eta=False`` (a killed run's last report)."""
    now = time.time() if now is None else now
    total = state.get("total")
    count = f"{int(state['n']):,}" + (f"/{int(total):,}" if total else "")
    text = f"'{state['desc']}' {count} {state.get('unit', 'it')}"
    rate = state.get("rate")
    if state.get("closed"):
        text += ", finished"
    elif eta and total and rate:
        text += f", ETA {tqdm.format_interval(max(0.0, (int(total) - int(state['n'])) / float(rate)))}"
    return f"{text} (reported {tqdm.format_interval(max(0.0, now - float(state['updated'])))} ago)"


__all__ = ["PROGRESS_FILE_ENV", "PROGRESS_FILE_SECONDS", "ReportingBar", "describe_progress", "progress_bar",
           "read_progress", "write_progress"]
