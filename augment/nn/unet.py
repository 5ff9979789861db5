"""1-D temporal U-Net: the backbone F of the EDM denoiser of DyDiff (Section 4.1).

Shape contract::

    TemporalUNet(channels=C, ...)(x (B, C, T) float32, noise (B,) float32) -> (B, C, T) float32

for any T >= 1. C is obs+act (the state and action channels of one trajectory step), T is the time
axis (L+1 steps). ``noise`` is EDM's c_noise = ln(s)/4 (DDPM users feed the equivalent
ln(sqrt((1-abar_k)/abar_k))/4, :func:`augment.diffusion.ddpm.noise_input`). The network knows nothing of
noise schedules.

Optional condition (``cond_dim > 0``; Trajectory Diffuser's return-to-go)::

    TemporalUNet(C, ..., cond_dim=D)(x (B, C, T), noise (B,), cond (B, D), drop=None | (B,) bool)

The condition goes through its own 2-layer MLP to the embedding width and is **added** to the noise
embedding that every residual block receives. The null condition of classifier-free guidance is a zero
condition embedding: rows where ``drop`` is True, or every row when ``cond`` is None. With the default
``cond_dim=0`` the network has no condition parameters and its outputs and state dict are what they were
before the option existed (DyDiff's models load unchanged).

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
    act: ``mish`` or ``silu``; cond_dim: size D of an optional condition vector (0: none).
    """

    def __init__(self, channels: int, widths: Sequence[int] = (32, 64, 128), *, emb_dim: int | None = None,
                 kernel: int = 5, act: str = "mish", cond_dim: int = 0) -> None:
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
        self.cond_dim = int(cond_dim)
        if self.cond_dim < 0:
            raise ValueError(f"cond_dim must be >= 0, got {cond_dim}")
        if self.cond_dim:
            self.cond_emb = nn.Sequential(nn.Linear(self.cond_dim, emb_dim), act_cls(),
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

    def embed(self, noise: Tensor, cond: Tensor | None = None, drop: Tensor | None = None) -> Tensor:
        """The embedding every block receives: noise (B,), cond (B, D) or None, drop (B,) bool -> (B, E).

        emb(noise) + cond_emb(cond) * keep, keep = 0 on rows where ``drop`` is True (null condition); no
        condition term at all without ``cond_dim`` or with ``cond`` None.
        """
        emb = self.emb(noise)
        if cond is None:
            return emb
        if not self.cond_dim:
            raise ValueError("this TemporalUNet was built without a condition (cond_dim=0)")
        if cond.dim() != 2 or cond.shape != (noise.shape[0], self.cond_dim):
            raise ValueError(f"cond must have shape ({noise.shape[0]}, {self.cond_dim}), "
                             f"got {tuple(cond.shape)}")
        c = self.cond_emb(cond.to(emb.dtype))
        if drop is not None:
            c = c * (~drop.to(device=c.device, dtype=torch.bool)).to(c.dtype)[:, None]
        return emb + c

    def forward(self, x: Tensor, noise: Tensor, cond: Tensor | None = None,
                drop: Tensor | None = None) -> Tensor:
        """x: (B, C, T), noise: (B,), cond: (B, D) or None, drop: (B,) bool or None -> (B, C, T)."""
        t = x.shape[-1]
        pad = (-t) % self.time_multiple
        h = F.pad(x, (0, pad)) if pad else x
        emb = self.embed(noise, cond, drop)
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
