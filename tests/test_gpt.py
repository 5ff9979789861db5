"""The causal GPT over fused (state, RTG) tokens (augment/nn/gpt.py): shapes, sizes, test T4 (causal mask)."""

from __future__ import annotations

import math

import pytest
import torch

from augment.nn.gpt import StateRTGTransformer, causal_mask, sinusoidal_positions
from augment.nn.unet import count_parameters


def test_shapes_for_every_context_length() -> None:
    gpt = StateRTGTransformer(11, 8, layers=1, heads=2, max_len=7).eval()
    for n in (1, 3, 7):
        s, r = gpt(torch.randn(4, n, 11), torch.randn(4, n))
        assert s.shape == (4, n, 11) and r.shape == (4, n)
    with pytest.raises(ValueError, match="context length"):
        gpt(torch.randn(1, 8, 11), torch.randn(1, 8))
    with pytest.raises(ValueError, match="divisible"):
        StateRTGTransformer(11, 5, heads=4)


def test_parameter_counts_of_the_profiles() -> None:
    # PLANNERS.md §2.7: ~0.4M at 64 per modality (cpu), ~6.3M at 256 (the official width 512)
    assert 0.35e6 < count_parameters(StateRTGTransformer(11, 64)) < 0.45e6
    assert 6.0e6 < count_parameters(StateRTGTransformer(11, 256)) < 6.8e6


def test_positions_and_mask_by_hand() -> None:
    pe = sinusoidal_positions(3, 4)
    assert pe[2, 0] == pytest.approx(math.sin(2.0)) and pe[2, 1] == pytest.approx(math.cos(2.0))
    assert pe[2, 2] == pytest.approx(math.sin(2.0 / 100.0)) and pe[2, 3] == pytest.approx(math.cos(0.02))
    m = causal_mask(3)
    assert (m.isinf() == torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)).all()


@pytest.mark.parametrize("j", [0, 4, 9])
def test_t4_causal_mask_bit_for_bit(j: int) -> None:
    torch.manual_seed(0)
    gpt = StateRTGTransformer(11, 16, layers=2, heads=4, max_len=10).eval()
    s, r = torch.randn(3, 10, 11), torch.randn(3, 10)
    s2, r2 = s.clone(), r.clone()
    s2[:, j] += 0.7
    r2[:, j] -= 0.3
    with torch.no_grad():
        a, b = gpt(s, r)
        a2, b2 = gpt(s2, r2)
    assert torch.equal(a[:, :j], a2[:, :j]) and torch.equal(b[:, :j], b2[:, :j])  # the past: unchanged
    assert not torch.equal(a[:, j], a2[:, j]) and not torch.equal(b[:, j], b2[:, j])  # j itself: changed
