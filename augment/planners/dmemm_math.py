"""DMEMM's equations as pure functions (dmemm.txt Sec. 4; PLANNERS.md §1).

Layout: a plan or training window is tau (B, T+1, obs+act), column t = (s_t, a_t) for t = 0..T (T+1
states *and* T+1 actions, Sec. 3.1: a_T is real). :func:`window_columns` is the one place that turns
the project's :class:`~augment.diffusion.windows.WindowIndex` windows (built with horizon T+1, so they
hold T+2 states and T+1 actions) into this layout with its validity masks.

* Eq. 11 weight: :func:`eq11_weights` (normaliser T_max * r_max, clipped to [w_min, 1]);
  :func:`window_reward_sums` (each window's dataset reward over its real columns).
* Eq. 9: :func:`transition_loss`; Eq. 10: :func:`reward_loss` (sums over transitions / columns as
  printed, mean over the batch).
* Eq. 13: :func:`dual_guidance_gradient` with the two readings of PLANNERS §1.2 item 6: ``full``
  (grad_tau of J = sum R-hat + lambda sum log T-hat, which also moves s_{t+1}) and ``literal``
  (only through each term's (s_t, a_t) inputs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Tensor = torch.Tensor
READINGS: tuple[str, ...] = ("full", "literal")


def window_columns(x: np.ndarray, valid: np.ndarray, obs_dim: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WindowIndex(horizon=T+1) windows -> DMEMM columns.

    x: (B, T+2, obs+act), valid: (B, T+2) state-valid flags of the window. Returns tau (B, T+1, obs+act)
    (the last state row, which has no action in the window, dropped), state_valid (B, T+1) and
    action_valid (B, T+1): a_t is real iff s_{t+1} exists in the episode.
    """
    del obs_dim  # the layout is the same; kept for symmetry with the callers
    return x[:, :-1], valid[:, :-1], valid[:, 1:]


def window_reward_sums(episode_rewards: list[np.ndarray], window_episode: np.ndarray,
                       window_start: np.ndarray, columns: int) -> np.ndarray:
    """sum of the dataset rewards r_t over each window's real columns t = start .. start+columns-1.

    episode_rewards: per episode (H_e,) rewards; window_episode / window_start: (W,) from WindowIndex.
    Returns (W,) float64.
    """
    offsets = np.concatenate([[0], np.cumsum([r.shape[0] for r in episode_rewards])]).astype(np.int64)
    flat = np.concatenate([np.asarray(r, dtype=np.float64) for r in episode_rewards])
    csum = np.concatenate([[0.0], np.cumsum(flat)])
    lengths = offsets[1:] - offsets[:-1]
    ep = np.asarray(window_episode, dtype=np.int64)
    lo = np.asarray(window_start, dtype=np.int64)
    hi = np.minimum(lo + columns, lengths[ep])
    return csum[offsets[ep] + hi] - csum[offsets[ep] + lo]


def eq11_weights(reward_sums: np.ndarray, t_max: float, r_max: float, w_min: float) -> np.ndarray:
    """Eq. 11: w(tau^0) = sum_t R(s_t, a_t) / (T_max * r_max), clipped to [w_min, 1].

    The paper asserts w lies in (0, 1]; with negative rewards (halfcheetah) or r_max <= 0 it does not,
    and a weight <= 0 would turn the loss into error maximisation, hence the clip (w_min > 0).
    reward_sums: (W,) window returns. Returns (W,) float64.
    """
    if not w_min > 0.0:
        raise ValueError(f"the Eq. 11 weight floor w_min must be > 0, got {w_min}")
    if not t_max * r_max > 0.0:
        return np.full(np.shape(reward_sums), 1.0)
    w = np.asarray(reward_sums, dtype=np.float64) / (t_max * r_max)
    return np.clip(w, w_min, 1.0)


def minmax_weights(reward_sums: np.ndarray, w_min: float) -> np.ndarray:
    """Alternative normaliser: window returns min-max normalised over the dataset, clipped to [w_min, 1]."""
    r = np.asarray(reward_sums, dtype=np.float64)
    span = r.max() - r.min() if r.size else 0.0
    w = (r - r.min()) / span if span > 0 else np.ones_like(r)
    return np.clip(w, w_min, 1.0)


def transition_loss(states: Tensor, actions: Tensor, predict_next: Callable[[Tensor, Tensor], Tensor],
                    mask: Tensor) -> Tensor:
    """Eq. 9: mean over the batch of sum_t mask_t ||s_{t+1} - T-hat(s_t, a_t)||^2.

    states (B, T+1, obs), actions (B, T+1, act) in the space ``predict_next(s (B, T, obs), a (B, T, act))
    -> (B, T, obs)`` works in; mask (B, T) float/bool, 1 on real transitions (t, t+1).
    """
    pred = predict_next(states[:, :-1], actions[:, :-1])
    err = ((states[:, 1:] - pred) ** 2).sum(dim=-1)
    return (err * mask.to(err.dtype)).sum(dim=1).mean()


