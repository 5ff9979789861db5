"""Where the toolkit keeps things on disk.

* ``AUGMENT_HOME`` (default ``~/.cache/diffusion-augment``): trained-model caches (world models, diffusion
  models) keyed by (dataset hash, config hash).
* ``MINARI_DATASETS_PATH`` (Minari's own variable, default ``~/.minari/datasets``): Minari datasets,
  including the ones our recipes build.
"""

from __future__ import annotations

import os
from pathlib import Path


def augment_home() -> Path:
    """Root of the toolkit's caches (created on demand)."""
    root = Path(os.environ.get("AUGMENT_HOME", Path.home() / ".cache" / "diffusion-augment")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def minari_root() -> Path:
    """Local Minari datasets root, as Minari itself resolves it."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets")).expanduser()
