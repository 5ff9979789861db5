"""VP continuous noise schedule and DPM-Solver-1/2/3 (Lu et al. 2022a) over any eps(x, t) model function.

Pure functions on torch tensors; nothing here knows about networks, states or rewards. A *model function*
is ``eps_fn(x (B, d), t (B,)) -> eps (B, d)``: a trained noise predictor, an oracle, or a guided
combination (:func:`guided_eps`). The solver integrates the probability-flow ODE (AEPO Eq. 6)

    dx/dt = f(t) x - 1/2 g(t)^2 grad log p_t(x),   grad log p_t(x) = -eps(x, t) / sigma_t  (Eq. 14)

from ``t_start`` (noise) down to ``t_end`` (data) with the exponential-integrator steps of Lu et al.
(2022a): DPM-Solver-1 (= DDIM), DPM-Solver-2 (Algorithm 1, r1 = 1/2) and DPM-Solver-3 (Algorithm 2,
r1 = 1/3, r2 = 2/3), in noise-prediction form or, with ``predict_x0=True``, in data-prediction form
(x0 = (x - sigma_t eps) / alpha_t, the form QGPO runs). ``lambda_t = log(alpha_t / sigma_t)`` is the
half log-SNR; steps are uniform in lambda (``logSNR``), in t (``time_uniform``) or quadratic in t.

Schedule (QGPO's ``diffusion_SDE/schedule.py`` defaults, PLANNERS.md Sec. 3.2): VP linear,
beta(t) = beta_min + t (beta_max - beta_min), log alpha_t = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min,
sigma_t = sqrt(1 - alpha_t^2), t in [1e-3, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Tensor = torch.Tensor
#: eps model function: x (B, d), t (B,) -> eps (B, d).
EpsFn = Callable[[Tensor, Tensor], Tensor]
#: energy-gradient function: x (B, d), t (B,) -> grad_x E_t(x) (B, d).
GradFn = Callable[[Tensor, Tensor], Tensor]

SKIP_TYPES: tuple[str, ...] = ("logSNR", "time_uniform", "time_quadratic")


def _as_tensor(t: float | Tensor, like: Tensor | None = None) -> Tensor:
    if isinstance(t, Tensor):
        return t
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else None
    return torch.tensor(float(t), dtype=dtype, device=device)


@dataclass(frozen=True)
class VPSchedule:
    """The VP (variance-preserving) linear continuous schedule q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I)
    (AEPO Eq. 5), with alpha_t^2 + sigma_t^2 = 1.

    beta_min, beta_max: beta(t) = beta_min + t (beta_max - beta_min) (0.1 and 20, as DDPM's 1000-step
    linear schedule in continuous time). T: the noise end (1.0); eps: the data end t_min (1e-3), where
    sampling stops (the schedule is singular at t = 0).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0
    eps: float = 1e-3

    def beta(self, t: float | Tensor) -> Tensor:
        """beta(t) = -2 d log alpha_t / dt = g(t)^2 of Eq. 6 for VP."""
        t = _as_tensor(t)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: float | Tensor) -> Tensor:
        """log alpha_t = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min."""
        t = _as_tensor(t)
        return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: float | Tensor) -> Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: float | Tensor) -> Tensor:
        """sigma_t = sqrt(1 - alpha_t^2) (computed as sqrt(-expm1(2 log alpha_t)) for small t)."""
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def lambda_(self, t: float | Tensor) -> Tensor:
        """Half log-SNR lambda_t = log alpha_t - log sigma_t (decreasing in t)."""
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(-torch.expm1(2.0 * la))

    def inverse_lambda(self, lam: float | Tensor) -> Tensor:
        """t(lambda), the inverse of :meth:`lambda_`: with L = log(1 + e^{-2 lambda}) = -2 log alpha_t,
        t solves 1/2 (beta_max - beta_min) t^2 + beta_min t = L."""
        lam = _as_tensor(lam)
        d_beta = self.beta_max - self.beta_min
        tmp = 2.0 * d_beta * torch.logaddexp(-2.0 * lam, torch.zeros_like(lam))
        return tmp / (torch.sqrt(self.beta_min ** 2 + tmp) + self.beta_min) / d_beta

    def drift(self, t: float | Tensor) -> Tensor:
        """f(t) = d log alpha_t / dt = -beta(t)/2 (Eq. 6)."""
        return -0.5 * self.beta(t)

    def diffusion_squared(self, t: float | Tensor) -> Tensor:
        """g(t)^2 = d sigma_t^2/dt - 2 f(t) sigma_t^2 = beta(t) for VP (Eq. 6)."""
        return self.beta(t)

    def sample_t(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None,
                 ) -> Tensor:
        """t ~ U(eps, T) (Eq. 7's uniform time), shape (n,) float32."""
        u = torch.rand(n, generator=generator, device=device)
        return self.eps + (self.T - self.eps) * u


