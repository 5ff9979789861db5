"""Where the toolkit keeps things on disk.

* ``AUGMENT_HOME`` (default ``~/.cache/diffusion-augment``): trained-model caches (world models, diffusion
  models) keyed by (dataset hash, config hash).
* ``MINARI_DATASETS_PATH`` (Minari's own variable, default ``~/.minari/datasets``): Minari datasets,
  including the ones our recipes build.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def augment_home() -> Path:
    """Root of the toolkit's caches (created on demand)."""
    root = Path(os.environ.get("AUGMENT_HOME", Path.home() / ".cache" / "diffusion-augment")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def minari_root() -> Path:
    """Local Minari datasets root, as Minari itself resolves it."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets")).expanduser()


@contextlib.contextmanager
def environ_set(name: str, value: str) -> Iterator[None]:
    """Set the environment variable ``name`` to ``value`` for the block, then restore it (unset again
    when it was unset before)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
