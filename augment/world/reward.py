"""Reward model r_psi(s, a) trained by mean squared error (DyDiff Eq. 10).

``L_rew(psi) = E_{(s,a,r)~D} [(r_psi(s, a) - r)^2]``. A deterministic MLP (two hidden layers of 256 in
the paper profile) over normalised ``(s, a)`` predicting the normalised reward. It is built as an
ensemble of ``members`` MLPs (1 in every profile: a single MLP) so that it trains with the same
holdout / early-stopping routine as the dynamics ensemble; with several members the prediction is their
mean.

Shapes: ``E`` members, ``B`` rows, ``in = obs + act``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from augment.nn.mlp import EnsembleMLP
from augment.world.dynamics import member_mse


def reward_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DyDiff Eq. 10 per member, (E,): ``mean_B (r_hat - r)^2``.

    pred: (E, B, 1); target: (E, B, 1) or (B, 1).
    """
    return member_mse(pred, target)


class RewardModel(nn.Module):
    """r_psi(s, a): normalised (E, B, in) or (B, in) -> normalised reward (E, B, 1).

    :meth:`predict`: raw ``obs`` (B, obs), ``act`` (B, act) -> raw reward (B,), the members' mean.
    Buffers: ``input_mean``/``input_std`` (in,), ``reward_mean``/``reward_std`` (1,).
    """

    def __init__(self, observation_size: int, action_size: int, hidden: Sequence[int], members: int = 1,
                 activation: str = "silu", generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.observation_size = int(observation_size)
        self.action_size = int(action_size)
        self.ensemble_size = int(members)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        in_size = self.observation_size + self.action_size
        self.net = EnsembleMLP(self.ensemble_size, in_size, 1, self.hidden, activation, generator=generator)
        self.register_buffer("input_mean", torch.zeros(in_size))
        self.register_buffer("input_std", torch.ones(in_size))
        self.register_buffer("reward_mean", torch.zeros(1))
        self.register_buffer("reward_std", torch.ones(1))

    def set_normalizer(self, inputs: np.ndarray, rewards: np.ndarray) -> None:
        """Set the buffers from raw training inputs (N, in) and rewards (N,); std floored at 1e-6."""
        x = np.asarray(inputs, dtype=np.float64)
        r = np.asarray(rewards, dtype=np.float64)
        self.input_mean.copy_(torch.as_tensor(x.mean(axis=0), dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(np.maximum(x.std(axis=0), 1e-6), dtype=torch.float32))
        self.reward_mean.fill_(float(r.mean()))
        self.reward_std.fill_(float(max(r.std(), 1e-6)))

    def normalize_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (..., in) -> normalised (..., in)."""
        return (x - self.input_mean) / self.input_std

    def normalize_rewards(self, r: torch.Tensor) -> torch.Tensor:
        """Raw rewards (...,) -> normalised (..., 1)."""
        return ((r - self.reward_mean) / self.reward_std).unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (E, B, in) or (B, in) -> normalised reward (E, B, 1)."""
        return self.net(x)

    def member_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. 10 per member, (E,); x: (E, B, in), y: (E, B, 1), normalised."""
        return reward_mse(self(x), y)

    def member_mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Holdout MSE per member, (E,); x: (B, in), y: (B, 1), normalised."""
        return reward_mse(self(x), y)

    def regularizer(self) -> torch.Tensor:
        """No extra term: Eq. 10 is the whole objective."""
        return self.input_mean.new_zeros(())

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Raw obs (B, obs), act (B, act) -> raw predicted reward (B,)."""
        x = self.normalize_inputs(torch.cat([obs, act], dim=-1))
        return (self(x).mean(dim=0)[..., 0] * self.reward_std + self.reward_mean)
