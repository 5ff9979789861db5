"""Multi-layer perceptrons: a plain MLP and an ensemble of E MLPs evaluated with batched matmuls.

Shape contract (``E`` ensemble members, ``B`` batch rows, ``in`` / ``out`` feature sizes):

* :class:`MLP`: ``(..., in) -> (..., out)``.
* :class:`EnsembleLinear`: ``(E, B, in) -> (E, B, out)``, one ``torch.baddbmm`` for all members.
* :class:`EnsembleMLP`: ``(E, B, in) -> (E, B, out)``; a ``(B, in)`` input is broadcast to every member.

Every parameter of an ensemble has the member index as its leading dimension, so member ``e``'s weights
are ``param[e]`` for every parameter; :meth:`EnsembleMLP.select` builds a smaller ensemble from chosen
members and training code can snapshot or restore members independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from stores.errors import UserInputError, did_you_mean

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "mish": nn.Mish, "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (``silu`` is the swish of MBPO/PETS)."""
    if name not in ACTIVATIONS:
        hint = f"activations are: {', '.join(ACTIVATIONS)}"
        raise UserInputError(did_you_mean(name, ACTIVATIONS, hint=hint))
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Fully connected network ``(..., in) -> (..., out)``.

    ``hidden`` lists the hidden widths (``(256, 256)`` is two hidden layers of 256); the activation
    follows every hidden layer, the output layer is linear.
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int],
                 activation: str = "silu") -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        layers: list[nn.Module] = []
        width = self.in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), make_activation(activation)]
            width = int(h)
        layers.append(nn.Linear(width, self.out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out)."""
        return self.net(x)


class EnsembleLinear(nn.Module):
    """E independent affine maps applied in one batched matmul: ``(E, B, in) -> (E, B, out)``.

    weight: (E, in, out); bias: (E, 1, out). Weights start from a normal truncated at two standard
    deviations with std ``1 / (2 sqrt(in))`` (the MBPO initialisation), biases at zero.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.ensemble_size = int(ensemble_size)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(self.ensemble_size, self.in_features, self.out_features))
        self.bias = nn.Parameter(torch.zeros(self.ensemble_size, 1, self.out_features))
        std = 1.0 / (2.0 * math.sqrt(self.in_features))
        with torch.no_grad():
            nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (E, B, in) -> (E, B, out)."""
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in={self.in_features}, out={self.out_features}"


class EnsembleMLP(nn.Module):
    """E MLPs of identical shape evaluated together: ``(E, B, in) -> (E, B, out)``.

    A ``(B, in)`` input is shared by all members (broadcast, no copy). ``generator`` seeds the
    initialisation so that the same seed gives the same weights.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int, hidden: Sequence[int],
                 activation: str = "silu", generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.ensemble_size = int(ensemble_size)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation_name = activation
        widths = (self.in_features, *self.hidden, self.out_features)
        self.layers = nn.ModuleList(EnsembleLinear(self.ensemble_size, a, b, generator=generator)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (E, B, in) or (B, in) -> (E, B, out)."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble_size, -1, -1)
        if x.dim() != 3 or x.shape[0] != self.ensemble_size or x.shape[2] != self.in_features:
            raise ValueError(f"EnsembleMLP expects (E={self.ensemble_size}, B, {self.in_features}) or "
                             f"(B, {self.in_features}); got {tuple(x.shape)}")
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)

    def select(self, members: Sequence[int]) -> EnsembleMLP:
        """A new ensemble holding copies of the chosen members, in the given order."""
        idx = torch.as_tensor(list(members), dtype=torch.long)
        ref = self.layers[0].weight
        out = EnsembleMLP(len(idx), self.in_features, self.out_features, self.hidden, self.activation_name)
        out = out.to(device=ref.device, dtype=ref.dtype)
        idx = idx.to(ref.device)
        with torch.no_grad():
            for new, old in zip(out.layers, self.layers, strict=True):
                new.weight.copy_(old.weight[idx])
                new.bias.copy_(old.bias[idx])
        return out
