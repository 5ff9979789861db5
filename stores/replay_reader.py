"""Replay store reading: committed rows, trajectory starts, streaming, summaries and the invariant check
(:meth:`StoreReader.validate`, the list in ``docs/store-format.md`` "Invariants"), plus
:func:`sample_batch` over in-memory columns.

:class:`StoreReader` is a base class of :class:`stores.replay.ReplayStore`, which opens the store and
sets the attributes declared here; it is not used on its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.replay_chunks import _ChunkFiles
from stores.replay_schema import (
    BOUNDARY_ARRAY,
    FLOAT_COLUMNS,
    PROVENANCE_ATTRS,
    ROW_COLUMNS,
    TRANSITION_COLUMNS,
    StoreSchema,
)


class StoreReader:
    """The reading half of a replay store: every method reads committed rows ``[0, N)`` only."""

    path: Path
    schema: StoreSchema
    _mode: str
    _rows: int
    _trajectories: int
    _generators: list[str]
    _attrs: dict[str, Any]
    _arrays: dict[str, Any]
    _chunk_files: dict[str, _ChunkFiles]

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        return self._rows

    @property
    def num_trajectories(self) -> int:
        """Committed trajectories E."""
        return self._trajectories

    @property
    def observation_size(self) -> int:
        return self.schema.observation_size

    @property
    def action_size(self) -> int:
        return self.schema.action_size

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def generators(self) -> list[str]:
        """Generator names; the ``generator`` column holds indices into this list."""
        return list(self._generators)

    @property
    def attrs(self) -> dict[str, Any]:
        """All group attributes (JSON-native copy), as committed on disk."""
        return json.loads(json.dumps(self._attrs))

    # ------------------------------------------------------------------ reading

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of array ``name``; a damaged chunk becomes one UserInputError line."""
        try:
            files = self._chunk_files.get(name)
            if files is not None:
                return files.read(start, stop)
            return np.asarray(self._arrays[name][start:stop])
        except Exception as exc:
            raise UserInputError(
                f"store '{self.path}' is damaged: cannot decode array '{name}' rows {start}-{stop} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                "restore it from a copy or re-export the source") from None

    def _check_chunks_present(self) -> None:
        """Every chunk file holding committed rows must exist (Zarr would silently read fill values)."""
        c = self.schema.chunk_rows
        for name in (*ROW_COLUMNS, BOUNDARY_ARRAY):
            rows = self._trajectories if name == BOUNDARY_ARRAY else self._rows
            needed = math.ceil(rows / c)
            folder = self.path / name / "c"
            for k in range(needed):
                two_d = name != BOUNDARY_ARRAY and ROW_COLUMNS[name][1] is not None
                key = folder / str(k) / "0" if two_d else folder / str(k)
                if not key.is_file():
                    raise UserInputError(
                        f"store '{self.path}' is damaged: chunk {k} of array '{name}' (rows {k * c}-"
                        f"{min((k + 1) * c, rows)}) is missing; restore it from a copy")

    def read_rows(self, start: int, stop: int, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Committed rows ``[start, stop)`` of the given row columns (default all; see :meth:`load`)."""
        if not 0 <= start <= stop <= self._rows:
            raise UserInputError(f"rows {start}-{stop} lie outside the {self._rows} committed rows")
        names = list(ROW_COLUMNS) if columns is None else list(columns)
        unknown = [n for n in names if n not in ROW_COLUMNS]
        if unknown:
            raise UserInputError(f"unknown store column(s) {unknown}; columns are {list(ROW_COLUMNS)}")
        return {name: self._read(name, start, stop) for name in names}

    def episode_starts(self) -> np.ndarray:
        """(E+1,) int64 offsets: trajectory e holds rows ``[starts[e], starts[e+1])``; the last is N."""
        starts = self._read(BOUNDARY_ARRAY, 0, self._trajectories).astype(np.int64)
        return np.append(starts, np.int64(self._rows))

    def load(self, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Read the committed rows into memory.

        Returns observations/next_observations (N, obs) float32, actions (N, act) float32, rewards (N,)
        float32, terminals/timeouts (N,) bool, generator (N,) int16 (indices into ``attrs['generators']``),
        round (N,) int32, learner_step (N,) int64, filter_score (N,) float32 (NaN = unfiltered),
        start_index (N,) int64 (-1 = none), trajectory (N,) int64, and episode_starts (E+1,) int64.
        columns: restrict to these row columns (episode_starts is always included).
        """
        names = list(ROW_COLUMNS) if columns is None else list(columns)
        unknown = [n for n in names if n not in ROW_COLUMNS]
        if unknown:
            raise UserInputError(f"unknown store column(s) {unknown}; columns are {list(ROW_COLUMNS)}")
        self._check_chunks_present()
        out = {name: self._read(name, 0, self._rows) for name in names}
        out["episode_starts"] = self.episode_starts()
        return out

    def iter_chunks(self, rows: int | None = None, columns: Sequence[str] | None = None
                    ) -> Iterator[dict[str, np.ndarray]]:
        """Stream committed rows in consecutive pieces of at most ``rows`` rows (default: one chunk).

        Each piece is a dict of the row columns of :meth:`load` (without episode_starts) plus ``row``
        (int64 absolute row numbers).
        """
        step = int(rows or self.schema.chunk_rows)
        if step < 1:
            raise UserInputError(f"rows must be >= 1, got {rows}")
        names = list(ROW_COLUMNS) if columns is None else list(columns)
        self._check_chunks_present()
        total = self._rows
        for start in range(0, total, step):
            stop = min(start + step, total)
            piece = {name: self._read(name, start, stop) for name in names}
            piece["row"] = np.arange(start, stop, dtype=np.int64)
            yield piece

    def generator_counts(self) -> dict[str, int]:
        """Committed rows per generator name."""
        codes = self._read("generator", 0, self._rows) if self._rows else np.zeros(0, np.int16)
        counts = np.bincount(codes.astype(np.int64), minlength=len(self._generators))
        return {name: int(counts[i]) for i, name in enumerate(self._generators)}

    def disk_bytes(self) -> int:
        """Bytes of all files under the store directory."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def info(self) -> dict[str, Any]:
        """Summary: path, format, sizes, committed rows/trajectories, rows per generator, provenance, disk."""
        self._check_chunks_present()
        rewards = self._read("rewards", 0, self._rows)
        return {
            "path": str(self.path),
            "format_version": int(self._attrs["format_version"]),
            "rows": self._rows,
            "trajectories": self._trajectories,
            "observation_size": self.observation_size,
            "action_size": self.action_size,
            "chunk_rows": self.schema.chunk_rows,
            "generators": self.generator_counts(),
            "terminals": int(self._read("terminals", 0, self._rows).sum()),
            "timeouts": int(self._read("timeouts", 0, self._rows).sum()),
            "reward_mean": float(rewards.mean(dtype=np.float64)) if self._rows else float("nan"),
            **{key: self._attrs.get(key) for key in PROVENANCE_ATTRS if key != "normalization"},
            "has_normalization": self._attrs.get("normalization") is not None,
            "created": self._attrs.get("created"),
            "updated": self._attrs.get("updated"),
            "disk_bytes": self.disk_bytes(),
        }

    def validate(self) -> None:
        """Check schema, lengths, chunks, NaN/inf, generator codes and trajectory boundaries.

        Raises :class:`UserInputError` with one line describing the first problem found.
        """
        where = f"store '{self.path}' is invalid:"
        self._check_chunks_present()
        starts = self.episode_starts()
        e, n = self._trajectories, self._rows
        if (e == 0) != (n == 0):
            raise UserInputError(f"{where} {n} rows but {e} trajectories")
        if e:
            if starts[0] != 0:
                raise UserInputError(f"{where} trajectory_starts[0] is {starts[0]}, expected 0")
            problem = _boundary_problem(starts)
            if problem is not None:
                raise UserInputError(f"{where} {problem}")
        is_last_row_all = np.zeros(n, dtype=bool)
        if e:
            is_last_row_all[starts[1:] - 1] = True
        expected_traj = np.repeat(np.arange(e, dtype=np.int64), np.diff(starts))
        prev_next: np.ndarray | None = None
        for piece in self.iter_chunks():
            rows = piece["row"]
            a, b = int(rows[0]), int(rows[-1]) + 1
            for name in FLOAT_COLUMNS:
                arr = piece[name]
                finite = np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
                if not finite.all():
                    raise UserInputError(
                        f"{where} '{name}' holds NaN or inf at row {a + int(np.argmin(finite))}")
            if np.isinf(piece["filter_score"]).any():
                raise UserInputError(f"{where} 'filter_score' holds inf")
            codes = piece["generator"]
            if codes.size and (codes.min() < 0 or codes.max() >= len(self._generators)):
                raise UserInputError(f"{where} 'generator' codes outside 0..{len(self._generators) - 1}")
            mismatch = np.flatnonzero(piece["trajectory"] != expected_traj[a:b])
            if mismatch.size:
                raise UserInputError(
                    f"{where} 'trajectory' at row {a + mismatch[0]} disagrees with trajectory_starts")
            not_last = ~is_last_row_all[a:b]
            for name in ("terminals", "timeouts"):
                inner = np.flatnonzero(piece[name] & not_last)
                if inner.size:
                    raise UserInputError(
                        f"{where} '{name}' is True at row {a + inner[0]}, which is not the last row of its "
                        "trajectory")
            obs, nxt = piece["observations"], piece["next_observations"]
            # Within a trajectory, next_observations[i] must equal observations[i+1].
            cont_prev = np.concatenate([nxt[:1] if prev_next is None else prev_next, nxt[:-1]])
            check = ~np.concatenate([[True], is_last_row_all[a:b - 1]]) if a == 0 else \
                ~is_last_row_all[a - 1:b - 1]
            broken = np.flatnonzero(check & (cont_prev != obs).any(axis=1))
            if broken.size:
                raise UserInputError(
                    f"{where} row {a + broken[0]}: observations differ from the previous row's "
                    "next_observations inside one trajectory")
            prev_next = nxt[-1:]



def _boundary_problem(starts: np.ndarray) -> str | None:
    """What breaks "trajectory_starts increase strictly, each below N" (docs/store-format.md, Invariants),
    or None when nothing does.

    starts: (E+1,) int64, the E committed trajectory starts followed by the committed row count N (as
    :meth:`StoreReader.episode_starts` returns them), E >= 1 and ``starts[0] == 0`` already checked.
    Trajectory e holds ``starts[e+1] - starts[e]`` rows, which must be >= 1: a repeated start is an empty
    trajectory, a smaller one a decrease.
    """
    sizes = np.diff(starts)  # (E,) rows of each trajectory
    bad = np.flatnonzero(sizes <= 0)
    if not bad.size:
        return None
    e = int(bad[0])
    start, after = int(starts[e]), int(starts[e + 1])
    last = e + 1 == starts.shape[0] - 1  # starts[e + 1] is N, not a start
    if sizes[e] == 0:
        if last:
            return (f"trajectory {e} is empty: trajectory_starts[{e}] is {start}, the committed row count "
                    f"(every start must lie below N)")
        return (f"trajectory {e} is empty: trajectory_starts[{e}] and trajectory_starts[{e + 1}] are both "
                f"{start} (a repeated start; the starts must increase strictly)")
    if last:
        return (f"trajectory_starts[{e}] is {start}, beyond the {after} committed rows (every start must lie "
                "below N)")
    return (f"trajectory_starts decreases at index {e + 1}: {start} then {after} (the starts must increase "
            "strictly)")


def sample_batch(data: Mapping[str, np.ndarray], batch_size: int = 256,
                 rng: np.random.Generator | int | None = None, *, device: str | None = None
                 ) -> dict[str, Any]:
    """Draw ``batch_size`` rows uniformly with replacement from in-memory columns (e.g. ``store.load()``).

    Returns observations/next_observations (B, obs), actions (B, act), rewards/terminals/timeouts (B,)
    as NumPy arrays (float32, bool), or as torch tensors on ``device`` (all float32) when it is given.
    rng: a Generator, or a seed.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n = int(data["rewards"].shape[0])
    if n == 0:
        raise UserInputError("cannot sample from an empty store")
    idx = rng.integers(0, n, size=int(batch_size))
    batch = {name: np.asarray(data[name])[idx] for name in TRANSITION_COLUMNS}
    if device is None:
        return batch
    import torch

    return {name: torch.as_tensor(arr.astype(np.float32, copy=False), device=device)
            for name, arr in batch.items()}
