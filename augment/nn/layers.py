"""Building blocks of the temporal U-Net: noise-level embedding and 1-D residual blocks.

Shapes: sequences are (B, C, T) (channels first, time last), noise inputs are (B,).
"""

from __future__ import annotations

import math

import torch
from torch import nn

Tensor = torch.Tensor


def group_count(channels: int, max_groups: int = 8) -> int:
    """Largest number of GroupNorm groups <= max_groups that divides ``channels``."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class SinusoidalEmbedding(nn.Module):
    """Map a scalar per sample (B,) to (B, dim) sines and cosines of geometrically spaced frequencies.

    The input is EDM's c_noise = ln(s)/4, which lies roughly in [-2, 1.2]; it is scaled by ``scale``
    (default 1000) before the usual transformer frequencies 1/10000^(k/half) so that small changes of
    the noise level move the embedding.
    """

    def __init__(self, dim: int, scale: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B,) -> (B, dim)."""
        arg = x.float()[:, None] * self.freqs[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


class ConvNormAct(nn.Module):
    """Conv1d (same length) -> GroupNorm -> activation. (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = nn.GroupNorm(group_count(c_out), c_out)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualTemporalBlock(nn.Module):
    """Two ConvNormAct layers with the noise embedding added in between, plus a residual path.

    x: (B, C_in, T), emb: (B, E) -> (B, C_out, T). The residual path is a 1x1 conv when C_in != C_out.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, kernel: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.block1 = ConvNormAct(c_in, c_out, kernel, act)
        self.block2 = ConvNormAct(c_out, c_out, kernel, act)
        self.emb = nn.Sequential(act(), nn.Linear(emb_dim, c_out))
        self.skip: nn.Module = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x) + self.emb(emb)[:, :, None]
        return self.block2(h) + self.skip(x)


def activation(name: str) -> type[nn.Module]:
    """``mish`` or ``silu`` -> the torch module class."""
    table: dict[str, type[nn.Module]] = {"mish": nn.Mish, "silu": nn.SiLU}
    if name not in table:
        raise ValueError(f"unknown activation '{name}'; choose one of {sorted(table)}")
    return table[name]
