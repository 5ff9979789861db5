"""Single-step Gaussian dynamics ensemble T_phi(s' | s, a) (DyDiff Eq. 5-6; the MBPO/PETS model).

Each of E members maps a normalised ``(s, a)`` to a diagonal Gaussian over the normalised state change
``Delta = s' - s``: a mean and a log-variance. The log-variance is softly bounded between learned
per-member limits (:func:`soft_bound_log_variance`). Training minimises the Gaussian negative
log-likelihood (:func:`gaussian_nll`) plus a small penalty that keeps the limits tight
(:func:`log_variance_bound_penalty`) and layer-wise weight decay (:func:`weight_decay_penalty`).

DyDiff Eq. 5 writes the dynamics loss as the squared error of a sampled next state; for a Gaussian
model this is fitted by maximum likelihood, as in the MBPO-style ensemble DyDiff uses. Holdout error,
early stopping and elite selection use the MSE of each member's mean (the Eq. 5 quantity without the
sampling noise), in normalised units so that every state dimension counts equally.

Shapes: ``E`` members, ``B`` rows, ``obs`` / ``act`` the observation and action sizes, ``in = obs+act``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from augment.nn.mlp import EnsembleMLP


def soft_bound_log_variance(raw: torch.Tensor, max_logvar: torch.Tensor,
                            min_logvar: torch.Tensor) -> torch.Tensor:
    """Softly clamp a raw log-variance into (min_logvar, max_logvar) (PETS, Chua et al. 2018, App. A.1).

    ``logvar = max - softplus(max - raw)``, then ``logvar = min + softplus(logvar - min)``; smooth, so the
    limits themselves receive gradients. The second step can lift the top by at most
    ``softplus(min - max)`` (2.8e-5 for the initial limits). raw: (E, B, obs); limits broadcast, e.g.
    (E, 1, obs).
    """
    logvar = max_logvar - F.softplus(max_logvar - raw)
    return min_logvar + F.softplus(logvar - min_logvar)


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-member Gaussian negative log-likelihood up to constants, (E,).

    ``mean_{B,obs}[(mu - y)^2 exp(-logvar) + logvar]`` (twice the NLL without the ``log 2 pi`` term).
    mean, logvar, target: (E, B, obs).
    """
    return ((mean - target).pow(2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2))


