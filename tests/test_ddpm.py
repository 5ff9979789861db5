"""DDPM machinery and DMEMM's Proposition 1 (augment/diffusion/ddpm.py) against known values.

Tests D1-D4 and D9 of PLANNERS.md §1.5 and T1-T3 of §2.5. Expected numbers come from PLANNERS.md (its
own NumPy scripts) or from closed forms computed here independently of the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from augment.diffusion import ddpm

COSINE = ddpm.DDPMSchedule.cosine(100)
LINEAR = ddpm.DDPMSchedule.linear(100)


def _tanh_eps(dim: int = 6, seed: int = 0):
    """eps(x, i) = tanh(W x + 0.01 i) with a fixed random W (float64): any function works for D1/D3."""
    w = torch.as_tensor(np.random.default_rng(seed).normal(size=(dim, dim)), dtype=torch.float64)

    def eps(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ w.T + 0.01 * k.to(x.dtype)[:, None])

    return eps


def _oracle(c: torch.Tensor, sched: ddpm.DDPMSchedule):
    """The perfect denoiser for a point mass at c: eps*(x, i) = (x - sqrt(abar_i) c) / sqrt(1 - abar_i)."""
    ab = sched.alpha_bar

    def eps(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        a = ab[k].to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
        return (x - a.sqrt() * c) / (1 - a).sqrt()

    return eps


def test_schedules_match_the_closed_forms() -> None:
    # independent cosine formula (Nichol & Dhariwal): abar(k) = f(k)/f(0), f = cos(((k/K)+s)/(1+s) pi/2)^2
    k = np.arange(101)
    f = np.cos(((k / 100) + 0.008) / 1.008 * np.pi / 2) ** 2
    beta = np.clip(1 - f[1:] / f[:-1], 0, 0.999)
    np.testing.assert_allclose(COSINE.beta[1:].numpy(), beta, rtol=1e-12)
    np.testing.assert_allclose(COSINE.alpha_bar.numpy(), np.concatenate([[1.0], np.cumprod(1 - beta)]))
    # T3: linear 1e-3 -> 2e-2, K = 100
    t = ddpm.DDPMSchedule.linear(100, 1e-3, 2e-2)
    assert float(t.alpha_bar[5]) == pytest.approx(0.993100, abs=5e-7)
    assert math.sqrt(1 - float(t.alpha_bar[5])) == pytest.approx(0.083068, abs=5e-7)
    x0, eps = torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    expected = torch.full((2, 3), 0.0830678, dtype=torch.float64)
    torch.testing.assert_close(ddpm.q_sample(x0, 5, eps, t), expected, atol=1e-7, rtol=0)
    assert float(COSINE.posterior_var[1]) == 0.0 and float(COSINE.alpha_bar_prev[1]) == 1.0


def test_posterior_mean_of_tweedie_equals_eq4() -> None:
    g = torch.Generator().manual_seed(0)
    x_k = torch.randn(4, 6, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 6, generator=g, dtype=torch.float64)
    for k in (1, 7, 60, 100):
        a = ddpm.reverse_mean(x_k, k, eps, COSINE)
        b = ddpm.posterior_mean(ddpm.x0_from_eps(x_k, k, eps, COSINE), x_k, k, COSINE)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # per-row levels give the same as one level per call
    kk = torch.tensor([3, 3, 50, 50])
    torch.testing.assert_close(ddpm.q_sample(x_k, kk, eps, COSINE)[2:],
                               ddpm.q_sample(x_k[2:], 50, eps[2:], COSINE))


@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_d1_eq7_is_an_exact_unrolling(k: int) -> None:
    eps_fn = _tanh_eps()
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(1, 6)), dtype=torch.float64)
    x_k = x.clone()
    stored = []

    def recording(xx: torch.Tensor, kk: torch.Tensor) -> torch.Tensor:
        e = eps_fn(xx, kk)
        stored.append(e)
        return e

    x0 = ddpm.reverse_loop(x_k, k, recording, COSINE)  # sigma = 0 (no noise): the mean path
    iterates = torch.stack(stored[::-1])  # row i-1 = eps at x_i
    mu = ddpm.eq7_mean(x_k, k, iterates, COSINE)
    err = float((mu - x0).abs().max())
    if k <= 10:
        assert err <= 1e-12
    else:
        assert err <= 1e-9 * float(x0.abs().max())


def test_d2_eq20_table_and_monte_carlo() -> None:
    table = {1: (0.0, 6.31e-4), 5: (4.29e-3, 8.04e-3), 10: (0.02045, 0.02861), 50: (0.9455, 1.0036),
             100: (5435.6, 5438.4)}
    for k, (post, beta) in table.items():
        assert ddpm.eq20_variance(COSINE.posterior_var, k, COSINE) == pytest.approx(post, rel=2e-3, abs=1e-12)
        assert ddpm.eq20_variance(COSINE.beta, k, COSINE) == pytest.approx(beta, rel=2e-3)
    # 2e5 chains from a fixed tau^10 with an input-independent eps (a constant vector per step)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(11, 6, generator=g, dtype=torch.float64)

    def eps_fn(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return v[k]

    x10 = torch.randn(1, 6, generator=g, dtype=torch.float64).expand(200_000, 6)
    out = ddpm.reverse_loop(x10, 10, eps_fn, COSINE,
                            randn_like=lambda x: torch.randn(x.shape, generator=g, dtype=x.dtype))
    mu = ddpm.eq7_mean(x10[:1], 10, v[1:11][:, None], COSINE)
    assert float((out.mean(0) - mu[0]).abs().max()) < 1e-3
    np.testing.assert_allclose(out.var(0).numpy(), 0.02045, rtol=0.015)


def test_d3_eq8_at_k1_equals_the_one_step_estimate() -> None:
    eps_fn = _tanh_eps()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 6, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 6, generator=g, dtype=torch.float64)
    x1 = ddpm.q_sample(x0, 1, eps, COSINE)
    one_step = ddpm.x0_from_eps(x1, 1, eps_fn(x1, torch.ones(5, dtype=torch.long)), COSINE)
    torch.testing.assert_close(ddpm.eq8_exact(x0, 1, eps, eps_fn, COSINE), one_step, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ddpm.eq8_monte_carlo(x0, 1, eps, eps_fn, COSINE, 4), one_step,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ddpm.eq8_tweedie(x1, 1, eps_fn(x1, torch.ones(5, dtype=torch.long)), COSINE),
                               one_step)


def test_d4_eq8_oracle_bias() -> None:
    expected = {"cosine": [0.0, -0.010036, -0.047233, -0.117424, -0.925563, -103.38],
                "linear": [0.0, -0.005007, -0.027247, -0.071097, -0.488644, -1.262376]}
    for name, sched in (("cosine", COSINE), ("linear", LINEAR)):
        got = [ddpm.eq8_oracle_coefficient(sched, k) for k in (1, 2, 5, 10, 50, 100)]
        np.testing.assert_allclose(got, expected[name], rtol=5e-5, atol=5e-7)
    c = torch.tensor([0.3, -1.2, 2.0, 0.5], dtype=torch.float64)
    oracle = _oracle(c, COSINE)
    g = torch.Generator().manual_seed(3)
    eps = torch.randn(3, 4, generator=g, dtype=torch.float64)
    x0 = c.expand(3, 4)
    k = torch.tensor([2, 10, 50])
    out = ddpm.eq8_exact(x0, k, eps, oracle, COSINE)
    ck = torch.tensor([ddpm.eq8_oracle_coefficient(COSINE, int(i)) for i in k], dtype=torch.float64)
    torch.testing.assert_close(out, c + ck[:, None] * eps, rtol=1e-9, atol=1e-9)
    xk = ddpm.q_sample(x0, k, eps, COSINE)  # Tweedie with the oracle returns c exactly
    torch.testing.assert_close(ddpm.eq8_tweedie(xk, k, oracle(xk, k), COSINE), x0, rtol=1e-9, atol=1e-9)


def test_eq8_exact_batches_all_terms_into_one_call() -> None:
    calls: list[int] = []
    base = _tanh_eps()

    def eps_fn(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        calls.append(int(x.shape[0]))
        return base(x, k)

    x0 = torch.zeros(3, 6, dtype=torch.float64)
    ddpm.eq8_exact(x0, torch.tensor([1, 4, 7]), torch.ones(3, 6, dtype=torch.float64), eps_fn, COSINE)
    assert calls == [12]
    calls.clear()
    ddpm.eq8_exact(x0, torch.tensor([1, 4, 7]), torch.ones(3, 6, dtype=torch.float64), eps_fn, COSINE,
                   max_rows=5)
    assert calls == [5, 5, 2]


def test_d9_monte_carlo_estimator_is_unbiased() -> None:
    sched = ddpm.DDPMSchedule.cosine(20)
    c = ddpm.prop1_coefficients(sched)
    k = 12
    g = torch.Generator().manual_seed(4)
    v = torch.randn(21, 3, generator=g, dtype=torch.float64)
    target = (c[1:k, None] * v[1:k]).sum(0)
    # exact by enumeration: E[(C/m) sum_j v_I] = C sum_i p_i v_i with p_i = c_i / C
    levels, csum = ddpm.importance_levels(torch.tensor([k]), 1, sched)
    assert float(csum[0]) == pytest.approx(float(c[1:k].sum()))
    probs = c[1:k] / c[1:k].sum()
    torch.testing.assert_close((float(csum[0]) * probs[:, None] * v[1:k]).sum(0), target)
    # the sampler draws those probabilities (10^4 draws, within 4 standard errors)
    draws, _ = ddpm.importance_levels(torch.full((10_000,), k), 1, sched, generator=g)
    freq = torch.bincount(draws[:, 0], minlength=21)[1:k].double() / 10_000
    se = (probs * (1 - probs) / 10_000).sqrt()
    assert bool(((freq - probs).abs() <= 4 * se + 1e-12).all())
    assert int(draws.min()) >= 1 and int(draws.max()) <= k - 1
    # the estimator of Eq. 8 with input-independent eps_i = v_i averages to the exact value
    eps_fn = lambda x, kk: v[kk]  # noqa: E731
    x0 = torch.zeros(10_000, 3, dtype=torch.float64)
    e = torch.zeros(10_000, 3, dtype=torch.float64)
    exact = ddpm.eq8_exact(x0[:1], k, e[:1], eps_fn, sched)
    mc = ddpm.eq8_monte_carlo(x0, k, e, eps_fn, sched, 2, generator=g)
    se_mc = mc.std(0) / math.sqrt(10_000)
    assert bool(((mc.mean(0) - exact[0]).abs() <= 4 * se_mc).all())


def test_t1_classifier_free_guidance() -> None:
    e0, ey = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 1.0, 1.0])
    torch.testing.assert_close(ddpm.classifier_free_guidance(e0, ey, 1.2), torch.tensor([-0.2, 1.2, 1.4]))
    torch.testing.assert_close(ddpm.classifier_free_guidance(e0, ey, 1.2), (1 - 1.2) * e0 + 1.2 * ey)
    torch.testing.assert_close(ddpm.classifier_free_guidance(e0, ey, 1.0), ey)
    torch.testing.assert_close(ddpm.classifier_free_guidance(e0, ey, 0.0), e0)


def test_t2_partial_refinement_with_an_oracle() -> None:
    sched = ddpm.DDPMSchedule.linear(100, 1e-3, 2e-2)
    g = torch.Generator().manual_seed(5)
    c = torch.randn(11, generator=g, dtype=torch.float64)
    oracle = _oracle(c, sched)
    plan = c + 0.3 * torch.randn(4, 11, generator=g, dtype=torch.float64)
    x5 = ddpm.q_sample(plan, 5, torch.randn(4, 11, generator=g, dtype=torch.float64), sched)
    rand = lambda x: torch.randn(x.shape, generator=g, dtype=x.dtype)  # noqa: E731
    out = ddpm.reverse_loop(x5, 5, oracle, sched, randn_like=rand, variance="posterior")
    assert float((out - c).abs().max()) < 1e-12
    z = torch.randn(20_000, 11, generator=g, dtype=torch.float64)
    noisy = ddpm.reverse_loop(ddpm.q_sample(c.expand(20_000, 11), 5, z, sched), 5, oracle, sched,
                              randn_like=rand, variance="beta", last_step_noise=True)
    assert float((noisy - c).std()) == pytest.approx(math.sqrt(1e-3), rel=0.02)


def test_reverse_step_hooks() -> None:
    sched = ddpm.DDPMSchedule.cosine(10)
    eps_fn = _tanh_eps()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 6, generator=g, dtype=torch.float64)
    noise = torch.randn(2, 6, generator=g, dtype=torch.float64)
    shift = torch.full((2, 6), 0.25, dtype=torch.float64)
    plain = ddpm.ancestral_step(x, 4, eps_fn, sched, noise)
    guided = ddpm.ancestral_step(x, 4, eps_fn, sched, noise, guide=lambda xk, k, m, v: shift)
    torch.testing.assert_close(guided - plain, shift)
    clamp = lambda y: ddpm.inpaint(y, torch.zeros_like(y), torch.tensor([True] + [False] * 5))  # noqa: E731
    out = ddpm.ancestral_step(x, 4, eps_fn, sched, noise, inpaint_fn=clamp)
    assert bool((out[:, 0] == 0).all()) and torch.equal(out[:, 1:], plain[:, 1:])
    torch.testing.assert_close(ddpm.guided_mean(plain, 0.5, 0.1, shift), plain + 0.0125)
    # the noise input equals EDM's c_noise at the equivalent sigma
    sig = math.sqrt((1 - float(sched.alpha_bar[3])) / float(sched.alpha_bar[3]))
    assert float(ddpm.noise_input(sched, 3, 2)[0]) == pytest.approx(math.log(sig) / 4, rel=1e-6)
