"""AEPO's equations as pure functions (aepo.txt; PLANNERS.md Sec. 3): the analytic posterior of
a_0 given a_t (Eq. 18, 22, 24), the sigma~^2(t) table (App. I.2), a_bar (Eq. 46), the intermediate-energy
target (Eq. 25) and IQL's expectile loss (Eq. 27 with the sign corrected).

Shapes: B rows, d = action size. ``t`` is continuous diffusion time of a
:class:`augment.diffusion.dpm_solver.VPSchedule`; alpha_t, sigma_t are its coefficients. Everything is
torch so that Q'(s, a) can come by autograd; nothing here holds a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from augment.diffusion.dpm_solver import VPSchedule

Tensor = torch.Tensor
#: Q(s (B, obs), a (B, d)) -> (B,), differentiable in a.
QFn = Callable[[Tensor, Tensor], Tensor]
#: eps_theta(s (B, obs), a_t (B, d), t (B,)) -> (B, d).
StateEpsFn = Callable[[Tensor, Tensor, Tensor], Tensor]

POSTERIORS: tuple[int, ...] = (1, 2)


def _col(v: Tensor | float, like: Tensor) -> Tensor | float:
    """(B,) -> (B, 1) so per-row coefficients broadcast over action dims; scalars pass through."""
    if isinstance(v, Tensor) and v.dim() == 1:
        return v.to(like.dtype)[:, None]
    return v


def posterior_mean(a_t: Tensor, eps: Tensor, alpha_t: Tensor | float, sigma_t: Tensor | float) -> Tensor:
    """Eq. 18: mu~_{0|t} = (a_t - sigma_t eps_theta(s, a_t, t)) / alpha_t. a_t, eps: (B, d) -> (B, d).

    alpha_t / sigma_t: floats or (B,) tensors. The 1/alpha_t factor amplifies eps errors at large t
    (about 152 at t = 1 for VP linear); callers may clip the result to the action box (pitfall 2).
    """
    return (a_t - _col(sigma_t, a_t) * eps) / _col(alpha_t, a_t)


def posterior1_variance(mean_sq_eps_per_dim: Tensor | float, alpha_t: Tensor | float,
                        sigma_t: Tensor | float) -> Tensor:
    """Eq. 22: sigma~^2_{0|t} = sigma_t^2 / alpha_t^2 * (1 - E||eps_theta(a_t, t)||^2 / d).

    mean_sq_eps_per_dim: the Monte-Carlo average of ||eps_theta||^2 / d over a_t ~ mu_t at this t (App.
    I.2). Unclamped (see :func:`clamp_variance`).
    """
    m = torch.as_tensor(mean_sq_eps_per_dim, dtype=torch.float64)
    a = torch.as_tensor(alpha_t, dtype=torch.float64)
    s = torch.as_tensor(sigma_t, dtype=torch.float64)
    return s ** 2 / a ** 2 * (1.0 - m)


def posterior2_variance(var_a0: float, mean_sq_dev_per_dim: Tensor | float) -> Tensor:
    """Eq. 24: sigma~^2_{0|t} = Var(a_0) - E||mu~_{0|t} - u_0||^2 / d (law of total variance), u_0 the
    dataset mean action and Var(a_0) = E||a_0 - u_0||^2 / d. Unclamped."""
    return float(var_a0) - torch.as_tensor(mean_sq_dev_per_dim, dtype=torch.float64)


def clamp_variance(var: Tensor, var_a0: float) -> Tensor:
    """Clamp sigma~^2 to [0, Var(a_0)] (A10: a posterior variance can neither be negative nor exceed the
    prior's by the law of total variance)."""
    return var.clamp(min=0.0, max=float(var_a0))


def a_bar(a0: Tensor, grad_q: Tensor, nu: float, *, tiny: float = 1e-12) -> Tensor:
    """Eq. 46: a_bar = a_0 - nu Q'(s, a_0) / ||Q'(s, a_0)|| (per row; rows with Q' = 0 keep a_0).

    "a" in Eq. 46 is read as the dataset action a_0 (PLANNERS.md Sec. 3.1 [AMB]).
    """
    norm = torch.linalg.vector_norm(grad_q, dim=-1, keepdim=True)
    return a0 - nu * grad_q / norm.clamp_min(tiny) * (norm > tiny)


def energy_target(q_bar: Tensor, grad_q: Tensor, mu: Tensor, abar: Tensor, var: Tensor | float,
                  beta: float) -> Tensor:
    """Eq. 25: E_t(s, a_t) ~= beta Q(s, a_bar) + beta Q'(s, a_bar)^T (mu~ - a_bar)
    + 1/2 beta^2 sigma~^2 ||Q'(s, a_bar)||^2.

    q_bar: (B,) Q(s, a_bar); grad_q: (B, d) Q' (App. I.2 evaluates it at a_0, not at a_bar); mu: (B, d)
    mu~_{0|t}; abar: (B, d); var: float or (B,) sigma~^2(t). Returns (B,).
    """
    var_t = var if not isinstance(var, Tensor) else var.to(q_bar.dtype)
    lin = (grad_q * (mu - abar)).sum(dim=-1)
    sq = (grad_q * grad_q).sum(dim=-1)
    return beta * q_bar + beta * lin + 0.5 * beta ** 2 * var_t * sq


def q_value_and_grad(q_fn: QFn, s: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """Q(s, a) (B,) and Q'(s, a) = dQ/da (B, d) by autograd, both detached (the target is a constant:
    no gradient reaches Q through the energy loss, pitfall 1)."""
    with torch.enable_grad():
        a_req = a.detach().clone().requires_grad_(True)
        q = q_fn(s, a_req).reshape(-1)
        (grad,) = torch.autograd.grad(q.sum(), a_req)
    return q.detach(), grad.detach()


def energy_target_from_q(q_fn: QFn, s: Tensor, a0: Tensor, mu: Tensor, var: Tensor | float, *, beta: float,
                         nu: float) -> Tensor:
    """Eq. 25 with Eq. 46's a_bar and Q'(s, a_bar) := Q'(s, a_0) (App. I.2): one Q forward and backward
    at a_0, one Q forward at a_bar (skipped when nu = 0). Returns the detached (B,) target."""
    q0, g0 = q_value_and_grad(q_fn, s, a0)
    abar = a_bar(a0, g0, nu)
    if nu == 0.0:
        q_bar = q0
    else:
        with torch.no_grad():
            q_bar = q_fn(s, abar).reshape(-1)
    return energy_target(q_bar, g0, mu, abar, var, beta).detach()


def expectile_loss(u: Tensor, tau: float) -> Tensor:
    """IQL's L_2^tau(u) = |tau - 1(u < 0)| u^2 elementwise, with u = Q - V (Eq. 27 prints V - Q: a sign
    typo; with tau = 0.7 the literal sign fits the *lower* expectile, test A7)."""
    return (tau - (u < 0).to(u.dtype)).abs() * u ** 2


# ----------------------------------------------------------------------------------------------------
# the sigma~^2(t) table
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigmaTable:
    """sigma~^2_{0|t} on a grid of times, linearly interpolated in t (per t, not per sample: pitfall 5).

    t: (K,) increasing float64 grid; values: (K,) float64, clamped to [0, var_a0]; posterior: 1 (Eq. 22)
    or 2 (Eq. 24); var_a0: Var(a_0) = E||a_0 - u_0||^2 / d of the dataset actions; raw: (K,) values
    before clamping (diagnostics).
    """

    t: np.ndarray
    values: np.ndarray
    posterior: int
    var_a0: float
    raw: np.ndarray

    def __call__(self, t: Tensor) -> Tensor:
        """sigma~^2 at times t (B,) -> (B,) in t's dtype (constant beyond the grid's ends)."""
        tt = t.detach().to(torch.float64).cpu().numpy()
        out = np.interp(tt, self.t, self.values)
        return torch.as_tensor(out, dtype=t.dtype, device=t.device)

    def to_json(self) -> dict[str, object]:
        return {"t": self.t.tolist(), "values": self.values.tolist(), "posterior": self.posterior,
                "var_a0": self.var_a0, "raw": self.raw.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> SigmaTable:
        return cls(t=np.asarray(data["t"], dtype=np.float64), values=np.asarray(data["values"], np.float64),
                   posterior=int(data["posterior"]), var_a0=float(data["var_a0"]),
                   raw=np.asarray(data["raw"], dtype=np.float64))


def action_variance(actions: np.ndarray) -> tuple[float, np.ndarray]:
    """(Var(a_0), u_0): the isotropic variance E||a_0 - u_0||^2 / d and the mean action u_0 (d,)."""
    a = np.asarray(actions, dtype=np.float64)
    u0 = a.mean(axis=0)
    return float(((a - u0) ** 2).sum(axis=1).mean() / a.shape[1]), u0


def estimate_sigma_table(eps_fn: StateEpsFn, states: Tensor, actions: Tensor, schedule: VPSchedule,
                         grid: np.ndarray, *, posterior: int, samples: int, generator: torch.Generator,
                         var_a0: float, u0: np.ndarray, clip: tuple[Tensor, Tensor] | None = None,
                         chunk: int = 8192) -> SigmaTable:
    """Monte-Carlo estimate of sigma~^2(t_k) at every grid time (App. I.2's five steps, per t).

    For each t_k: draw ``samples`` rows (s, a_0) uniformly from ``states`` (N, obs) / ``actions`` (N, d)
    and eps ~ N(0, I), form a_t = alpha a_0 + sigma eps, evaluate eps_theta(s, a_t, t_k), and average
    ||eps_theta||^2 / d (posterior 1, Eq. 22) or ||mu~ - u_0||^2 / d (posterior 2, Eq. 24; mu~ clipped to
    ``clip`` = (low, high) when given, as the energy target does). Values are clamped to [0, var_a0].
    """
    if posterior not in POSTERIORS:
        raise ValueError(f"posterior must be 1 or 2, got {posterior}")
    n, d = actions.shape
    u0_t = torch.as_tensor(u0, dtype=actions.dtype, device=actions.device)
    raw = np.zeros(len(grid), dtype=np.float64)
    with torch.no_grad():
        for k, tk in enumerate(grid):
            t_k = torch.tensor(float(tk), dtype=torch.float64)
            alpha, sigma = float(schedule.alpha(t_k)), float(schedule.sigma(t_k))
            total, count = 0.0, 0
            for lo in range(0, samples, chunk):
                m = min(chunk, samples - lo)
                idx = torch.randint(0, n, (m,), generator=generator).to(actions.device)
                noise = torch.randn(m, d, generator=generator, dtype=actions.dtype).to(actions.device)
                a_t = alpha * actions[idx] + sigma * noise
                t_vec = torch.full((m,), float(tk), dtype=actions.dtype, device=actions.device)
                eps = eps_fn(states[idx], a_t, t_vec)
                if posterior == 1:
                    total += float((eps.double() ** 2).sum())
                else:
                    mu = posterior_mean(a_t, eps, alpha, sigma)
                    if clip is not None:
                        mu = torch.clamp(mu, clip[0], clip[1])
                    total += float(((mu - u0_t).double() ** 2).sum())
                count += m
            mean_per_dim = total / (count * d)
            raw[k] = float(posterior1_variance(mean_per_dim, alpha, sigma) if posterior == 1
                           else posterior2_variance(var_a0, mean_per_dim))
    values = clamp_variance(torch.as_tensor(raw), var_a0).numpy()
    return SigmaTable(t=np.asarray(grid, dtype=np.float64), values=values, posterior=posterior,
                      var_a0=float(var_a0), raw=raw)
