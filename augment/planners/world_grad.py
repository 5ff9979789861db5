"""A differentiable view of a trained world model (T-hat, R-hat) for losses and guidance.

:class:`augment.world.WorldModel`'s ``predict*`` methods run under ``torch.no_grad`` in NumPy; DMEMM
needs gradients with respect to the *inputs* (Eq. 9-10 through Eq. 8 during training, Eq. 13 during
planning) while the world model's weights stay fixed. :class:`DifferentiableWorld` holds frozen copies
of the elite dynamics members and the reward model (the shared WorldModel object is not modified) and
exposes torch functions in raw env units; callers that work in a normalised space unnormalise
differentiably before calling them.

Ensemble reading (DMEMM §1.2 item 8, a choice the paper leaves open): T-hat(s, a) is the Gaussian with
the elites' mean of their means and the mean of their variances ("moment-matched, mean variance"), a
deterministic and cheap log-likelihood; L_tr uses its mean as the point prediction. Shapes: any leading
dims ``...``; ``obs`` / ``act`` the sizes.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

Tensor = torch.Tensor


class DifferentiableWorld:
    """Frozen T-hat and R-hat with input gradients, raw units in and out.

    world: a fitted :class:`augment.world.WorldModel`. logvar_floor: lower bound on the (normalised)
    log-variance used by :meth:`log_likelihood` (None: the ensemble's own learned bound), to keep
    guidance gradients (which scale as 1/variance) bounded. device: where the frozen copies live and
    compute (inputs must be on it; default the CPU).
    """

    def __init__(self, world: Any, *, logvar_floor: float | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.dynamics = copy.deepcopy(world.elite_dynamics).to(self.device).eval().requires_grad_(False)
        self.reward_model = copy.deepcopy(world.reward).to(self.device).eval().requires_grad_(False)
        self.obs_dim = int(self.dynamics.observation_size)
        self.act_dim = int(self.dynamics.action_size)
        self.logvar_floor = logvar_floor

    def _flat(self, s: Tensor, a: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        lead = tuple(s.shape[:-1])
        x = torch.cat([s.reshape(-1, self.obs_dim), a.reshape(-1, self.act_dim)], dim=-1)
        return x, lead

    def next_state_moments(self, s: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """s (..., obs), a (..., act) -> mean and variance of s' (..., obs), raw units.

        mean = s + mean over elites of mu_Delta; variance = mean over elites of sigma_Delta^2.
        """
        x, lead = self._flat(s, a)
        d = self.dynamics
        mean_n, logvar_n = d(d.normalize_inputs(x))  # (E, N, obs) normalised
        if self.logvar_floor is not None:
            logvar_n = logvar_n.clamp_min(self.logvar_floor)
        mean = (mean_n * d.target_std + d.target_mean).mean(dim=0)
        var = (torch.exp(logvar_n) * d.target_std ** 2).mean(dim=0)
        return (x[:, :self.obs_dim] + mean).reshape(*lead, self.obs_dim), var.reshape(*lead, self.obs_dim)

    def next_state_mean(self, s: Tensor, a: Tensor) -> Tensor:
        """T-hat(s, a) as a point predictor (..., obs), raw units."""
        return self.next_state_moments(s, a)[0]

    def log_likelihood(self, s_next: Tensor, s: Tensor, a: Tensor) -> Tensor:
        """log T-hat(s' | s, a) (...,): the diagonal Gaussian of :meth:`next_state_moments`, raw units."""
        mean, var = self.next_state_moments(s, a)
        return -0.5 * (((s_next - mean) ** 2) / var + torch.log(var) + math.log(2 * math.pi)).sum(dim=-1)

    def reward(self, s: Tensor, a: Tensor) -> Tensor:
        """R-hat(s, a) (...,), raw reward units (the members' mean)."""
        x, lead = self._flat(s, a)
        r = self.reward_model
        out = r(r.normalize_inputs(x)).mean(dim=0)[..., 0] * r.reward_std + r.reward_mean
        return out.reshape(lead)
