"""DDPM schedule and reverse-step pieces (augment/diffusion/ddpm.py) pinned to hand-computed values.

Written against the survivors of the augment/diffusion mutation run (benchmarks/RESULTS.md, "Mutation
testing"). Every schedule is built inside the test functions: mutmut imports test modules once, so values
computed at import time would be taken from the unmutated code. Expected numbers are literal closed forms
(PLANNERS.md Sec. 4 and App. A: the Diffuser cosine schedule, beta-tilde, the posterior mean coefficients),
never the code under test called twice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from augment.diffusion import ddpm

# beta_1..beta_3 of a three-step toy schedule: alpha = (0.9, 0.8, 0.7), abar = (0.9, 0.72, 0.504)
TOY_BETAS = [0.1, 0.2, 0.3]


def _cosine_by_hand(k_steps: int, s: float, max_beta: float) -> np.ndarray:
    """Nichol & Dhariwal in Diffuser's discretisation: f(k) = cos(((k / K) + s) / (1 + s) pi / 2)^2 for
    k = 0..K, beta_k = min(1 - f(k) / f(k - 1), max_beta), written with a Python loop."""
    f = [math.cos(((k / k_steps) + s) / (1.0 + s) * math.pi / 2.0) ** 2 for k in range(k_steps + 1)]
    return np.array([min(max(1.0 - f[k] / f[k - 1], 0.0), max_beta) for k in range(1, k_steps + 1)])


@pytest.mark.parametrize(("k_steps", "s", "max_beta"), [(7, 0.008, 0.999), (100, 0.008, 0.999),
                                                        (12, 0.05, 0.3)])
def test_cosine_betas_follow_the_closed_form(k_steps: int, s: float, max_beta: float) -> None:
    got = ddpm.cosine_betas(k_steps, s, max_beta)
    want = _cosine_by_hand(k_steps, s, max_beta)
    assert got.shape == (k_steps,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # f(K) = cos(pi / 2)^2 = 0, so the last beta is 1 before the clip: it must be the cap exactly
    assert got[-1] == max_beta
    sched = ddpm.DDPMSchedule.cosine(k_steps, s, max_beta)
    np.testing.assert_allclose(sched.beta.numpy(), np.concatenate([[0.0], want]), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="^num_steps must be >= 1, got 0$"):
        ddpm.cosine_betas(0)


def test_from_betas_derived_arrays_by_hand() -> None:
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    assert sched.num_steps == 3
    for arr in (sched.beta, sched.alpha, sched.alpha_bar, sched.alpha_bar_prev, sched.posterior_var,
                sched.coef_x0, sched.coef_xt):
        assert arr.dtype == torch.float64 and arr.shape == (4,)
    torch.testing.assert_close(sched.alpha_bar, torch.tensor([1.0, 0.9, 0.72, 0.504], dtype=torch.float64))
    torch.testing.assert_close(sched.alpha_bar_prev, torch.tensor([1.0, 1.0, 0.9, 0.72], dtype=torch.float64))
    # beta-tilde_k = beta_k (1 - abar_{k-1}) / (1 - abar_k); 0 at k = 0 and k = 1
    post = [0.0, 0.0, 0.2 * 0.1 / 0.28, 0.3 * 0.28 / 0.496]
    torch.testing.assert_close(sched.posterior_var, torch.tensor(post, dtype=torch.float64), rtol=1e-12,
                               atol=1e-15)
    # mu-tilde = coef_x0 x0 + coef_xt x_k: beta_k sqrt(abar_{k-1}) / (1 - abar_k), (1 - abar_{k-1})
    # sqrt(alpha_k) / (1 - abar_k); at k = 1 the mean is x0 itself (coef_x0 = 1, coef_xt = 0)
    c0 = [1.0, 1.0, 0.2 * math.sqrt(0.9) / 0.28, 0.3 * math.sqrt(0.72) / 0.496]
    ct = [0.0, 0.0, 0.1 * math.sqrt(0.8) / 0.28, 0.28 * math.sqrt(0.7) / 0.496]
    torch.testing.assert_close(sched.coef_x0, torch.tensor(c0, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(sched.coef_xt, torch.tensor(ct, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    assert float(ddpm.posterior_variance(3, sched)) == pytest.approx(0.3 * 0.28 / 0.496, rel=1e-12)
    torch.testing.assert_close(ddpm.posterior_variance(torch.tensor([2, 3]), sched),
                               torch.tensor(post[2:], dtype=torch.float64))


def test_linear_and_named_schedules_use_every_argument() -> None:
    lin = ddpm.DDPMSchedule.linear(5, 1e-3, 5e-2)
    want = [0.0, 1e-3, 1e-3 + 0.049 / 4, 1e-3 + 2 * 0.049 / 4, 1e-3 + 3 * 0.049 / 4, 5e-2]
    torch.testing.assert_close(lin.beta, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    default = ddpm.DDPMSchedule.linear(3)  # 1e-4 -> 2e-2
    torch.testing.assert_close(default.beta, torch.tensor([0.0, 1e-4, 0.01005, 2e-2], dtype=torch.float64))
    named = ddpm.DDPMSchedule.named("linear", 5, beta_start=1e-3, beta_end=5e-2)
    assert named.num_steps == 5
    torch.testing.assert_close(named.beta, lin.beta)
    cos = ddpm.DDPMSchedule.named("cosine", 9)
    np.testing.assert_allclose(cos.beta.numpy()[1:], _cosine_by_hand(9, 0.008, 0.999), rtol=1e-12)
    with pytest.raises(ValueError, match="^unknown DDPM schedule 'quadratic'; use cosine or linear$"):
        ddpm.DDPMSchedule.named("quadratic", 5)
    with pytest.raises(ValueError, match="^num_steps must be >= 1, got 0$"):
        ddpm.linear_betas(0)


def _constant_eps(value: torch.Tensor, seen: list[torch.Tensor] | None = None):
    def eps_fn(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if seen is not None:
            seen.append(k.clone())
        return value.expand_as(x).clone()
    return eps_fn


def test_clipped_ancestral_step_by_hand() -> None:
    """clip_x0: x0-hat = (x_k - sqrt(1 - abar_k) eps) / sqrt(abar_k) clipped, then the posterior mean."""
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    eps = torch.tensor([[0.5, 0.1, -1.0]], dtype=torch.float64)
    noise = torch.tensor([[0.2, -0.3, 1.1]], dtype=torch.float64)
    seen: list[torch.Tensor] = []
    out = ddpm.ancestral_step(x, 3, _constant_eps(eps, seen), sched, noise, clip_x0=1.0)
    assert [k.tolist() for k in seen] == [[3]] and seen[0].dtype == torch.long
    x0 = [(xi - math.sqrt(0.496) * ei) / math.sqrt(0.504)
          for xi, ei in zip((1.0, -2.0, 0.5), (0.5, 0.1, -1.0), strict=True)]
    assert x0[1] < -1.0 and x0[2] > 1.0  # the clip is active on two entries
    x0 = [min(max(v, -1.0), 1.0) for v in x0]
    c0, ct = 0.3 * math.sqrt(0.72) / 0.496, 0.28 * math.sqrt(0.7) / 0.496
    var = 0.3 * 0.28 / 0.496
    want = [c0 * a + ct * b + math.sqrt(var) * n for a, b, n in zip(x0, (1.0, -2.0, 0.5), (0.2, -0.3, 1.1),
                                                                    strict=True)]
    torch.testing.assert_close(out, torch.tensor([want], dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # unclipped (Eq. 4), beta variance: (x - beta_k / sqrt(1 - abar_k) eps) / sqrt(alpha_k) + sqrt(beta_k) n
    plain = ddpm.ancestral_step(x, 3, _constant_eps(eps), sched, noise, variance="beta")
    want = [(xi - 0.3 / math.sqrt(0.496) * ei) / math.sqrt(0.7) + math.sqrt(0.3) * n
            for xi, ei, n in zip((1.0, -2.0, 0.5), (0.5, 0.1, -1.0), (0.2, -0.3, 1.1), strict=True)]
    torch.testing.assert_close(plain, torch.tensor([want], dtype=torch.float64), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="^unknown reverse variance 'fixed'"):
        ddpm.ancestral_step(x, 3, _constant_eps(eps), sched, noise, variance="fixed")


def test_guide_reads_the_mean_and_the_step_variance() -> None:
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    x = torch.tensor([[0.4, -0.6]], dtype=torch.float64)
    eps = torch.tensor([[0.3, 0.2]], dtype=torch.float64)
    calls: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []

    def guide(x_k: torch.Tensor, k: int, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        calls.append((x_k, k, mean, var))
        return 0.5 * var * mean

    out = ddpm.ancestral_step(x, 2, _constant_eps(eps), sched, None, guide=guide)
    # Eq. 4 at k = 2: (x - 0.2 / sqrt(0.28) eps) / sqrt(0.8); the guide adds 0.5 sigma^2 mean
    mean = [(xi - 0.2 / math.sqrt(0.28) * ei) / math.sqrt(0.8) for xi, ei in zip((0.4, -0.6), (0.3, 0.2),
                                                                               strict=True)]
    var = 0.2 * 0.1 / 0.28
    torch.testing.assert_close(out, torch.tensor([[m * (1 + 0.5 * var) for m in mean]], dtype=torch.float64))
    (x_k, k, m, v), = calls
    assert torch.equal(x_k, x) and k == 2 and v.dtype == torch.float64 and float(v) == pytest.approx(var)
    torch.testing.assert_close(m, torch.tensor([mean], dtype=torch.float64))


def test_reverse_loop_from_level_zero_is_the_start_itself() -> None:
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    x = torch.tensor([[1.5, -0.5, 2.0]], dtype=torch.float64)
    seen: list[torch.Tensor] = []
    clamp = lambda y: ddpm.inpaint(y, torch.zeros_like(y), torch.tensor([True, False, False]))  # noqa: E731
    out = ddpm.reverse_loop(x, 0, _constant_eps(torch.ones(1, 3, dtype=torch.float64), seen), sched,
                            inpaint_fn=clamp)
    assert seen == [] and torch.equal(out, torch.tensor([[0.0, -0.5, 2.0]], dtype=torch.float64))
    steps: list[int] = []
    ddpm.reverse_loop(x, 3, _constant_eps(torch.ones(1, 3, dtype=torch.float64), seen), sched,
                      on_step=lambda k, _: steps.append(k))
    assert steps == [3, 2, 1] and [int(k[0]) for k in seen] == [3, 2, 1]
    for bad in (-1, 4):
        with pytest.raises(ValueError, match=r"^k_start must lie in \[0, 3\], got "):
            ddpm.reverse_loop(x, bad, _constant_eps(torch.ones(1, 3)), sched)


def test_importance_levels_with_a_level_one_row_and_more_draws_than_levels() -> None:
    """Rows with k_b = 1 have nothing to sample (C = 0, levels 1); m may exceed k_b - 1 (with replacement)."""
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    g = torch.Generator().manual_seed(0)
    levels, total = ddpm.importance_levels(torch.tensor([1, 3]), 5, sched, generator=g)
    assert levels.shape == (2, 5) and levels.dtype == torch.long
    assert levels[0].tolist() == [1] * 5 and float(total[0]) == 0.0
    assert set(levels[1].tolist()) <= {1, 2}
    # c_i = (1 - alpha_i) / sqrt((1 - abar_i) abar_i): c_1 + c_2 for k = 3
    c1, c2 = 0.1 / math.sqrt(0.1 * 0.9), 0.2 / math.sqrt(0.28 * 0.72)
    assert float(total[1]) == pytest.approx(c1 + c2, rel=1e-12)
    many, _ = ddpm.importance_levels(torch.full((4000,), 3), 1, sched, generator=g)
    p1 = float((many == 1).double().mean())
    assert p1 == pytest.approx(c1 / (c1 + c2), abs=4 * math.sqrt(0.25 / 4000))


def test_eq8_monte_carlo_hands_int64_levels_to_the_network() -> None:
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    dtypes: list[torch.dtype] = []

    def eps_fn(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        dtypes.append(k.dtype)
        return torch.tanh(x + 0.1 * k.to(x.dtype)[:, None])

    x0 = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=torch.float64)
    eps = torch.tensor([[0.1, 0.4], [-0.7, 0.2]], dtype=torch.float64)
    k32 = torch.tensor([1, 3], dtype=torch.int32)
    a = ddpm.eq8_monte_carlo(x0, k32, eps, eps_fn, sched, 2, generator=torch.Generator().manual_seed(1))
    b = ddpm.eq8_exact(x0, k32, eps, eps_fn, sched)
    assert dtypes and all(d == torch.long for d in dtypes)
    # row 0 (k = 1) has no sampled terms: Eq. 8 at k = 1 is the Tweedie estimate at level 1
    x1 = math.sqrt(0.9) * x0[0] + math.sqrt(0.1) * eps[0]
    tweedie = (x1 - math.sqrt(0.1) * torch.tanh(x1 + 0.1)) / math.sqrt(0.9)
    torch.testing.assert_close(a[0], tweedie, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b[0], tweedie, rtol=1e-12, atol=1e-12)


def test_noise_input_values_and_refusal() -> None:
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    want = [0.25 * math.log(math.sqrt((1 - ab) / ab)) for ab in (0.9, 0.72, 0.504)]
    got = ddpm.noise_input(sched, torch.tensor([1, 2, 3]))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    one = ddpm.noise_input(sched, 2, batch=4)
    assert one.shape == (4,) and one.dtype == torch.float32
    assert float(one[3]) == pytest.approx(want[1], rel=1e-6)
    with pytest.raises(ValueError, match="^noise_input needs batch for an int k$"):
        ddpm.noise_input(sched, 2)


def test_schedule_entries_come_in_the_sample_dtype() -> None:
    """_at(arr, k, like): arr[k] in ``like``'s dtype, shaped to broadcast over (B, ...). Half-precision
    samples get half-precision coefficients (the rounding a float64 scalar would skip)."""
    sched = ddpm.DDPMSchedule.from_betas(np.array(TOY_BETAS))
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        like = torch.zeros(2, 3, 4, dtype=dtype)
        one = ddpm._at(sched.alpha_bar, 2, like)
        assert one.dtype == dtype and one.dim() == 0 and float(one) == pytest.approx(0.72, rel=1e-2)
        per_row = ddpm._at(sched.alpha_bar, torch.tensor([1, 3]), like)
        assert per_row.dtype == dtype and per_row.shape == (2, 1, 1)
        assert ddpm.q_sample(like, 2, like, sched).dtype == dtype
