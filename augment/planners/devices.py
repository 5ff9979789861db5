"""Where a planner's networks train and act, and how its noise reaches them.

Every planner config has a ``device`` field: ``auto`` (CUDA when torch sees it, else the CPU; the
default), ``cpu`` or ``cuda`` (``cuda:N``). It is left out of the cache key (a planner trained on either
device is the same cache entry; weights are saved on the CPU) and out of
:meth:`~augment.planners.base.PlannerConfig.differences`. :func:`planner_device` resolves it with the
same one-line :class:`~stores.errors.UserInputError` as the world model's
(:func:`augment.world.model.checked_device`) when CUDA is asked for on a machine without it.

Random draws stay on the CPU: the planners' ``torch.Generator`` objects are CPU generators, and
:func:`normal_like` / :func:`randint_on` draw there and move the result to the tensors' device. So the
same seed gives the same noise on every device, and on the CPU the numbers are those of the code before
devices existed (the same calls in the same order).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def planner_device(name: str | torch.device, planner: str) -> torch.device:
    """The resolved torch device of a planner's ``device`` setting (see the module docstring)."""
    from augment.world.model import checked_device

    return checked_device(name, setting=f"{planner}: device")


def d3rlpy_device(device: torch.device) -> str:
    """The device string d3rlpy's ``create(device=...)`` and ``load_learnable`` take: ``cuda:N`` or
    ``cpu:0``."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return "cpu:0"


def normal_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise with x's shape and dtype, on x's device, drawn on ``generator``'s own device
    (the CPU for the planners' generators, and the CPU's global generator when ``generator`` is None)."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=where).to(x.device)


def randint_on(low: int, high: int, size: tuple[int, ...], generator: torch.Generator | None,
               device: torch.device) -> Tensor:
    """Integers uniform on [low, high) of ``size`` (int64), drawn on the generator's device (CPU when None)
    and moved to ``device``."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(low, high, size, generator=generator, device=where).to(device)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (the CPU for a module without parameters)."""
    first = next(iter(module.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


__all__ = ["d3rlpy_device", "module_device", "normal_like", "planner_device", "randint_on"]