def time_steps(schedule: VPSchedule, steps: int, *, t_start: float | None = None, t_end: float | None = None,
               skip: str = "logSNR") -> Tensor:
    """``steps + 1`` decreasing times from ``t_start`` (default T) to ``t_end`` (default eps), float64.

    skip: ``logSNR`` (uniform in lambda, Lu et al.'s choice for few steps), ``time_uniform`` or
    ``time_quadratic`` (uniform in sqrt(t)).
    """
    if steps < 1:
        raise ValueError(f"DPM-Solver needs at least 1 step, got {steps}")
    t0 = float(schedule.T if t_start is None else t_start)
    t1 = float(schedule.eps if t_end is None else t_end)
    if skip == "logSNR":
        lam = torch.linspace(float(schedule.lambda_(t0)), float(schedule.lambda_(t1)), steps + 1,
                             dtype=torch.float64)
        ts = schedule.inverse_lambda(lam)
        ts[0], ts[-1] = t0, t1
        return ts
    if skip == "time_uniform":
        return torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
    if skip == "time_quadratic":
        return torch.linspace(math.sqrt(t0), math.sqrt(t1), steps + 1, dtype=torch.float64) ** 2
    raise ValueError(f"unknown skip type '{skip}'; choose one of {', '.join(SKIP_TYPES)}")


def fixed_orders(steps: int, order: int) -> list[int]:
    """``steps`` steps of the same order (NFE = steps * order)."""
    _check_order(order)
    return [order] * int(steps)


def fast_orders(nfe: int, order: int) -> list[int]:
    """Split a budget of ``nfe`` model calls into singlestep orders (Lu et al. 2022a, "DPM-Solver-fast").

    order 1: nfe steps of order 1. order 2: nfe // 2 steps of order 2, plus one of order 1 when nfe is odd.
    order 3: as many order-3 steps as fit, the remainder as one order-2 or order-1 step (nfe % 3 == 0:
    the last two steps are orders 2 and 1, as Lu et al. do). The orders sum to ``nfe``.
    """
    _check_order(order)
    if nfe < 1:
        raise ValueError(f"the NFE budget must be >= 1, got {nfe}")
    if order == 1 or nfe == 1:
        return [1] * nfe
    if order == 2:
        return [2] * (nfe // 2) + [1] * (nfe % 2)
    if nfe == 2:
        return [2]
    k, rem = divmod(nfe, 3)
    if rem == 0:
        return [3] * (k - 1) + [2, 1]
    return [3] * k + [rem]


def _check_order(order: int) -> None:
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")


def _call(fn: EpsFn, x: Tensor, t: float) -> Tensor:
    return fn(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))


