"""Shape contract and conditioning of the residual MLP backbone (augment/nn/residual.py)."""

from __future__ import annotations

import pytest
import torch

from augment.nn.residual import ResidualMLP
from augment.nn.unet import count_parameters


def _perturb_head(net: ResidualMLP) -> None:
    with torch.no_grad():
        net.out.weight.normal_()


def test_shapes_unconditional_and_conditional() -> None:
    net = ResidualMLP(7, 5, width=16, blocks=3)
    assert net(torch.randn(4, 7), torch.randn(4)).shape == (4, 5)
    cnet = ResidualMLP(3, 3, width=16, blocks=2, cond_features=6, emb_dim=32, time_scale=1.0)
    assert cnet(torch.randn(9, 3), torch.arange(9.0), torch.randn(9, 6)).shape == (9, 3)
    # scalar time broadcasts
    assert cnet(torch.randn(2, 3), torch.tensor(5.0), torch.randn(2, 6)).shape == (2, 3)


def test_zero_output_at_initialisation() -> None:
    net = ResidualMLP(4, 4, width=8, blocks=2)
    torch.testing.assert_close(net(torch.randn(3, 4), torch.randn(3)), torch.zeros(3, 4))


def test_output_depends_on_time_condition_and_each_row_is_independent() -> None:
    torch.manual_seed(0)
    net = ResidualMLP(4, 2, width=16, blocks=2, cond_features=3)
    _perturb_head(net)
    x, c = torch.randn(5, 4), torch.randn(5, 3)
    t = torch.full((5,), 0.1)
    base = net(x, t, c)
    assert not torch.allclose(base, net(x, t + 0.5, c))
    assert not torch.allclose(base, net(x, t, c + 1.0))
    # rows do not interact (LayerNorm is per row): row 2 alone gives the same answer
    torch.testing.assert_close(net(x[2:3], t[2:3], c[2:3]), base[2:3])


def test_parameter_count_matches_a_hand_count() -> None:
    d, w, k, e, c = 6, 32, 3, 16, 2
    net = ResidualMLP(d, d, width=w, blocks=k, cond_features=c, emb_dim=e)
    time_mlp = 2 * (e * e + e)
    cond = c * e + e
    proj = (d + c) * w + w
    block = 2 * w + (e * w + w) + (w * w + w)   # LayerNorm, embedding projection, W x W layer
    head = 2 * w + w * d + d
    assert count_parameters(net) == time_mlp + cond + proj + k * block + head


def test_bad_shapes_raise() -> None:
    net = ResidualMLP(4, 4, width=8, blocks=1, cond_features=2)
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(3, 4), torch.randn(3))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        net(torch.randn(3, 5), torch.randn(3), torch.randn(3, 2))
    with pytest.raises(ValueError, match="time"):
        net(torch.randn(3, 4), torch.randn(2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="cond_features=0"):
        ResidualMLP(4, 4, 8, 1)(torch.randn(3, 4), torch.randn(3), torch.randn(3, 2))


def test_gradients_reach_every_parameter() -> None:
    net = ResidualMLP(3, 3, width=8, blocks=2, cond_features=2)
    _perturb_head(net)
    net(torch.randn(6, 3), torch.rand(6), torch.randn(6, 2)).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
