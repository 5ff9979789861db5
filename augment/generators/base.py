"""The Generator protocol (re-exported from :mod:`baselines.protocols`) and the registry of generators.

A generator is named on the command line (``augment compare --arm dydiff``); the registry maps each name
to the import path of its class so that naming one does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from baselines.protocols import Generator, Policy
from stores.errors import UserInputError, did_you_mean

__all__ = ["GENERATORS", "Generator", "Policy", "check_generator", "generator_class"]

#: name -> "module:Class" of every generator in the toolkit.
GENERATORS: dict[str, str] = {
    "dydiff": "augment.generators.dydiff:DyDiffGenerator",
    "synther": "augment.generators.synther:SynthERGenerator",
    "rollout": "augment.generators.rollout:RolloutGenerator",
}


def check_generator(name: str) -> str:
    """Return ``name`` when it is a registered generator; else raise :class:`UserInputError`."""
    if name not in GENERATORS:
        raise UserInputError(did_you_mean(name, GENERATORS, hint=f"generators are: {', '.join(GENERATORS)}"))
    return name


def generator_class(name: str) -> Any:
    """Import and return the class registered under ``name``."""
    module_name, _, attr = GENERATORS[check_generator(name)].partition(":")
    return getattr(importlib.import_module(module_name), attr)
