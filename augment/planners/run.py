"""One planner run: fit (cached), evaluate with the shared harness, optionally generate a store.

:func:`run_planner` is what ``augment plan NAME`` and the planner arms of ``augment compare`` call. It
writes the usual run directory:

* ``config.json`` - planner, its config (and what the profile scaled), dataset, evaluation settings;
* ``metrics.csv`` - one row (the planner is evaluated once, after training);
* ``results.json`` - ``score`` (normalized when references exist, else the return), the same numbers
  under the learner runs' keys (``final_normalized`` = ``last5_normalized``, ``final_return`` =
  ``last5_return``) so ``augment compare`` reads both kinds alike, ``seconds_per_action`` (per env
  action), ``seconds_per_act_call`` (per vector step), ``network_calls_per_action`` (per act call, i.e.
  per plan batch; a batch of B envs costs the same calls as one), wall times;
* ``synthetic.zarr`` - when ``generate > 0``: planned trajectories with provenance.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augment.planners.base import (
    Planner,
    apply_overrides,
    check_env_fit,
    check_planner,
    parse_overrides,
    planner_class,
)
from augment.profiles import by_profile, profile_banner, resolve_profile
from stores.errors import UserInputError
from stores.schema import OfflineDataset

Overrides = str | list[tuple[str, str | None]] | dict[str, Any] | None


@dataclass(frozen=True)
class PlanRunSettings:
    """Evaluation and generation budget of a planner run.

    episodes: evaluation episodes; envs: envs stepped together; max_steps: cap on steps per episode (None:
    the env's limit); generate: trajectories planned from real start states into ``synthetic.zarr``
    (0: none); data_trajectories: how many a ``NAME-data`` compare arm generates for the learner.
    """

    episodes: int = 10
    envs: int = 10
    max_steps: int | None = None
    generate: int = 0
    data_trajectories: int = 10_000

    @classmethod
    def for_profile(cls, profile: str, **overrides: Any) -> PlanRunSettings:
        """smoke: 2 episodes of at most 20 steps; cpu and paper: 10 episodes, 10 envs."""
        base = by_profile(profile,
                          smoke=cls(episodes=2, envs=2, max_steps=20, data_trajectories=128),
                          cpu=cls(episodes=10, envs=10, data_trajectories=2_000),
                          paper=cls())
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        if self.episodes < 1 or self.envs < 1:
            raise UserInputError(f"--episodes and --envs must be >= 1, got {self.episodes}/{self.envs}")
        if self.generate < 0 or self.data_trajectories < 1:
            raise UserInputError("--generate must be >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserInputError(f"--max-steps must be >= 1, got {self.max_steps}")


@dataclass
class PlanRunResult:
    """What :func:`run_planner` returns; ``results`` is results.json's content."""

    run_dir: Path
    planner: Planner
    results: dict[str, Any]


def _items(overrides: Overrides) -> list[tuple[str, str | None]] | dict[str, Any]:
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return parse_overrides(overrides)
    return overrides


def planner_config(name: str, profile: str, dataset_name: str = "", overrides: Overrides = None,
                   *, seed: int | None = None) -> Any:
    """The config of planner ``name`` for ``profile`` and dataset, with variants / overrides applied;
    its settings and its ``device`` (CUDA asked for on a machine without it) checked."""
    from augment.planners.devices import planner_device

    cls = planner_class(check_planner(name))
    config = apply_overrides(cls.default_config(resolve_profile(profile), dataset_name), _items(overrides))
    if seed is not None and any(f.name == "seed" for f in dataclasses.fields(config)):
        config = dataclasses.replace(config, seed=int(seed))
    if hasattr(config, "validate"):
        config.validate()
    planner_device(getattr(config, "device", "auto"), name)
    return config


def make_planner(name: str, dataset: OfflineDataset, *, profile: str, overrides: Overrides = None,
                 seed: int | None = None, progress: bool = True, cache: bool = True) -> Planner:
    """A fitted planner ``name`` for ``dataset`` (trained, or loaded from the planner cache)."""
    config = planner_config(name, profile, dataset.name, overrides, seed=seed)
    planner = planner_class(name)(config, progress=progress)
    planner.fit(dataset, cache=cache)
    return planner


def _say(progress: bool, text: str) -> None:
    if progress:
        import click

        click.echo(text, err=True)


def run_planner(name: str, dataset: str | OfflineDataset, *, profile: str | None = None, seed: int = 0,
                out: Path | None = None, overrides: Overrides = None, episodes: int | None = None,
                envs: int | None = None, max_steps: int | None = None, generate: int | None = None,
                env_id: str | None = None, progress: bool = True) -> PlanRunResult:
    """Fit planner ``name`` on ``dataset`` (cached), evaluate it, write the run directory.

    dataset: a name/path for :func:`stores.datasets.load_dataset` or an OfflineDataset. seed: the
    planner's training seed (its config ``seed``), and the root of the acting and evaluation seeds.
    overrides: ``"variant,KEY=VALUE,..."`` text, parsed pairs, or a dict of typed config fields.
    Bad names, profiles, overrides and datasets that do not fit the env fail with UserInputError before
    any training.
    """
    from baselines.preflight import guarded_run_dir
    from stores.datasets import load_dataset

    check_planner(name)
    profile = resolve_profile(profile)
    settings = PlanRunSettings.for_profile(profile, episodes=episodes, envs=envs, max_steps=max_steps,
                                           generate=generate)
    settings.validate()
    source_name = dataset.name if isinstance(dataset, OfflineDataset) else str(dataset)
    planner_config(name, profile, source_name, overrides, seed=seed)  # fail fast on bad overrides
    banner = profile_banner(profile)
    if banner:
        _say(progress, banner)
    data = dataset if isinstance(dataset, OfflineDataset) else load_dataset(dataset, profile=profile,
                                                                            progress=progress)
    env = check_env_fit(data, env_id)
    config = planner_config(name, profile, data.name, overrides, seed=seed)
    planner = planner_class(name)(config, progress=progress)
    planner.dataset_name = data.name
    for line in planner.explain():
        _say(progress, line)
    default_dir = Path("runs") / f"plan-{name}-{Path(data.name).stem}-{profile}-s{seed}"
    run_dir = Path(out) if out is not None else default_dir
    with guarded_run_dir(run_dir):  # refuses directories augment did not make; marks and locks the run
        return _fit_evaluate_write(name, data, planner, config, env, settings, run_dir, seed=seed,
                                   profile=profile, progress=progress)


def evaluate_planner(planner: Planner, env: str, *, seed: int, episodes: int, score_name: str | None,
                     envs: int = 10, max_steps: int | None = None, progress: bool = False) -> Any:
    """Evaluate ``planner`` as ``augment plan`` does: acting RNG seeded with
    ``derive_seed(seed, "plan-act")``, acting stats reset, ``episodes`` episodes on ``envs`` envs from
    ``derive_seed(seed, "eval")``, under a bar '<planner>: evaluate' (shown with ``progress``; a sweep's
    status reads it either way: a planner's evaluation is minutes at cpu). Returns
    the harness's :class:`baselines.evaluate.EvalResult`; ``planner.acting_stats()`` then covers just it."""
    from baselines.evaluate import evaluate
    from baselines.seeding import derive_seed

    planner.seed_acting(derive_seed(seed, "plan-act"))
    planner.reset_stats()
    return evaluate(planner, env, episodes=episodes, seed=derive_seed(seed, "eval"), score_name=score_name,
                    num_envs=envs, max_steps=max_steps, bar=f"{planner.name}: evaluate", show_bar=progress)


def _fit_evaluate_write(name: str, data: OfflineDataset, planner: Planner, config: Any, env: str,
                        settings: PlanRunSettings, run_dir: Path, *, seed: int, profile: str,
                        progress: bool) -> PlanRunResult:
    """The body of :func:`run_planner` inside its guarded run directory."""
    from baselines.loop import dataset_store_attrs, score_name_for
    from baselines.runs import MetricsWriter, write_json
    from baselines.seeding import derive_seed, seed_everything

    seed_everything(seed)
    t0 = time.perf_counter()
    planner.fit(data)
    fit_seconds = time.perf_counter() - t0
    how = "loaded from cache" if planner.from_cache else "trained"
    _say(progress, f"{name}: {how} in {fit_seconds:.1f} s"
                   + (f" ({planner.cache_path})" if planner.cache_path else ""))
    score_name = score_name_for(data, env)
    write_json(run_dir / "config.json", {
        "planner": name, "profile": profile, "seed": seed, "config": config.to_json(),
        "scaled": planner.explain(), "cache_key": planner.cache_key(), "depends": planner.dependency_hashes(),
        "settings": dataclasses.asdict(settings), "eval_env": env, "score_name": score_name,
        "dataset": {"name": data.name, "env_id": data.env_id, "content_hash": data.content_hash,
                    "transitions": data.num_transitions, "episodes": data.num_episodes,
                    "provenance": data.provenance}})
    t1 = time.perf_counter()
    result = evaluate_planner(planner, env, seed=seed, episodes=settings.episodes, score_name=score_name,
                              envs=settings.envs, max_steps=settings.max_steps, progress=progress)
    eval_seconds = time.perf_counter() - t1
    stats = planner.acting_stats()
    gen_seconds, num_synthetic = 0.0, 0
    if settings.generate > 0:
        t2 = time.perf_counter()
        num_synthetic = write_planned_store(planner, data, run_dir / "synthetic.zarr", settings.generate,
                                            np.random.default_rng(derive_seed(seed, "plan-generate")),
                                            attrs={**dataset_store_attrs(data), "seed": seed})
        gen_seconds = time.perf_counter() - t2
    train_steps = int(planner.train_record.get("train_steps", getattr(config, "train_steps", 0)) or 0)
    norm = result.normalized_mean
    score = norm if math.isfinite(norm) else result.mean
    MetricsWriter(run_dir / "metrics.csv").write({
        "step": train_steps, "wall_time": fit_seconds + eval_seconds, "eval_return_mean": result.mean,
        "eval_return_std": result.std, "eval_normalized": norm,
        "eval_length_mean": float(result.lengths.mean()),
        "seconds_per_action": stats["seconds_per_action"],
        "network_calls_per_action": stats["network_calls_per_action"]})
    results = {
        "planner": name, "dataset": data.name, "env_id": env, "score_name": score_name, "seed": seed,
        "profile": profile, "score": score, "score_unit": "normalized" if math.isfinite(norm) else "return",
        "steps": train_steps, "final_normalized": norm, "last5_normalized": norm,
        "final_return": result.mean, "last5_return": result.mean, "final": result.to_json(),
        "evaluations": [{"step": train_steps, "return_mean": result.mean, "normalized": norm}],
        **stats,
        "wall_time": {"fit": fit_seconds, "evaluate": eval_seconds, "generate": gen_seconds,
                      "total": time.perf_counter() - t0},
        "fit_from_cache": planner.from_cache, "cache_path": planner.cache_path,
        "train_record": planner.train_record, "num_synthetic": num_synthetic, "generator": name,
    }
    write_json(run_dir / "results.json", results)
    return PlanRunResult(run_dir=run_dir, planner=planner, results=results)


def write_planned_store(planner: Planner, dataset: OfflineDataset, path: Path, n: int,
                        rng: np.random.Generator, *, attrs: dict[str, Any] | None = None,
                        chunk: int = 256) -> int:
    """Plan ``n`` trajectories from real start states (in chunks) into a new ReplayStore at ``path``.

    The store's attributes carry the dataset's provenance, ``attrs`` and the planner's own
    (:meth:`Planner.store_attrs`: name, config with guidance settings and Prop. 1 mode). Returns the
    number of transitions written.
    """
    from augment.progress import progress_bar
    from stores.replay import ReplayStore

    if path.exists():
        raise UserInputError(f"{path} already exists; choose another --out or delete it")
    store_attrs = {**(attrs or {}), **planner.store_attrs()}
    written = 0
    with ReplayStore.create(path, observation_size=dataset.observation_size,
                            action_size=dataset.action_size, attrs=store_attrs) as store:
        bar = progress_bar(total=n, desc=f"{planner.name}: generate", unit="traj",
                           disable=not planner.progress, leave=False)
        for lo in range(0, n, chunk):
            batch = planner.generate(min(chunk, n - lo), None, rng, round=lo // chunk)
            if batch.batch_size:
                store.append(batch)
                written += batch.num_transitions
            bar.update(min(chunk, n - lo))
        bar.close()
        store.flush()
    return written