class _Coefficients:
    """The schedule's scalars in float arithmetic (same formulas as :class:`VPSchedule`)."""

    def __init__(self, schedule: VPSchedule) -> None:
        self.b0 = float(schedule.beta_min)
        self.db = float(schedule.beta_max - schedule.beta_min)

    def log_alpha(self, t: float) -> float:
        return -0.25 * t * t * self.db - 0.5 * t * self.b0

    def alpha(self, t: float) -> float:
        return math.exp(self.log_alpha(t))

    def sigma(self, t: float) -> float:
        return math.sqrt(-math.expm1(2.0 * self.log_alpha(t)))

    def lam(self, t: float) -> float:
        la = self.log_alpha(t)
        return la - 0.5 * math.log(-math.expm1(2.0 * la))

    def inverse_lambda(self, lam: float) -> float:
        z = -2.0 * lam
        log1p_exp = max(z, 0.0) + math.log1p(math.exp(-abs(z)))
        tmp = 2.0 * self.db * log1p_exp
        return tmp / (math.sqrt(self.b0 ** 2 + tmp) + self.b0) / self.db


def dpm_solver_step(eps_fn: EpsFn, x: Tensor, s: float | Tensor, t: float | Tensor, order: int,
                    schedule: VPSchedule, *, predict_x0: bool = False, eps_s: Tensor | None = None,
                    r1: float | None = None, r2: float | None = None) -> Tensor:
    """One singlestep DPM-Solver step from time ``s`` to time ``t < s``: x_s (B, d) -> x_t (B, d).

    With h = lambda_t - lambda_s, noise prediction (Lu et al. 2022a):

    * order 1 (DDIM): x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps(x_s, s);
    * order 2 (Alg. 1, r1 = 1/2): u = (alpha_{s1}/alpha_s) x_s - sigma_{s1} (e^{r1 h} - 1) eps_s,
      x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps_s - sigma_t/(2 r1) (e^h - 1) (eps(u, s1) - eps_s);
    * order 3 (Alg. 2, r1 = 1/3, r2 = 2/3): u1 as above with r1, D1 = eps(u1, s1) - eps_s,
      u2 = (alpha_{s2}/alpha_s) x_s - sigma_{s2} (e^{r2 h} - 1) eps_s
           - sigma_{s2} r2/r1 ((e^{r2 h} - 1)/(r2 h) - 1) D1,  D2 = eps(u2, s2) - eps_s,
      x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps_s - sigma_t/r2 ((e^h - 1)/h - 1) D2,

    where s_i = t(lambda_s + r_i h); ``r1`` / ``r2`` override the defaults (1/2 for order 2, 1/3 and 2/3
    for order 3; any 0 < r1 < r2 < 1 keeps the order). ``predict_x0`` uses the data-prediction form with
    m = (x - sigma eps)/alpha: order 1 x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) m_s; orders 2
    and 3 mirror the above with phi_1(z) = e^{-z} - 1, phi_2(z) = phi_1(z)/z + 1 (the exponential
    integrator of the data form). Costs ``order`` calls of ``eps_fn`` (``order - 1`` when ``eps_s`` is
    given). Arithmetic runs in ``x``'s dtype; times may be floats or 0-d tensors; the schedule's
    coefficients are computed as Python floats (at batch 1 per-op overhead would dominate otherwise).
    """
    _check_order(order)
    c = _Coefficients(schedule)
    s_f, t_f = float(s), float(t)
    lam_s = c.lam(s_f)
    h = c.lam(t_f) - lam_s
    la_s = c.log_alpha(s_f)
    sig_s, sig_t, alpha_t = c.sigma(s_f), c.sigma(t_f), c.alpha(t_f)
    if eps_s is None:
        eps_s = _call(eps_fn, x, s_f)
    if order == 2:
        r1 = 0.5 if r1 is None else float(r1)
    elif order == 3:
        r1 = 1.0 / 3.0 if r1 is None else float(r1)
        r2 = 2.0 / 3.0 if r2 is None else float(r2)

    if not predict_x0:
        phi_1 = math.expm1(h)  # e^h - 1
        base = math.exp(c.log_alpha(t_f) - la_s) * x - (sig_t * phi_1) * eps_s
        if order == 1:
            return base
        assert r1 is not None
        s1 = c.inverse_lambda(lam_s + r1 * h)
        u1 = math.exp(c.log_alpha(s1) - la_s) * x - (c.sigma(s1) * math.expm1(r1 * h)) * eps_s
        d1 = _call(eps_fn, u1, s1) - eps_s
        if order == 2:
            return base - (sig_t / (2.0 * r1) * phi_1) * d1
        assert r2 is not None
        s2 = c.inverse_lambda(lam_s + r2 * h)
        phi_r2 = math.expm1(r2 * h)
        u2 = (math.exp(c.log_alpha(s2) - la_s) * x - (c.sigma(s2) * phi_r2) * eps_s
              - (c.sigma(s2) * r2 / r1 * (phi_r2 / (r2 * h) - 1.0)) * d1)
        d2 = _call(eps_fn, u2, s2) - eps_s
        return base - (sig_t / r2 * (phi_1 / h - 1.0)) * d2

    # data-prediction form: x_t = (sigma_t/sigma_s) x_s + sigma_t * int e^{lambda} x0(lambda) d lambda
    def to_x0(xv: Tensor, ev: Tensor, tv: float) -> Tensor:
        return (xv - c.sigma(tv) * ev) / c.alpha(tv)

    m_s = to_x0(x, eps_s, s_f)
    phi_1 = math.expm1(-h)  # e^{-h} - 1
    base = (sig_t / sig_s) * x - (alpha_t * phi_1) * m_s
    if order == 1:
        return base
    assert r1 is not None
    phi_2 = phi_1 / h + 1.0  # (e^{-h} - 1 + h) / h
    s1 = c.inverse_lambda(lam_s + r1 * h)
    u1 = (c.sigma(s1) / sig_s) * x - (c.alpha(s1) * math.expm1(-r1 * h)) * m_s
    m_1 = to_x0(u1, _call(eps_fn, u1, s1), s1)
    if order == 2:
        return base + (alpha_t * phi_2 / r1) * (m_1 - m_s)
    assert r2 is not None
    s2 = c.inverse_lambda(lam_s + r2 * h)
    phi_22 = math.expm1(-r2 * h) / (r2 * h) + 1.0
    u2 = ((c.sigma(s2) / sig_s) * x - (c.alpha(s2) * math.expm1(-r2 * h)) * m_s
          + (c.alpha(s2) * phi_22 * r2 / r1) * (m_1 - m_s))
    m_2 = to_x0(u2, _call(eps_fn, u2, s2), s2)
    return base + (alpha_t * phi_2 / r2) * (m_2 - m_s)


