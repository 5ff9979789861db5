"""DDPM (Ho et al., 2020) as pure functions, with the hooks the diffusion planners need.

Symbols follow DMEMM Sec. 3.1 (Eq. 1-5) and Trajectory Diffuser Eq. 6-11: K diffusion steps,
beta_k, alpha_k = 1 - beta_k, abar_k = prod_{i<=k} alpha_i. Every schedule array has K+1 entries and is
indexed by the step k itself, with the k = 0 entry the clean end (beta_0 = 0, abar_0 = 1), so code reads
like the equations. Shapes: samples x are (B, ...) tensors; a step ``k`` is a Python int (one level for
the whole batch) or a (B,) int64 tensor (one level per row).

* Schedules: :func:`cosine_betas` (Nichol & Dhariwal 2021 as Diffuser uses it: s = 0.008, beta <= 0.999),
  :func:`linear_betas`; :class:`DDPMSchedule` holds the derived arrays.
* Forward: :func:`q_sample` (Eq. 2; AddNoise to any level k).
* Posterior: :func:`x0_from_eps` (Tweedie), :func:`posterior_mean`, :func:`posterior_variance` (beta-tilde),
  :func:`reverse_mean` (Eq. 4).
* Reverse: :func:`ancestral_step` with an inpainting hook (``inpaint(x) -> x``, applied after the step)
  and a mean-shift guidance hook (``guide(x_k, k, mean, variance) -> shift`` added to the mean, e.g.
  DMEMM Eq. 13's alpha sigma_k^2 g); :func:`reverse_loop` from any level k down to 0 (Trajectory
  Diffuser refines from k = 5).
* Guidance helpers: :func:`guided_mean` (mu + alpha sigma^2 g), :func:`classifier_free_guidance`
  (eps_null + omega (eps_cond - eps_null), TD Eq. 11), :func:`inpaint`.
* DMEMM Proposition 1: :func:`prop1_coefficients`, :func:`eq7_mean` (exact unrolling on stored reverse
  iterates), :func:`eq20_variance`, :func:`eq8_oracle_coefficient`, and the trainable surrogate Eq. 8 as
  :func:`eq8_exact` (all k terms, batched into one network call of sum_b k_b rows),
  :func:`eq8_monte_carlo` (the i = k term exactly plus m importance-sampled terms, p_i ~ c_i) and
  :func:`eq8_tweedie` (the one-step x0 estimate at level k).
* :func:`noise_input` - the noise-level input of the U-Net for step k, ln(sqrt((1-abar_k)/abar_k))/4,
  EDM's c_noise at the equivalent sigma, so the backbone stays schedule-agnostic.

Nothing here knows networks beyond ``eps_fn(x (N, ...), k (N,) int64) -> eps (N, ...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor
EpsFn = Callable[[Tensor, Tensor], Tensor]
GuideFn = Callable[[Tensor, int, Tensor, Tensor], Tensor]
InpaintFn = Callable[[Tensor], Tensor]

VARIANCES: tuple[str, ...] = ("posterior", "beta")


# ----------------------------------------------------------------------------------------- schedules

def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule (Nichol & Dhariwal 2021, in Diffuser's discretisation): (K,) float64 beta_1..beta_K.

    abar(x) = cos(((x / (K+1)) + s) / (1 + s) * pi / 2)^2 at x = linspace(0, K+1, K+1), normalised by its
    first value; beta_k = 1 - abar_k / abar_{k-1}, clipped to [0, max_beta].
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    steps = num_steps + 1
    x = np.linspace(0, steps, steps)
    ac = np.cos(((x / steps) + s) / (1 + s) * np.pi * 0.5) ** 2
    ac = ac / ac[0]
    return np.clip(1.0 - ac[1:] / ac[:-1], 0.0, max_beta)


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> np.ndarray:
    """Linear schedule: (K,) float64, beta_k evenly spaced from ``beta_start`` to ``beta_end``."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


