"""DPM-Solver time grids, intermediate times and the ``nfe`` layout (augment/diffusion/dpm_solver.py).

Written against the survivors of the augment/diffusion mutation run (benchmarks/RESULTS.md). The VP
linear schedule (beta 0.1 -> 20, PLANNERS.md App. A (v)) is written out here in plain floats: log alpha_t,
lambda_t and its closed-form inverse; expected grids are hand formulas; where the solver's output is
compared with a value, the value is either exact (eps = 0 makes the PF-ODE x_t = alpha_t / alpha_s x_s for
every order) or a float64 re-statement of Lu et al. (2022a) Algorithm 2 with general r1 < r2.
"""

from __future__ import annotations

import math

import pytest
import torch

from augment.diffusion import dpm_solver as D

B0, B1 = 0.1, 20.0


def log_alpha(t: float) -> float:
    return -0.25 * t * t * (B1 - B0) - 0.5 * t * B0


def sigma(t: float) -> float:
    return math.sqrt(1.0 - math.exp(2.0 * log_alpha(t)))


def lam(t: float) -> float:
    return log_alpha(t) - math.log(sigma(t))


def t_of_lambda(value: float) -> float:
    """Solve 1/2 (B1 - B0) t^2 + B0 t = log(1 + e^{-2 lambda}) for t >= 0 (the quadratic formula)."""
    rhs = math.log1p(math.exp(-2.0 * value))
    a = 0.5 * (B1 - B0)
    return (-B0 + math.sqrt(B0 * B0 + 4.0 * a * rhs)) / (2.0 * a)


class Recorder:
    """eps model that records the time of each call; eps = tanh(x + t) (depends on x and t)."""

    def __init__(self, zero: bool = False) -> None:
        self.times: list[float] = []
        self.zero = zero

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],) and bool((t == t[0]).all())
        self.times.append(float(t[0]))
        return torch.zeros_like(x) if self.zero else torch.tanh(x + t[:, None])


def test_time_grids_by_hand() -> None:
    sch = D.VPSchedule()
    uni = D.time_steps(sch, 4, skip="time_uniform")
    assert uni.dtype == torch.float64
    torch.testing.assert_close(uni, torch.tensor([1.0, 0.75025, 0.5005, 0.25075, 0.001], dtype=torch.float64),
                               rtol=0, atol=1e-15)
    quad = D.time_steps(sch, 4, skip="time_quadratic", t_start=0.9, t_end=0.01)
    root = [math.sqrt(0.9) + i / 4 * (math.sqrt(0.01) - math.sqrt(0.9)) for i in range(5)]
    assert quad.dtype == torch.float64 and quad.shape == (5,)
    torch.testing.assert_close(quad, torch.tensor([r * r for r in root], dtype=torch.float64), rtol=1e-14,
                               atol=1e-15)
    snr = D.time_steps(sch, 3, t_start=0.8, t_end=0.05)
    lams = [lam(0.8) + i / 3 * (lam(0.05) - lam(0.8)) for i in range(4)]
    want = [0.8] + [t_of_lambda(v) for v in lams[1:3]] + [0.05]
    torch.testing.assert_close(snr, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    for skip in D.SKIP_TYPES:  # one step: just the two ends
        one = D.time_steps(sch, 1, skip=skip, t_start=0.7, t_end=0.02)
        torch.testing.assert_close(one, torch.tensor([0.7, 0.02], dtype=torch.float64), rtol=1e-12,
                                   atol=1e-15)
    with pytest.raises(ValueError, match="^DPM-Solver needs at least 1 step, got 0$"):
        D.time_steps(sch, 0)
    unknown = "^unknown skip type 'cubic'; choose one of logSNR, time_uniform, time_quadratic$"
    with pytest.raises(ValueError, match=unknown):
        D.time_steps(sch, 3, skip="cubic")


def test_one_step_sample_with_zero_eps_is_the_exact_decay() -> None:
    """eps = 0: every order gives x_t = (alpha_t / alpha_s) x_s, the exact PF-ODE solution."""
    x = torch.tensor([[1.5, -0.4]], dtype=torch.float64)
    for order in (1, 2, 3):
        for predict_x0 in (False, True):
            out = D.sample(Recorder(zero=True), x.clone(), D.VPSchedule(), [order], t_start=0.6, t_end=0.05,
                           predict_x0=predict_x0)
            torch.testing.assert_close(out, x * math.exp(log_alpha(0.05) - log_alpha(0.6)), rtol=1e-12,
                                       atol=1e-14)


def _lambda_point(s: float, t: float, r: float) -> float:
    return t_of_lambda(lam(s) + r * (lam(t) - lam(s)))


@pytest.mark.parametrize(("order", "r1", "r2"), [(2, 0.3, None), (3, 0.25, 0.5), (3, 0.4, 0.9)])
def test_step_evaluates_at_the_requested_intermediate_times(order: int, r1: float, r2: float | None) -> None:
    s, t = 0.7, 0.3
    rec = Recorder()
    D.dpm_solver_step(rec, torch.tensor([[0.2, -1.0]], dtype=torch.float64), s, t, order, D.VPSchedule(),
                      r1=r1, r2=r2)
    want = [s, _lambda_point(s, t, r1)] + ([_lambda_point(s, t, r2)] if order == 3 else [])
    assert rec.times == pytest.approx(want, rel=1e-10)
    # defaults: r1 = 1/2 (order 2), r1, r2 = 1/3, 2/3 (order 3)
    rec = Recorder()
    D.dpm_solver_step(rec, torch.tensor([[0.2, -1.0]], dtype=torch.float64), s, t, order, D.VPSchedule())
    default = [0.5] if order == 2 else [1 / 3, 2 / 3]
    assert rec.times == pytest.approx([s] + [_lambda_point(s, t, r) for r in default], rel=1e-10)


def _alg2_reference(x: float, s: float, t: float, r1: float, r2: float, eps) -> float:
    """Lu et al. (2022a) Algorithm 2 (DPM-Solver-3, noise prediction) with general r1 < r2, in floats."""
    h = lam(t) - lam(s)
    s1, s2 = _lambda_point(s, t, r1), _lambda_point(s, t, r2)
    a = lambda u: math.exp(log_alpha(u))  # noqa: E731
    e_s = eps(x, s)
    u1 = a(s1) / a(s) * x - sigma(s1) * math.expm1(r1 * h) * e_s
    d1 = eps(u1, s1) - e_s
    u2 = (a(s2) / a(s) * x - sigma(s2) * math.expm1(r2 * h) * e_s
          - sigma(s2) * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1.0) * d1)
    d2 = eps(u2, s2) - e_s
    return a(t) / a(s) * x - sigma(t) * math.expm1(h) * e_s - sigma(t) / r2 * (math.expm1(h) / h - 1.0) * d2


