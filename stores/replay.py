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
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.guards import STORE_FORMAT, STORE_LOCK, staged_dir, user_error_from_os
from stores.schema import TrajectoryBatch

try:  # POSIX advisory locks; on other platforms a single writer is the user's responsibility
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FORMAT_NAME = STORE_FORMAT  # "augment-replay-store"
FORMAT_VERSION = 1
DEFAULT_CHUNK_ROWS = 32768
LOCK_NAME = STORE_LOCK  # ".writer.lock"

# Column name -> (dtype, kind of trailing dimension: "obs", "act" or None for 1-D).
TRANSITION_COLUMNS: dict[str, tuple[str, str | None]] = {
    "observations": ("float32", "obs"),
    "actions": ("float32", "act"),
    "rewards": ("float32", None),
    "next_observations": ("float32", "obs"),
    "terminals": ("bool", None),
    "timeouts": ("bool", None),
}
PROVENANCE_COLUMNS: dict[str, tuple[str, str | None]] = {
    "generator": ("int16", None),
    "round": ("int32", None),
    "learner_step": ("int64", None),
    "filter_score": ("float32", None),
    "start_index": ("int64", None),
    "trajectory": ("int64", None),
}
ROW_COLUMNS: dict[str, tuple[str, str | None]] = {**TRANSITION_COLUMNS, **PROVENANCE_COLUMNS}
BOUNDARY_ARRAY = "trajectory_starts"
FLOAT_COLUMNS = ("observations", "actions", "rewards", "next_observations")

# Attributes the store manages itself; ``update_attrs`` refuses them.
RESERVED_ATTRS = frozenset({
    "format", "format_version", "schema", "committed_rows", "committed_trajectories", "generators",
    "created", "updated",
})
# Well-known provenance attributes (all optional, JSON-native; None when unknown).
PROVENANCE_ATTRS = ("source_dataset", "source_hash", "env_id", "generator_name", "generator_config",
                    "seed", "normalization")