SPACINGS: tuple[str, ...] = ("step", "nfe")


def sample(eps_fn: EpsFn, x: Tensor, schedule: VPSchedule, orders: Sequence[int], *,
           t_start: float | None = None, t_end: float | None = None, skip: str = "logSNR",
           predict_x0: bool = False, spacing: str = "step") -> Tensor:
    """Integrate the PF-ODE from ``t_start`` (default T) to ``t_end`` (default eps) with one singlestep
    DPM-Solver step per entry of ``orders`` (see :func:`fixed_orders`, :func:`fast_orders`).

    spacing: ``step`` - a grid of len(orders) + 1 times, one interval per step, r1 = 1/2 (order 2) and
    r1, r2 = 1/3, 2/3 (order 3); ``nfe`` - Lu et al.'s singlestep ("DPM-Solver-fast") layout: a grid of
    sum(orders) + 1 times, a step of order k spans k intervals and its intermediate times are the grid
    points inside it (r_i from their lambdas). On a lambda-uniform grid both give the same steps.
    x: (B, d) the sample at ``t_start`` (x_T ~ N(0, I) for generation). Returns x at ``t_end`` (B, d).
    NFE = sum(orders). Runs under whatever grad mode the caller set; a guided ``eps_fn`` that needs
    gradients enables them itself (:func:`guided_eps`).
    """
    if not orders:
        raise ValueError("DPM-Solver needs at least one step")
    if spacing == "step":
        ts = time_steps(schedule, len(orders), t_start=t_start, t_end=t_end, skip=skip).tolist()
        for i, order in enumerate(orders):
            x = dpm_solver_step(eps_fn, x, ts[i], ts[i + 1], int(order), schedule, predict_x0=predict_x0)
        return x
    if spacing != "nfe":
        raise ValueError(f"unknown spacing '{spacing}'; choose one of {', '.join(SPACINGS)}")
    ts = time_steps(schedule, int(sum(orders)), t_start=t_start, t_end=t_end, skip=skip).tolist()
    lam = schedule.lambda_(torch.tensor(ts, dtype=torch.float64)).tolist()
    j = 0
    for order in orders:
        k = int(order)
        h = lam[j + k] - lam[j]
        r1 = (lam[j + 1] - lam[j]) / h if k >= 2 else None
        r2 = (lam[j + 2] - lam[j]) / h if k >= 3 else None
        x = dpm_solver_step(eps_fn, x, ts[j], ts[j + k], k, schedule, predict_x0=predict_x0, r1=r1, r2=r2)
        j += k
    return x


