"""Trajectory Diffuser training is a function of its config alone: the GPT's dropout draws from torch's
global RNG, which train_td seeds in a forked copy (augment/planners/td_train.py), so the caller's global
RNG state neither changes the trained networks nor is changed by training."""

from __future__ import annotations

import torch

from augment.planners.run import make_planner
from augment.planners.td_train import TDData, train_td
from tests.baselines_data import planner_dataset


def _train(planner, data, global_seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(global_seed)
    nets, _ = train_td(planner.build_networks(), data, planner.config, planner.sched, progress=False)
    return {f"{k}.{n}": p.detach().clone() for k, net in nets.items() for n, p in net.named_parameters()}


def test_training_ignores_and_keeps_the_global_torch_rng() -> None:
    dataset = planner_dataset()
    planner = make_planner("td", dataset, profile="smoke", progress=False)
    assert planner.config.gpt_dropout > 0.0  # otherwise the global RNG would not be drawn from at all
    cfg = planner.config
    data = TDData.build(dataset, planner.normalizer, cfg.horizon, cfg.rtg_scale, cfg.discount)
    a = _train(planner, data, global_seed=1)
    b = _train(planner, data, global_seed=12345)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    _train(planner, data, global_seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream continues where it was
