"""Supervised training of an ensemble with a holdout split, early stopping and per-member snapshots.

The MBPO recipe, shared by the dynamics ensemble and the reward model:

1. :func:`holdout_split` puts ``min(ratio * N, max_holdout)`` random rows aside.
2. Every epoch each member sees the training rows in its own random order (batches of shape
   ``(E, B, in)``, one batched forward for all members).
3. After each epoch the holdout MSE of every member is measured; a member *improves* when its MSE drops
   by more than ``improvement`` (relative) below its best so far, and its weights are snapshotted.
4. Training stops once no member has improved for ``patience`` consecutive epochs (or at
   ``max_epochs``); every member is restored to its best snapshot.

The model being trained satisfies :class:`EnsembleRegressor`: every parameter has the member index as
its leading dimension, so snapshots are per-member slices.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from augment.progress import progress_bar
from stores.errors import UserInputError


class EnsembleRegressor(Protocol):
    """What :func:`fit_ensemble` needs from a model of E members (inputs/targets already normalised)."""

    ensemble_size: int

    def member_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (E, B, in), y: (E, B, out) -> (E,) training loss of each member."""
        ...

    def member_mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, in), y: (B, out) -> (E,) mean squared error of each member's mean prediction."""
        ...

    def regularizer(self) -> torch.Tensor:
        """Scalar added to the summed member losses (weight decay, log-variance bounds)."""
        ...

    def named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """Every parameter, each with the member index as its leading dimension (an nn.Module's)."""
        ...


@dataclass(frozen=True)
class FitSettings:
    """Optimisation settings of :func:`fit_ensemble`.

    batch_size: rows per member per step. lr: Adam learning rate. max_epochs: cap on epochs (None: until
    early stopping). steps_per_epoch: cap on steps per epoch (None: one full pass over the training rows).
    patience: epochs without any member improving before stopping. improvement: relative drop of a
    member's holdout MSE that counts as an improvement.
    """

    batch_size: int = 256
    lr: float = 1e-3
    max_epochs: int | None = None
    steps_per_epoch: int | None = None
    patience: int = 7
    improvement: float = 0.01


@dataclass
class FitReport:
    """What training did: epochs, gradient steps, seconds, holdout MSE per member before and after.

    initial_holdout_mse / best_holdout_mse: (E,) in normalised target units; history: mean holdout MSE
    over members after each epoch.
    """

    epochs: int
    steps: int
    seconds: float
    train_rows: int
    holdout_rows: int
    initial_holdout_mse: list[float]
    best_holdout_mse: list[float]
    stopped_early: bool
    history: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def holdout_split(n: int, ratio: float, max_holdout: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, holdout) row indices of ``n`` rows; holdout has ``min(int(ratio*n), max_holdout)``
    rows, at least one; both sorted."""
    if n < 2:
        raise UserInputError(f"a world model needs at least 2 transitions to train on, got {n}; "
                             "use a larger dataset")
    size = max(1, min(int(ratio * n), int(max_holdout)))
    size = min(size, n - 1)
    perm = rng.permutation(n)
    return np.sort(perm[size:]), np.sort(perm[:size])


def relative_improvement(best: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(best - current) / best per member, (E,); +inf where best is infinite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (best - current) / best
    return np.where(np.isinf(best), np.inf, out)


def fit_ensemble(model: EnsembleRegressor, train_x: torch.Tensor, train_y: torch.Tensor,
                 hold_x: torch.Tensor, hold_y: torch.Tensor, settings: FitSettings, rng: np.random.Generator,
                 *, progress: bool = True, desc: str = "fit") -> FitReport:
    """Train ``model`` in place (see the module docstring) and return a :class:`FitReport`.

    train_x: (N, in), train_y: (N, out), hold_x: (H, in), hold_y: (H, out), all normalised float32.
    ``rng`` draws the per-member shuffles.
    """
    start = time.perf_counter()
    e = int(model.ensemble_size)
    params = dict(model.named_parameters())
    for name, p in params.items():
        if p.dim() == 0 or p.shape[0] != e:
            raise ValueError(f"parameter {name} of shape {tuple(p.shape)} lacks the member dimension {e}")
    optimizer = torch.optim.Adam(list(params.values()), lr=settings.lr)
    n = int(train_x.shape[0])
    batch = min(int(settings.batch_size), n)
    steps_full = int(np.ceil(n / batch))
    cap = settings.steps_per_epoch
    steps_per_epoch = steps_full if cap is None else min(steps_full, cap)

    def holdout_mse() -> np.ndarray:
        with torch.no_grad():
            return model.member_mse(hold_x, hold_y).double().cpu().numpy()

    best = holdout_mse()
    initial = best.copy()
    snapshot = {k: p.detach().clone() for k, p in params.items()}
    since_update, epoch, steps, stopped_early = 0, 0, 0, False
    history: list[float] = []
    max_epochs = settings.max_epochs if settings.max_epochs is not None else np.iinfo(np.int64).max
    bar = progress_bar(desc=desc, total=settings.max_epochs, disable=not progress, unit="epoch", leave=False)
    device = train_x.device
    while epoch < max_epochs:
        order = torch.as_tensor(rng.permuted(np.tile(np.arange(n), (e, 1)), axis=1), device=device)
        for s in range(steps_per_epoch):
            idx = order[:, s * batch:(s + 1) * batch]
            loss = model.member_loss(train_x[idx], train_y[idx]).sum() + model.regularizer()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        steps += steps_per_epoch
        epoch += 1
        current = holdout_mse()
        history.append(float(current.mean()))
        improved = relative_improvement(best, current) > settings.improvement
        if improved.any():
            mask = torch.as_tensor(improved, device=device)
            with torch.no_grad():
                for k, p in params.items():
                    snapshot[k][mask] = p.detach()[mask]
            best = np.where(improved, current, best)
            since_update = 0
        else:
            since_update += 1
        bar.update(1)
        bar.set_postfix(holdout_mse=f"{best.mean():.4g}", stale=since_update)
        if since_update >= settings.patience:
            stopped_early = True
            break
    bar.close()
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(snapshot[k])
    return FitReport(epochs=epoch, steps=steps, seconds=time.perf_counter() - start, train_rows=n,
                     holdout_rows=int(hold_x.shape[0]), initial_holdout_mse=initial.tolist(),
                     best_holdout_mse=holdout_mse().tolist(), stopped_early=stopped_early, history=history)
