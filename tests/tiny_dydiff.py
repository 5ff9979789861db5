"""Tiny real DyDiff models (world model + trajectory diffusion) on tiny real Hopper-v5 data, built once
per test session and shared by the tests that need real, saveable models rather than stand-ins."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

from baselines_data import hopper_random_dataset

from stores.schema import OfflineDataset


@lru_cache(maxsize=1)
def tiny_models() -> tuple[OfflineDataset, Any, Any]:
    """(dataset, WorldModel, TrajectoryDiffusion): a few training steps each (quality is irrelevant)."""
    from augment.diffusion.trajectory import TrajectoryDiffusionConfig, fit_trajectory_diffusion
    from augment.world import WorldModelConfig, fit_world_model

    dataset = hopper_random_dataset(episodes=10, seed=2)
    world_cfg = WorldModelConfig.for_profile("smoke", max_epochs=1, steps_per_epoch=5, reward_max_epochs=1)
    diff_cfg = dataclasses.replace(TrajectoryDiffusionConfig.for_profile("smoke"), train_steps=5)
    world = fit_world_model(dataset, world_cfg, progress=False, cache=False)
    diffusion = fit_trajectory_diffusion(dataset, diff_cfg, progress=False, cache=False)
    return dataset, world, diffusion
