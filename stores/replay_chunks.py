"""Replay store chunk I/O: the Blosc codec chain, the fast whole-chunk reader/writer :class:`_ChunkFiles`
and the geometric growth rule of the arrays (:func:`_grown_capacity`)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

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


def _grown_capacity(current: int, needed: int, chunk: int, max_step_chunks: int = 32) -> int:
    """Rows to resize an array to so it holds ``needed`` rows: whole chunks, at least doubling the current
    capacity (capped at ``max_step_chunks`` extra chunks per step), so appends rarely rewrite metadata."""
    grown = min(2 * current, current + max_step_chunks * chunk)
    return max(-(-needed // chunk) * chunk, -(-grown // chunk) * chunk)

