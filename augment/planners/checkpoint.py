"""Mid-training checkpoints of a planner's networks, so a killed fit continues where it stopped.

A planner's training is tens of minutes on a CPU (DMEMM's cpu profile ~40 min, TD's ~30 min). The
finished networks are cached (:meth:`augment.planners.base.Planner.fit`); this module keeps what a fit
has done *so far*: every ``every_seconds`` of training the loop hands a complete state (networks, EMA,
optimisers, RNG states, running losses, the step reached) to :meth:`TrainingCheckpoint.save`, which
writes it atomically. A later fit of the same (dataset, cache key) loads it and continues from that step.

Resuming is exact: the state holds every source of randomness the loop draws from (NumPy generator, torch
generator, and torch's global RNG where dropout uses it), so k steps, a kill and the rest give the same
networks as one uninterrupted run (``tests/test_planner_checkpoint.py``). Files live next to the cache
entry, ``<cache dir>.resume/<part>.pt``, and are removed once the finished model is saved.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment.cache import load_torch_or_none, save_torch_atomic

#: default seconds of training between two checkpoints (a save costs well under a second at cpu size)
CHECKPOINT_SECONDS = 300.0


class TrainingCheckpoint:
    """The resumable state of one training loop (``part``) of one planner fit.

    path: the ``.pt`` file; every_seconds: minimum training time between two saves (0: after every step,
    for tests). ``load()`` returns the last saved state or None (missing, torn, or of another format).
    """

    def __init__(self, path: Path, every_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.path = Path(path)
        self.every_seconds = float(every_seconds)
        self._last = time.monotonic()

    def load(self, max_step: int | None = None) -> dict[str, Any] | None:
        """The saved state (a dict with at least ``step``), or None when there is none to trust (also when
        its step is past ``max_step``, e.g. a longer run's)."""
        state = load_torch_or_none(self.path)
        if not isinstance(state, dict) or "step" not in state:
            return None
        return state if max_step is None or int(state["step"]) <= max_step else None

    def due(self) -> bool:
        """True when ``every_seconds`` have passed since the last save (or since construction)."""
        return time.monotonic() - self._last >= self.every_seconds

    def maybe_save(self, state_fn: Callable[[], dict[str, Any]]) -> bool:
        """Save ``state_fn()`` when :meth:`due`; returns whether it saved."""
        if not self.due():
            return False
        self.save(state_fn())
        return True

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (a temporary file renamed over the old one)."""
        save_torch_atomic(state, self.path)
        self._last = time.monotonic()


def resume_dir(cache_dir: Path) -> Path:
    """Where the checkpoints of the fit that will fill ``cache_dir`` live: ``<cache_dir>.resume``."""
    cache_dir = Path(cache_dir)
    return cache_dir.with_name(cache_dir.name + ".resume")


def remove_resume_dir(cache_dir: Path) -> None:
    """Drop the checkpoints of a fit whose model is now in ``cache_dir``."""
    shutil.rmtree(resume_dir(cache_dir), ignore_errors=True)


def module_states(modules: dict[str, torch.nn.Module | torch.optim.Optimizer]) -> dict[str, Any]:
    """``state_dict()`` of each module / optimiser, tensors copied to the CPU (a checkpoint's payload)."""
    return {name: _to_cpu(m.state_dict()) for name, m in modules.items()}


def load_module_states(modules: dict[str, torch.nn.Module | torch.optim.Optimizer],
                       states: dict[str, Any]) -> None:
    """Inverse of :func:`module_states` (modules keep their device; optimiser state follows its params)."""
    for name, m in modules.items():
        m.load_state_dict(states[name])


def rng_states(rng: np.random.Generator, gen: torch.Generator, *, global_torch: bool = False,
               device: torch.device | None = None) -> dict[str, Any]:
    """The NumPy and torch generator states; with ``global_torch`` also torch's global RNG (the CPU one,
    and ``device``'s when it is a CUDA device: dropout there draws from it)."""
    out: dict[str, Any] = {"numpy": rng.bit_generator.state, "torch": gen.get_state()}
    if global_torch:
        out["torch_global"] = torch.get_rng_state()
        if device is not None and device.type == "cuda":
            out["torch_cuda"] = (device, torch.cuda.get_rng_state(device))
    return out


def restore_rng_states(rng: np.random.Generator, gen: torch.Generator, states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states` (the global torch RNG only when it was saved)."""
    rng.bit_generator.state = states["numpy"]
    gen.set_state(states["torch"])
    if "torch_global" in states:
        torch.set_rng_state(states["torch_global"])
    if "torch_cuda" in states:
        device, state = states["torch_cuda"]
        torch.cuda.set_rng_state(state, device)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_cpu(v) for v in value)
    return value


__all__ = ["CHECKPOINT_SECONDS", "TrainingCheckpoint", "load_module_states", "module_states",
           "remove_resume_dir", "restore_rng_states", "resume_dir", "rng_states"]
