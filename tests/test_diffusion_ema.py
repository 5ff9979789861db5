"""The sampler's weights are the exponential moving average of training, recomputed here step by step.

``train_denoiser`` keeps an EMA copy e of the network's weights theta: after the optimiser step k
(k = 0, 1, ...), e <- d_k e + (1 - d_k) theta_k with d_k = min(ema_decay, (1 + k) / (10 + k)), starting
from e = theta before training. The test records theta_k after every optimiser step (a torch optimiser
hook, the optimiser itself is untouched) and rebuilds e by that formula; the model ``fit`` returns, the
one ``sample`` uses, must carry exactly those weights.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_trajectory_diffusion import linear_dataset
from torch.optim.optimizer import register_optimizer_step_post_hook

from augment.diffusion.trajectory import (
    TrajectoryDiffusion,
    TrajectoryDiffusionConfig,
    build_network,
    fit_trajectory_diffusion,
)

Recorded = tuple[dict[str, torch.Tensor], list[dict[int, torch.Tensor]], TrajectoryDiffusion]


def _train_recording(config: TrajectoryDiffusionConfig) -> Recorded:
    dataset = linear_dataset(episodes=6, horizon=10)
    initial = {k: v.detach().clone() for k, v in build_network(config, 5).state_dict().items()}
    steps: list[dict[int, torch.Tensor]] = []

    def after_step(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        steps.append({i: p.detach().clone() for i, p in enumerate(params)})

    handle = register_optimizer_step_post_hook(after_step)
    try:
        model = fit_trajectory_diffusion(dataset, config, progress=False, cache=False)
    finally:
        handle.remove()
    return initial, steps, model


@pytest.mark.parametrize("ema_decay", [0.5, 0.999])
def test_sampler_weights_are_the_ema_of_the_training_steps(ema_decay: float) -> None:
    config = dataclasses.replace(TrajectoryDiffusionConfig.for_profile("smoke"), horizon=4, widths=(8,),
                                 train_steps=14, batch_size=8, ema_decay=ema_decay, lr=1e-2, warmup_steps=1)
    initial, steps, model = _train_recording(config)
    assert len(steps) == 14
    names = [name for name, _ in model.network.named_parameters()]
    ema = {i: initial[name].double() for i, name in enumerate(names)}
    for k, theta in enumerate(steps):
        d = min(ema_decay, (1 + k) / (10 + k))
        ema = {i: d * ema[i] + (1 - d) * theta[i].double() for i in ema}
    got = dict(model.network.named_parameters())
    for i, name in enumerate(names):
        torch.testing.assert_close(got[name].double(), ema[i], rtol=1e-5, atol=1e-6, msg=name)
    # the EMA lags the raw weights: it is neither the last step's weights nor the initial ones
    last = steps[-1]
    assert any(not torch.allclose(got[name], last[i], atol=1e-4) for i, name in enumerate(names))
    assert any(not torch.allclose(got[name], initial[name], atol=1e-4) for name in names)


def test_decay_schedule_switches_to_the_cap() -> None:
    """With ema_decay = 0.5 the warm-up term (1 + k)/(10 + k) is below the cap until k = 8: both regimes
    are exercised by the 14 steps above (a check of the test itself)."""
    d = [min(0.5, (1 + k) / (10 + k)) for k in range(14)]
    assert d[0] == pytest.approx(0.1) and d[7] < 0.5 and d[8] == 0.5 and d[13] == 0.5
    assert np.all(np.diff(d[:9]) > 0)
