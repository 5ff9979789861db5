"""EDM math of DyDiff (Table 3, Eq. 4, Algorithm 2): preconditioning identities, loss weight, schedule,
churn, and the conditioned Heun sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from augment.diffusion import edm

SD = 0.5
SIGMAS = torch.tensor([1e-3, 0.01, 0.1, 0.5, 1.0, 5.0, 80.0], dtype=torch.float64)


def test_preconditioning_identities() -> None:
    s = SIGMAS
    cs, co, ci = edm.c_skip(s, SD), edm.c_out(s, SD), edm.c_in(s, SD)
    # the network input has unit variance when x = y + n with Var y = sd^2, Var n = s^2
    torch.testing.assert_close(ci ** 2 * (s ** 2 + SD ** 2), torch.ones_like(s))
    # c_out^2 = sd^2 (1 - c_skip)
    torch.testing.assert_close(co ** 2, SD ** 2 * (1 - cs))
    # the effective training target (y - c_skip (y + n)) / c_out has unit variance
    target_var = ((1 - cs) ** 2 * SD ** 2 + cs ** 2 * s ** 2) / co ** 2
    torch.testing.assert_close(target_var, torch.ones_like(s))
    # lambda(s) = 1 / c_out^2, so lambda ||D - y||^2 = ||F - target||^2
    torch.testing.assert_close(edm.loss_weight(s, SD) * co ** 2, torch.ones_like(s))
    assert edm.c_noise(4.0) == pytest.approx(math.log(4.0) / 4)
    torch.testing.assert_close(edm.c_noise(s), torch.log(s) / 4)


def test_effective_target_variance_monte_carlo() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(400_000, generator=g, dtype=torch.float64) * SD
    for s in (0.05, 0.5, 3.0, 40.0):
        n = torch.randn(400_000, generator=g, dtype=torch.float64) * s
        target = (y - edm.c_skip(s, SD) * (y + n)) / edm.c_out(s, SD)
        assert target.var().item() == pytest.approx(1.0, rel=0.02)
        assert (edm.c_in(s, SD) * (y + n)).var().item() == pytest.approx(1.0, rel=0.02)


def test_denoiser_tends_to_identity_as_sigma_vanishes() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, generator=g)
    weight = torch.randn(3, 3, generator=g)

    def network(x_in: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.einsum("ij,bjt->bit", weight, x_in) + noise[:, None, None])

    errors = []
    for s in (1e-1, 1e-3, 1e-5):
        d = edm.precondition(network, x, torch.full((4,), s), SD)
        errors.append((d - x).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4
    # at large s the skip path vanishes and D ~ sd * F
    d = edm.precondition(network, x, torch.full((4,), 1e4), SD)
    f = network(edm.c_in(1e4, SD) * x, torch.full((4,), math.log(1e4) / 4))
    torch.testing.assert_close(d, SD * f, atol=1e-4, rtol=1e-4)


def test_sigma_distribution_is_lognormal() -> None:
    g = torch.Generator().manual_seed(2)
    s = edm.sample_sigma(200_000, -1.2, 1.2, g)
    assert s.shape == (200_000,) and (s > 0).all()
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.02)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.02)


def test_loss_is_weighted_masked_mean() -> None:
    g = torch.Generator().manual_seed(3)
    d, y = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    sigma = torch.tensor([0.5, 2.0])
    mask = torch.zeros(1, 3, 4, dtype=torch.bool)
    mask[:, 1:, 1:] = True
    w = edm.loss_weight(sigma, SD)[:, None, None]
    expected = (w * (d - y) ** 2)[:, 1:, 1:].mean()
    torch.testing.assert_close(edm.edm_loss(d, y, sigma, SD, mask), expected)
    # entries outside the mask do not matter
    d2 = d.clone()
    d2[:, 0] += 100.0
    d2[:, :, 0] -= 50.0
    torch.testing.assert_close(edm.edm_loss(d2, y, sigma, SD, mask), expected)


def test_schedule_endpoints_and_order() -> None:
    p = edm.EDMParams()
    t = edm.time_steps(p.num_steps, p.sigma_min, p.sigma_max, p.rho)
    assert len(t) == p.num_steps + 1
    assert t[0] == p.sigma_max and t[p.num_steps - 1] == p.sigma_min and t[p.num_steps] == 0.0
    assert all(a > b for a, b in zip(t[:-1], t[1:], strict=True))
    # the Table 3 formula in between
    i = 10
    a, b = p.sigma_max ** (1 / p.rho), p.sigma_min ** (1 / p.rho)
    assert t[i] == pytest.approx((a + i / (p.num_steps - 1) * (b - a)) ** p.rho)
    assert edm.time_steps(1, 0.002, 80.0, 7.0) == [80.0, 0.0]
    with pytest.raises(ValueError):
        edm.time_steps(0, 0.002, 80.0, 7.0)


def test_churn_limits() -> None:
    p = edm.EDMParams()
    t = edm.time_steps(p.num_steps, p.sigma_min, p.sigma_max, p.rho)
    g = edm.churn_gammas(t, p.s_churn, p.s_tmin, p.s_tmax)
    assert len(g) == p.num_steps
    cap = math.sqrt(2) - 1  # S_churn / N = 60/34 > sqrt(2)-1: the cap binds
    for ti, gi in zip(t[:-1], g, strict=True):
        assert gi == (pytest.approx(cap) if p.s_tmin <= ti <= p.s_tmax else 0.0)
    assert g[0] == 0.0 and g[-1] == 0.0  # t_0 = 80 > S_tmax, t_{N-1} = 0.002 < S_tmin
    small = edm.churn_gammas(t, 3.4, p.s_tmin, p.s_tmax)
    assert max(small) == pytest.approx(3.4 / p.num_steps)
    assert set(edm.churn_gammas(t, 0.0, p.s_tmin, p.s_tmax)) == {0.0}
    # churn never more than doubles the variance: t_hat^2 - t^2 <= t^2
    assert all((ti * (1 + gi)) ** 2 - ti ** 2 <= ti ** 2 + 1e-9 for ti, gi in zip(t, g, strict=False))


def _conditions(shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    cond = torch.randn(shape, generator=g)
    mask = torch.zeros((1,) + shape[1:], dtype=torch.bool)
    mask[:, :2, 0] = True  # "s_0": 2 state channels at t = 0
    mask[:, 2:, :] = True  # "actions": channels 2.. at every t
    return cond, mask


@pytest.mark.parametrize("after_churn", [False, True])
def test_sampler_keeps_conditions_exactly(after_churn: bool) -> None:
    cond, mask = _conditions((3, 4, 6))
    p = edm.EDMParams(num_steps=6)
    t = edm.time_steps(p.num_steps, p.sigma_min, p.sigma_max, p.rho)
    gam = edm.churn_gammas(t, p.s_churn, p.s_tmin, p.s_tmax)
    seen: list[torch.Tensor] = []

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        seen.append(x.clone())
        return 0.9 * x + 0.1 * torch.sin(x)  # any function: the conditions come from replace alone

    gen = torch.Generator().manual_seed(5)
    out = edm.heun_sample(denoise, torch.randn(cond.shape, generator=gen), t, gam, p.s_noise,
                          lambda x: torch.where(mask, cond, x),
                          lambda x: torch.randn(x.shape, generator=gen), replace_after_churn=after_churn)
    m = mask.expand_as(out)
    assert torch.equal(out[m], cond[m])
    assert not torch.equal(out[~m], cond[~m])
    assert len(seen) == edm.network_evaluations(p.num_steps)
    churned = [gi > 0 for gi in gam]
    # every Heun correction (odd calls) reads a freshly replaced tau^{i+1}
    for x in seen[1::2]:
        assert torch.equal(x[m], cond[m])
    # the first call of each step reads tau_hat^i: exact conditions unless churn noise was added
    for x, noisy in zip(seen[0::2], churned, strict=True):
        assert torch.equal(x[m], cond[m]) == (after_churn or not noisy)


def _gaussian_std(num_steps: int, s_churn: float) -> float:
    p = edm.EDMParams()
    t = edm.time_steps(num_steps, p.sigma_min, p.sigma_max, p.rho)
    gam = edm.churn_gammas(t, s_churn, p.s_tmin, p.s_tmax)
    gen = torch.Generator().manual_seed(6)
    out = edm.heun_sample(lambda x, s: x * SD ** 2 / (s ** 2 + SD ** 2),
                          torch.randn(20_000, 8, generator=gen, dtype=torch.float64), t, gam, 1.0,
                          lambda x: x, lambda x: torch.randn(x.shape, generator=gen, dtype=x.dtype))
    assert abs(out.mean().item()) < 0.01
    return out.std().item()


def test_sampler_recovers_gaussian_data_with_ideal_denoiser() -> None:
    """For data N(0, sd^2 I) the ideal denoiser is D(x; s) = x sd^2/(s^2+sd^2); Algorithm 2 must then
    produce samples of standard deviation sd, up to a discretisation error that shrinks with N."""
    assert _gaussian_std(100, 0.0) == pytest.approx(SD, rel=0.002)
    errors = [abs(_gaussian_std(n, 60.0) - SD) for n in (18, 34, 100)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] < 0.08 * SD  # the paper's N = 34 with churn


def test_sampler_with_point_mass_denoiser_lands_on_it() -> None:
    target = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    p = edm.EDMParams(num_steps=10)
    t = edm.time_steps(p.num_steps, p.sigma_min, p.sigma_max, p.rho)
    gen = torch.Generator().manual_seed(7)
    latents = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    gam = edm.churn_gammas(t, p.s_churn, p.s_tmin, p.s_tmax)
    out = edm.heun_sample(lambda x, s: target.expand_as(x), latents, t, gam, p.s_noise, lambda x: x,
                          lambda x: torch.randn(x.shape, generator=gen, dtype=x.dtype))
    np.testing.assert_allclose(out.numpy(), target.expand(5, 3).numpy(), atol=1e-9)