def member_mse(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-member mean squared error of the mean prediction, (E,). mean: (E, B, d); target: (B, d) or
    (E, B, d)."""
    return (mean - target).pow(2).mean(dim=(1, 2))


def log_variance_bound_penalty(max_logvar: torch.Tensor, min_logvar: torch.Tensor,
                               coef: float) -> torch.Tensor:
    """``coef * (sum(max_logvar) - sum(min_logvar))``: pulls the learned limits together (PETS)."""
    return coef * (max_logvar.sum() - min_logvar.sum())


def decay_schedule(num_layers: int, first: float, last: float) -> list[float]:
    """Weight-decay coefficients per layer, linear from ``first`` (input layer) to ``last`` (output).

    With 5 layers and (2.5e-5, 1e-4) this is close to MBPO's (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4).
    """
    if num_layers == 1:
        return [float(last)]
    return [float(v) for v in np.linspace(first, last, num_layers)]


def weight_decay_penalty(net: EnsembleMLP, coefficients: Sequence[float]) -> torch.Tensor:
    """``sum_l c_l * ||W_l||^2 / 2`` over the layers' weights (all members), a scalar."""
    total = net.layers[0].weight.new_zeros(())
    for layer, c in zip(net.layers, coefficients, strict=True):
        if c:
            total = total + 0.5 * c * layer.weight.pow(2).sum()
    return total


class GaussianDynamicsEnsemble(nn.Module):
    """E Gaussian MLPs over the state change, with the dataset's normalisation inside.

    forward: normalised inputs (E, B, in) or (B, in) -> (mean, logvar), each (E, B, obs), normalised.
    :meth:`predict`: raw ``obs`` (B, obs), ``act`` (B, act) -> raw mean and std of ``Delta``, (E, B, obs).

    Parameters (all with the member index first): the MLP's, ``max_logvar`` (E, 1, obs) starting at 0.5
    and ``min_logvar`` (E, 1, obs) starting at -10. Buffers: ``input_mean``/``input_std`` (in,),
    ``target_mean``/``target_std`` (obs,) - the statistics of the training rows.
    """

    def __init__(self, observation_size: int, action_size: int, ensemble_size: int, hidden: Sequence[int],
                 activation: str = "silu", weight_decay: tuple[float, float] = (2.5e-5, 1e-4),
                 logvar_penalty: float = 0.01, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.observation_size = int(observation_size)
        self.action_size = int(action_size)
        self.ensemble_size = int(ensemble_size)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.weight_decay = (float(weight_decay[0]), float(weight_decay[1]))
        self.logvar_penalty = float(logvar_penalty)
        in_size = self.observation_size + self.action_size
        self.net = EnsembleMLP(self.ensemble_size, in_size, 2 * self.observation_size, self.hidden,
                               activation, generator=generator)
        self.max_logvar = nn.Parameter(torch.full((self.ensemble_size, 1, self.observation_size), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.ensemble_size, 1, self.observation_size), -10.0))
        self.register_buffer("input_mean", torch.zeros(in_size))
        self.register_buffer("input_std", torch.ones(in_size))
        self.register_buffer("target_mean", torch.zeros(self.observation_size))
        self.register_buffer("target_std", torch.ones(self.observation_size))
        self._decay = decay_schedule(len(self.net.layers), *self.weight_decay)

    def set_normalizer(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        """Set the buffers from raw training inputs (N, in) and state changes (N, obs); std >= 1e-6."""
        for name, arr in (("input", inputs), ("target", targets)):
            a = np.asarray(arr, dtype=np.float64)
            std = np.maximum(a.std(axis=0), 1e-6)
            getattr(self, f"{name}_mean").copy_(torch.as_tensor(a.mean(axis=0), dtype=torch.float32))
            getattr(self, f"{name}_std").copy_(torch.as_tensor(std, dtype=torch.float32))

    def normalize_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (..., in) -> normalised (..., in)."""
        return (x - self.input_mean) / self.input_std

    def normalize_targets(self, delta: torch.Tensor) -> torch.Tensor:
        """Raw state change (..., obs) -> normalised (..., obs)."""
        return (delta - self.target_mean) / self.target_std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised inputs (E, B, in) or (B, in) -> normalised (mean, logvar), each (E, B, obs)."""
        out = self.net(x)
        mean, raw = out[..., :self.observation_size], out[..., self.observation_size:]
        return mean, soft_bound_log_variance(raw, self.max_logvar, self.min_logvar)

    def member_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL per member, (E,); x: (E, B, in), y: (E, B, obs), normalised."""
        mean, logvar = self(x)
        return gaussian_nll(mean, logvar, y)

    def member_mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Holdout MSE of each member's mean, (E,); x: (B, in), y: (B, obs), normalised."""
        mean, _ = self(x)
        return member_mse(mean, y)

    def regularizer(self) -> torch.Tensor:
        """Log-variance bound penalty plus layer-wise weight decay (scalar)."""
        return (log_variance_bound_penalty(self.max_logvar, self.min_logvar, self.logvar_penalty)
                + weight_decay_penalty(self.net, self._decay))

    def select(self, members: Sequence[int]) -> GaussianDynamicsEnsemble:
        """A new ensemble of the chosen members (e.g. the elites), with the same normalisation."""
        idx = list(members)
        out = GaussianDynamicsEnsemble(self.observation_size, self.action_size, len(idx), self.hidden,
                                       self.activation, self.weight_decay, self.logvar_penalty)
        out.net = self.net.select(idx)
        t = torch.as_tensor(idx, dtype=torch.long, device=self.max_logvar.device)
        with torch.no_grad():
            out.max_logvar = nn.Parameter(self.max_logvar.detach()[t].clone())
            out.min_logvar = nn.Parameter(self.min_logvar.detach()[t].clone())
            for name in ("input_mean", "input_std", "target_mean", "target_std"):
                setattr(out, name, getattr(self, name).detach().clone())
        return out

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw obs (B, obs), act (B, act) -> raw mean and std of ``Delta = s' - s``, each (E, B, obs)."""
        x = self.normalize_inputs(torch.cat([obs, act], dim=-1))
        mean, logvar = self(x)
        return (mean * self.target_std + self.target_mean,
                torch.exp(0.5 * logvar) * self.target_std)

    @torch.no_grad()
    def predict_rows(self, obs: torch.Tensor, act: torch.Tensor,
                     member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ``b`` through member ``member[b]`` only: raw mean and std of ``Delta``, each (B, obs).

        obs (B, obs), act (B, act), member (B,) int64 in [0, E). Rows are grouped by member and padded to
        the largest group, so one batched forward costs about B rows instead of E x B.
        """
        e, b = self.ensemble_size, obs.shape[0]
        if b == 0:
            return obs.new_zeros(obs.shape), obs.new_zeros(obs.shape)
        counts = torch.bincount(member, minlength=e)
        order = torch.argsort(member, stable=True)
        grouped = member[order]
        pos = torch.arange(b, device=obs.device) - (torch.cumsum(counts, 0) - counts)[grouped]
        idx = torch.zeros(e, max(int(counts.max()), 1), dtype=torch.long, device=obs.device)
        idx[grouped, pos] = order
        x = self.normalize_inputs(torch.cat([obs, act], dim=-1))
        mean, logvar = self(x[idx])
        out_mean = torch.empty_like(obs)
        out_std = torch.empty_like(obs)
        out_mean[order] = mean[grouped, pos] * self.target_std + self.target_mean
        out_std[order] = torch.exp(0.5 * logvar[grouped, pos]) * self.target_std
        return out_mean, out_std


def select_elites(holdout_mse: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` members with the lowest holdout MSE, best first (ties: lower index first)."""
    mse = np.asarray(holdout_mse, dtype=np.float64)
    if not 1 <= k <= mse.size:
        raise ValueError(f"cannot pick {k} elites from {mse.size} members")
    return [int(i) for i in np.argsort(mse, kind="stable")[:k]]