def reward_loss(states: Tensor, actions: Tensor, reward_fn: Callable[[Tensor, Tensor], Tensor],
                mask: Tensor) -> Tensor:
    """Eq. 10: minus the batch mean of sum_t mask_t R-hat(s_t, a_t). states (B, T+1, obs), actions
    (B, T+1, act); reward_fn(s, a) -> (B, T+1); mask (B, T+1), 1 on real columns."""
    r = reward_fn(states, actions)
    return -(r * mask.to(r.dtype)).sum(dim=1).mean()


def dual_guidance_gradient(tau: Tensor, obs_dim: int, *,
                           reward_fn: Callable[[Tensor, Tensor], Tensor] | None,
                           log_transition_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None,
                           lam: float, reading: str = "full") -> Tensor:
    """Eq. 13: g = sum_{t<=T} grad R-hat(s_t, a_t) + lambda sum_{t<T} grad log T-hat(s_{t+1} | s_t, a_t).

    tau: (B, T+1, obs+act) in the space the callables take; reward_fn(s (B, T+1, obs), a) -> (B, T+1);
    log_transition_fn(s_next (B, T, obs), s (B, T, obs), a (B, T, act)) -> (B, T). Either may be None
    (that guidance off). reading ``full``: gradient of the whole scalar with respect to tau (s_{t+1} is
    pulled toward T-hat's mean too); ``literal``: s_{t+1} is held fixed in the log T-hat terms.
    Returns g (B, T+1, obs+act), detached.
    """
    if reading not in READINGS:
        raise ValueError(f"unknown Eq. 13 reading '{reading}'; use one of {READINGS}")
    if reward_fn is None and (log_transition_fn is None or lam == 0.0):
        return torch.zeros_like(tau)
    with torch.enable_grad():
        x = tau.detach().requires_grad_(True)
        s, a = x[..., :obs_dim], x[..., obs_dim:]
        total = x.new_zeros(())
        if reward_fn is not None:
            total = total + reward_fn(s, a).sum()
        if log_transition_fn is not None and lam != 0.0:
            s_next = s[:, 1:] if reading == "full" else s[:, 1:].detach()
            total = total + lam * log_transition_fn(s_next, s[:, :-1], a[:, :-1]).sum()
        (g,) = torch.autograd.grad(total, x)
    return g.detach()


def algorithm1_sample(eps_fn: Callable[[Tensor, Tensor], Tensor], sched: object, s0: Tensor,
                      shape: tuple[int, int, int], *, generator: torch.Generator | None = None,
                      guide: Callable[[Tensor, int, Tensor, Tensor], Tensor] | None = None,
                      variance: str = "posterior", clip_x0: float | None = None,
                      on_step: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Algorithm 1 for a batch: tau^K ~ N(0, I); for k = K..1 the (guided) reverse step, then
    tau^{k-1}(s_0) = s (inpainting). Channels-first, as the U-Net takes it.

    eps_fn(x (B, C, T+1), k (B,)) -> eps; sched: a :class:`augment.diffusion.ddpm.DDPMSchedule`;
    s0: (B, obs) the current states (same space as the samples); shape: (B, C, T+1). guide(x_k, k, mean,
    sigma_k^2) -> mean shift (Eq. 13's alpha sigma_k^2 g). clip_x0: each step's x0-hat clipped to
    [-clip_x0, clip_x0] before its posterior mean (Diffuser's official ``clip_denoised``; None: Eq. 4 as
    printed). Returns tau^0 (B, C, T+1) with tau^0[:, :obs, 0]
    equal to s0 exactly; the action to execute is tau^0[:, obs:, 0]. Runs on s0's device; the noise is
    drawn on ``generator``'s device and moved there (:func:`augment.planners.devices.normal_like`).
    """
    from augment.diffusion import ddpm
    from augment.planners.devices import normal_like

    obs = s0.shape[1]
    values = torch.zeros(shape, dtype=s0.dtype, device=s0.device)
    values[:, :obs, 0] = s0
    mask = torch.zeros((1,) + tuple(shape[1:]), dtype=torch.bool, device=s0.device)
    mask[:, :obs, 0] = True

    def clamp(x: Tensor) -> Tensor:
        return ddpm.inpaint(x, values, mask)

    def randn_like(x: Tensor) -> Tensor:
        return normal_like(x, generator)

    latents = randn_like(values)
    assert isinstance(sched, ddpm.DDPMSchedule)
    return ddpm.reverse_loop(latents, sched.num_steps, eps_fn, sched, randn_like=randn_like,
                             variance=variance, guide=guide, inpaint_fn=clamp, clip_x0=clip_x0,
                             on_step=on_step)
