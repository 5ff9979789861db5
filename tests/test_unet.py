"""Shape contract and initialisation of the temporal U-Net (augment/nn/unet.py)."""

from __future__ import annotations

import pytest
import torch

from augment.nn.layers import SinusoidalEmbedding, group_count
from augment.nn.unet import TemporalUNet, count_parameters


@pytest.mark.parametrize("widths", [(8,), (8, 16), (8, 16, 32)])
@pytest.mark.parametrize("length", [1, 5, 9, 33])
def test_shape_contract(widths: tuple[int, ...], length: int) -> None:
    torch.manual_seed(0)
    net = TemporalUNet(5, widths)
    for p in net.out.parameters():  # leave the zero init so the output depends on the input
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(3, 5, length)
    out = net(x, torch.randn(3))
    assert out.shape == (3, 5, length)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_output_layer_starts_at_zero_and_learns() -> None:
    torch.manual_seed(0)
    net = TemporalUNet(4, (8, 16), act="silu")
    x, noise = torch.randn(6, 4, 11), torch.randn(6)
    assert torch.equal(net(x, noise), torch.zeros(6, 4, 11))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = torch.roll(x, 1, dims=-1)
    first = None
    for _ in range(30):
        loss = (net(x, noise) - target).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_noise_input_and_time_order_matter() -> None:
    torch.manual_seed(1)
    net = TemporalUNet(3, (8, 16))
    torch.nn.init.normal_(net.out.weight, std=0.5)
    x = torch.randn(2, 3, 8)
    a = net(x, torch.tensor([0.0, 0.0]))
    b = net(x, torch.tensor([-1.0, 1.0]))
    assert not torch.allclose(a, b)
    # convolutions are translation-equivariant only up to edges: a time-reversed input is not mapped
    # to the time-reversed output
    assert not torch.allclose(net(x.flip(-1), torch.zeros(2)).flip(-1), a)
    # batch rows are independent (GroupNorm normalises per sample)
    torch.testing.assert_close(net(x[:1], torch.zeros(1)), a[:1])


def test_sizes_and_helpers() -> None:
    small = TemporalUNet(14, (32, 64, 128))
    assert 0.5e6 < count_parameters(small) < 2e6
    assert small.time_multiple == 4
    assert group_count(12) == 6 and group_count(7) == 7 and group_count(9) == 3
    emb = SinusoidalEmbedding(16)(torch.tensor([0.0, 0.5]))
    assert emb.shape == (2, 16)
    with pytest.raises(ValueError):
        TemporalUNet(3, (8,), kernel=4)
    with pytest.raises(ValueError):
        TemporalUNet(3, (8,), act="relu6")


def test_conditioned_unet_shapes_and_null_condition() -> None:
    torch.manual_seed(2)
    net = TemporalUNet(5, (8, 16), cond_dim=3)
    torch.nn.init.normal_(net.out.weight, std=0.5)
    x, noise = torch.randn(4, 5, 9), torch.randn(4)
    y = torch.randn(4, 3)
    out = net(x, noise, y)
    assert out.shape == (4, 5, 9) and torch.isfinite(out).all()
    assert not torch.allclose(out, net(x, noise, y + 1.0))  # the condition matters
    null = net(x, noise)  # cond None: every row gets the null (zero) condition embedding
    drop = torch.tensor([True, False, True, False])
    mixed = net(x, noise, y, drop)
    torch.testing.assert_close(mixed[drop], null[drop])
    torch.testing.assert_close(mixed[~drop], out[~drop])
    # the null condition is the same for any y (CFG's force-null, PLANNERS T8)
    torch.testing.assert_close(net(x, noise, torch.randn(4, 3), torch.ones(4, dtype=torch.bool)), null)
    with pytest.raises(ValueError):
        net(x, noise, torch.randn(4, 2))


def test_unconditioned_unet_is_unchanged_by_the_option() -> None:
    torch.manual_seed(3)
    plain = TemporalUNet(4, (8, 16))
    assert not any(k.startswith("cond_emb") for k in plain.state_dict())
    torch.manual_seed(3)
    again = TemporalUNet(4, (8, 16), cond_dim=0)
    assert plain.state_dict().keys() == again.state_dict().keys()
    for k, v in plain.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    with pytest.raises(ValueError):
        plain(torch.randn(2, 4, 8), torch.randn(2), torch.randn(2, 1))
    cond = TemporalUNet(4, (8, 16), cond_dim=2)
    extra = count_parameters(cond) - count_parameters(plain)
    emb = 4 * 8
    assert extra == (2 * emb + emb) + (emb * emb + emb)  # the condition MLP only
