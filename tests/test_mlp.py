"""Shape contracts and equivalences of the MLP backbones (augment/nn/mlp.py)."""

from __future__ import annotations

import pytest
import torch

from augment.nn.mlp import MLP, EnsembleLinear, EnsembleMLP
from stores.errors import UserInputError


def test_mlp_shapes_and_depth() -> None:
    net = MLP(5, 3, hidden=(8, 8), activation="relu")
    assert net(torch.randn(4, 5)).shape == (4, 3)
    assert net(torch.randn(2, 4, 5)).shape == (2, 4, 3)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 8), (8, 8), (8, 3)]


def test_ensemble_linear_is_a_per_member_affine_map() -> None:
    layer = EnsembleLinear(4, 6, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 5, 6)
    out = layer(x)
    assert out.shape == (4, 5, 3)
    for e in range(4):
        torch.testing.assert_close(out[e], x[e] @ layer.weight[e] + layer.bias[e, 0])


def test_ensemble_mlp_matches_members_run_one_by_one_and_broadcasts() -> None:
    ens = EnsembleMLP(3, 4, 2, hidden=(16, 16), generator=torch.Generator().manual_seed(1))
    x = torch.randn(3, 7, 4)
    out = ens(x)
    assert out.shape == (3, 7, 2)
    for e in range(3):
        single = ens.select([e])
        torch.testing.assert_close(single(x[e:e + 1])[0], out[e])
    shared = torch.randn(7, 4)
    torch.testing.assert_close(ens(shared), ens(shared.expand(3, 7, 4)))


def test_select_keeps_the_given_order() -> None:
    ens = EnsembleMLP(4, 3, 2, hidden=(8,), generator=torch.Generator().manual_seed(2))
    x = torch.randn(5, 3)
    full = ens(x)
    sub = ens.select([2, 0])
    assert sub.ensemble_size == 2
    torch.testing.assert_close(sub(x), full[[2, 0]])


def test_same_generator_seed_same_weights_different_seed_different() -> None:
    a = EnsembleMLP(2, 3, 2, (8,), generator=torch.Generator().manual_seed(5))
    b = EnsembleMLP(2, 3, 2, (8,), generator=torch.Generator().manual_seed(5))
    c = EnsembleMLP(2, 3, 2, (8,), generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a.layers[0].weight, b.layers[0].weight)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    # members start from different weights
    assert not torch.equal(a.layers[0].weight[0], a.layers[0].weight[1])


def test_bad_shapes_and_names_fail_clearly() -> None:
    ens = EnsembleMLP(3, 4, 2, hidden=(8,))
    with pytest.raises(ValueError, match="expects"):
        ens(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="expects"):
        ens(torch.randn(5, 3))
    with pytest.raises(UserInputError, match="did you mean 'silu'"):
        MLP(2, 2, (4,), activation="silo")


def test_gradients_reach_every_member() -> None:
    ens = EnsembleMLP(3, 4, 2, hidden=(8,))
    ens(torch.randn(3, 6, 4)).pow(2).sum().backward()
    for p in ens.parameters():
        assert p.grad is not None
        assert (p.grad.flatten(1).abs().sum(dim=1) > 0).all()
