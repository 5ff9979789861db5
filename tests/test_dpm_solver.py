"""VP schedule and DPM-Solver-1/2/3 (PLANNERS.md Sec. 3.5, tests A6, A8, A9).

Expected values come from closed forms in this file (the Gaussian PF-ODE keeps the standardised
variable invariant) and from PLANNERS.md's independent NumPy runs (A8 error tables, A9 moments).
"""

from __future__ import annotations

import math

import pytest
import torch

from augment.diffusion import dpm_solver as D

SCH = D.VPSchedule()
M, S = 0.7, 0.3  # data N(0.7, 0.3^2) in 1-D


def oracle_eps(m: float, s: float):
    """eps*(x, t) = sigma_t (x - alpha_t m) / (alpha_t^2 s^2 + sigma_t^2) for data N(m, s^2 I)."""
    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = SCH.alpha(t).to(x.dtype)[:, None]
        sg = SCH.sigma(t).to(x.dtype)[:, None]
        return sg * (x - a * m) / (a ** 2 * s ** 2 + sg ** 2)
    return fn


def _alpha(t: float) -> float:
    """VP linear (0.1, 20), written out independently of the code under test."""
    return math.exp(-0.25 * t ** 2 * (20.0 - 0.1) - 0.5 * t * 0.1)


def exact_pf_ode(x_t: torch.Tensor, t0: float, t1: float, m: float, s: float) -> torch.Tensor:
    """The Gaussian PF-ODE keeps (x_t - alpha_t m) / sqrt(alpha_t^2 s^2 + sigma_t^2) invariant."""
    a0, a1 = _alpha(t0), _alpha(t1)
    s0, s1 = math.sqrt(1 - a0 ** 2), math.sqrt(1 - a1 ** 2)
    z = (x_t - a0 * m) / math.sqrt(a0 ** 2 * s ** 2 + s0 ** 2)
    return a1 * m + math.sqrt(a1 ** 2 * s ** 2 + s1 ** 2) * z


def test_schedule_closed_forms() -> None:
    t = torch.tensor([1e-3, 0.1, 0.5, 1.0], dtype=torch.float64)
    log_alpha = -0.25 * t ** 2 * (20.0 - 0.1) - 0.5 * t * 0.1
    torch.testing.assert_close(SCH.log_alpha(t), log_alpha)
    torch.testing.assert_close(SCH.alpha(t) ** 2 + SCH.sigma(t) ** 2, torch.ones_like(t))
    lam = torch.log(SCH.alpha(t) / SCH.sigma(t))
    torch.testing.assert_close(SCH.lambda_(t), lam)
    torch.testing.assert_close(SCH.inverse_lambda(lam), t, rtol=1e-9, atol=1e-12)
    # f = d log alpha / dt and g^2 = d sigma^2/dt - 2 f sigma^2 (Eq. 6), by central differences
    h = 1e-6
    f_num = (SCH.log_alpha(t + h) - SCH.log_alpha(t - h)) / (2 * h)
    torch.testing.assert_close(SCH.drift(t), f_num, rtol=1e-6, atol=1e-6)
    g2 = (SCH.sigma(t + h) ** 2 - SCH.sigma(t - h) ** 2) / (2 * h) - 2 * f_num * SCH.sigma(t) ** 2
    torch.testing.assert_close(SCH.diffusion_squared(t), g2, rtol=1e-5, atol=1e-5)
    ts = D.time_steps(SCH, 10, skip="logSNR")
    assert float(ts[0]) == 1.0 and float(ts[-1]) == pytest.approx(1e-3)
    dl = torch.diff(SCH.lambda_(ts))
    torch.testing.assert_close(dl, torch.full_like(dl, float(dl.mean())), rtol=1e-8, atol=1e-10)


def test_fast_orders_use_the_budget() -> None:
    for order in (1, 2, 3):
        for nfe in range(1, 20):
            orders = D.fast_orders(nfe, order)
            assert sum(orders) == nfe and max(orders) <= order
    assert D.fast_orders(15, 2) == [2] * 7 + [1]
    assert D.fast_orders(9, 3) == [3, 3, 2, 1]
    with pytest.raises(ValueError):
        D.fixed_orders(3, 4)


X_T = torch.tensor([[-1.5], [0.0], [2.0]], dtype=torch.float64)
# PLANNERS.md A8: max error at N = 10/20/40/80 (noise-prediction DPM-Solver, lambda-uniform steps)
A8_ERRORS = {1: (0.1275, 0.0675, 0.0348, 0.0176), 2: (0.0400, 0.00928, 0.00223, 0.000547),
             3: (1.19e-3, 1.12e-4, 1.18e-5, 1.34e-6)}


def _errors(order: int, steps: tuple[int, ...], predict_x0: bool) -> list[float]:
    exact = exact_pf_ode(X_T, 1.0, 1e-3, M, S)
    out = []
    for n in steps:
        x = D.sample(oracle_eps(M, S), X_T.clone(), SCH, D.fixed_orders(n, order), predict_x0=predict_x0)
        out.append(float((x - exact).abs().max()))
    return out


def test_a8_exact_solution_and_error_table() -> None:
    exact = exact_pf_ode(X_T, 1.0, 1e-3, M, S)
    torch.testing.assert_close(exact.ravel(), torch.tensor([0.24832179, 0.69858069, 1.29892589],
                                                           dtype=torch.float64), atol=2e-8, rtol=0)
    for order, expected in A8_ERRORS.items():
        errs = _errors(order, (10, 20, 40, 80), predict_x0=False)
        for got, want in zip(errs, expected, strict=True):
            assert got == pytest.approx(want, rel=0.03), (order, errs)
        slopes = [math.log2(errs[i] / errs[i + 1]) for i in (1, 2)]
        assert all(abs(sl - order) <= 0.3 for sl in slopes), (order, slopes)


