"""Named compute budgets: ``smoke`` (tests), ``cpu`` (default without CUDA), ``paper`` (papers' settings).

Each room keeps its own budget table keyed by profile name (a recipe's env steps, a denoiser's width, a
learner's updates), chosen with :func:`by_profile`. This module only names the profiles, picks the default
and tells the user what a scaled-down profile means.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from stores.errors import UserInputError, did_you_mean

ProfileName = Literal["smoke", "cpu", "paper"]
PROFILES: tuple[str, ...] = ("smoke", "cpu", "paper")

T = TypeVar("T")


def cuda_available() -> bool:
    """True when torch sees a CUDA device (imports torch lazily)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return bool(torch.cuda.is_available())


def default_profile() -> str:
    """``paper`` when a CUDA device is present, else ``cpu``."""
    return "paper" if cuda_available() else "cpu"


def resolve_profile(name: str | None) -> str:
    """Validate a profile name; ``None`` means :func:`default_profile`."""
    if name is None:
        return default_profile()
    if name not in PROFILES:
        raise UserInputError(did_you_mean(name, PROFILES, hint="profiles are: smoke, cpu, paper"))
    return name


def by_profile(profile: str, *, smoke: T, cpu: T, paper: T) -> T:
    """Pick the value for ``profile`` from the three budgets."""
    return {"smoke": smoke, "cpu": cpu, "paper": paper}[resolve_profile(profile)]


def profile_banner(profile: str) -> str | None:
    """One line telling the user that a profile is scaled down, or ``None`` for ``paper``."""
    if profile == "smoke":
        return "profile 'smoke': tiny budgets for tests; numbers mean nothing."
    if profile == "cpu":
        return ("profile 'cpu': budgets scaled down from the papers' to fit a CPU; "
                "use --profile paper on a GPU for the published settings.")
    return None
