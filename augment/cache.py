"""Trained-model caches: one lock and one atomic write, shared by the world model and the diffusion model.

A model lives in ``augment_home()/<kind>/<dataset hash>-<config hash>/``. :func:`load_or_train` holds an
exclusive advisory lock on ``<target>.lock`` while it looks, so parallel runs (``augment compare --jobs``)
train a model once: the second waits, then loads what the first saved. A new model is saved into a
temporary sibling directory and renamed into place, so a crash never leaves a half-written cache entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

try:  # POSIX only; elsewhere the cache works without the lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

M = TypeVar("M")


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (POSIX; elsewhere no lock)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def load_or_train(target: Path, *, complete: str, load: Callable[[Path], M], train: Callable[[], M],
                  save: Callable[[M, Path], object]) -> tuple[M, bool]:
    """Load the model cached at ``target``, or train it and cache it there; returns (model, loaded).

    ``complete``: the file whose presence marks a finished entry (a directory without it, left by hand or
    by an older crash, is replaced). ``save(model, directory)`` writes a model into a directory.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.with_name(f"{target.name}.lock")):
        if (target / complete).is_file():
            return load(target), True
        model = train()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        save(model, tmp)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # pragma: no cover - the lock makes this a non-POSIX corner
            shutil.rmtree(tmp, ignore_errors=True)
        return model, False


def save_torch_atomic(obj: object, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically: a temporary file in the same folder, renamed over it."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_torch_or_none(path: Path) -> object | None:
    """``torch.load(path)`` on the CPU, or None when the file is missing, torn or not a torch file."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a torn or foreign file: the caller starts over  # noqa: BLE001
        return None