def test_a8_data_prediction_form_converges_at_its_order() -> None:
    for order, steps in ((1, (20, 40, 80)), (2, (20, 40, 80)), (3, (40, 80, 160))):
        errs = _errors(order, steps, predict_x0=True)
        slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
        assert all(abs(sl - order) <= 0.3 for sl in slopes), (order, slopes)
    # DPM-Solver-1 is DDIM in both forms: identical updates
    a = D.sample(oracle_eps(M, S), X_T.clone(), SCH, [1] * 7, predict_x0=True)
    b = D.sample(oracle_eps(M, S), X_T.clone(), SCH, [1] * 7, predict_x0=False)
    torch.testing.assert_close(a, b)


def test_nfe_spacing_matches_step_spacing_on_a_lambda_grid_and_keeps_the_order() -> None:
    for order in (2, 3):
        for predict_x0 in (False, True):
            a = D.sample(oracle_eps(M, S), X_T.clone(), SCH, D.fixed_orders(6, order), predict_x0=predict_x0)
            b = D.sample(oracle_eps(M, S), X_T.clone(), SCH, D.fixed_orders(6, order), predict_x0=predict_x0,
                         spacing="nfe")
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # time-uniform grid (r1 != 1/2): at least second order (measured slopes 2.5, 2.9 here)
    exact = exact_pf_ode(X_T, 1.0, 1e-3, M, S)
    errs = [float((D.sample(oracle_eps(M, S), X_T.clone(), SCH, D.fixed_orders(n, 2), skip="time_uniform",
                            predict_x0=True, spacing="nfe") - exact).abs().max()) for n in (40, 80, 160)]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in (0, 1)]
    assert all(sl >= 1.7 for sl in slopes), slopes
    with pytest.raises(ValueError):
        D.sample(oracle_eps(M, S), X_T.clone(), SCH, [1], spacing="grid")


def test_a6_rescaling() -> None:
    eps = torch.tensor([[3.0, 4.0]])
    grad = torch.tensor([[2.0, 0.0]])
    sigma = 0.5
    out = D.guided_eps_value(eps, grad, sigma, 1.0, rescale=True)
    torch.testing.assert_close(out, torch.tensor([[2.23607, 4.47214]]), atol=1e-5, rtol=0)
    assert float(torch.linalg.vector_norm(out)) == pytest.approx(5.0)
    torch.testing.assert_close(D.guided_eps_value(eps, grad, sigma, 1.0, rescale=False),
                               torch.tensor([[2.0, 4.0]]))
    torch.testing.assert_close(D.guided_eps_value(eps, grad, sigma, 0.0, rescale=True), eps)
    # score space: score_pi = -eps/sigma + omega grad E rescaled to ||score_mu||; eps_hat = -sigma score_pi
    score = D.guided_score(-eps / sigma, grad, 1.0, rescale=True)
    torch.testing.assert_close(-sigma * score, out)
    # d = 1: the rescaled eps_hat is +-|eps|
    e1 = torch.tensor([[0.3], [0.3]])
    g1 = torch.tensor([[1.0], [-10.0]])
    out1 = D.guided_eps_value(e1, g1, 1.0, 1.0, rescale=True)
    torch.testing.assert_close(out1, torch.tensor([[-0.3], [0.3]]))
    # zero-norm rows are left alone (no division by zero)
    z = D.rescale_to_norm(torch.zeros(1, 2), torch.ones(1, 2))
    assert torch.isfinite(z).all() and float(z.abs().sum()) == 0.0


def test_a9_end_to_end_energy_guidance() -> None:
    c, beta = 1.5, 2.0

    def grad_e(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # exact intermediate energy E_t = beta c mu~(x_t) + const, through autograd inside the sampler
        a = SCH.alpha(t).to(x.dtype)[:, None]
        sg = SCH.sigma(t).to(x.dtype)[:, None]
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            energy = (beta * c * a * S ** 2 * xr / (a ** 2 * S ** 2 + sg ** 2)).sum()
            (g,) = torch.autograd.grad(energy, xr)
        return g

    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(100_000, 1, generator=gen, dtype=torch.float64)
    orders = D.fixed_orders(20, 3)
    with torch.no_grad():
        guided = D.sample(D.guided_eps(oracle_eps(M, S), grad_e, SCH, 1.0, rescale=False), x_t.clone(), SCH,
                          orders)
        plain = D.sample(D.guided_eps(oracle_eps(M, S), grad_e, SCH, 0.0, rescale=False), x_t.clone(), SCH,
                         orders)
        rescaled = D.sample(D.guided_eps(oracle_eps(M, S), grad_e, SCH, 1.0, rescale=True), x_t.clone(), SCH,
                            orders)
    # pi* = N(0.7 + beta c s^2, s^2) = N(0.97, 0.09); 0.968 because x_T ~ N(0, 1), not the exact marginal
    assert float(guided.mean()) == pytest.approx(0.968, abs=0.01)
    assert float(guided.std()) == pytest.approx(0.30, abs=0.01)
    assert float(plain.mean()) == pytest.approx(0.6986, abs=0.01)
    assert float(rescaled.mean()) == pytest.approx(0.743, abs=0.01)
