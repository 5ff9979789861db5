"""Trajectory Diffuser training (Sec. 4.2-4.3, A.4): the GPT (Eq. 4), the RTG-conditioned state diffusion
with condition dropout (Eq. 6-7), the inverse dynamics f_phi (Eq. 3) and, for the official-code candidate
selection only, an RTG critic. All four are trained side by side, one batch each per step.

Data (:class:`TDData`): every episode's states normalised (dataset mean / std) and its returns-to-go
divided by ``rtg_scale``; a window is H consecutive states fully inside one episode (the official code's
``range(path_length - horizon)``; episodes with fewer than H states contribute no window). Per step:

* GPT: input tokens 0..H-2 of a window, targets 1..H-1 (next state and next RTG at every position, the
  causal mask trains every context length 1..H-1 at once); loss MSE(state) + MSE(rtg) (Eq. 4, official
  code's form).
* diffusion: x_0 = the window (B, S, H), k ~ U{1..K}, eps ~ N(0, I) with eps[:, :, 0] = 0 and x_k[:, :, 0]
  = s_t (trained as it is sampled: s_t is inpainted at inference), condition y = RTG at the window's first
  state, dropped to the null with probability p (Eq. 7); loss ||eps - eps_theta||^2 over columns 1..H-1.
* f_phi: (s_t, s_{t+1}) -> a_t (normalised), MSE. Critic: (s_t, a_t) -> R-hat_t / scale, MSE.

The denoiser is the project's :class:`augment.nn.unet.TemporalUNet` with ``cond_dim = 1`` (the condition
MLP's output added to the noise embedding; null = a zero condition embedding) fed ``ddpm.noise_input``.
The planner uses an exponential moving average of its weights. Training runs on the networks' device;
batches and noise are drawn on the CPU (seeded generators) and moved there (:mod:`augment.planners.devices`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from augment.diffusion import ddpm
from augment.nn.unet import count_parameters
from augment.planners.checkpoint import (
    TrainingCheckpoint,
    load_module_states,
    module_states,
    restore_rng_states,
    rng_states,
)
from augment.planners.devices import module_device, normal_like, randint_on
from augment.planners.td_math import condition_dropout, returns_to_go
from augment.progress import progress_bar
from baselines.seeding import derive_seed
from stores.errors import UserInputError
from stores.schema import OfflineDataset

Tensor = torch.Tensor


@dataclass(frozen=True)
class TDData:
    """Flat training arrays. states: (N, S) normalised; actions: (N, A) normalised (0 on each episode's
    last state, which has no action); rtg: (N,) scaled RTG per state; window_starts: (W,) rows whose next H
    states lie in one episode; transition_rows: (M,) rows t with a real (s_t, a_t, s_{t+1})."""

    states: np.ndarray
    actions: np.ndarray
    rtg: np.ndarray
    window_starts: np.ndarray
    transition_rows: np.ndarray
    horizon: int

    @classmethod
    def build(cls, dataset: OfflineDataset, normalizer: Any, horizon: int, rtg_scale: float,
              discount: float = 1.0) -> TDData:
        states, actions, rtg, starts, rows = [], [], [], [], []
        offset = 0
        for ep in dataset.episodes:
            n = ep.observations.shape[0]  # T+1 states
            states.append(normalizer.norm_obs(ep.observations))
            act = np.zeros((n, ep.actions.shape[1]), dtype=np.float32)
            act[:-1] = normalizer.norm_act(ep.actions)
            actions.append(act)
            rtg.append((returns_to_go(ep.rewards, discount) / rtg_scale).astype(np.float32))
            starts.append(offset + np.arange(max(n - horizon + 1, 0)))
            rows.append(offset + np.arange(n - 1))
            offset += n
        data = cls(states=np.concatenate(states).astype(np.float32), actions=np.concatenate(actions),
                   rtg=np.concatenate(rtg), window_starts=np.concatenate(starts).astype(np.int64),
                   transition_rows=np.concatenate(rows).astype(np.int64), horizon=int(horizon))
        if data.window_starts.size == 0:
            longest = max(ep.observations.shape[0] for ep in dataset.episodes)
            raise UserInputError(f"trajectory diffuser: no episode of '{dataset.name}' has {horizon} states "
                                 f"(the longest has {longest}); use a smaller --set horizon=...")
        return data

    def windows(self, idx: np.ndarray, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Windows at window_starts[idx]: states (B, H, S), rtg (B, H), on ``device`` (None: the CPU)."""
        rows = self.window_starts[idx][:, None] + np.arange(self.horizon)[None, :]
        return torch.as_tensor(self.states[rows]).to(device), torch.as_tensor(self.rtg[rows]).to(device)


