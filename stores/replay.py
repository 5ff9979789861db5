"""ReplayStore: the append-only Zarr v3 home of every synthetic (and imported) transition.

Layout (full specification in ``docs/store-format.md``): one Zarr v3 group holding one array per column,
all with the same number of rows ``N`` (transitions) and the same chunking along rows, plus the
trajectory boundary array ``trajectory_starts`` (E,). Group attributes carry the format version, the
schema, provenance (source dataset and its content hash, generator name and config, seed, normalisation
statistics), created/updated times and the *committed* lengths ``committed_rows`` /
``committed_trajectories``.

Write protocol (crash safety):

1. ``append`` validates a batch and only then buffers it in RAM (the store on disk is untouched when a
   batch is refused).
2. Whenever the buffer holds whole chunks they are written; ``flush`` also writes the partial last chunk.
   Zarr's local store writes each file to a temporary name and renames it into place, so a chunk file is
   always either the old or the new version.
3. Only after every data file of the batches being committed is in place are the group attributes
   rewritten with the new committed lengths (one atomic file replace). Readers read rows ``[0, committed)``
   only, so neither a reader nor a crash ever sees part of a batch.

A writer holds an exclusive ``fcntl`` lock on ``<store>/.writer.lock`` (released by the OS even on
``kill -9``); opening for appending trims any uncommitted rows a crashed writer left behind.

The code is split by job; this module opens and creates stores and re-exports every name of the others:

* :mod:`stores.replay_schema`: format constants, columns, reserved/provenance attributes, StoreSchema;
* :mod:`stores.replay_chunks`: the Blosc codec chain, the whole-chunk file I/O, array growth;
* :mod:`stores.replay_input`: checking and flattening the batches and transitions given to append;
* :mod:`stores.replay_reader`: reading committed rows, summaries, ``validate``, ``sample_batch``;
* :mod:`stores.replay_writer`: buffering, chunk writes, the commit point, truncate, the writer lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.guards import staged_dir, user_error_from_os
from stores.replay_chunks import BLOSC_CONFIG, _ChunkFiles, _compressors, _grown_capacity
from stores.replay_input import _batch_columns, _int_field, _validate_batch, _validate_flat
from stores.replay_reader import StoreReader, sample_batch
from stores.replay_schema import (
    BOUNDARY_ARRAY,
    DEFAULT_CHUNK_ROWS,
    FLOAT_COLUMNS,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_NAME,
    PROVENANCE_ATTRS,
    PROVENANCE_COLUMNS,
    RESERVED_ATTRS,
    ROW_COLUMNS,
    TRANSITION_COLUMNS,
    StoreSchema,
    _check_json,
    _now,
)
from stores.replay_writer import StoreWriter, _writes_to_disk, fcntl

__all__ = [
    "BLOSC_CONFIG", "BOUNDARY_ARRAY", "DEFAULT_CHUNK_ROWS", "FLOAT_COLUMNS", "FORMAT_NAME", "FORMAT_VERSION",
    "LOCK_NAME", "PROVENANCE_ATTRS", "PROVENANCE_COLUMNS", "RESERVED_ATTRS", "ROW_COLUMNS",
    "TRANSITION_COLUMNS", "ReplayStore", "StoreReader", "StoreSchema", "StoreWriter", "_ChunkFiles",
    "_batch_columns", "_check_json", "_compressors", "_grown_capacity", "_int_field", "_now",
    "_validate_batch", "_validate_flat", "_writes_to_disk", "fcntl", "sample_batch",
]


class ReplayStore(StoreWriter):
    """An append-only replay store on Zarr v3 (see module docstring and ``docs/store-format.md``).

    Create with :meth:`create`, open with :meth:`open`; do not call the constructor directly.
    ``len(store)`` is the number of committed transitions at open (or last :meth:`refresh`/:meth:`flush`).
    """

    def __init__(self, path: Path, group: Any, mode: str, lock_file: Any | None) -> None:
        self.path = path
        self._group = group
        self._mode = mode
        self._lock_file = lock_file
        self._closed = False
        self._load_metadata()
        if mode == "a":
            self._start_writing()

    # ------------------------------------------------------------------ opening and creating

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, observation_size: int, action_size: int,
               attrs: dict[str, Any] | None = None, overwrite: bool = False,
               chunk_rows: int = DEFAULT_CHUNK_ROWS, staged: bool = True) -> ReplayStore:
        """Create an empty store at ``path`` and return it opened for appending.

        observation_size / action_size: sizes of one observation / action vector.
        attrs: JSON-native provenance (see :data:`PROVENANCE_ATTRS`) and any user keys.
        overwrite: replace an existing replay store at ``path`` (else refuse). Only a replay store that no
        process is writing to is replaced; any other file or directory is a UserInputError
        (:func:`stores.guards.check_replaceable`).
        chunk_rows: rows per chunk ``C`` (all columns share it); writes happen in whole chunks.

        A disk error while creating (full, read-only, permission) is one UserInputError line, and a failure
        or a kill while creating leaves nothing at ``path`` (the store is made under a hidden temporary
        name and renamed into place complete). staged=False creates it directly at ``path``, which must not
        exist: for callers that build a whole output under a temporary name themselves (import, merge).
        """
        path = Path(path)
        if observation_size < 1 or action_size < 1:
            raise UserInputError(
                f"observation_size and action_size must be >= 1, got {observation_size} and {action_size}")
        if chunk_rows < 1:
            raise UserInputError(f"chunk_rows must be >= 1, got {chunk_rows}")
        user_attrs = dict(attrs or {})
        _check_json(user_attrs, "store attrs")
        clash = sorted(RESERVED_ATTRS & set(user_attrs))
        if clash:
            raise UserInputError(f"store attrs {clash} are managed by the store; use other names")
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise UserInputError(
                f"'{path}' already exists; choose another path or pass overwrite=True (--overwrite)")
        if not staged:
            try:
                path.mkdir()
                cls._write_empty(path, observation_size, action_size, chunk_rows, user_attrs)
            except OSError as exc:
                raise user_error_from_os(exc, path, "create replay store") from exc
            return cls.open(path, mode="a")
        # Built under a hidden temporary name and renamed into place complete: a kill mid-create leaves no
        # half-made directory at ``path`` (the next writer there removes the temporary).
        with staged_dir(path, overwrite=overwrite, allowed=("store",)) as tmp:
            tmp.mkdir()
            cls._write_empty(tmp, observation_size, action_size, chunk_rows, user_attrs)
        return cls.open(path, mode="a")

    @staticmethod
    def _write_empty(path: Path, observation_size: int, action_size: int, chunk_rows: int,
                     user_attrs: dict[str, Any]) -> None:
        """Write an empty store's arrays, then its group metadata (last: the store exists from then on)."""
        import zarr

        schema = StoreSchema(int(observation_size), int(action_size), int(chunk_rows))
        now = _now()
        group_attrs: dict[str, Any] = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "schema": schema.to_json(),
            **{key: None for key in PROVENANCE_ATTRS}, **user_attrs,
            "generators": [], "created": now, "updated": now,
            "committed_rows": 0, "committed_trajectories": 0,
        }
        group = zarr.open_group(str(path), mode="w-", zarr_format=3)
        for name in ROW_COLUMNS:
            dtype, kind = ROW_COLUMNS[name]
            width = schema.width(kind)
            shape = (0,) if width is None else (0, width)
            chunks = (schema.chunk_rows,) if width is None else (schema.chunk_rows, width)
            group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, compressors=_compressors(),
                               fill_value=False if dtype == "bool" else 0)
        group.create_array(BOUNDARY_ARRAY, shape=(0,), chunks=(schema.chunk_rows,), dtype="int64",
                           compressors=_compressors(), fill_value=0)
        # The group metadata with the format attributes is written last: a half-created directory is
        # reported as "not a replay store" rather than opened.
        group.update_attributes(group_attrs)

    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r") -> ReplayStore:
        """Open an existing store: ``mode="r"`` read-only, ``"a"`` append (one writer at a time).

        Raises :class:`UserInputError` (one line) when ``path`` is not a store, is of a newer format
        version, has damaged metadata, or another process is appending to it.
        """
        import zarr

        if mode not in ("r", "a"):
            raise UserInputError(f"mode must be 'r' (read) or 'a' (append), got {mode!r}")
        path = Path(path)
        if not path.exists():
            raise UserInputError(
                f"no replay store at '{path}'; create one with `augment store import` or ReplayStore.create")
        if not path.is_dir() or not (path / "zarr.json").is_file():
            hint = " (it is a Zarr v2 group)" if (path / ".zgroup").exists() else ""
            raise UserInputError(
                f"'{path}' is not a replay store: no Zarr v3 group metadata (zarr.json){hint}")
        lock_file = cls._acquire_lock(path) if mode == "a" else None
        try:
            try:
                group = zarr.open_group(str(path), mode="r" if mode == "r" else "r+", zarr_format=3,
                                        use_consolidated=False)
                attrs = dict(group.attrs)
            except Exception as exc:  # zarr raises many kinds; the user needs one line
                raise UserInputError(
                    f"'{path}' is not a readable replay store: {type(exc).__name__}: {exc}".split("\n")[0]
                ) from None
            cls._check_format(path, attrs)
            return cls(path, group, mode, lock_file)
        except BaseException:
            cls._release_lock(lock_file)
            raise

    @staticmethod
    def _check_format(path: Path, attrs: dict[str, Any]) -> None:
        if attrs.get("format") != FORMAT_NAME:
            raise UserInputError(
                f"'{path}' is a Zarr group but not a replay store (its attribute 'format' is "
                f"{attrs.get('format')!r}, expected '{FORMAT_NAME}')")
        version = attrs.get("format_version")
        if not isinstance(version, int):
            raise UserInputError(f"'{path}': attribute 'format_version' is missing or not an integer")
        if version > FORMAT_VERSION:
            raise UserInputError(
                f"'{path}' has store format version {version}, newer than the {FORMAT_VERSION} this toolkit "
                "reads; upgrade diffusion-augment to open it")

    def _load_metadata(self) -> None:
        """Read attributes and array handles; check the schema and committed lengths against the arrays."""
        attrs = dict(self._group.attrs)
        self._check_format(self.path, attrs)
        try:
            sch = attrs["schema"]
            self.schema = StoreSchema(int(sch["observation_size"]), int(sch["action_size"]),
                                      int(sch["chunk_rows"]))
            self._rows = int(attrs["committed_rows"])
            self._trajectories = int(attrs["committed_trajectories"])
            self._generators = [str(g) for g in attrs["generators"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"store '{self.path}' has damaged attributes ({exc!r} missing or invalid)") \
                from None
        self._attrs = attrs
        self._arrays: dict[str, Any] = {}
        for name in (*ROW_COLUMNS, BOUNDARY_ARRAY):
            try:
                array = self._group[name]
            except Exception:
                raise UserInputError(
                    f"store '{self.path}' is damaged: array '{name}' is missing or its metadata is unreadable"
                ) from None
            dtype = ROW_COLUMNS[name][0] if name in ROW_COLUMNS else "int64"
            needed = self._trajectories if name == BOUNDARY_ARRAY else self._rows
            expected_tail = () if name == BOUNDARY_ARRAY else self.schema.shape(name, 0)[1:]
            if np.dtype(array.dtype) != np.dtype(dtype) or tuple(array.shape[1:]) != expected_tail:
                raise UserInputError(
                    f"store '{self.path}' is damaged: array '{name}' has dtype {array.dtype} and shape "
                    f"{array.shape}, expected {dtype} and (rows, *{expected_tail})")
            if array.shape[0] < needed:
                raise UserInputError(
                    f"store '{self.path}' is damaged: array '{name}' has {array.shape[0]} rows but "
                    f"{needed} are committed")
            if self._mode == "a":  # every chunk is written, even all-fill ones, so a lost file is detectable
                array = array.with_config({"write_empty_chunks": True})
            self._arrays[name] = array
        self._chunk_files = {
            name: _ChunkFiles(self.path / name / "c", np.dtype(array.dtype), tuple(array.chunks))
            for name, array in self._arrays.items() if _ChunkFiles.matches(array)}

    def __repr__(self) -> str:
        return (f"ReplayStore('{self.path}', mode='{self._mode}', rows={self._rows}, "
                f"trajectories={self._trajectories}, obs={self.observation_size}, act={self.action_size})")

    def __enter__(self) -> ReplayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> None:
        """Re-read the committed lengths and array handles to see rows committed since opening (read mode)."""
        if self._mode != "r":
            return
        import zarr

        try:
            self._group = zarr.open_group(str(self.path), mode="r", zarr_format=3, use_consolidated=False)
        except Exception as exc:
            raise UserInputError(f"cannot re-open '{self.path}': {type(exc).__name__}: {exc}") from None
        self._load_metadata()
