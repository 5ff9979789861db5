"""Planner arms of ``augment compare`` (imported by :mod:`baselines.compare` as a plugin).

For every registered planner ``NAME`` (:data:`augment.planners.base.PLANNERS`) this registers

* ``NAME`` and ``NAME:VARIANT,KEY=VALUE,...`` - the planner itself as the policy (trained on the
  comparison's dataset with the run's seed, evaluated with the same harness); ``--eval-episodes`` of
  ``augment compare`` applies, learner steps do not (the planner has its own training budget);
* ``NAME-data`` and ``NAME-data:...`` - the comparison's learner trained on the real data plus a fixed
  store of the planner's trajectories (``PlanRunSettings.data_trajectories`` of them, planned from real
  start states, cut at terminals, rewards from R-hat), e.g. "td3bc on DMEMM data".

Example: ``augment compare --policy td3bc --dataset hopper-medium-replay --arm base --arm dydiff
--arm dmemm --arm dmemm:diffuser --arm dmemm-data``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from augment.planners.base import parse_overrides, registered_planners
from baselines.compare import Arm, RunRequest, register_arm

Items = tuple[tuple[str, str | None], ...]


def plan_request(request: RunRequest, *, planner: str, options: Items = ()) -> Path:
    """Runner of a ``NAME`` arm: the planner's run directory for one seed."""
    from augment.planners.run import run_planner

    run_planner(planner, request.dataset, profile=request.profile, seed=request.seed, out=request.run_dir,
                overrides=list(options), episodes=request.overrides.get("eval_episodes"),
                progress=request.progress)
    return request.run_dir


def plan_data_request(request: RunRequest, *, planner: str, options: Items = ()) -> Path:
    """Runner of a ``NAME-data`` arm: plan a store, then train the learner on real + that store."""
    import numpy as np

    from augment.planners.run import PlanRunSettings, make_planner, write_planned_store
    from baselines.compare import train_request
    from baselines.loop import dataset_store_attrs
    from baselines.seeding import derive_seed
    from stores.datasets import load_dataset

    dataset = load_dataset(request.dataset, profile=request.profile, progress=request.progress)
    settings = PlanRunSettings.for_profile(request.profile)
    run_dir = Path(request.run_dir)
    store = run_dir / "synthetic.zarr"  # the run's store: the loop adopts a directory holding only it
    if not store.exists():
        p = make_planner(planner, dataset, profile=request.profile, overrides=list(options),
                         seed=request.seed, progress=request.progress)
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir.parent / f".{run_dir.name}.planned-tmp.zarr"  # renamed into place when complete
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        write_planned_store(p, dataset, tmp, settings.data_trajectories,
                            np.random.default_rng(derive_seed(request.seed, "plan-data")),
                            attrs={**dataset_store_attrs(dataset), "seed": request.seed})
        tmp.rename(store)
    return train_request(request, synthetic_store=str(store))


def _arm_name(prefix: str, arg: str | None) -> str:
    return prefix if not arg else f"{prefix}:{arg.replace(' ', '')}"


def _factory(planner: str, data: bool, arg: str | None) -> Arm:
    from augment.planners.run import planner_config

    options = tuple(parse_overrides(arg))
    planner_config(planner, "paper", "", list(options))  # bad variants / keys fail before any run
    runner = plan_data_request if data else plan_request
    prefix = f"{planner}-data" if data else planner
    return Arm(_arm_name(prefix, arg), functools.partial(runner, planner=planner, options=options))


for _name in registered_planners():
    register_arm(_name, functools.partial(_factory, _name, False))
    register_arm(f"{_name}-data", functools.partial(_factory, _name, True))
