"""AEPO's critics Q_psi, V_phi (Eq. 27): d3rlpy's IQL, trained with the project's learner config, and
Q / Q' read through d3rlpy's own Q forwarder by autograd.

Nothing here re-implements IQL (ARCHITECTURE convention 5). d3rlpy 2.8.1's ``IQLImpl.compute_value_loss``
uses u = Q_target - V with the expectile weight |tau - 1(u < 0)|, the correct sign (Eq. 27 prints
V - Q), and its Q target is r + gamma (1 - d) V(s') (Eq. 27 omits gamma and the done mask).

* :func:`iql_config` - :func:`baselines.learners.learner_config` ("iql": tau 0.7, beta 3, rewards x
  1000 / (max - min episode return), states standardised) with the critic / value / actor encoders set
  to the widths AEPO asks for (Table 4: Q and V 3 x 256).
* :func:`train_iql` - ``algo.update`` on uniform batches of the dataset's transitions.
* :class:`IQLCritic` - Q(s, a) and Q'(s, a) on raw observations: the observation scaler is applied
  first (``algo.observation_scaler.transform``), then
  ``algo.impl._q_func_forwarder.compute_expected_q(x, a, reduction)`` (a private attribute of the impl;
  ``predict_value`` is NumPy and gradient-free). ``reduction`` is ``min`` (the value IQL's own V target
  and actor weights use) or ``mean`` (what ``predict_value`` returns); AEPO's config records which.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from augment.progress import progress_bar
from stores.errors import UserInputError
from stores.schema import OfflineDataset

Tensor = torch.Tensor
REDUCTIONS: tuple[str, ...] = ("min", "mean")


def iql_config(dataset: OfflineDataset, *, critic_hidden: Sequence[int], actor_hidden: Sequence[int],
               expectile: float, batch_size: int, steps: int) -> Any:
    """The project's IQL config (:func:`baselines.learners.learner_config`) with AEPO's network widths
    and expectile tau. ``steps`` sets the actor's cosine learning-rate schedule."""
    import d3rlpy

    from baselines.learners import learner_config

    base = learner_config("iql", dataset.stats, batch_size=batch_size, total_steps=steps)
    critic = d3rlpy.models.VectorEncoderFactory(hidden_units=[int(h) for h in critic_hidden])
    actor = d3rlpy.models.VectorEncoderFactory(hidden_units=[int(h) for h in actor_hidden])
    return dataclasses.replace(base, critic_encoder_factory=critic, value_encoder_factory=critic,
                               actor_encoder_factory=actor, expectile=float(expectile))


def make_iql(dataset: OfflineDataset, config: Any, *, seed: int, device: str = "cpu:0") -> Any:
    """A d3rlpy IQL for ``dataset`` with its impl created, weights initialised from ``seed``
    (torch's global generator is forked, so the caller's stream is untouched)."""
    algo = config.create(device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        algo.create_impl((dataset.observation_size,), dataset.action_size)
    return algo


def train_iql(algo: Any, dataset: OfflineDataset, steps: int, *, seed: int, progress: bool = True,
              ) -> dict[str, Any]:
    """``steps`` d3rlpy IQL updates on uniform batches of ``dataset``'s transitions (the config's batch
    size). Returns a record: steps, seconds, updates/s and the last losses."""
    from baselines.sampler import MixedSampler

    sampler = MixedSampler(dataset.transitions, batch_size=int(algo.config.batch_size), real_ratio=1.0,
                           seed=int(seed))
    losses: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = progress_bar(range(int(steps)), desc="AEPO: IQL critics (d3rlpy)", unit="step",
                       disable=not progress, leave=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for step in bar:
            out = algo.update(sampler.sample())
            if step % 100 == 0 or step == steps - 1:
                losses = {k: float(v) for k, v in out.items()}
                bar.set_postfix(critic=f"{losses.get('critic_loss', float('nan')):.3f}")
    bar.close()
    seconds = time.perf_counter() - t0
    return {"steps": int(steps), "seconds": seconds,
            "updates_per_s": steps / seconds if seconds > 0 else None, "last_losses": losses}


class IQLCritic:
    """Q_psi, V_phi of a d3rlpy IQL on raw observations, differentiable in the action.

    ``q(s (B, obs), a (B, d)) -> (B,)`` (float32, on the algo's device); ``v(s) -> (B,)``;
    :meth:`q_and_grad` also returns Q' = dQ/da (B, d). reduction: ``min`` or ``mean`` over the
    ensemble of critics (d3rlpy's n_critics, 2 by default).
    """

    def __init__(self, algo: Any, reduction: str = "min") -> None:
        if reduction not in REDUCTIONS:
            raise UserInputError(f"q_reduction must be 'min' or 'mean', got '{reduction}'")
        if algo.impl is None:
            raise UserInputError("the IQL learner has no impl; call create_impl or train it first")
        if getattr(algo.config, "action_scaler", None) is not None:
            raise UserInputError("AEPO expects an IQL without an action scaler (actions in env units)")
        self.algo = algo
        self.reduction = reduction

    @property
    def device(self) -> torch.device:
        return torch.device(self.algo.impl.device)

    def scale(self, s: Tensor) -> Tensor:
        """The observation scaler IQL was trained with: (s - mean) / (std + eps)."""
        scaler = self.algo.observation_scaler
        return scaler.transform(s) if scaler is not None else s

    def q(self, s: Tensor, a: Tensor) -> Tensor:
        """Q(s, a) (B,), differentiable in ``a`` when grad mode is on."""
        x = self.scale(s.to(self.device, torch.float32))
        forwarder = self.algo.impl._q_func_forwarder  # private in d3rlpy 2.8.1; see the module docstring
        return forwarder.compute_expected_q(x, a.to(self.device, torch.float32), self.reduction).reshape(-1)

    def v(self, s: Tensor) -> Tensor:
        """V(s) (B,) from IQL's value function."""
        x = self.scale(s.to(self.device, torch.float32))
        return self.algo.impl._modules.value_func(x).reshape(-1)

    def q_and_grad(self, s: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """(Q(s, a) (B,), Q'(s, a) (B, d)) by autograd through the forwarder, both detached."""
        from augment.planners.aepo_math import q_value_and_grad

        return q_value_and_grad(self.q, s, a)

    def predict_value_numpy(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """d3rlpy's own ``predict_value`` (mean over critics, no grad), for cross-checks."""
        return np.asarray(self.algo.predict_value(np.asarray(s, np.float32), np.asarray(a, np.float32)))
