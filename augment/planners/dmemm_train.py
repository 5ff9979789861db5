"""DMEMM training (Algorithm 2): L_total = L_wdiff + lambda_tr L_tr + lambda_rd L_rd (Eq. 12).

Each step draws B training windows (T+1 columns of (s_t, a_t), from every episode of the dataset),
one level k ~ U{1..K} and one eps ~ N(0, I) per window, and uses the same (tau^0, k, eps) for all three
terms (Alg. 2):

* L_wdiff (Eq. 11): w(tau^0) ||eps - eps_theta(tau^k, k)||^2, summed over the window's entries (the
  squared norm as printed) and averaged over the batch. The noisy input has s_0 clamped to its clean
  value (the planner inpaints s_0 at every reverse step; train as you sample) and the loss leaves out
  s_0's entries and every padded column.
* tau-hat^0 (Eq. 8) in the config's Prop. 1 mode: ``exact`` (all k terms in one batched call),
  ``mc`` (the i = k term, which is the L_wdiff forward, plus m importance-sampled terms) or ``tweedie``
  (the one-step x0 estimate, no extra call); s_0 set to its clean value; optionally clipped to a box.
* L_tr (Eq. 9) and L_rd (Eq. 10) on tau-hat^0 through the frozen T-hat and R-hat
  (:class:`augment.planners.world_grad.DifferentiableWorld`), over the real transitions / columns.
  L_tr is measured in the diffusion model's normalised state units; L_rd in raw reward units.

The network is the project's temporal U-Net (:class:`augment.nn.unet.TemporalUNet`), fed the DDPM level
as ``ddpm.noise_input``; the returned network is an exponential moving average of the weights. Training
runs on the network's device; the batches, levels and noise are drawn on the CPU (seeded generators) and
moved there (:mod:`augment.planners.devices`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from augment.diffusion import ddpm
from augment.diffusion.training import optimizer_step, record_due, smoothed, update_ema
from augment.diffusion.windows import WindowIndex
from augment.nn.unet import TemporalUNet, count_parameters
from augment.planners.checkpoint import (
    TrainingCheckpoint,
    load_module_states,
    module_states,
    restore_rng_states,
    rng_states,
)
from augment.planners.devices import module_device, normal_like, randint_on
from augment.planners.dmemm_math import reward_loss, transition_loss, window_columns
from augment.progress import progress_bar

Tensor = torch.Tensor


def s0_mask(channels: int, obs_dim: int, columns: int, device: torch.device | None = None) -> Tensor:
    """(1, C, T+1) bool, True on s_0's entries (the inpainted condition)."""
    m = torch.zeros(1, channels, columns, dtype=torch.bool, device=device)
    m[:, :obs_dim, 0] = True
    return m


def eps_loss_mask(state_valid: Tensor, action_valid: Tensor, obs_dim: int, channels: int) -> Tensor:
    """Entries L_wdiff covers, (B, C, T+1) bool: real states after s_0 (s_0 is the inpainted condition)
    and real actions. state_valid, action_valid: (B, T+1) bool (the mask is on their device)."""
    b, cols = state_valid.shape
    mask = torch.zeros(b, channels, cols, dtype=torch.bool, device=state_valid.device)
    mask[:, :obs_dim] = state_valid[:, None, :]
    mask[:, :obs_dim, 0] = False
    mask[:, obs_dim:] = action_valid[:, None, :]
    return mask


