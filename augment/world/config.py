"""Configuration of DyDiff's world models (dynamics ensemble + reward model), per profile.

``paper`` is REFERENCE §6 / the MBPO model DyDiff uses: 7 Gaussian MLPs of 4 hidden layers x 200
(swish), 5 elites, holdout 20% capped at 5000 rows, early stopping after 7 epochs without a 1% relative
improvement of any member, Adam lr 1e-3, batch 256; reward model an MLP of 2 x 256 trained by MSE.
``cpu`` keeps the ensemble's structure (7 members, 5 elites, 4 x 200) but bounds the training budget.
``smoke`` is tiny, for tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from augment.profiles import by_profile
from augment.world.training import FitSettings


@dataclass(frozen=True)
class WorldModelConfig:
    """Hyper-parameters of the world models; every field enters the cache key (:meth:`config_hash`).

    Dynamics T_phi (Eq. 5-6): members (E), elites, hidden widths, activation, batch_size (rows per member
    per step), lr, weight_decay (first and last layer's L2 coefficient, linear in between),
    logvar_penalty (weight of the log-variance bound penalty), max_epochs (None: until early stopping),
    steps_per_epoch (None: a full pass over the training rows).
    Shared: holdout_ratio and max_holdout (holdout rows = min(ratio * N, max)), patience (epochs without
    improvement before stopping), improvement (relative holdout-MSE drop that counts).
    Reward r_psi (Eq. 10): reward_hidden, reward_members, reward_activation, reward_lr,
    reward_batch_size, reward_max_epochs, reward_steps_per_epoch.
    seed: initialisation, holdout split and shuffling. Keep it fixed across learner seeds so that all
    runs on a dataset share one cached world model.
    """

    members: int = 7
    elites: int = 5
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    activation: str = "silu"
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: tuple[float, float] = (2.5e-5, 1e-4)
    logvar_penalty: float = 0.01
    max_epochs: int | None = None
    steps_per_epoch: int | None = None
    holdout_ratio: float = 0.2
    max_holdout: int = 5000
    patience: int = 7
    improvement: float = 0.01
    reward_hidden: tuple[int, ...] = (256, 256)
    reward_members: int = 1
    reward_activation: str = "silu"
    reward_lr: float = 1e-3
    reward_batch_size: int = 256
    reward_max_epochs: int | None = None
    reward_steps_per_epoch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.elites <= self.members:
            raise ValueError(f"elites must lie in [1, members={self.members}], got {self.elites}")
        if not 0.0 < self.holdout_ratio < 1.0:
            raise ValueError(f"holdout_ratio must lie in (0, 1), got {self.holdout_ratio}")

    @classmethod
    def for_profile(cls, profile: str, **overrides: Any) -> WorldModelConfig:
        """The configuration of ``profile`` (smoke / cpu / paper), with field ``overrides``."""
        base = by_profile(
            profile,
            smoke=cls(members=3, elites=2, hidden=(32, 32), batch_size=64, max_epochs=5, steps_per_epoch=20,
                      patience=3, reward_hidden=(32, 32), reward_batch_size=64, reward_max_epochs=5,
                      reward_steps_per_epoch=20),
            cpu=cls(batch_size=256, max_epochs=CPU_MAX_EPOCHS, steps_per_epoch=CPU_STEPS_PER_EPOCH,
                    reward_max_epochs=CPU_MAX_EPOCHS, reward_steps_per_epoch=CPU_STEPS_PER_EPOCH),
            paper=cls(),
        )
        return dataclasses.replace(base, **overrides)

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorldModelConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown world-model config fields {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})

    def config_hash(self) -> str:
        """sha256 (hex, first 12 chars) of the sorted JSON of every field."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def differences_from_paper(self) -> list[str]:
        """``field: paper -> this`` for every field that differs from the paper profile (seed excluded)."""
        paper = WorldModelConfig()
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(paper, f.name), getattr(self, f.name)
            if f.name != "seed" and a != b:
                out.append(f"{f.name}: {_fmt(a)} -> {_fmt(b)}")
        return out

    def dynamics_settings(self) -> FitSettings:
        return FitSettings(batch_size=self.batch_size, lr=self.lr, max_epochs=self.max_epochs,
                           steps_per_epoch=self.steps_per_epoch, patience=self.patience,
                           improvement=self.improvement)

    def reward_settings(self) -> FitSettings:
        return FitSettings(batch_size=self.reward_batch_size, lr=self.reward_lr,
                           max_epochs=self.reward_max_epochs, steps_per_epoch=self.reward_steps_per_epoch,
                           patience=self.patience, improvement=self.improvement)


def _fmt(v: Any) -> str:
    if v is None:
        return "unlimited"
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return str(v)


# cpu profile budget: at most CPU_MAX_EPOCHS epochs of CPU_STEPS_PER_EPOCH batched steps each, chosen so
# that training on ~1e5 transitions takes a few minutes on 2 cores (see docs/world-models.md).
CPU_MAX_EPOCHS = 40
CPU_STEPS_PER_EPOCH = 100
