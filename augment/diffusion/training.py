"""Training machinery shared by the project's diffusion models (SynthER, DyDiff's trajectory model,
DMEMM, AEPO): device choice, one optimiser step, the EMA of the weights, the smoothed loss record, the
EDM training loss over any network, and the step loop (:func:`fit_steps`; :func:`fit_edm` for EDM).

Nothing here knows what a training sample is: callers draw their batches (rows, windows, ...) and pass
masks; the functions are the identical pieces those trainers used to write out each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from augment.diffusion import edm
from augment.progress import progress_bar

Tensor = torch.Tensor


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def ema_decay_at(step: int, ema_decay: float) -> float:
    """The EMA decay at (0-based) step k: min(ema_decay, (1+k)/(10+k)), so short runs are not dominated
    by the initial weights."""
    return min(ema_decay, (1 + step) / (10 + step))


def update_ema(ema: torch.nn.Module, network: torch.nn.Module, step: int, ema_decay: float, *,
               copy_buffers: bool = False) -> None:
    """theta_ema <- theta_ema + (1 - decay_k) (theta - theta_ema) with decay_k = :func:`ema_decay_at`;
    with ``copy_buffers`` the network's buffers are copied as they are."""
    decay = ema_decay_at(step, ema_decay)
    with torch.no_grad():
        for pe, pn in zip(ema.parameters(), network.parameters(), strict=True):
            pe.lerp_(pn, 1.0 - decay)
        if copy_buffers:
            for be, bn in zip(ema.buffers(), network.buffers(), strict=True):
                be.copy_(bn)


def optimizer_step(opt: torch.optim.Optimizer, parameters: Iterable[Tensor], loss: Tensor, lr: float,
                   grad_clip: float | None) -> None:
    """One step on ``loss``: every group's learning rate set to ``lr``, gradients cleared, back-propagated,
    their global norm clipped at ``grad_clip`` (not when None), then the optimiser's update."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    opt.step()


def smoothed(running: float, value: float, rate: float) -> float:
    """Exponential smoothing of a loss record: ``value`` first (running NaN), then
    (1 - rate) * running + rate * value."""
    return value if math.isnan(running) else (1.0 - rate) * running + rate * value


def record_due(step: int, steps: int, every: int) -> bool:
    """Whether step k goes into a loss history: every ``every`` steps and the last of ``steps``."""
    return step % every == 0 or step == steps - 1


def edm_training_loss(network: Callable[[Tensor, Tensor], Tensor], y: Tensor, params: edm.EDMParams,
                      generator: torch.Generator, covered: Tensor, condition: Tensor | None = None) -> Tensor:
    """EDM's training loss on one clean batch y (B, ...): ln s ~ N(P_mean, P_std^2), n ~ N(0, s^2 I),
    D(y + n; s) by EDM Eq. 7 and lambda(s) ||D - y||^2 over the ``covered`` entries (DyDiff Eq. 4).

    condition: a bool mask broadcastable to y whose entries keep their clean value in the noisy input
    (hard replacement, as the conditioned sampler does), or None. sigma and the noise are drawn from
    ``generator`` in that order.
    """
    sigma = edm.sample_sigma(y.shape[0], params.p_mean, params.p_std, generator, y.device)
    shape = (-1,) + (1,) * (y.dim() - 1)
    noise = torch.randn(y.shape, generator=generator, device=y.device) * sigma.reshape(shape)
    noisy = y + noise if condition is None else torch.where(condition, y, y + noise)
    denoised = edm.precondition(network, noisy, sigma, params.sigma_data)
    return edm.edm_loss(denoised, y, sigma, params.sigma_data, covered)


def fit_steps(network: torch.nn.Module, opt: torch.optim.Optimizer, loss_at: Callable[[int], Tensor], *,
              first_step: int, train_steps: int, lr_at: Callable[[int], float], grad_clip: float | None,
              rate: float, every: int, after_step: Callable[[int], None] | None = None,
              history: list[tuple[int, float]] | None = None, running: float = math.nan,
              desc: str = "training", progress: bool = True) -> tuple[list[tuple[int, float]], float]:
    """Steps ``first_step .. train_steps - 1`` of gradient training of ``network``: loss_at(step) (a fresh
    batch's scalar loss), :func:`optimizer_step` at lr_at(step) (clip at ``grad_clip``, None: no clip),
    then after_step(step) (e.g. the EMA update). The loss is smoothed at ``rate`` (:func:`smoothed`) and
    recorded every ``every`` steps and at the last (:func:`record_due`), shown on a tqdm bar. Returns
    (history, running); ``history`` and ``running`` continue a resumed record."""
    history = [] if history is None else history
    bar = progress_bar(range(first_step, train_steps), desc=desc, unit="step", disable=not progress,
                       leave=False)
    for step in bar:
        loss = loss_at(step)
        optimizer_step(opt, network.parameters(), loss, lr_at(step), grad_clip)
        if after_step is not None:
            after_step(step)
        running = smoothed(running, float(loss.detach()), rate)
        if record_due(step, train_steps, every):
            history.append((step, running))
            bar.set_postfix(loss=f"{running:.4f}")
    bar.close()
    return history, running


def fit_edm(network: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer,
            batch: Callable[[int], tuple[Tensor, Tensor, Tensor | None]], params: edm.EDMParams,
            generator: torch.Generator, *, first_step: int, train_steps: int, lr_at: Callable[[int], float],
            grad_clip: float | None, ema_decay: float, copy_buffers: bool = False,
            history: list[tuple[int, float]] | None = None, running: float = math.nan, desc: str = "EDM",
            progress: bool = True) -> tuple[list[tuple[int, float]], float]:
    """Steps ``first_step .. train_steps - 1`` of EDM training of ``network`` with an EMA in ``ema``
    (:func:`fit_steps` on :func:`edm_training_loss`, then :func:`update_ema` after each step).

    batch(step) -> (y, covered, condition): the clean batch, the entries the loss covers and the
    hard-replaced conditions (None: none), see :func:`edm_training_loss`; it is called before any noise
    is drawn from ``generator``. lr_at(step): the learning rate of the step. The loss is smoothed at rate
    0.02 and recorded every 50 steps and at the last; returns (history, running).
    """
    def loss_at(step: int) -> Tensor:
        y, covered, condition = batch(step)
        return edm_training_loss(network, y, params, generator, covered, condition)

    def after_step(step: int) -> None:
        update_ema(ema, network, step, ema_decay, copy_buffers=copy_buffers)

    return fit_steps(network, opt, loss_at, first_step=first_step, train_steps=train_steps, lr_at=lr_at,
                     grad_clip=grad_clip, rate=0.02, every=50, after_step=after_step, history=history,
                     running=running, desc=desc, progress=progress)


def cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    """A detached CPU copy of ``module``'s state dict."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
