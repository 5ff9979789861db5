"""Comparison arms of the ``augment`` package for ``augment compare`` (:mod:`baselines.compare`).

Imported by :mod:`baselines.compare` (it is listed in ``ARM_PLUGIN_MODULES``), this registers

* ``dydiff`` - the learner trained with DyDiff rollouts at the paper's settings for the dataset and
  profile (:meth:`DyDiffConfig.for_profile`);
* ``dydiff:KEY=VALUE,...`` - the same with DyDiff settings changed, keys ``M`` (iterations), ``L``
  (rollout_length), ``filter``, ``eta``, ``B_r`` (rollout_batch), ``interval`` (rollout_interval),
  ``rule`` (iteration_rule: replace / average), ``dynamics`` (sample / mean), ``sdedit`` (sdedit_sigma),
  ``pool`` (max_synthetic), ``rclip`` (reward_clip: none / data), ``box`` (state_box margin; < 0 off),
  e.g.
  ``augment compare --arm base --arm dydiff --arm dydiff:M=0 --arm dydiff:rule=average,dynamics=mean``.

A dydiff arm trains exactly as the ``base`` arm (the profile's TrainConfig with the comparison's
overrides: steps, evaluation schedule, seed) plus DyDiff's rollout schedule, buffer and real ratio;
the learner budget comes from TrainConfig only (DyDiffConfig has no ``steps``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from augment.arm_options import options_arm, parse_options
from baselines.compare import Arm, RunRequest, register_arm

#: Arm option keys -> DyDiffConfig fields, with the type to parse the value as.
ARM_OPTIONS: dict[str, tuple[str, type]] = {
    "M": ("iterations", int), "iterations": ("iterations", int),
    "L": ("rollout_length", int), "rollout_length": ("rollout_length", int),
    "filter": ("filter", str), "eta": ("eta", float),
    "B_r": ("rollout_batch", int), "rollout_batch": ("rollout_batch", int),
    "interval": ("rollout_interval", int), "rollout_interval": ("rollout_interval", int),
    "rule": ("iteration_rule", str), "iteration_rule": ("iteration_rule", str),
    "dynamics": ("dynamics", str), "sdedit": ("sdedit_sigma", float), "sdedit_sigma": ("sdedit_sigma", float),
    "pool": ("max_synthetic", int), "max_synthetic": ("max_synthetic", int),
    "rclip": ("reward_clip", str), "reward_clip": ("reward_clip", str),
    "box": ("state_box", float), "state_box": ("state_box", float),
}


def parse_arm_options(arg: str | None) -> dict[str, Any]:
    """``"M=1,filter=hardmax"`` -> ``{"iterations": 1, "filter": "hardmax"}`` (DyDiffConfig fields)."""
    return parse_options("dydiff", arg, ARM_OPTIONS, example="dydiff:M=1,filter=hardmax")


def dydiff_request(request: RunRequest, *, options: tuple[tuple[str, Any], ...] = ()) -> Path:
    """Runner of a dydiff arm: one seed's run directory (the base arm's TrainConfig + DyDiff)."""
    from augment.commands import dydiff_config, train_with_dydiff
    from baselines.loop import TrainConfig
    from stores.datasets import load_dataset

    dataset = load_dataset(request.dataset, profile=request.profile, progress=request.progress)
    overrides = dict(request.overrides)
    cfg = dydiff_config(dataset.name, profile=request.profile, real_ratio=overrides.get("real_ratio"),
                        **dict(options))
    base = TrainConfig.for_profile(request.profile, seed=request.seed, **overrides)
    config = dataclasses.replace(
        base, real_ratio=cfg.real_ratio,
        rollout_interval=overrides.get("rollout_interval", cfg.rollout_interval),
        rollout_batch=overrides.get("rollout_batch", cfg.rollout_batch),
        max_synthetic=overrides.get("max_synthetic", cfg.max_synthetic))
    train_with_dydiff(dataset, request.learner, cfg, config, request.run_dir, progress=request.progress,
                      extra_config={"arm_dataset": request.dataset, "arm_options": dict(options)})
    return request.run_dir


def _dydiff_arm(arg: str | None) -> Arm:
    return options_arm("dydiff", arg, parse_arm_options(arg), dydiff_request)


register_arm("dydiff", _dydiff_arm)