@dataclass(frozen=True)
class DDPMSchedule:
    """Derived arrays of a beta schedule, each (K+1,) float64 indexed by k (entry 0: the clean end).

    beta, alpha, alpha_bar (abar_0 = 1); alpha_bar_prev[k] = abar_{k-1} (abar_{-1} := 1);
    posterior_var[k] = beta-tilde_k = beta_k (1 - abar_{k-1}) / (1 - abar_k) (0 at k = 0 and k = 1);
    coef_x0[k], coef_xt[k]: posterior mean coefficients, mu-tilde = coef_x0 x0 + coef_xt x_k.
    """

    beta: Tensor
    alpha: Tensor
    alpha_bar: Tensor
    alpha_bar_prev: Tensor
    posterior_var: Tensor
    coef_x0: Tensor
    coef_xt: Tensor

    @property
    def num_steps(self) -> int:
        """K."""
        return int(self.beta.shape[0]) - 1

    @classmethod
    def from_betas(cls, betas: np.ndarray) -> DDPMSchedule:
        """From beta_1..beta_K (K,)."""
        b = np.concatenate([[0.0], np.asarray(betas, dtype=np.float64)])
        a = 1.0 - b
        ab = np.cumprod(a)
        ab_prev = np.concatenate([[1.0], ab[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            post = np.where(np.arange(b.size) > 0, b * (1.0 - ab_prev) / (1.0 - ab), 0.0)
            c0 = np.where(np.arange(b.size) > 0, b * np.sqrt(ab_prev) / (1.0 - ab), 1.0)
            ct = np.where(np.arange(b.size) > 0, (1.0 - ab_prev) * np.sqrt(a) / (1.0 - ab), 0.0)
        t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in
             dict(beta=b, alpha=a, alpha_bar=ab, alpha_bar_prev=ab_prev, posterior_var=post, coef_x0=c0,
                  coef_xt=ct).items()}
        return cls(**t)

    @classmethod
    def cosine(cls, num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> DDPMSchedule:
        return cls.from_betas(cosine_betas(num_steps, s, max_beta))

    @classmethod
    def linear(cls, num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> DDPMSchedule:
        return cls.from_betas(linear_betas(num_steps, beta_start, beta_end))

    @classmethod
    def named(cls, kind: str, num_steps: int, **kwargs: float) -> DDPMSchedule:
        """``cosine`` or ``linear``."""
        if kind == "cosine":
            return cls.cosine(num_steps, **kwargs)
        if kind == "linear":
            return cls.linear(num_steps, **kwargs)
        raise ValueError(f"unknown DDPM schedule '{kind}'; use cosine or linear")


def _at(arr: Tensor, k: int | Tensor, like: Tensor) -> Tensor:
    """arr[k] as a tensor broadcastable against ``like`` (B, ...), in ``like``'s dtype and device."""
    if isinstance(k, Tensor):
        v = arr[k.long().cpu()].to(device=like.device, dtype=like.dtype)
        return v.reshape((-1,) + (1,) * (like.dim() - 1))
    return arr[int(k)].to(device=like.device, dtype=like.dtype)


# ----------------------------------------------------------------------------------------- forward

def q_sample(x0: Tensor, k: int | Tensor, eps: Tensor, sched: DDPMSchedule) -> Tensor:
    """Eq. 2: x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps (AddNoise to level k). x0, eps: (B, ...)."""
    return _at(sched.alpha_bar.sqrt(), k, x0) * x0 + _at((1.0 - sched.alpha_bar).sqrt(), k, x0) * eps


def noise_input(sched: DDPMSchedule, k: int | Tensor, batch: int | None = None) -> Tensor:
    """U-Net noise input for step k: ln(sqrt((1 - abar_k) / abar_k)) / 4, (B,) float32 (k >= 1)."""
    ab = sched.alpha_bar
    val = 0.25 * torch.log(((1.0 - ab) / ab).sqrt())
    if isinstance(k, Tensor):
        return val[k.long().cpu()].float().to(k.device)
    if batch is None:
        raise ValueError("noise_input needs batch for an int k")
    return torch.full((batch,), float(val[int(k)]), dtype=torch.float32)


# ----------------------------------------------------------------------------------------- posterior

def x0_from_eps(x_k: Tensor, k: int | Tensor, eps: Tensor, sched: DDPMSchedule) -> Tensor:
    """Tweedie / one-step estimate: x0-hat = (x_k - sqrt(1 - abar_k) eps) / sqrt(abar_k)."""
    return (x_k - _at((1.0 - sched.alpha_bar).sqrt(), k, x_k) * eps) / _at(sched.alpha_bar.sqrt(), k, x_k)


def posterior_mean(x0: Tensor, x_k: Tensor, k: int | Tensor, sched: DDPMSchedule) -> Tensor:
    """mu-tilde_k(x_k, x0) = coef_x0[k] x0 + coef_xt[k] x_k, with coef_x0 = beta_k sqrt(abar_{k-1})/(1-abar_k)
    and coef_xt = (1-abar_{k-1}) sqrt(alpha_k)/(1-abar_k)."""
    return _at(sched.coef_x0, k, x_k) * x0 + _at(sched.coef_xt, k, x_k) * x_k


def posterior_variance(k: int | Tensor, sched: DDPMSchedule) -> Tensor:
    """beta-tilde_k = beta_k (1 - abar_{k-1}) / (1 - abar_k) (float64 scalar or (B,))."""
    return sched.posterior_var[k.long().cpu() if isinstance(k, Tensor) else int(k)]


def reverse_mean(x_k: Tensor, k: int | Tensor, eps: Tensor, sched: DDPMSchedule) -> Tensor:
    """Eq. 4: mu_theta(x_k, k) = (x_k - (1 - alpha_k)/sqrt(1 - abar_k) eps) / sqrt(alpha_k).

    Algebraically equal to :func:`posterior_mean` at x0 = :func:`x0_from_eps`.
    """
    coef = _at((1.0 - sched.alpha) / (1.0 - sched.alpha_bar).sqrt(), k, x_k)
    return (x_k - coef * eps) / _at(sched.alpha.sqrt(), k, x_k)


def step_variance(k: int, sched: DDPMSchedule, variance: str) -> float:
    """sigma_k^2 of the reverse step: ``posterior`` (beta-tilde_k, Diffuser / TD official code) or
    ``beta`` (beta_k, TD Eq. 9)."""
    if variance == "posterior":
        return float(sched.posterior_var[k])
    if variance == "beta":
        return float(sched.beta[k])
    raise ValueError(f"unknown reverse variance '{variance}'; use one of {VARIANCES}")


# ----------------------------------------------------------------------------------------- guidance helpers

def guided_mean(mean: Tensor, variance: float | Tensor, alpha: float, g: Tensor) -> Tensor:
    """DMEMM Eq. 13 / Algorithm 1: the guided mean mu + alpha sigma_k^2 g."""
    return mean + alpha * variance * g


def classifier_free_guidance(eps_null: Tensor, eps_cond: Tensor, omega: float) -> Tensor:
    """TD Eq. 11: eps-hat = eps_null + omega (eps_cond - eps_null) (= (1-omega) eps_null + omega eps_cond)."""
    return eps_null + omega * (eps_cond - eps_null)


def inpaint(x: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """Hard conditioning: x with the entries under ``mask`` (broadcastable bool) replaced by ``values``."""
    return torch.where(mask, values.to(x.dtype), x)


# ----------------------------------------------------------------------------------------- reverse process

def ancestral_step(x_k: Tensor, k: int, eps_fn: EpsFn, sched: DDPMSchedule, noise: Tensor | None, *,
                   variance: str = "posterior", guide: GuideFn | None = None,
                   inpaint_fn: InpaintFn | None = None, last_step_noise: bool = False,
                   clip_x0: float | None = None) -> Tensor:
    """One reverse step x_k -> x_{k-1} ~ N(mu + shift, sigma_k^2 I) (Eq. 3-4).

    eps_fn(x (B, ...), k (B,) int64) -> eps; noise: standard normal like x_k (None: no noise).
    variance: ``posterior`` (beta-tilde) or ``beta``. guide(x_k, k, mean, sigma_k^2 tensor) -> shift added
    to the mean (evaluated at x_k, DMEMM reading 7). inpaint_fn: applied to x_{k-1} (Alg. 1's s_0 clamp).
    last_step_noise: add noise at k = 1 too (False: Diffuser's noise-free last step). clip_x0: when set,
    the mean is the posterior mean of x0-hat clipped to [-clip_x0, clip_x0] (None: Eq. 4 unclipped).
    """
    kk = torch.full((x_k.shape[0],), k, dtype=torch.long, device=x_k.device)
    eps = eps_fn(x_k, kk)
    if clip_x0 is None:
        mean = reverse_mean(x_k, k, eps, sched)
    else:
        x0 = x0_from_eps(x_k, k, eps, sched).clamp(-clip_x0, clip_x0)
        mean = posterior_mean(x0, x_k, k, sched)
    var = step_variance(k, sched, variance)
    if guide is not None:
        mean = mean + guide(x_k, k, mean, torch.tensor(var, dtype=x_k.dtype, device=x_k.device))
    x = mean
    if noise is not None and (k > 1 or last_step_noise) and var > 0.0:
        x = mean + math.sqrt(var) * noise
    return inpaint_fn(x) if inpaint_fn is not None else x


def reverse_loop(x_start: Tensor, k_start: int, eps_fn: EpsFn, sched: DDPMSchedule, *,
                 randn_like: Callable[[Tensor], Tensor] | None = None, variance: str = "posterior",
                 guide: GuideFn | None = None, inpaint_fn: InpaintFn | None = None,
                 last_step_noise: bool = False, clip_x0: float | None = None,
                 on_step: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Run :func:`ancestral_step` for k = k_start .. 1 from x_{k_start}; returns x_0.

    From pure noise use k_start = K; TD's refinement starts at k = 5 from q_sample(plan, 5, eps).
    randn_like(x) draws the step noise (None: deterministic, the mean path). ``inpaint_fn`` is also
    applied to x_start. on_step(k, x_{k-1}) is called after each step (tests, diagnostics).
    """
    if not 0 <= k_start <= sched.num_steps:
        raise ValueError(f"k_start must lie in [0, {sched.num_steps}], got {k_start}")
    x = inpaint_fn(x_start) if inpaint_fn is not None else x_start
    for k in range(k_start, 0, -1):
        noise = randn_like(x) if randn_like is not None else None
        x = ancestral_step(x, k, eps_fn, sched, noise, variance=variance, guide=guide, inpaint_fn=inpaint_fn,
                           last_step_noise=last_step_noise, clip_x0=clip_x0)
        if on_step is not None:
            on_step(k, x)
    return x


# ----------------------------------------------------------------------------------------- DMEMM Prop. 1

def prop1_coefficients(sched: DDPMSchedule) -> Tensor:
    """c_i = (1 - alpha_i) / sqrt((1 - abar_i) abar_i), (K+1,) float64 with c_0 = 0 (Eq. 7-8)."""
    ab = sched.alpha_bar
    c = (1.0 - sched.alpha) / ((1.0 - ab) * ab).sqrt()
    c[0] = 0.0
    return c


def eq7_mean(x_k: Tensor, k: int, eps_iterates: Tensor, sched: DDPMSchedule) -> Tensor:
    """Eq. 7: mu-hat(x_k, k) = x_k / sqrt(abar_k) - sum_{i=1}^{k} c_i eps_theta(x_i, i).

    eps_iterates: (k, B, ...) with row i-1 = eps_theta evaluated at the reverse iterate x_i. With the
    iterates of the noise-free chain this is exact (test D1).
    """
    c = prop1_coefficients(sched)[1:k + 1].to(dtype=x_k.dtype, device=x_k.device)
    shape = (k,) + (1,) * (eps_iterates.dim() - 1)
    return x_k / math.sqrt(float(sched.alpha_bar[k])) - (c.reshape(shape) * eps_iterates).sum(dim=0)


def eq20_variance(sigma2: Tensor, k: int, sched: DDPMSchedule) -> float:
    """Eq. 20: sigma-hat^2 = sigma_1^2 + sum_{i=2}^{k} sigma_i^2 / abar_{i-1}. sigma2: (K+1,) per step."""
    i = torch.arange(1, k + 1)
    return float((sigma2[i].double() / sched.alpha_bar_prev[i]).sum())


def eq8_oracle_coefficient(sched: DDPMSchedule, k: int) -> float:
    """c_k of test D4: with the perfect point-mass denoiser, Eq. 8 returns c + c_k eps, where
    c_k = sqrt((1 - abar_k)/abar_k) - sum_{i<=k} c_i (0 at k = 1; the bias of Eq. 8)."""
    ab = float(sched.alpha_bar[k])
    return math.sqrt((1.0 - ab) / ab) - float(prop1_coefficients(sched)[1:k + 1].sum())


def _levels_tensor(k: int | Tensor, batch: int, device: torch.device) -> Tensor:
    if isinstance(k, Tensor):
        return k.to(device=device, dtype=torch.long)
    return torch.full((batch,), int(k), dtype=torch.long, device=device)


ConditionFn = Callable[[Tensor, Tensor], Tensor]


def eq8_exact(x0: Tensor, k: int | Tensor, eps: Tensor, eps_fn: EpsFn, sched: DDPMSchedule, *,
              max_rows: int | None = None, condition: ConditionFn | None = None) -> Tensor:
    """Eq. 8 with every term:
    x0 + sqrt((1-abar_k)/abar_k) eps - sum_{i=1}^{k} c_i eps_fn(q_sample(x0, i, eps), i).

    x0, eps: (B, ...); k: int or (B,) levels >= 1. The sum_b k_b network inputs are independent given
    (x0, eps), so they go through ``eps_fn`` in one call (or chunks of ``max_rows``). Differentiable in
    the network's parameters. condition(x_i (N, ...), rows (N,)) -> x_i with row ``rows[n]``'s
    conditions applied (inpainting) before the network sees it; None: no conditions.
    """
    b = x0.shape[0]
    kb = _levels_tensor(k, b, x0.device)
    rows = torch.repeat_interleave(torch.arange(b, device=x0.device), kb)
    starts = torch.cumsum(kb, 0) - kb
    levels = torch.arange(rows.shape[0], device=x0.device) - starts[rows] + 1
    x_i = q_sample(x0[rows], levels, eps[rows], sched)
    if condition is not None:
        x_i = condition(x_i, rows)
    if max_rows is None or rows.shape[0] <= max_rows:
        eps_hat = eps_fn(x_i, levels)
    else:
        eps_hat = torch.cat([eps_fn(x_i[lo:lo + max_rows], levels[lo:lo + max_rows])
                             for lo in range(0, rows.shape[0], max_rows)])
    c = _at(prop1_coefficients(sched), levels, eps_hat)
    total = torch.zeros_like(x0).index_add(0, rows, c * eps_hat)
    scale = _at(((1.0 - sched.alpha_bar) / sched.alpha_bar).sqrt(), kb, x0)
    return x0 + scale * eps - total


def importance_levels(k: Tensor, m: int, sched: DDPMSchedule, generator: torch.Generator | None = None
                      ) -> tuple[Tensor, Tensor]:
    """Draw m levels per row from {1..k_b - 1} with p_i ~ c_i (importance sampling, DMEMM pitfall 1).

    k: (B,) int64. Returns levels (B, m) int64 (arbitrary where k_b = 1) and C (B,) float64 =
    sum_{i<k_b} c_i (0 where k_b = 1), so (C/m) sum_j v_{I_j} is unbiased for sum_{i<k_b} c_i v_i.
    """
    c = prop1_coefficients(sched)
    big = sched.num_steps + 1
    idx = torch.arange(big)
    kb = k.long().cpu()
    weights = torch.where(idx[None, :] < kb[:, None], c[None, :], torch.zeros(()))
    weights[:, 0] = 0.0
    total = weights.sum(dim=1)
    safe = torch.where(total[:, None] > 0, weights, torch.ones_like(weights))
    levels = torch.multinomial(safe, m, replacement=True, generator=generator)
    levels = torch.where(total[:, None] > 0, levels, torch.ones_like(levels))
    return levels.to(k.device), total


def eq8_monte_carlo(x0: Tensor, k: int | Tensor, eps: Tensor, eps_fn: EpsFn, sched: DDPMSchedule, m: int, *,
                    eps_at_k: Tensor | None = None, generator: torch.Generator | None = None,
                    condition: ConditionFn | None = None) -> Tensor:
    """Eq. 8 with the i = k term exact and m importance-sampled terms for i < k (unbiased for tau-hat^0).

    eps_at_k: eps_theta(q_sample(x0, k, eps), k) when already computed (the L_wdiff forward), else it is
    computed here. The m extra inputs of all rows go through ``eps_fn`` in one call. Unbiased for
    Eq. 8's value; not for losses nonlinear in it (L_tr, L_rd: Jensen). condition: as for
    :func:`eq8_exact`.
    """
    b = x0.shape[0]
    kb = _levels_tensor(k, b, x0.device)
    cond = condition if condition is not None else (lambda x, rows: x)
    if eps_at_k is None:
        eps_at_k = eps_fn(cond(q_sample(x0, kb, eps, sched), torch.arange(b, device=x0.device)), kb)
    c = prop1_coefficients(sched)
    total = _at(c, kb, x0) * eps_at_k
    if m > 0 and bool((kb > 1).any()):
        levels, csum = importance_levels(kb, m, sched, generator)
        rows = torch.arange(b, device=x0.device).repeat_interleave(m)
        flat = levels.reshape(-1)
        eps_hat = eps_fn(cond(q_sample(x0[rows], flat, eps[rows], sched), rows), flat)
        weight = (csum.to(x0.device, x0.dtype) / m)[rows]
        weight = weight.reshape((-1,) + (1,) * (x0.dim() - 1))
        total = total + torch.zeros_like(x0).index_add(0, rows, weight * eps_hat)
    scale = _at(((1.0 - sched.alpha_bar) / sched.alpha_bar).sqrt(), kb, x0)
    return x0 + scale * eps - total


def eq8_tweedie(x_k: Tensor, k: int | Tensor, eps_at_k: Tensor, sched: DDPMSchedule) -> Tensor:
    """The one-step estimate x0-hat at level k (Eq. 8 with k = 1 applied at level k; no extra calls)."""
    return x0_from_eps(x_k, k, eps_at_k, sched)