def test_order3_step_with_custom_ratios_matches_algorithm_2() -> None:
    x = torch.tensor([[0.2], [-1.3]], dtype=torch.float64)
    for r1, r2 in ((0.25, 0.5), (1 / 3, 2 / 3), (0.4, 0.9)):
        out = D.dpm_solver_step(Recorder(), x.clone(), 0.7, 0.3, 3, D.VPSchedule(), r1=r1, r2=r2)
        want = [_alg2_reference(float(v), 0.7, 0.3, r1, r2, lambda u, tt: math.tanh(u + tt)) for v in x[:, 0]]
        torch.testing.assert_close(out[:, 0], torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    a = D.dpm_solver_step(Recorder(), x.clone(), 0.7, 0.3, 3, D.VPSchedule(), r1=0.25, r2=0.5)
    b = D.dpm_solver_step(Recorder(), x.clone(), 0.7, 0.3, 3, D.VPSchedule(), r1=0.25, r2=0.9)
    assert float((a - b).abs().max()) > 1e-6  # r2 changes the step


def test_nfe_layout_evaluates_on_the_grid_points_and_stops_at_t_end() -> None:
    """spacing='nfe': a grid of sum(orders) + 1 times; a step of order k spans k intervals and its
    intermediate evaluations are the grid points inside it (here a time-uniform grid, so r_i != i/k)."""
    rec = Recorder()
    x = torch.tensor([[0.5, -0.2]], dtype=torch.float64)
    D.sample(rec, x, D.VPSchedule(), [3, 3, 2, 1], t_start=0.9, t_end=0.2, skip="time_uniform", spacing="nfe")
    grid = [0.9 + i / 9 * (0.2 - 0.9) for i in range(10)]
    # step 1: 0, 1, 2; step 2: 3, 4, 5; step 3 (order 2): 6, 7; step 4 (order 1): 8
    assert rec.times == pytest.approx(grid[:9], rel=1e-9)
    zero = Recorder(zero=True)
    out = D.sample(zero, x.clone(), D.VPSchedule(), [3, 2], t_start=0.9, t_end=0.2, skip="time_uniform",
                   spacing="nfe")
    torch.testing.assert_close(out, x * math.exp(log_alpha(0.2) - log_alpha(0.9)), rtol=1e-12, atol=1e-14)
    step = Recorder()
    D.sample(step, x.clone(), D.VPSchedule(), [1, 1], t_start=0.9, t_end=0.2, skip="time_uniform")
    assert step.times == pytest.approx([0.9, 0.55], rel=1e-12)
    with pytest.raises(ValueError, match="^DPM-Solver needs at least one step$"):
        D.sample(step, x, D.VPSchedule(), [])


def test_nfe_layout_keeps_third_order_on_a_quadratic_grid() -> None:
    """Data N(0.7, 0.3^2), oracle eps; the Gaussian PF-ODE keeps (x - alpha m)/sqrt(alpha^2 s^2 + sigma^2)
    invariant (exact solution); data-prediction DPM-Solver-3 on a quadratic grid (r_i from the grid)."""
    m, sd = 0.7, 0.3

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = torch.exp(torch.tensor([log_alpha(float(v)) for v in t], dtype=x.dtype))[:, None]
        sg = torch.sqrt(1 - a ** 2)
        return sg * (x - a * m) / (a ** 2 * sd ** 2 + sg ** 2)

    x_t = torch.tensor([[-1.5], [0.0], [2.0]], dtype=torch.float64)
    a0, a1 = math.exp(log_alpha(1.0)), math.exp(log_alpha(1e-3))
    z = (x_t - a0 * m) / math.sqrt(a0 ** 2 * sd ** 2 + 1 - a0 ** 2)
    exact = a1 * m + math.sqrt(a1 ** 2 * sd ** 2 + 1 - a1 ** 2) * z
    errs = [float((D.sample(oracle, x_t.clone(), D.VPSchedule(), D.fixed_orders(n, 3), skip="time_quadratic",
                            predict_x0=True, spacing="nfe") - exact).abs().max()) for n in (10, 20, 40)]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in (0, 1)]
    assert all(abs(sl - 3.0) <= 0.3 for sl in slopes), (errs, slopes)


def test_sample_t_is_uniform_on_the_schedule_range() -> None:
    sch = D.VPSchedule(eps=0.05, T=0.8)
    t = sch.sample_t(20_000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20_000,) and t.dtype == torch.float32
    assert float(t.min()) >= 0.05 and float(t.max()) <= 0.8
    assert float(t.mean()) == pytest.approx(0.425, abs=4 * 0.75 / math.sqrt(12 * 20_000))
