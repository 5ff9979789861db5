"""Comparison arms of the generators for ``augment compare`` (loaded by :mod:`baselines.compare`).

* ``synther`` / ``synther:KEY=VALUE,...`` - the learner trained on the real data mixed with a fixed
  SynthER store at the comparison's real ratio. The store (``n`` transitions, default per profile:
  smoke 2k, cpu 200k, paper 5M as in the DyDiff paper's SynthER runs) is generated once per (dataset,
  SynthER config, n) and shared by every seed and learner, as the world models are
  (``augment_home()/synther-stores/``). Keys: ``n``, ``N`` (Heun steps), ``terminals``
  (auto / model / env), ``ratio`` (real ratio of this arm).
* ``rollout`` / ``rollout:KEY=VALUE,...`` - single-step model rollouts (MBPO; MOPO with ``lambda``)
  generated online by the training loop with the current policy, every ``rollout_interval`` updates.
  Keys: ``h`` (horizon, default 5), ``lambda`` (MOPO penalty), ``B`` (start states per round),
  ``interval``, ``ratio``. The defaults match DyDiff's synthetic volume per round at the same profile
  (:meth:`RolloutConfig.for_profile`).

Both train exactly like the ``base`` arm (the profile's TrainConfig with the comparison's overrides) plus
their synthetic data. Every run's ``config.json`` records the generation cost: ``extra.generation`` for
synther (CPU seconds of the store and its model), ``wall_time.generate`` in results.json for rollout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from augment.arm_options import options_arm, parse_options
from baselines.compare import Arm, RunRequest, register_arm
from stores.errors import UserInputError

#: SynthER store size per profile (transitions).
SYNTHER_TRANSITIONS = {"smoke": 2000, "cpu": 200_000, "paper": 5_000_000}

#: Arm option keys -> (config field, type), per arm.
SYNTHER_OPTIONS: dict[str, tuple[str, type]] = {
    "n": ("n", int), "N": ("num_steps", int), "num_steps": ("num_steps", int),
    "terminals": ("terminals", str), "ratio": ("real_ratio", float), "real_ratio": ("real_ratio", float),
}
ROLLOUT_OPTIONS: dict[str, tuple[str, type]] = {
    "h": ("horizon", int), "horizon": ("horizon", int), "lambda": ("penalty", float),
    "penalty": ("penalty", float), "B": ("rollout_batch", int), "rollout_batch": ("rollout_batch", int),
    "interval": ("rollout_interval", int), "rollout_interval": ("rollout_interval", int),
    "ratio": ("real_ratio", float), "real_ratio": ("real_ratio", float),
}


def _train_config(request: RunRequest, **fields: Any) -> Any:
    from baselines.loop import TrainConfig

    overrides = dict(request.overrides)
    base = TrainConfig.for_profile(request.profile, seed=request.seed, **overrides)
    keep = {k: v for k, v in fields.items() if k not in overrides and v is not None}
    return dataclasses.replace(base, **keep)


# ------------------------------------------------------------------------------------------- synther
def synther_store(dataset: Any, profile: str, n: int, options: dict[str, Any], *,
                  progress: bool = False) -> Path:
    """The cached SynthER store of ``n`` transitions for (dataset, config), generated on first use."""
    from augment.cache import exclusive
    from augment.generators.offline import generate_store
    from augment.generators.synther import SynthERConfig
    from stores.paths import augment_home

    cfg = SynthERConfig.for_profile(profile, dataset.name, **options)
    root = augment_home() / "synther-stores"
    root.mkdir(parents=True, exist_ok=True)
    name = f"{dataset.content_hash}-{cfg.config_hash()}-{cfg.terminals}-N{cfg.edm.num_steps}-n{n}.zarr"
    path = root / name
    with exclusive(root / f"{path.name}.lock"):
        if not (path / "zarr.json").exists() or not _complete(path, n):
            from augment.generators.synther import SynthERGenerator

            generate_store(SynthERGenerator(cfg, progress=progress), dataset, n, path, policy=None,
                           profile=profile, seed=0, overwrite=True, progress=progress)
    return path


def _complete(path: Path, n: int) -> bool:
    from stores.replay import ReplayStore

    try:
        with ReplayStore.open(path) as store:
            return len(store) == n and store.attrs.get("generation") is not None
    except UserInputError:
        return False


def synther_request(request: RunRequest, *, options: tuple[tuple[str, Any], ...] = ()) -> Path:
    """Runner of a synther arm: the base arm's training plus the cached SynthER store at the real ratio."""
    from baselines.compare import load_synthetic_store
    from baselines.loop import train
    from stores.datasets import load_dataset
    from stores.replay import ReplayStore

    opts = dict(options)
    n = int(opts.pop("n", SYNTHER_TRANSITIONS[request.profile]))
    ratio = opts.pop("real_ratio", None)
    dataset = load_dataset(request.dataset, profile=request.profile, progress=request.progress)
    path = synther_store(dataset, request.profile, n, opts, progress=request.progress)
    with ReplayStore.open(path) as store:
        generation = store.attrs.get("generation")
        generator_attrs = {k: store.attrs.get(k) for k in ("generator_config", "termination")}
    config = _train_config(request, real_ratio=ratio, max_synthetic=n)  # the whole store, no FIFO drop
    train(dataset, request.learner, config, request.run_dir, synthetic=load_synthetic_store(path),
          progress=request.progress,
          extra_config={"arm_dataset": request.dataset, "arm_options": dict(options),
                        "synthetic_store": str(path), "generation": generation, "generator": generator_attrs})
    return request.run_dir


def _synther_arm(arg: str | None) -> Arm:
    return options_arm("synther", arg, parse_options("synther", arg, SYNTHER_OPTIONS), synther_request)


# ------------------------------------------------------------------------------------------- rollout
def rollout_request(request: RunRequest, *, options: tuple[tuple[str, Any], ...] = ()) -> Path:
    """Runner of a rollout arm: the base arm's training plus online single-step rollouts."""
    from augment.generators.rollout import RolloutConfig, RolloutGenerator
    from baselines.loop import train
    from stores.datasets import load_dataset
    from stores.replay import ReplayStore

    dataset = load_dataset(request.dataset, profile=request.profile, progress=request.progress)
    opts = dict(options)
    if "real_ratio" not in opts and "real_ratio" in request.overrides:
        opts["real_ratio"] = request.overrides["real_ratio"]
    cfg = RolloutConfig.for_profile(request.profile, dataset.name, **opts)
    config = _train_config(request, real_ratio=cfg.real_ratio, rollout_interval=cfg.rollout_interval,
                           rollout_batch=cfg.rollout_batch, max_synthetic=cfg.max_synthetic)
    config = dataclasses.replace(config, real_ratio=cfg.real_ratio)
    generator = RolloutGenerator(cfg, progress=request.progress)
    generator.fit(dataset)
    train(dataset, request.learner, config, request.run_dir, generator=generator, progress=request.progress,
          extra_config={"arm_dataset": request.dataset, "arm_options": dict(options),
                        "rollout": cfg.to_json(), "generator": generator.store_attrs()})
    with ReplayStore.open(Path(request.run_dir) / "synthetic.zarr", mode="a") as store:
        from baselines.runs import to_jsonable

        store.update_attrs(**to_jsonable(generator.store_attrs()))
    return request.run_dir


def _rollout_arm(arg: str | None) -> Arm:
    return options_arm("rollout", arg, parse_options("rollout", arg, ROLLOUT_OPTIONS), rollout_request)


register_arm("synther", _synther_arm)
register_arm("rollout", _rollout_arm)
