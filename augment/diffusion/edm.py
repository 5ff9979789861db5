"""EDM (Karras et al., 2022) as used by DyDiff: preconditioning, noise distribution, loss weight,
time-step schedule, churn, and the conditioned Heun sampler of DyDiff Algorithm 2.

Pure functions in the papers' symbols. ``sigma`` (s) is the noise level, ``sigma_data`` (s_d) the
data standard deviation the preconditioning assumes. Nothing here knows about networks beyond a
``denoise(x, sigma) -> x_hat`` callable, nor about trajectories beyond a ``replace(x) -> x`` callable
that applies the conditions (DyDiff Eq. 3).

References: DyDiff Table 3 (hyper-parameters), Eq. 4 (loss), Algorithm 2 (sampler); EDM Table 1
(preconditioning c_skip, c_out, c_in, c_noise) and Algorithm 2 (stochastic Heun sampler).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class EDMParams:
    """The EDM hyper-parameters of DyDiff Table 3 (defaults are the paper's values).

    sigma_min, sigma_max: ends of the sampling noise range; sigma_data: s_d; rho: schedule curvature;
    p_mean, p_std: ln(s) ~ N(P_mean, P_std^2) during training; s_churn, s_tmin, s_tmax, s_noise: the
    stochastic "churn" of Algorithm 2; num_steps: N, the number of sampling steps (Heun steps).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2
    s_churn: float = 60.0
    s_tmin: float = 0.37
    s_tmax: float = 52.212
    s_noise: float = 1.002
    num_steps: int = 34


# --------------------------------------------------------------------------- preconditioning (EDM Table 1)

def c_skip(sigma: Tensor | float, sigma_data: float) -> Tensor | float:
    """c_skip(s) = s_d^2 / (s^2 + s_d^2)."""
    return sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)


def c_out(sigma: Tensor | float, sigma_data: float) -> Tensor | float:
    """c_out(s) = s s_d / sqrt(s^2 + s_d^2)."""
    return sigma * sigma_data / (sigma ** 2 + sigma_data ** 2) ** 0.5


def c_in(sigma: Tensor | float, sigma_data: float) -> Tensor | float:
    """c_in(s) = 1 / sqrt(s^2 + s_d^2)."""
    return 1.0 / (sigma ** 2 + sigma_data ** 2) ** 0.5


def c_noise(sigma: Tensor | float) -> Tensor | float:
    """c_noise(s) = ln(s) / 4 (the noise-level input of the network)."""
    if isinstance(sigma, Tensor):
        return torch.log(sigma) / 4.0
    return math.log(sigma) / 4.0


def precondition(
    network: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigma: Tensor, sigma_data: float
) -> Tensor:
    """D(x; s) = c_skip(s) x + c_out(s) F(c_in(s) x; c_noise(s))  (EDM Eq. 7).

    x: (B, ...) noisy sample; sigma: (B,) noise levels (> 0); network F(x_in (B, ...), c_noise (B,)) ->
    (B, ...). Returns the denoised estimate, same shape as x.
    """
    shape = (-1,) + (1,) * (x.dim() - 1)
    s = sigma.reshape(shape)
    f = network(c_in(s, sigma_data) * x, c_noise(sigma))
    return c_skip(s, sigma_data) * x + c_out(s, sigma_data) * f


# --------------------------------------------------------------------------- training (DyDiff Eq. 4, Table 3)

