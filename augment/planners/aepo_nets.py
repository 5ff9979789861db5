"""AEPO's two networks: the behaviour noise predictor eps_theta(s, a_t, t) and the intermediate energy
E_Theta(s, a_t, t) (Eq. 14, 26). Shapes: s (B, obs) *standardised* states, a_t (B, d), t (B,) continuous
time in [1e-3, 1].

* :class:`StateEpsNet` - :class:`augment.nn.residual.ResidualMLP` with x = a_t, time = t and the state
  as its condition (Table 4: 7 blocks of width 256/512/1024; one W x W layer per block here).
* :class:`EnergyNet` - an MLP (Table 4: 3 x 256) over [s, a_t, emb(t)], emb a sinusoidal embedding of t
  followed by a linear layer; its output is ``shift + scale * net(...)`` with fixed buffers set from the
  first batch of targets, so the net regresses a target of order one whatever the size of beta Q.
  The shift is a constant, so it does not change grad_a E.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from augment.nn.layers import SinusoidalEmbedding
from augment.nn.mlp import MLP
from augment.nn.residual import ResidualMLP

Tensor = torch.Tensor


class StateEpsNet(nn.Module):
    """eps_theta(s, a_t, t): (B, obs), (B, d), (B,) -> (B, d)."""

    def __init__(self, obs_dim: int, act_dim: int, width: int, blocks: int, emb_dim: int = 128) -> None:
        super().__init__()
        self.net = ResidualMLP(act_dim, act_dim, width, blocks, cond_features=obs_dim, emb_dim=emb_dim,
                               time_scale=1000.0)

    def forward(self, s: Tensor, a_t: Tensor, t: Tensor) -> Tensor:
        return self.net(a_t, t, s)


class EnergyNet(nn.Module):
    """E_Theta(s, a_t, t): (B, obs), (B, d), (B,) -> (B,).

    hidden: MLP widths (Table 4: 256, 256, 256); emb_dim: width of the time embedding.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], emb_dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Sequential(SinusoidalEmbedding(emb_dim, scale=1000.0), nn.Linear(emb_dim, emb_dim))
        self.mlp = MLP(obs_dim + act_dim + emb_dim, 1, hidden, activation="silu")
        self.register_buffer("out_shift", torch.zeros(()))
        self.register_buffer("out_scale", torch.ones(()))

    def set_output_affine(self, shift: float, scale: float) -> None:
        """Fix the output map E = shift + scale * net (scale > 0)."""
        self.out_shift.fill_(float(shift))
        self.out_scale.fill_(max(float(scale), 1e-6))

    def raw(self, s: Tensor, a_t: Tensor, t: Tensor) -> Tensor:
        """net(...) before the output map (B,), what the loss is taken on."""
        return self.mlp(torch.cat([s, a_t, self.embed(t.to(a_t.dtype))], dim=-1)).reshape(-1)

    def forward(self, s: Tensor, a_t: Tensor, t: Tensor) -> Tensor:
        return self.out_shift + self.out_scale * self.raw(s, a_t, t)

    def grad_action(self, s: Tensor, a_t: Tensor, t: Tensor) -> Tensor:
        """grad_{a_t} E_Theta(s, a_t, t) (B, d) by autograd (works inside ``no_grad`` callers)."""
        with torch.enable_grad():
            a = a_t.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.forward(s, a, t).sum(), a)
        return g
