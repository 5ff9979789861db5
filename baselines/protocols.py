"""The two protocols the rooms meet at: :class:`Policy` and :class:`Generator`.

d3rlpy learners, diffusion planners and behaviour-cloning references are Policies; DyDiff, SynthER, the
single-step model and the planners are Generators. The training loop knows only these protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from stores.schema import OfflineDataset, TrajectoryBatch


@runtime_checkable
class Policy(Protocol):
    """Maps a batch of observations to actions.

    ``act(observations (B, obs) float32) -> actions (B, act) float32`` in the env's action units.
    ``reset(n)`` is called before a batch of ``n`` new episodes starts (planners keep history; others
    ignore it).
    """

    def act(self, observations: np.ndarray) -> np.ndarray: ...

    def reset(self, n: int) -> None: ...


@runtime_checkable
class Generator(Protocol):
    """Writes synthetic trajectories.

    ``fit(dataset)`` trains (or loads from cache) whatever the generator needs;
    ``generate(n, policy, rng, round=..., learner_step=...)`` returns up to ``n`` trajectories (a filter may
    keep fewer) as a :class:`TrajectoryBatch`; ``policy`` is None for generators that ignore it;
    ``save(dir)`` / ``load(dir)`` persist what ``fit`` learned.
    """

    name: str

    def fit(self, dataset: OfflineDataset) -> None: ...

    def generate(self, n: int, policy: Policy | None, rng: np.random.Generator, *, round: int = 0,
                 learner_step: int = 0) -> TrajectoryBatch: ...

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...