def inverse_dynamics_input(s_t: Tensor, s_next: Tensor) -> Tensor:
    """f_phi's input: (s_t, s_{t+1}) concatenated, (..., 2S)."""
    return torch.cat([s_t, s_next], dim=-1)


def diffusion_loss(unet: nn.Module, x0: Tensor, y: Tensor, sched: ddpm.DDPMSchedule, p_drop: float,
                   generator: torch.Generator) -> Tensor:
    """Eq. 6 on windows x0 (B, S, H) with conditions y (B, 1): mean over batch and entries of columns 1..H-1
    of (eps - eps_theta(x_k, y-hat, k))^2, s_t kept clean (eps[:, :, 0] = 0, x_k[:, :, 0] = x0[:, :, 0]).
    On x0's device; k, eps and the dropout drawn on the generator's."""
    b = x0.shape[0]
    k = randint_on(1, sched.num_steps + 1, (b,), generator, x0.device)
    eps = normal_like(x0, generator)
    eps[:, :, 0] = 0.0
    x_k = ddpm.q_sample(x0, k, eps, sched)
    x_k[:, :, 0] = x0[:, :, 0]
    drop = condition_dropout(b, p_drop, generator, x0.device)
    eps_hat = unet(x_k, ddpm.noise_input(sched, k), y, drop)
    return ((eps - eps_hat)[:, :, 1:] ** 2).mean()


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)


def _train_loop(bar: Any, nets: dict[str, nn.Module], data: TDData, cfg: Any, sched: ddpm.DDPMSchedule,
                gen: torch.Generator, rng: np.random.Generator, ema: nn.Module | None,
                opts: dict[str, torch.optim.Optimizer], running: dict[str, float],
                history: list[dict[str, float]], device: torch.device,
                after_step: Any = None) -> None:
    """The update steps of :func:`train_td`; updates ``nets``, ``ema``, ``running``, ``history`` in place.
    ``after_step(next_step)`` runs after each update (the checkpoint hook)."""
    gpt, unet, inv, critic = nets["gpt"], nets["unet"], nets["inverse_dynamics"], nets["critic"]
    mse = nn.functional.mse_loss
    for step in bar:
        idx = rng.integers(0, data.window_starts.size, size=cfg.batch_size)
        s, r = data.windows(idx, device)  # (B, H, S), (B, H)
        ps, pr = gpt(s[:, :-1], r[:, :-1])
        losses = {"gpt": mse(ps, s[:, 1:]) + mse(pr, r[:, 1:]),
                  "diffusion": diffusion_loss(unet, s.transpose(1, 2).contiguous(), r[:, :1], sched,
                                              cfg.p_drop, gen)}
        rows = data.transition_rows[rng.integers(0, data.transition_rows.size, size=cfg.batch_size)]
        st, sn = (torch.as_tensor(data.states[r_]).to(device) for r_ in (rows, rows + 1))
        at = torch.as_tensor(data.actions[rows]).to(device)
        losses["inverse_dynamics"] = mse(inv(inverse_dynamics_input(st, sn)), at)
        losses["critic"] = mse(critic(torch.cat([st, at], dim=-1))[:, 0],
                               torch.as_tensor(data.rtg[rows]).to(device))
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()  # the four networks share no parameters: one backward for all
        for opt in opts.values():
            opt.step()
        if ema is not None:
            _ema_update(ema, unet, float(cfg.ema_decay))
        for k, v in losses.items():
            x = float(v.detach())
            running[k] = x if math.isnan(running[k]) else 0.98 * running[k] + 0.02 * x
        if step % 50 == 0 or step == cfg.train_steps - 1:
            bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()})
            if step % 1000 == 0 or step == cfg.train_steps - 1:
                history.append({"step": step, **running})
        if after_step is not None and step + 1 < cfg.train_steps:
            after_step(step + 1)


