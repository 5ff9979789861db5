"""One seed reaches NumPy, torch, Python's ``random`` and every environment.

* :func:`seed_everything` seeds the global generators (torch, NumPy legacy, ``random``) from one integer.
* :func:`derive_seed` gives independent child seeds for named streams (sampler, generator, evaluation)
  with :class:`numpy.random.SeedSequence`, so adding a stream never shifts another one.
* :func:`capture_global_rng` / :func:`restore_global_rng` save and restore the global generators for
  checkpoints (resume must reach the same final result as an uninterrupted run).
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *names: str | int) -> int:
    """A 32-bit seed for the stream ``names`` under ``seed`` (stable across runs and platforms).

    Strings are hashed with CRC-32, so ``derive_seed(0, "sampler") != derive_seed(0, "eval")``.
    """
    keys = [int(seed) & 0xFFFFFFFF]
    for name in names:
        keys.append(zlib.crc32(name.encode()) if isinstance(name, str) else int(name) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(keys).generate_state(1, dtype=np.uint32)[0])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy's legacy global generator and ``random`` from ``seed``."""
    torch.manual_seed(derive_seed(seed, "torch"))
    np.random.seed(derive_seed(seed, "numpy"))
    random.seed(derive_seed(seed, "random"))


def capture_global_rng() -> dict[str, Any]:
    """States of the global generators (torch CPU and CUDA, NumPy legacy, ``random``), picklable."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_global_rng` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