def _writes_to_disk(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for the writing methods of :class:`ReplayStore`: an OSError of the disk (full, read-only,
    permission, ...) abandons the handle (temporary files deleted, writer lock released; the store keeps
    its committed rows) and becomes one UserInputError line naming the store."""

    @functools.wraps(method)
    def wrapper(self: ReplayStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            self._abandon()
            err = user_error_from_os(exc, self.path, "write to replay store")
            raise UserInputError(f"{err}; the store keeps its {self._rows} committed rows and this handle "
                                 "is closed") from exc

    return wrapper


def _now() -> str:
    """Current UTC time as ISO-8601 text with a trailing Z."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_json(value: Any, what: str) -> None:
    """Raise :class:`UserInputError` unless ``value`` is JSON-native (dict/list/str/int/float/bool/None)."""
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise UserInputError(
            f"{what} must be JSON-native (dict, list, str, int, float, bool, None): {exc}; "
            "convert NumPy values with .tolist() / float()") from None


@dataclass(frozen=True)
class StoreSchema:
    """Shapes of a store: observation size ``obs``, action size ``act`` and rows per chunk ``C``."""

    observation_size: int
    action_size: int
    chunk_rows: int

    def width(self, kind: str | None) -> int | None:
        """Trailing dimension for a column kind ("obs" -> obs, "act" -> act, None -> 1-D)."""
        return {"obs": self.observation_size, "act": self.action_size, None: None}[kind]

    def shape(self, name: str, rows: int) -> tuple[int, ...]:
        """On-disk shape of row column ``name`` holding ``rows`` rows."""
        width = self.width(ROW_COLUMNS[name][1])
        return (rows,) if width is None else (rows, width)

    def to_json(self) -> dict[str, Any]:
        columns = {name: {"dtype": dtype, "shape": ["N"] if kind is None else ["N", self.width(kind)]}
                   for name, (dtype, kind) in ROW_COLUMNS.items()}
        columns[BOUNDARY_ARRAY] = {"dtype": "int64", "shape": ["E"]}
        return {"observation_size": self.observation_size, "action_size": self.action_size,
                "chunk_rows": self.chunk_rows, "columns": columns}


BLOSC_CONFIG = {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle", "blocksize": 0}


def _compressors() -> list[Any]:
    """Blosc(lz4, level 5, bit shuffle).

    On 1M hopper-sized transitions (benchmarks/bench_store.py) a store is 3% smaller than
    ``np.savez_compressed`` (zlib) of the same arrays on random normal floats and 9% smaller on real Hopper
    trajectories, while compressing ~10x faster than zlib and ~3x faster than Blosc-zstd, which the append
    target (>= 1M transitions/s) needs.
    """
    from zarr.codecs import BloscCodec

    return [BloscCodec(**BLOSC_CONFIG)]


class _ChunkFiles:
    """Reads and writes whole chunks of one array as ``<array>/c/<k>[/0]`` files, byte for byte what Zarr
    reads and writes for our codec chain (``bytes`` little-endian -> ``blosc`` lz4/bitshuffle): a written
    chunk is Blosc-compressed and renamed into place (atomic, like Zarr's local store); a read chunk is
    decompressed straight into the output array. This skips Zarr's per-chunk asyncio/thread machinery and
    copies (about half the append and load time). Used only when the array's metadata is exactly the chain
    this module creates; otherwise the store reads and writes through Zarr."""

    def __init__(self, folder: Path, dtype: np.dtype[Any], chunk_shape: tuple[int, ...]) -> None:
        from numcodecs import Blosc

        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[str(BLOSC_CONFIG["shuffle"])]
        self.codec = Blosc.from_config({"cname": BLOSC_CONFIG["cname"], "clevel": BLOSC_CONFIG["clevel"],
                                        "shuffle": shuffle, "blocksize": BLOSC_CONFIG["blocksize"],
                                        "typesize": int(dtype.itemsize)})
        self.folder = folder
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.chunk_shape = chunk_shape
        self._made: set[Path] = set()  # chunk directories known to exist

    @staticmethod
    def matches(array: Any) -> bool:
        """True when ``array``'s metadata is exactly the layout and codec chain :func:`_compressors` makes."""
        meta = array.metadata.to_dict()
        codecs = meta.get("codecs", [])
        itemsize = np.dtype(array.dtype).itemsize
        return (meta.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
                and not meta.get("storage_transformers")
                and len(codecs) == 2 and codecs[0].get("name") == "bytes"
                and codecs[0].get("configuration", {"endian": "little"}) == {"endian": "little"}
                and codecs[1] == {"name": "blosc", "configuration": {"typesize": itemsize, **BLOSC_CONFIG}})

    def _key(self, k: int) -> Path:
        key = self.folder / str(k)
        return key / "0" if len(self.chunk_shape) == 2 else key

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)``, decoded chunk by chunk (whole chunks straight into the result)."""
        c = self.chunk_shape[0]
        out = np.empty((stop - start, *self.chunk_shape[1:]), dtype=self.dtype)
        for k in range(start // c, -(-stop // c)):
            a, b = max(start, k * c), min(stop, (k + 1) * c)
            raw = self._key(k).read_bytes()
            if b - a == c:
                self.codec.decode(raw, out=out[a - start:b - start])
            else:
                chunk = np.empty(self.chunk_shape, dtype=self.dtype)
                self.codec.decode(raw, out=chunk)
                out[a - start:b - start] = chunk[a - k * c:b - k * c]
        return out

    def write(self, first_chunk: int, rows: np.ndarray) -> None:
        """Write ``rows`` (whole chunks; a short last one is zero-padded) from chunk ``first_chunk`` on."""
        c = self.chunk_shape[0]
        for i in range(0, rows.shape[0], c):
            piece = rows[i:i + c]
            if piece.shape[0] < c:
                padded = np.zeros(self.chunk_shape, dtype=self.dtype)
                padded[:piece.shape[0]] = piece
                piece = padded
            encoded = self.codec.encode(np.ascontiguousarray(piece, dtype=self.dtype))
            key = self._key(first_chunk + i // c)
            if key.parent not in self._made:
                key.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(key.parent)
            tmp = key.with_name(f"{key.name}.{uuid.uuid4().hex}.partial")
            try:
                with open(tmp, "wb") as f:
                    f.write(encoded)
                os.replace(tmp, key)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise


class ReplayStore:
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

    @property
    def pending_rows(self) -> int:
        """Rows appended but not yet committed (0 in read mode)."""
        return self._pending_end - self._rows if self._mode == "a" else 0

    def __repr__(self) -> str:
        return (f"ReplayStore('{self.path}', mode='{self._mode}', rows={self._rows}, "
                f"trajectories={self._trajectories}, obs={self.observation_size}, act={self.action_size})")

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

    def __enter__(self) -> ReplayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

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
            bad = np.flatnonzero(np.diff(starts) <= 0)
            if bad.size:
                raise UserInputError(
                    f"{where} trajectory {bad[0]} is empty or trajectory_starts decreases there")
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


# ---------------------------------------------------------------------- validation and conversion helpers


def _grown_capacity(current: int, needed: int, chunk: int, max_step_chunks: int = 32) -> int:
    """Rows to resize an array to so it holds ``needed`` rows: whole chunks, at least doubling the current
    capacity (capped at ``max_step_chunks`` extra chunks per step), so appends rarely rewrite metadata."""
    grown = min(2 * current, current + max_step_chunks * chunk)
    return max(-(-needed // chunk) * chunk, -(-grown // chunk) * chunk)


def _int_field(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise UserInputError(f"TrajectoryBatch field '{name}' has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "iu":
        raise UserInputError(f"TrajectoryBatch field '{name}' has dtype {arr.dtype}, expected integers")


def _validate_batch(batch: TrajectoryBatch, obs_size: int, act_size: int) -> None:
    """Check a batch against the store's schema; raise :class:`UserInputError` naming the field."""
    if not isinstance(batch, TrajectoryBatch):
        raise UserInputError(f"append() takes a stores.schema.TrajectoryBatch, got {type(batch).__name__}")
    if not isinstance(batch.generator, str) or not batch.generator:
        raise UserInputError("TrajectoryBatch field 'generator' must be a non-empty name")
    arrays = {name: getattr(batch, name) for name in (
        "observations", "actions", "rewards", "terminals", "lengths", "round", "learner_step",
        "filter_score", "start_index")}
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray):
            raise UserInputError(
                f"TrajectoryBatch field '{name}' must be a NumPy array, got {type(arr).__name__}")
    act = batch.actions
    if act.ndim != 3 or act.shape[2] != act_size:
        raise UserInputError(
            f"TrajectoryBatch field 'actions' has shape {act.shape}, expected (B, L, {act_size})")
    b, length = act.shape[:2]
    expected = {"observations": (b, length + 1, obs_size), "rewards": (b, length), "terminals": (b, length)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise UserInputError(
                f"TrajectoryBatch field '{name}' has shape {arrays[name].shape}, expected {shape}")
    for name in ("observations", "actions", "rewards", "filter_score"):
        if arrays[name].dtype.kind != "f":
            raise UserInputError(
                f"TrajectoryBatch field '{name}' has dtype {arrays[name].dtype}, expected float")
    if batch.terminals.dtype != np.bool_:
        raise UserInputError(
            f"TrajectoryBatch field 'terminals' has dtype {batch.terminals.dtype}, expected bool")
    for name in ("lengths", "round", "learner_step", "start_index"):
        _int_field(name, arrays[name], (b,))
    if batch.filter_score.shape != (b,):
        raise UserInputError(
            f"TrajectoryBatch field 'filter_score' has shape {batch.filter_score.shape}, expected ({b},)")
    if b == 0:
        return
    lengths = batch.lengths
    if lengths.min() < 1 or lengths.max() > length:
        raise UserInputError(f"TrajectoryBatch field 'lengths' must lie in [1, {length}]")
    for name, low, high in (("round", -1, np.iinfo(np.int32).max), ("learner_step", -1, None),
                            ("start_index", -1, None)):
        arr = arrays[name]
        if arr.min() < low or (high is not None and arr.max() > high):
            raise UserInputError(f"TrajectoryBatch field '{name}' must be >= {low}" +
                                 (f" and <= {high}" if high is not None else "") + " (-1 = unknown)")
    if np.isinf(batch.filter_score).any():
        raise UserInputError("TrajectoryBatch field 'filter_score' holds inf (use NaN for 'unfiltered')")
    full = bool((lengths == length).all())
    valid = None if full else np.arange(length)[None, :] < lengths[:, None]
    for name in ("observations", "actions", "rewards"):
        arr = arrays[name]
        ok = np.isfinite(arr) if arr.ndim == 2 else np.isfinite(arr).all(axis=-1)
        if np.dtype(arr.dtype).itemsize > 4:  # values beyond float32 range become inf when stored
            with np.errstate(over="ignore"):
                ok32 = np.isfinite(arr.astype(np.float32))
            ok &= ok32 if arr.ndim == 2 else ok32.all(axis=-1)
        if valid is not None:
            mask = np.concatenate([np.ones((b, 1), bool), valid], axis=1) if name == "observations" else valid
            ok = ok | ~mask
        if not ok.all():
            row, step = np.argwhere(~ok)[0]
            raise UserInputError(
                f"TrajectoryBatch field '{name}' holds NaN or inf (trajectory {row}, step {step}), "
                "or a value too large for float32")
    last = np.arange(length)[None, :] == (lengths[:, None] - 1)
    early = batch.terminals & ~last
    if valid is not None:
        early &= valid
    if early.any():
        row, step = np.argwhere(early)[0]
        raise UserInputError(
            f"TrajectoryBatch field 'terminals' is True at trajectory {row}, step {step}, before its last "
            f"valid step {lengths[row] - 1}; end the trajectory there (set lengths)")


def _batch_columns(batch: TrajectoryBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flatten a validated batch to row columns (trajectory-major) and its local trajectory starts (B,)."""
    b, length, act = batch.actions.shape
    obs = batch.observations.shape[2]
    lengths = batch.lengths.astype(np.int64)
    if (lengths == length).all():
        cols = {
            "observations": batch.observations[:, :-1].reshape(b * length, obs),
            "next_observations": batch.observations[:, 1:].reshape(b * length, obs),
            "actions": batch.actions.reshape(b * length, act),
            "rewards": batch.rewards.reshape(b * length),
            "terminals": batch.terminals.reshape(b * length),
        }
        last = np.zeros((b, length), dtype=bool)
        last[:, -1] = True
        last = last.reshape(-1)
    else:
        rows, steps = np.nonzero(np.arange(length)[None, :] < lengths[:, None])
        cols = {
            "observations": batch.observations[rows, steps],
            "next_observations": batch.observations[rows, steps + 1],
            "actions": batch.actions[rows, steps],
            "rewards": batch.rewards[rows, steps],
            "terminals": batch.terminals[rows, steps],
        }
        last = steps == (lengths[rows] - 1)
    cols["timeouts"] = last & ~cols["terminals"]
    cols["round"] = np.repeat(batch.round, lengths)
    cols["learner_step"] = np.repeat(batch.learner_step, lengths)
    cols["filter_score"] = np.repeat(batch.filter_score, lengths)
    cols["start_index"] = np.repeat(batch.start_index, lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return cols, starts


def _validate_flat(columns: Mapping[str, np.ndarray], episode_starts: np.ndarray, obs_size: int,
                   act_size: int) -> tuple[int, dict[str, np.ndarray], np.ndarray]:
    """Check flat transition columns; return (n, columns with provenance defaults, local starts (e,))."""
    missing = [name for name in TRANSITION_COLUMNS if name not in columns]
    if missing:
        raise UserInputError(f"transitions are missing field(s) {missing}")
    n = int(np.asarray(columns["rewards"]).shape[0])
    out: dict[str, np.ndarray] = {}
    for name, (dtype, kind) in TRANSITION_COLUMNS.items():
        arr = np.asarray(columns[name])
        width = {"obs": obs_size, "act": act_size, None: None}[kind]
        shape = (n,) if width is None else (n, width)
        if arr.shape != shape:
            raise UserInputError(f"transition field '{name}' has shape {arr.shape}, expected {shape}")
        if dtype == "bool" and arr.dtype != np.bool_:
            raise UserInputError(f"transition field '{name}' has dtype {arr.dtype}, expected bool")
        if dtype == "float32":
            if arr.dtype.kind != "f":
                raise UserInputError(f"transition field '{name}' has dtype {arr.dtype}, expected float")
            with np.errstate(over="ignore"):
                arr = arr.astype(np.float32, copy=False)
            finite = np.isfinite(arr.reshape(n, -1)).all(axis=1)
            if not finite.all():
                row = int(np.argmin(finite))
                raw = np.asarray(columns[name]).reshape(n, -1)[row]
                what = "NaN or inf" if not np.isfinite(raw).all() else "a value beyond float32's range"
                raise UserInputError(f"transition field '{name}' holds {what} (first bad row {row})")
        out[name] = arr
    starts = np.asarray(episode_starts)
    if starts.dtype.kind not in "iu" or starts.ndim != 1:
        raise UserInputError("'episode_starts' must be a 1-D integer array of trajectory offsets")
    starts = starts.astype(np.int64)
    if starts.size and starts[-1] == n and n > 0:
        starts = starts[:-1]
    if n and (starts.size == 0 or starts[0] != 0 or (np.diff(np.append(starts, n)) <= 0).any()):
        raise UserInputError(
            "'episode_starts' must start at 0 and increase strictly, each below the row count")
    if n:
        is_last = np.zeros(n, dtype=bool)
        is_last[np.append(starts[1:], n) - 1] = True
        for name in ("terminals", "timeouts"):
            inner = np.flatnonzero(out[name] & ~is_last)
            if inner.size:
                raise UserInputError(
                    f"transition field '{name}' is True at row {inner[0]} inside a trajectory; "
                    "split the trajectory there (episode_starts)")
    lengths = np.diff(np.append(starts, n))
    defaults = {"round": (-1, "int32"), "learner_step": (-1, "int64"), "filter_score": (np.nan, "float32")}
    for name, (default, dtype) in defaults.items():
        if name in columns:
            arr = np.asarray(columns[name])
            kind_ok = arr.dtype.kind == "f" if dtype == "float32" else arr.dtype.kind in "iu"
            if arr.shape != (n,) or not kind_ok:
                raise UserInputError(
                    f"transition field '{name}' must be ({n},) {dtype}, got {arr.shape} {arr.dtype}")
            out[name] = arr.astype(dtype)
        else:
            out[name] = np.full(n, default, dtype=dtype)
    if "start_index" in columns:
        arr = np.asarray(columns["start_index"])
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise UserInputError(f"transition field 'start_index' must be ({n},) integers")
        out["start_index"] = arr.astype(np.int64)
    else:
        out["start_index"] = np.repeat(starts, lengths)
    return n, out, starts


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