def weighted_eps_loss(eps: Tensor, eps_hat: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
    """Eq. 11: mean over the batch of w(tau^0) ||eps - eps_theta||^2 over the covered entries.
    eps, eps_hat: (B, C, T+1); mask: (B, C, T+1) bool; weights: (B,)."""
    return (weights * (((eps - eps_hat) ** 2) * mask).sum(dim=(1, 2))).mean()


def train_dmemm(network: TemporalUNet, windows: WindowIndex, weights: np.ndarray, config: Any,
                sched: ddpm.DDPMSchedule, *, to_raw: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
                to_norm_obs: Callable[[Tensor], Tensor], world: Any | None, progress: bool = True,
                checkpoint: TrainingCheckpoint | None = None) -> tuple[TemporalUNet, dict[str, Any]]:
    """Minimise Eq. 12 for ``config.train_steps`` steps; returns the EMA network (eval) and a record.

    windows: WindowIndex built with horizon T+1 over normalised episodes; weights: (W,) Eq. 11 weights
    (ignored unless ``config.weighting``); to_raw(s_n, a_n) -> raw (s, a) and to_norm_obs(s) -> s_n:
    the differentiable (un)normalisation; world: DifferentiableWorld (needed when lambda_tr or
    lambda_rd > 0). Runs on ``network``'s device (to_raw, to_norm_obs and world work there too).
    checkpoint: where the loop saves its state every few minutes and, when one is there, resumes from it
    (exactly: the same networks as an uninterrupted run; ``record["resumed_from_step"]``).
    """
    cfg = config
    obs = windows.obs_dim
    channels = network.channels
    columns = cfg.horizon + 1
    device = module_device(network)
    cond = s0_mask(channels, obs, columns, device)
    ema = copy.deepcopy(network).eval().requires_grad_(False)
    network.train()
    opt = torch.optim.Adam(network.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    rng = np.random.default_rng(int(cfg.seed))
    modulate = (cfg.lambda_tr > 0 or cfg.lambda_rd > 0)
    if modulate and world is None:
        raise ValueError("L_tr / L_rd need the world model")

    def predict_next(s_n: Tensor, a_n: Tensor) -> Tensor:
        s, a = to_raw(s_n, a_n)
        return to_norm_obs(world.next_state_mean(s, a))

    def reward_fn(s_n: Tensor, a_n: Tensor) -> Tensor:
        s, a = to_raw(s_n, a_n)
        return world.reward(s, a)

    keys = ("loss", "l_wdiff", "l_tr", "l_rd", "weight", "tau0_abs")
    running = {k: math.nan for k in keys}
    history: list[dict[str, float]] = []
    parts = {"network": network, "ema": ema, "optimizer": opt}
    first_step, seconds_before = 0, 0.0
    saved = checkpoint.load(max_step=cfg.train_steps) if checkpoint is not None else None
    if saved is not None:
        load_module_states(parts, saved["modules"])
        restore_rng_states(rng, gen, saved["rng"])
        running, history = dict(saved["running"]), list(saved["history"])
        first_step, seconds_before = int(saved["step"]), float(saved["seconds"])
    start = time.perf_counter()

    def state(next_step: int) -> dict[str, Any]:
        return {"step": next_step, "modules": module_states(parts), "rng": rng_states(rng, gen),
                "running": dict(running), "history": list(history),
                "seconds": seconds_before + time.perf_counter() - start}

    bar = progress_bar(range(first_step, cfg.train_steps), desc="dmemm (Eq. 12)", unit="step",
                       disable=not progress, leave=False, initial=first_step, total=cfg.train_steps)
    for step in bar:
        idx = rng.integers(0, len(windows), size=cfg.batch_size)
        xw, valid = windows.gather(idx)
        tau, sv, av = window_columns(xw, valid, obs)
        x0 = torch.as_tensor(np.ascontiguousarray(tau)).to(device).transpose(1, 2).contiguous()  # (B, C, T+1)
        sv_t, av_t = torch.as_tensor(sv).to(device), torch.as_tensor(av).to(device)
        b = x0.shape[0]
        w = torch.as_tensor(weights[idx] if cfg.weighting else np.ones(b), dtype=torch.float32).to(device)
        k = randint_on(1, cfg.diffusion_steps + 1, (b,), gen, device)
        eps = normal_like(x0, gen)

        def condition(x: Tensor, rows: Tensor, x0: Tensor = x0) -> Tensor:
            return torch.where(cond, x0[rows], x)

        def eps_fn(x: Tensor, kk: Tensor) -> Tensor:
            return network(x, ddpm.noise_input(sched, kk))

        x_k = condition(ddpm.q_sample(x0, k, eps, sched), torch.arange(b, device=device))
        eps_hat = eps_fn(x_k, k)
        l_wdiff = weighted_eps_loss(eps, eps_hat, eps_loss_mask(sv_t, av_t, obs, channels), w)
        loss = l_wdiff
        l_tr = l_rd = torch.zeros((), device=device)
        tau0_abs = math.nan
        if modulate:
            if cfg.prop1_mode == "exact":
                tau0 = ddpm.eq8_exact(x0, k, eps, eps_fn, sched, condition=condition)
            elif cfg.prop1_mode == "mc":
                tau0 = ddpm.eq8_monte_carlo(x0, k, eps, eps_fn, sched, cfg.mc_terms, eps_at_k=eps_hat,
                                            generator=gen, condition=condition)
            else:
                tau0 = ddpm.eq8_tweedie(x_k, k, eps_hat, sched)
            tau0 = torch.where(cond, x0, tau0)
            if cfg.modulation_clip is not None:
                tau0 = tau0.clamp(-cfg.modulation_clip, cfg.modulation_clip)
            tau0_abs = float(tau0.detach().abs().mean())
            seq = tau0.transpose(1, 2)  # (B, T+1, C)
            s_hat, a_hat = seq[..., :obs], seq[..., obs:]
            if cfg.lambda_tr > 0:
                l_tr = transition_loss(s_hat, a_hat, predict_next, av_t[:, :-1] & sv_t[:, 1:])
                loss = loss + cfg.lambda_tr * l_tr
            if cfg.lambda_rd > 0:
                l_rd = reward_loss(s_hat, a_hat, reward_fn, av_t)
                loss = loss + cfg.lambda_rd * l_rd
        optimizer_step(opt, network.parameters(), loss,
                       cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1)), cfg.grad_clip)
        update_ema(ema, network, step, cfg.ema_decay)
        values = {"loss": float(loss.detach()), "l_wdiff": float(l_wdiff.detach()),
                  "l_tr": float(l_tr.detach()), "l_rd": float(l_rd.detach()), "weight": float(w.mean()),
                  "tau0_abs": tau0_abs}
        for key, v in values.items():
            running[key] = smoothed(running[key], v, 0.02)
        if record_due(step, cfg.train_steps, 50):
            history.append({"step": step, **running})
            bar.set_postfix(loss=f"{running['loss']:.4g}", tr=f"{running['l_tr']:.3g}")
        if checkpoint is not None and step + 1 < cfg.train_steps:
            checkpoint.maybe_save(lambda: state(step + 1))  # noqa: B023 - called at once
    bar.close()
    seconds = seconds_before + time.perf_counter() - start
    record = {"train_steps": int(cfg.train_steps), "train_seconds": seconds,
              "final": dict(running), "history": history, "parameters": count_parameters(network),
              "windows": len(windows), "resumed_from_step": first_step}
    return ema, record
