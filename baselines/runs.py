"""Run-directory helpers: atomic JSON, the metrics CSV, checkpoint folders.

A run directory holds ``config.json``, ``metrics.csv`` (one row per evaluation), ``results.json``,
``checkpoints/step_XXXXXXXX/`` (``model.pt`` weights + optimisers, ``state.pt`` counters and RNG states,
``latest`` naming the newest complete one), ``model.d3`` (the final learner, ``d3rlpy.load_learnable``)
and ``synthetic.zarr`` when a generator wrote data.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stores.guards import disk_errors, write_file_atomically


def to_jsonable(value: Any) -> Any:
    """Convert NumPy scalars/arrays, Paths and non-finite floats (-> None) to JSON-native values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON atomically (no temporary file is left on failure; a full or
    read-only disk is one UserInputError line)."""
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n"
    write_file_atomically(Path(path), text.encode())


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as dicts of floats (empty cells -> NaN)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()}
                for row in csv.DictReader(f)]


class MetricsWriter:
    """Appends rows to ``metrics.csv``; the header is fixed by the first row (or the existing file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                self.columns = next(csv.reader(f), None)

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (rows written after the checkpoint a resume starts from)."""
        rows = read_metrics(self.path)
        if not rows or self.columns is None:
            return
        keep = [r for r in rows if r["step"] <= step]
        self._write_all(self.columns, keep)

    def _write_all(self, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in columns})
        write_file_atomically(self.path, text.getvalue().encode())

    def write(self, row: dict[str, Any]) -> None:
        """Append one row; new keys after the header is fixed are added by rewriting the file."""
        if self.columns is None:
            self.columns = list(row)
            self._write_all(self.columns, [row])
            return
        extra = [k for k in row if k not in self.columns]
        if extra:
            self.columns = self.columns + extra
            self._write_all(self.columns, read_metrics(self.path) + [row])
            return
        with disk_errors(self.path), self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow({k: _cell(row.get(k)) for k in self.columns})


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder (named in ``checkpoints/latest``), or None."""
    marker = Path(run_dir) / "checkpoints" / "latest"
    if not marker.exists():
        return None
    path = Path(run_dir) / "checkpoints" / marker.read_text().strip()
    return path if (path / "state.pt").exists() else None


def mark_latest(run_dir: Path, ckpt: Path, *, keep: int = 2) -> None:
    """Point ``checkpoints/latest`` at ``ckpt`` atomically and delete all but the ``keep`` newest."""
    root = Path(run_dir) / "checkpoints"
    write_file_atomically(root / "latest", (ckpt.name + "\n").encode())
    folders = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in folders[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
