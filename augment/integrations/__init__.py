"""Using the toolkit from code we do not own: a d3rlpy ``fit`` callback and a plain-Python entry point.

Nothing heavy is imported here; the names below load their module on first use.

* :func:`generate` (:mod:`augment.integrations.plain`): ``generate(n, policy=callable, dataset=...)``
  with any ``obs -> action`` callable (NumPy function, torch module, object with ``act``).
* :func:`as_policy`: wrap such a callable as a :class:`baselines.protocols.Policy`.
* :class:`GeneratorCallback` (:mod:`augment.integrations.d3rlpy_callback`): ``algo.fit(callback.buffer,
  callback=callback)`` runs a generator every k updates with the current policy and feeds a d3rlpy
  ``MixedReplayBuffer`` at a chosen real ratio.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "generate": "augment.integrations.plain",
    "as_policy": "augment.integrations.plain",
    "CallablePolicy": "augment.integrations.plain",
    "GeneratorCallback": "augment.integrations.d3rlpy_callback",
    "batch_to_d3rlpy_episodes": "augment.integrations.d3rlpy_callback",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'augment.integrations' has no attribute '{name}'")
