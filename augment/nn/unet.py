"""1-D temporal U-Net: the backbone F of the EDM denoiser of DyDiff (Section 4.1).

Shape contract::

    TemporalUNet(channels=C, ...)(x (B, C, T) float32, noise (B,) float32) -> (B, C, T) float32

for any T >= 1. C is obs+act (the state and action channels of one trajectory step), T is the time
axis (L+1 steps). ``noise`` is EDM's c_noise = ln(s)/4. The network knows nothing of noise schedules.

Architecture (a temporal U-Net in the style of Diffuser, written from the description): a sinusoidal
embedding of the noise input followed by a 2-layer MLP; for each level ``k`` of ``widths`` two residual
blocks (Conv1d-GroupNorm-Mish/SiLU, noise embedding added) then a stride-2 down-sampling conv (not at the
last level); two middle residual blocks; the mirror path with skip concatenation and transposed-conv
up-sampling; a final ConvNormAct over the up path concatenated with the first level's skip, and a
1x1 output conv initialised to zero (so F = 0 and D(x; s) = c_skip(s) x at initialisation).

Time-axis padding: with ``len(widths)`` levels the length must be divisible by 2^(levels-1); the input is
zero-padded at the end of the time axis to the next multiple and the output cropped back to T (a zero
pad is what the convolutions already assume beyond the edges).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from augment.nn.layers import ConvNormAct, ResidualTemporalBlock, SinusoidalEmbedding, activation

Tensor = torch.Tensor


class TemporalUNet(nn.Module):
    """Temporal U-Net over (B, C, T) sequences conditioned on a per-sample noise input (B,).

    channels: C (input = output channels); widths: channels per level, e.g. (32, 64, 128);
    emb_dim: noise-embedding width (default 4 * widths[0]); kernel: conv kernel size (odd);
    act: ``mish`` or ``silu``.
    """

    def __init__(self, channels: int, widths: Sequence[int] = (32, 64, 128), *, emb_dim: int | None = None,
                 kernel: int = 5, act: str = "mish") -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one level")
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {kernel}")
        act_cls = activation(act)
        widths = tuple(int(w) for w in widths)
        emb_dim = emb_dim or 4 * widths[0]
        self.channels = channels
        self.levels = len(widths)
        self.emb = nn.Sequential(SinusoidalEmbedding(widths[0]), nn.Linear(widths[0], emb_dim), act_cls(),
                                 nn.Linear(emb_dim, emb_dim))

        self.down = nn.ModuleList()
        c_prev = channels
        for k, w in enumerate(widths):
            last = k == len(widths) - 1
            self.down.append(nn.ModuleList([
                ResidualTemporalBlock(c_prev, w, emb_dim, kernel, act_cls),
                ResidualTemporalBlock(w, w, emb_dim, kernel, act_cls),
                nn.Identity() if last else nn.Conv1d(w, w, 3, stride=2, padding=1),
            ]))
            c_prev = w
        self.mid1 = ResidualTemporalBlock(c_prev, c_prev, emb_dim, kernel, act_cls)
        self.mid2 = ResidualTemporalBlock(c_prev, c_prev, emb_dim, kernel, act_cls)

        self.up = nn.ModuleList()
        rev = list(reversed(widths))
        for k, w in enumerate(rev[:-1]):
            w_out = rev[k + 1]
            self.up.append(nn.ModuleList([
                ResidualTemporalBlock(2 * w, w_out, emb_dim, kernel, act_cls),
                ResidualTemporalBlock(w_out, w_out, emb_dim, kernel, act_cls),
                nn.ConvTranspose1d(w_out, w_out, 4, stride=2, padding=1),
            ]))
        self.final = ConvNormAct(2 * widths[0], widths[0], kernel, act_cls)
        self.out = nn.Conv1d(widths[0], channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def time_multiple(self) -> int:
        """The time axis is padded to a multiple of this (2^(levels-1))."""
        return 2 ** (self.levels - 1)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        """x: (B, C, T), noise: (B,) -> (B, C, T)."""
        t = x.shape[-1]
        pad = (-t) % self.time_multiple
        h = F.pad(x, (0, pad)) if pad else x
        emb = self.emb(noise)
        skips: list[Tensor] = []
        for block1, block2, downsample in self.down:
            h = block2(block1(h, emb), emb)
            skips.append(h)
            h = downsample(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for block1, block2, upsample in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = upsample(block2(block1(h, emb), emb))
        h = self.out(self.final(torch.cat([h, skips.pop()], dim=1)))
        return h[..., :t] if pad else h


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
