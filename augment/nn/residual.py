"""Residual MLP denoiser backbone: the network of SynthER (Lu et al. 2023, Section 3) and of AEPO's
eps_theta(s, a_t, t), written generically.

Shape contract::

    ResidualMLP(in_features=D, out_features=O, width=W, blocks=K, cond_features=C)(
        x (B, D) float32, time (B,) float32, cond (B, C) float32 or None) -> (B, O) float32

``time`` is any per-sample scalar that says how noisy ``x`` is: EDM's c_noise = ln(sigma)/4 (SynthER),
a DDPM step t/T in [0, 1], or an integer step t in {0..T} (then pass ``time_scale=1``). It is multiplied
by ``time_scale`` and embedded with sines and cosines of geometrically spaced frequencies
(:class:`augment.nn.layers.SinusoidalEmbedding`), then a two-layer MLP maps it to ``emb_dim``.
``cond`` (only when ``cond_features > 0``) is concatenated to ``x`` at the input projection and also
projected into the embedding, so every block sees it.

Architecture (written from the papers' description; where they are silent the choice is ours and is
listed in docs/generators.md):

* input projection ``Linear(D + C, W)``;
* K residual blocks ``h <- h + Linear_W(act(LayerNorm(h) + Linear_E(emb)))``, one W x W layer each
  (SynthER: 6 blocks, width 1024, which gives the paper's ~6.5 M parameters, DyDiff Appendix E:
  7.1 M here with the per-block embedding);
* output head ``Linear(act(LayerNorm(h)), O)`` initialised to zero, so the network outputs 0 at
  initialisation (with EDM preconditioning, D(x; s) = c_skip(s) x).
"""

from __future__ import annotations

import torch
from torch import nn

from augment.nn.layers import SinusoidalEmbedding
from augment.nn.mlp import make_activation

Tensor = torch.Tensor


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block with an additive embedding: (B, W), (B, E) -> (B, W).

    h + Linear_W(dropout(act(LayerNorm(h) + Linear_E(emb)))).
    """

    def __init__(self, width: int, emb_dim: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.emb = nn.Linear(emb_dim, width)
        self.act = make_activation(activation)
        self.drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(width, width)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """h: (B, W), emb: (B, E) -> (B, W)."""
        return h + self.fc(self.drop(self.act(self.norm(h) + self.emb(emb))))


class ResidualMLP(nn.Module):
    """Residual MLP over flat vectors, conditioned on a per-sample noise level/time and an optional vector.

    in_features: D (the noisy input's size); out_features: O (usually D); width: W; blocks: K;
    cond_features: C (0 = unconditional); emb_dim: E, width of the time embedding (even);
    activation: a name of augment.nn.mlp.ACTIVATIONS;
    time_scale: factor on ``time`` before the sinusoidal frequencies (1000 for inputs of order 1, such
    as c_noise or t/T; 1 for integer steps); dropout: inside blocks (0 = none).
    """

    def __init__(self, in_features: int, out_features: int, width: int, blocks: int, cond_features: int = 0,
                 emb_dim: int = 128, *, activation: str = "silu",
                 time_scale: float = 1000.0, dropout: float = 0.0) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1 or width < 1 or blocks < 0 or cond_features < 0:
            raise ValueError(f"ResidualMLP sizes must be positive: in={in_features} out={out_features} "
                             f"width={width} blocks={blocks} cond={cond_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.cond_features = int(cond_features)
        self.width = int(width)
        self.emb_dim = int(emb_dim)
        self.time_emb = nn.Sequential(SinusoidalEmbedding(self.emb_dim, scale=time_scale),
                                      nn.Linear(self.emb_dim, self.emb_dim), make_activation(activation),
                                      nn.Linear(self.emb_dim, self.emb_dim))
        self.cond_emb: nn.Module | None = (nn.Linear(self.cond_features, self.emb_dim)
                                           if self.cond_features else None)
        self.proj = nn.Linear(self.in_features + self.cond_features, self.width)
        self.blocks = nn.ModuleList(ResidualBlock(self.width, self.emb_dim, activation, dropout)
                                    for _ in range(int(blocks)))
        self.out_norm = nn.LayerNorm(self.width)
        self.out_act = make_activation(activation)
        self.out = nn.Linear(self.width, self.out_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, time: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, D), time: (B,) (or a scalar, broadcast), cond: (B, C) or None -> (B, O)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"ResidualMLP expects x of shape (B, {self.in_features}); got {tuple(x.shape)}")
        b = x.shape[0]
        time = torch.as_tensor(time, dtype=x.dtype, device=x.device)
        if time.dim() == 0:
            time = time.expand(b)
        if time.shape != (b,):
            raise ValueError(f"ResidualMLP expects time of shape ({b},); got {tuple(time.shape)}")
        emb = self.time_emb(time)
        if self.cond_emb is not None:
            if cond is None or cond.shape != (b, self.cond_features):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"ResidualMLP expects cond of shape ({b}, {self.cond_features}); got {got}")
            emb = emb + self.cond_emb(cond)
            h = self.proj(torch.cat([x, cond], dim=-1))
        else:
            if cond is not None:
                raise ValueError("ResidualMLP was built with cond_features=0 but got a condition")
            h = self.proj(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.out_act(self.out_norm(h)))
