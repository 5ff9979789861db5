"""A causal GPT over fused (state, return-to-go) tokens: Trajectory Diffuser's feasible-trajectory
generator (trajectory_diffuser.txt Sec. 4.2, Eq. 4-5; A.4).

Shape contract::

    StateRTGTransformer(obs_dim=S, embed_dim=e, ...)(states (B, n, S), rtgs (B, n)) ->
        (next_states (B, n, S), next_rtgs (B, n))

for any context length 1 <= n <= ``max_len``. Output position i predicts (s_{i+1}, R_{i+1}) from the tokens
0..i only (causal mask): perturbing token j leaves outputs i < j unchanged bit for bit.

Architecture (A.4: 4 layers, 4 heads, embedding 256, ReLU; the official code's layout where the paper is
silent): each timestep is ONE token, the concatenation of a linear embedding of the state (S -> e) and one of
the RTG (1 -> e), so the model width is 2e (the official code: e = 256, width 512), followed by LayerNorm
and a sinusoidal position encoding that is absolute within the context window (positions 0..n-1); post-norm
transformer encoder layers (d_ff = ``ff_dim``, default the width, ReLU, dropout) with an upper-triangular
mask; two heads width -> e -> S and width -> e -> 1 (ReLU in between).

At the cpu profile (e = 64, width 128, d_ff 128) the network has ~0.4M parameters for hopper (S = 11); at
the paper profile (e = 256) ~6.3M.
"""

from __future__ import annotations

import math

import torch
from torch import nn

Tensor = torch.Tensor


def sinusoidal_positions(length: int, width: int) -> Tensor:
    """(length, width) float32: PE[p, 2i] = sin(p / 10000^(2i/width)), PE[p, 2i+1] = cos(...)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : width // 2]
    return pe


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """(length, length) float32 additive mask: 0 on and below the diagonal, -inf above (no future)."""
    return torch.triu(torch.full((length, length), float("-inf"), device=device), diagonal=1)


class StateRTGTransformer(nn.Module):
    """Causal transformer over (state, RTG) tokens -> next state and next RTG at every position.

    obs_dim: S; embed_dim: e per modality (model width 2e); layers, heads: transformer depth and heads
    (2e must be divisible by heads); ff_dim: feed-forward width (None: 2e); dropout: in the encoder layers;
    max_len: longest context (the position table's size).
    """

    def __init__(self, obs_dim: int, embed_dim: int = 256, *, layers: int = 4, heads: int = 4,
                 ff_dim: int | None = None, dropout: float = 0.1, max_len: int = 64) -> None:
        super().__init__()
        width = 2 * int(embed_dim)
        if width % heads:
            raise ValueError(f"model width 2 x {embed_dim} = {width} must be divisible by heads = {heads}")
        if layers < 1 or max_len < 1:
            raise ValueError(f"layers and max_len must be >= 1, got {layers} / {max_len}")
        self.obs_dim = int(obs_dim)
        self.embed_dim = int(embed_dim)
        self.width = width
        self.max_len = int(max_len)
        self.embed_state = nn.Linear(self.obs_dim, self.embed_dim)
        self.embed_rtg = nn.Linear(1, self.embed_dim)
        self.embed_norm = nn.LayerNorm(width)
        self.register_buffer("positions", sinusoidal_positions(self.max_len, width), persistent=False)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=int(ff_dim or width),
                                           dropout=dropout, activation="relu", batch_first=True,
                                           norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head_state = nn.Sequential(nn.Linear(width, self.embed_dim), nn.ReLU(),
                                        nn.Linear(self.embed_dim, self.obs_dim))
        self.head_rtg = nn.Sequential(nn.Linear(width, self.embed_dim), nn.ReLU(),
                                      nn.Linear(self.embed_dim, 1))

    def forward(self, states: Tensor, rtgs: Tensor) -> tuple[Tensor, Tensor]:
        """states (B, n, S), rtgs (B, n) -> predicted next states (B, n, S) and next RTGs (B, n)."""
        if states.dim() != 3 or states.shape[-1] != self.obs_dim:
            raise ValueError(f"states must be (B, n, {self.obs_dim}), got {tuple(states.shape)}")
        b, n, _ = states.shape
        if rtgs.shape != (b, n):
            raise ValueError(f"rtgs must be ({b}, {n}), got {tuple(rtgs.shape)}")
        if not 1 <= n <= self.max_len:
            raise ValueError(f"context length must lie in [1, {self.max_len}], got {n}")
        tokens = torch.cat([self.embed_state(states), self.embed_rtg(rtgs[..., None])], dim=-1)
        h = self.embed_norm(tokens) + self.positions[:n].to(tokens.dtype)
        h = self.encoder(h, mask=causal_mask(n, h.device), is_causal=True)
        return self.head_state(h), self.head_rtg(h)[..., 0]


__all__ = ["StateRTGTransformer", "causal_mask", "sinusoidal_positions"]