def sample_sigma(batch: int, p_mean: float, p_std: float, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Tensor:
    """Draw B noise levels with ln(s) ~ N(P_mean, P_std^2) (Table 3, p_sigma). Returns (B,) float32."""
    z = torch.randn(batch, generator=generator, device=device)
    return torch.exp(p_mean + p_std * z)


def loss_weight(sigma: Tensor | float, sigma_data: float) -> Tensor | float:
    """lambda(s) = (s^2 + s_d^2) / (s s_d)^2 (Table 3); equals 1 / c_out(s)^2."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def edm_loss(denoised: Tensor, target: Tensor, sigma: Tensor, sigma_data: float, mask: Tensor) -> Tensor:
    """Eq. 4: lambda(s) ||D(tau + n; s) - tau||^2 over the entries selected by ``mask``.

    denoised, target: (B, ...); sigma: (B,); mask: bool or float, broadcastable to denoised, 1 on the
    entries the loss covers (DyDiff: states after the first, optionally only valid steps). Returns the
    scalar mean of the weighted squared error over the masked entries (a mean rather than the sum of
    Eq. 4, so the scale does not depend on the window size).
    """
    shape = (-1,) + (1,) * (denoised.dim() - 1)
    w = loss_weight(sigma, sigma_data).reshape(shape)
    m = mask.to(denoised.dtype).expand_as(denoised)
    err = w * (denoised - target) ** 2 * m
    return err.sum() / m.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- sampling (Table 3, Algorithm 2)

def time_steps(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """t_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho for i < N, and t_N = 0.

    Returns N+1 Python floats, t_0 = s_max > ... > t_{N-1} = s_min > t_N = 0 (Table 3).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if num_steps == 1:
        return [float(sigma_max), 0.0]
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    steps = [(a + i / (num_steps - 1) * (b - a)) ** rho for i in range(num_steps)]
    steps[0], steps[-1] = float(sigma_max), float(sigma_min)
    return steps + [0.0]


def churn_gammas(t: list[float], s_churn: float, s_tmin: float, s_tmax: float) -> list[float]:
    """gamma_i = min(S_churn/N, sqrt(2)-1) if t_i in [S_tmin, S_tmax] else 0, for i < N (Table 3).

    t: the N+1 time steps of :func:`time_steps`. Returns N floats.
    """
    n = len(t) - 1
    g = min(s_churn / n, math.sqrt(2.0) - 1.0)
    return [g if s_tmin <= ti <= s_tmax else 0.0 for ti in t[:n]]


def network_evaluations(num_steps: int) -> int:
    """Denoiser calls of :func:`heun_sample` for N steps: one per step plus a correction on all but the
    last (t_N = 0), i.e. 2N - 1."""
    return 2 * num_steps - 1


def heun_sample(
    denoise: Callable[[Tensor, float], Tensor],
    latents: Tensor,
    t: list[float],
    gammas: list[float],
    s_noise: float,
    replace: Callable[[Tensor], Tensor],
    randn_like: Callable[[Tensor], Tensor],
    *,
    replace_after_churn: bool = False,
) -> Tensor:
    """DyDiff Algorithm 2: the EDM stochastic Heun sampler with hard replacement of the conditions.

    denoise(x, sigma) -> D_theta(x; sigma), x (B, ...) and a Python-float sigma; latents: (B, ...)
    standard normal, scaled by t_0 here (tau^0 ~ N(0, t_0^2 I)); t: N+1 time steps with t_N = 0;
    gammas: N churn factors; replace(x) -> x with s_0 and all actions set to the conditions (Eq. 3),
    applied after every Euler step and every second-order correction (and to tau^0);
    randn_like(x) -> standard normal noise shaped like x (eps_i / S_noise).
    replace_after_churn: also apply ``replace`` to tau_hat^i after the churn noise, so the denoiser
    always sees clean conditions (Algorithm 2 as printed does not; the churn then noises s_0 and the
    actions too, with std ~ t_i, before D_theta reads them).

    The Euler step moves from the raised level t_hat_i, tau^{i+1} = tau_hat^i + (t_{i+1} - t_hat_i) d_i,
    as in EDM Algorithm 2 (DyDiff Algorithm 2 prints t_i there; with gamma_i = 0 the two agree).
    Returns tau^N, shape of latents.
    """
    n = len(t) - 1
    x = replace(latents * t[0])
    for i in range(n):
        t_cur, t_next, gamma = t[i], t[i + 1], gammas[i]
        t_hat = t_cur + gamma * t_cur
        if gamma > 0.0:
            x_hat = x + math.sqrt(t_hat ** 2 - t_cur ** 2) * s_noise * randn_like(x)
            if replace_after_churn:
                x_hat = replace(x_hat)
        else:
            x_hat = x
        d = (x_hat - denoise(x_hat, t_hat)) / t_hat
        x = replace(x_hat + (t_next - t_hat) * d)
        if t_next != 0.0:
            d_prime = (x - denoise(x, t_next)) / t_next
            x = replace(x_hat + (t_next - t_hat) * 0.5 * (d + d_prime))
    return x