def rescale_to_norm(v: Tensor, reference: Tensor, *, tiny: float = 1e-12) -> Tensor:
    """v * ||reference|| / ||v|| per row (norms over the last dim) (AEPO Eq. 45); rows with ||v|| <= tiny
    are returned unchanged (no division by zero)."""
    v_norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    r_norm = torch.linalg.vector_norm(reference, dim=-1, keepdim=True)
    scale = torch.where(v_norm > tiny, r_norm / v_norm.clamp_min(tiny), torch.ones_like(v_norm))
    return v * scale


def guided_score(score_mu: Tensor, grad_energy: Tensor, omega: float, *, rescale: bool) -> Tensor:
    """Score of the guided policy, AEPO Eq. 13 with Sec. 3.4's omega and Eq. 45's rescale.

    score_pi = score_mu + omega * grad E_t; with ``rescale`` score_pi <- score_pi ||score_mu|| / ||score_pi||
    (per row, over the action dims). Shapes (B, d). Sign: E_t is a log-expected reward (Eq. 12), so
    the guidance is +grad E.
    """
    score = score_mu + omega * grad_energy
    return rescale_to_norm(score, score_mu) if rescale else score


def guided_eps_value(eps: Tensor, grad_energy: Tensor, sigma_t: Tensor | float, omega: float, *,
                     rescale: bool) -> Tensor:
    """The same guidance in eps form: eps_hat = eps - omega sigma_t grad E, rescaled to ||eps|| when
    ``rescale`` (equivalent to :func:`guided_score` since score = -eps / sigma_t). sigma_t: float or (B,)
    or (B, 1)."""
    sig = sigma_t if not isinstance(sigma_t, Tensor) or sigma_t.dim() != 1 else sigma_t[:, None]
    eps_hat = eps - omega * sig * grad_energy
    return rescale_to_norm(eps_hat, eps) if rescale else eps_hat


def guided_eps(eps_fn: EpsFn, grad_fn: GradFn | None, schedule: VPSchedule, omega: float, *,
               rescale: bool) -> EpsFn:
    """A model function for :func:`sample` that applies energy guidance at every stage evaluation.

    ``grad_fn(x, t)`` returns grad_x E_t(x) (B, d); it is called under ``torch.enable_grad()`` so an
    autograd energy works inside a sampler run under ``no_grad`` (PLANNERS.md Sec. 3.8 pitfall 9).
    omega == 0 or ``grad_fn`` None returns ``eps_fn`` itself (unguided sampling; the rescale is then a
    no-op anyway).
    """
    if grad_fn is None or omega == 0.0:
        return eps_fn

    def fn(x: Tensor, t: Tensor) -> Tensor:
        eps = eps_fn(x, t)
        with torch.enable_grad():
            grad = grad_fn(x, t)
        return guided_eps_value(eps, grad.detach().to(eps.dtype), schedule.sigma(t).to(eps.dtype), omega,
                                rescale=rescale)

    return fn
