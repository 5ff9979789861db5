"""Replay store writing: the write buffer, whole-chunk writes, the commit point, truncation, the writer
lock and closing (the crash-safe protocol of :mod:`stores.replay`'s docstring).

:class:`StoreWriter` is a base class of :class:`stores.replay.ReplayStore`, which opens the store and
sets the attributes declared here; it is not used on its own.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.guards import user_error_from_os
from stores.replay_chunks import _grown_capacity
from stores.replay_input import _batch_columns, _validate_batch, _validate_flat
from stores.replay_reader import StoreReader
from stores.replay_schema import BOUNDARY_ARRAY, LOCK_NAME, RESERVED_ATTRS, ROW_COLUMNS, _check_json, _now
from stores.schema import TrajectoryBatch

try:  # POSIX advisory locks; on other platforms a single writer is the user's responsibility
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _writes_to_disk(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for the writing methods of :class:`ReplayStore`: an OSError of the disk (full, read-only,
    permission, ...) abandons the handle (temporary files deleted, writer lock released; the store keeps
    its committed rows) and becomes one UserInputError line naming the store."""

    @functools.wraps(method)
    def wrapper(self: StoreWriter, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            self._abandon()
            err = user_error_from_os(exc, self.path, "write to replay store")
            raise UserInputError(f"{err}; the store keeps its {self._rows} committed rows and this handle "
                                 "is closed") from exc

    return wrapper


class StoreWriter(StoreReader):
    """The appending half of a replay store (mode ``"a"``): buffer, write, commit, truncate, close."""

    _group: Any
    _lock_file: Any | None
    _closed: bool

    @staticmethod
    def _acquire_lock(path: Path) -> Any | None:
        if fcntl is None:  # pragma: no cover
            return None
        try:
            handle = open(path / LOCK_NAME, "a+")  # noqa: SIM115 - held for the writer's lifetime
        except OSError as exc:
            raise UserInputError(
                f"cannot append to '{path}': {exc.strerror} (open it with mode='r' to read)") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UserInputError(
                f"'{path}' is held by another writer (in this or another process); close that one, or "
                "open with mode='r' to read the committed rows") from None
        return handle

    @staticmethod
    def _release_lock(handle: Any | None) -> None:
        if handle is not None and fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    @property
    def pending_rows(self) -> int:
        """Rows appended but not yet committed (0 in read mode)."""
        return self._pending_end - self._rows if self._mode == "a" else 0

    # ------------------------------------------------------------------ writing

    def _start_writing(self) -> None:
        """Prepare the write buffer: trim uncommitted leftovers of a crashed writer, reload the tail chunk."""
        for leftover in self.path.rglob("*.partial"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        for name, array in self._arrays.items():
            rows = self._trajectories if name == BOUNDARY_ARRAY else self._rows
            if array.shape[0] != rows:
                array.resize((rows, *array.shape[1:]))
        c = self.schema.chunk_rows
        self._written = self._rows
        self._buf_start = (self._rows // c) * c
        # Buffered columns cover absolute rows [_buf_start, _pending_end); the already-written tail of the
        # last partial chunk is kept so that chunk is rewritten whole without reading it back.
        self._buffer: dict[str, list[np.ndarray]] = {name: [] for name in ROW_COLUMNS}
        if self._buf_start < self._rows:
            for name in ROW_COLUMNS:
                self._buffer[name].append(self._read(name, self._buf_start, self._rows))
        self._pending_end = self._rows
        self._batch_ends: list[int] = []  # absolute row ends of uncommitted batches
        self._pending_starts: list[np.ndarray] = []  # absolute starts of uncommitted trajectories
        self._next_trajectory = self._trajectories

    def _require_writable(self) -> None:
        if self._closed:
            raise UserInputError(f"store '{self.path}' is closed")
        if self._mode != "a":
            raise UserInputError(f"store '{self.path}' is opened read-only; open it with mode='a' to write")

    @_writes_to_disk
    def append(self, batch: TrajectoryBatch) -> None:
        """Validate ``batch`` and buffer its valid steps (whole chunks are written as they fill up).

        Refuses (UserInputError naming the field) wrong shapes or dtypes, NaN/inf in observations,
        actions or rewards of valid steps, inf filter scores, terminals before a row's last valid step;
        the store is left exactly as it was. Rows become visible to readers after the batch is committed
        (at the latest by :meth:`flush`).
        """
        self._require_writable()
        _validate_batch(batch, self.observation_size, self.action_size)
        if batch.batch_size == 0:
            return
        columns, local_starts = _batch_columns(batch)
        self._stage(columns, local_starts, [batch.generator],
                    np.zeros(columns["rewards"].shape[0], dtype=np.int16))

    @_writes_to_disk
    def append_transitions(self, columns: Mapping[str, np.ndarray], episode_starts: np.ndarray, *,
                           generator: str = "real", generator_codes: np.ndarray | None = None,
                           generator_names: Sequence[str] | None = None) -> None:
        """Validate and buffer flat transitions that form whole trajectories (one batch).

        columns: ``observations``/``next_observations`` (n, obs), ``actions`` (n, act), ``rewards``,
        ``terminals``, ``timeouts`` (n,); optional provenance ``round``, ``learner_step``,
        ``filter_score``, ``start_index`` (n,) (defaults -1, -1, NaN, each trajectory's first row).
        episode_starts: (e,) or (e+1,) int offsets of the trajectories inside these rows (first 0).
        generator: name for all rows, unless ``generator_codes`` (n,) with ``generator_names`` is given.
        """
        self._require_writable()
        n, cols, starts = _validate_flat(columns, episode_starts, self.observation_size, self.action_size)
        if n == 0:
            return
        if generator_codes is None:
            if not isinstance(generator, str) or not generator:
                raise UserInputError("generator must be a non-empty name")
            names, codes = [generator], np.zeros(n, dtype=np.int16)
        else:
            names = [str(g) for g in (generator_names or [])]
            codes = np.asarray(generator_codes)
            if codes.shape != (n,) or codes.dtype.kind not in "iu":
                raise UserInputError(
                    f"'generator_codes' must be ({n},) integers, got {codes.shape} {codes.dtype}")
            if codes.size and (codes.min() < 0 or codes.max() >= len(names)):
                raise UserInputError(f"'generator_codes' must index generator_names (0..{len(names) - 1})")
        self._stage(cols, starts, names, codes)

    def _stage(self, columns: dict[str, np.ndarray], local_starts: np.ndarray, names: Sequence[str],
               local_codes: np.ndarray) -> None:
        """Buffer validated columns (without ``generator``/``trajectory``) as one batch."""
        n = int(columns["rewards"].shape[0])
        mapping = np.empty(len(names), dtype=np.int16)
        for i, name in enumerate(names):
            if name not in self._generators:
                if len(self._generators) >= np.iinfo(np.int16).max:
                    raise UserInputError("a store holds at most 32767 generator names")
                self._generators.append(name)
            mapping[i] = self._generators.index(name)
        lengths = np.diff(np.append(local_starts, n))
        e = local_starts.shape[0]
        full = dict(columns)
        full["generator"] = mapping[local_codes]
        full["trajectory"] = np.repeat(np.arange(self._next_trajectory, self._next_trajectory + e,
                                                 dtype=np.int64), lengths)
        for name in ROW_COLUMNS:
            self._buffer[name].append(np.ascontiguousarray(full[name], dtype=ROW_COLUMNS[name][0]))
        self._pending_starts.append(local_starts.astype(np.int64) + self._pending_end)
        self._next_trajectory += e
        self._pending_end += n
        self._batch_ends.append(self._pending_end)
        if self._pending_end - self._buf_start >= self.schema.chunk_rows:
            self._write(final=False)

    @_writes_to_disk
    def flush(self) -> None:
        """Write everything buffered and commit it; afterwards the rows survive a crash of this process."""
        self._require_writable()
        self._write(final=True)

    def _write(self, *, final: bool) -> None:
        """Write buffered rows (whole chunks, or everything when ``final``), then commit whole batches."""
        c = self.schema.chunk_rows
        whole = ((self._pending_end - self._buf_start) // c) * c
        end = self._pending_end if final else self._buf_start + whole
        if end > self._written:
            data = {name: (parts[0] if len(parts) == 1 else np.concatenate(parts))
                    for name, parts in self._buffer.items()}
            count = end - self._buf_start
            # Arrays grow in whole chunks, geometrically (few metadata writes); rows past the committed
            # length are not part of the store whatever the array shape says.
            capacity = _grown_capacity(self._arrays["rewards"].shape[0], end, c)
            for name, array in self._arrays.items():
                if name == BOUNDARY_ARRAY:
                    continue
                if array.shape[0] < end:
                    array.resize(self.schema.shape(name, capacity))
                files = self._chunk_files.get(name)
                if files is not None:
                    files.write(self._buf_start // c, data[name][:count])
                else:
                    array[self._buf_start:end] = data[name][:count]
            self._written = end
            keep_from = (end // c) * c
            offset = keep_from - self._buf_start
            self._buffer = {name: ([arr[offset:]] if arr.shape[0] > offset else [])
                            for name, arr in data.items()}
            self._buf_start = keep_from
        committed = max((b for b in self._batch_ends if b <= self._written), default=self._rows)
        if committed > self._rows:
            self._commit(committed)

    def _commit(self, rows: int) -> None:
        """Write trajectory starts below ``rows``, then the committed lengths (the commit point)."""
        starts = np.concatenate(self._pending_starts)
        new = starts[starts < rows]
        boundary = self._arrays[BOUNDARY_ARRAY]
        e_old = self._trajectories
        e_new = e_old + new.shape[0]
        if boundary.shape[0] < e_new:
            boundary.resize((_grown_capacity(boundary.shape[0], e_new, self.schema.chunk_rows),))
        boundary[e_old:e_new] = new
        self._pending_starts = [starts[starts >= rows]]
        self._batch_ends = [b for b in self._batch_ends if b > rows]
        updated = {"committed_rows": int(rows), "committed_trajectories": int(e_new),
                   "generators": list(self._generators), "updated": _now()}
        self._group.update_attributes(updated)
        self._attrs.update(updated)
        self._rows, self._trajectories = int(rows), int(e_new)

    @_writes_to_disk
    def update_attrs(self, **kv: Any) -> None:
        """Set JSON-native attributes (provenance or user keys) and write them at once.

        Store-managed keys (:data:`RESERVED_ATTRS`) are refused. Uncommitted rows stay uncommitted.
        """
        self._require_writable()
        _check_json(kv, "attribute values")
        clash = sorted(RESERVED_ATTRS & set(kv))
        if clash:
            raise UserInputError(f"attributes {clash} are managed by the store and cannot be set")
        new = {**kv, "updated": _now()}
        self._group.update_attributes(new)
        self._attrs.update(new)

    @_writes_to_disk
    def truncate(self, n_rows: int) -> None:
        """Cut the store to its first ``n_rows`` committed rows (e.g. a resumed run dropping the rounds it
        generated after its last checkpoint); rows appended but not yet committed are discarded too.

        ``n_rows`` must be a trajectory boundary: 0, the committed length, or the first row of a committed
        trajectory (a store only ever holds whole trajectories); UserInputError otherwise, or when it is
        negative or larger than ``len(store)``.

        Crash safety: the new committed lengths are written first, in the single atomic rewrite of the
        group metadata that is every write's commit point; only then are the arrays shrunk. A ``kill -9``
        at any moment leaves a valid store holding either the old or the new committed length (rows past
        the committed length are garbage that the next writer trims, as after an interrupted append).
        """
        self._require_writable()
        if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)):
            raise UserInputError(f"truncate() takes a row count (int), got {type(n_rows).__name__}")
        n = int(n_rows)
        if n < 0 or n > self._rows:
            raise UserInputError(
                f"cannot truncate '{self.path}' to {n} rows: it holds {self._rows} committed rows "
                f"(choose 0..{self._rows})")
        starts = self.episode_starts()  # (E+1,), last entry = committed rows
        e = int(np.searchsorted(starts, n, side="left"))
        if starts[e] != n:
            raise UserInputError(
                f"cannot truncate '{self.path}' to {n} rows: row {n} lies inside trajectory {e - 1} "
                f"(rows {int(starts[e - 1])}-{int(starts[e]) - 1}); choose a trajectory boundary")
        if n == self._rows and self.pending_rows == 0:
            return
        updated = {"committed_rows": n, "committed_trajectories": e, "updated": _now()}
        self._group.update_attributes(updated)  # the commit point: one atomic metadata rewrite
        self._attrs.update(updated)
        self._rows, self._trajectories = n, e
        self._start_writing()  # shrink the arrays, drop buffered rows, reload the new tail chunk

    def _abandon(self) -> None:
        """After a failed write: delete this writer's temporary files, release the lock, close the handle.
        Rows written past the committed length are left for the next writer to trim."""
        if self._closed:
            return
        self._closed = True
        if self._mode == "a":
            for leftover in self.path.rglob("*.partial"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        self._release_lock(self._lock_file)
        self._lock_file = None

    @_writes_to_disk
    def _final_write(self) -> None:
        self._write(final=True)

    def close(self) -> None:
        """Flush (append mode) and release the writer lock; the store can no longer be used."""
        if self._closed:
            return
        try:
            if self._mode == "a":
                self._final_write()
        finally:
            self._closed = True
            self._release_lock(self._lock_file)
            self._lock_file = None