def train_td(nets: dict[str, nn.Module], data: TDData, config: Any, sched: ddpm.DDPMSchedule, *,
             progress: bool = True, checkpoint: TrainingCheckpoint | None = None
             ) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Train ``nets`` = {gpt, unet, inverse_dynamics, critic} for ``config.train_steps`` steps.

    Returns the trained networks in eval mode (the U-Net as its EMA when ``config.ema_decay`` is set) and a
    JSON-native record (final running losses, parameter counts, seconds, windows, transitions). Runs on
    the networks' device (all four on one). ``checkpoint``: saved into every few minutes and resumed
    from when present (exactly, the GPT's dropout RNG included; ``record["resumed_from_step"]``).
    """
    cfg = config
    device = module_device(nets["unet"])
    parameters = {k: count_parameters(v) for k, v in nets.items()}
    gen = torch.Generator().manual_seed(int(cfg.seed))
    rng = np.random.default_rng(int(cfg.seed))
    gpt, unet, inv, critic = nets["gpt"], nets["unet"], nets["inverse_dynamics"], nets["critic"]
    ema = copy.deepcopy(unet).eval().requires_grad_(False) if cfg.ema_decay is not None else None
    opts = {name: torch.optim.Adam(net.parameters(), lr=cfg.lr) for name, net in nets.items()}
    for net in nets.values():
        net.train()
    running = {k: math.nan for k in ("gpt", "diffusion", "inverse_dynamics", "critic")}
    history: list[dict[str, float]] = []
    parts: dict[str, Any] = {**nets, **{f"opt_{k}": o for k, o in opts.items()}}
    if ema is not None:
        parts["ema"] = ema
    saved = checkpoint.load(max_step=cfg.train_steps) if checkpoint is not None else None
    first_step = int(saved["step"]) if saved is not None else 0
    seconds_before = float(saved["seconds"]) if saved is not None else 0.0
    if saved is not None:
        load_module_states(parts, saved["modules"])
        running.update(saved["running"])
        history.extend(saved["history"])
    start = time.perf_counter()

    def save(next_step: int) -> None:
        assert checkpoint is not None  # only passed as after_step when there is one
        checkpoint.maybe_save(lambda: {
            "step": next_step, "modules": module_states(parts),
            "rng": rng_states(rng, gen, global_torch=True, device=device),
            "running": dict(running), "history": list(history),
            "seconds": seconds_before + time.perf_counter() - start})

    bar = progress_bar(range(first_step, cfg.train_steps), desc="td (GPT + diffusion + f_phi)", unit="step",
                       disable=not progress, leave=False, initial=first_step, total=cfg.train_steps)
    # The GPT's dropout draws from torch's global RNG: seed a forked copy, so the same config gives the
    # same networks in any process, and the caller's RNG state is left as it was.
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(int(cfg.seed), "td-dropout"))
        if saved is not None:
            restore_rng_states(rng, gen, saved["rng"])
        _train_loop(bar, nets, data, cfg, sched, gen, rng, ema, opts, running, history, device,
                    after_step=save if checkpoint is not None else None)
    out = {"gpt": gpt, "unet": ema if ema is not None else unet, "inverse_dynamics": inv, "critic": critic}
    for net in out.values():
        net.eval().requires_grad_(False)
    record = {
        "train_steps": int(cfg.train_steps), "seconds": seconds_before + time.perf_counter() - start,
        "resumed_from_step": first_step,
        "final_losses": running, "history": history, "windows": int(data.window_starts.size),
        "transitions": int(data.transition_rows.size),
        "parameters": parameters,
    }
    return out, record


__all__ = ["TDData", "diffusion_loss", "inverse_dynamics_input", "train_td"]
