"""Offline generation into a ReplayStore for any registered generator (``augment generate``).

:func:`generate_store` is the library call behind the command and the plain-Python entry point:

1. :func:`check_generate_request` checks everything it can before any expensive work: the generator's
   name, ``n >= 1``, that the output store does not exist (with ``overwrite``: that it is a replay store no
   process is writing, :func:`check_generate_out`), and that a policy file is
   a loadable d3rlpy learner; after the dataset is loaded, that the policy's observation and action sizes
   fit the data. Nothing is written when a check fails.
2. the generator is built for the profile (:func:`build_generator`) and fitted (models from the caches);
   env-less data get their termination rule from the data's terminals or none
   (:mod:`augment.generators.data_termination`);
3. rounds of ``generate(k, policy, rng)`` are appended until the store holds exactly ``n`` transitions
   (the last round is trimmed by :func:`trim_batch`), with a progress bar;
4. a :class:`GenerateResult` has the figures of the end table (rows, trajectories, wall time, CPU time,
   transitions per second and per CPU-second).

Policies (:func:`resolve_policy`): ``behavior`` is a behaviour-cloned policy (d3rlpy BC) fitted on the
data and cached; a path is a saved d3rlpy learner (``model.d3`` from ``augment train`` or
``algo.save()``); a Python object with ``act`` or any ``obs -> action`` callable is used as is
(:func:`augment.integrations.plain.as_policy`). Generators that ignore the policy (SynthER) get None.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augment.generators.base import check_generator, generator_class
from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError
from stores.guards import check_replaceable
from stores.schema import OfflineDataset, TrajectoryBatch

#: Generators that ignore the policy (they upsample the data's own distribution).
POLICY_FREE: frozenset[str] = frozenset({"synther"})
#: Behaviour-cloning updates per profile (d3rlpy BC, batch 256).
BC_STEPS = {"smoke": 50, "cpu": 5000, "paper": 50_000}
#: d3rlpy learner classes whose actor is deterministic (their rollout policy is ``predict``).
DETERMINISTIC_ALGOS = frozenset({"TD3PlusBC", "TD3", "DDPG", "BC", "ReBRAC", "PLAS", "BCQ"})


# ----------------------------------------------------------------------------------------------------
# generators by name
# ----------------------------------------------------------------------------------------------------

def _dydiff(profile: str, dataset_name: str, options: dict[str, Any], progress: bool) -> Any:
    import dataclasses

    from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator

    cfg = DyDiffConfig.for_profile(profile, dataset_name)
    return DyDiffGenerator(dataclasses.replace(cfg, **options) if options else cfg, progress=progress)


def _synther(profile: str, dataset_name: str, options: dict[str, Any], progress: bool) -> Any:
    from augment.generators.synther import SynthERConfig, SynthERGenerator

    return SynthERGenerator(SynthERConfig.for_profile(profile, dataset_name, **options), progress=progress)


def _rollout(profile: str, dataset_name: str, options: dict[str, Any], progress: bool) -> Any:
    from augment.generators.rollout import RolloutConfig, RolloutGenerator

    return RolloutGenerator(RolloutConfig.for_profile(profile, dataset_name, **options), progress=progress)


#: name -> builder(profile, dataset_name, options, progress). A generator not listed here is built with
#: its class's ``for_profile(profile, dataset_name, progress=..., **options)`` when it has one (the
#: planners), else ``cls(**options)``.
BUILDERS: dict[str, Callable[[str, str, dict[str, Any], bool], Any]] = {
    "dydiff": _dydiff, "synther": _synther, "rollout": _rollout,
}

#: Short option names of ``augment generate -o KEY=VALUE`` -> config field, per generator.
OPTION_ALIASES: dict[str, dict[str, str]] = {
    "rollout": {"h": "horizon", "lambda": "penalty", "B": "rollout_batch"},
    "dydiff": {"M": "iterations", "L": "rollout_length", "B_r": "rollout_batch"},
    "synther": {"N": "num_steps"},
}


def build_generator(name: str, *, profile: str | None = None, dataset_name: str = "",
                    options: dict[str, Any] | None = None, progress: bool = True) -> Any:
    """An unfitted generator ``name`` with the profile's settings and ``options`` (config fields)."""
    check_generator(name)
    profile = resolve_profile(profile)
    opts = dict(options or {})
    if name in BUILDERS:
        try:
            return BUILDERS[name](profile, dataset_name, opts, progress)
        except TypeError as exc:
            raise UserInputError(f"generator '{name}' does not take option(s) {sorted(opts)}: "
                                 f"{exc}") from None
    cls = generator_class(name)
    maker = getattr(cls, "for_profile", None)
    if maker is not None:
        return maker(profile, dataset_name, progress=progress, **opts)
    return cls(**opts)


def parse_options(name: str, items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("h=3", "penalty=1.0")`` -> ``{"horizon": 3, "penalty": 1.0}`` (ints, floats, bools, text)."""
    aliases = OPTION_ALIASES.get(name, {})
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"option '{item}' is not KEY=VALUE (e.g. -o h=3)")
        out[aliases.get(key.strip(), key.strip())] = _parse_value(value.strip())
    return out


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ----------------------------------------------------------------------------------------------------
# policies
# ----------------------------------------------------------------------------------------------------

def load_learner(path: str | Path) -> Any:
    """A saved d3rlpy learner (``model.d3`` or a run directory holding one); UserInputError otherwise."""
    import d3rlpy

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.d3"
    if not p.is_file():
        raise UserInputError(f"--policy: no file at {p}; pass 'behavior' or a saved d3rlpy learner "
                             "(the model.d3 that `augment train` writes)")
    try:
        algo = d3rlpy.load_learnable(str(p))
    except Exception as exc:  # d3rlpy raises KeyError/OSError/pickle errors for foreign files
        raise UserInputError(f"--policy: {p} is not a d3rlpy model ({type(exc).__name__}); pass a file "
                             "written by d3rlpy's save() (e.g. a run's model.d3)") from None
    if getattr(algo, "impl", None) is None:
        raise UserInputError(f"--policy: {p} holds a d3rlpy config without weights")
    return algo


def learner_sizes(algo: Any) -> tuple[int, int]:
    """(observation size, action size) a d3rlpy learner was built for."""
    shape = algo.impl.observation_shape
    obs = int(shape[0]) if isinstance(shape, (tuple, list)) and len(shape) == 1 else -1
    return obs, int(algo.impl.action_size)


def check_policy_fits(algo: Any, dataset: OfflineDataset, where: str = "--policy") -> None:
    """UserInputError when the learner's observation/action sizes differ from the dataset's."""
    obs, act = learner_sizes(algo)
    if (obs, act) != (dataset.observation_size, dataset.action_size):
        raise UserInputError(f"{where}: the learner takes {obs}-dim observations and gives {act}-dim "
                             f"actions, but '{dataset.name}' has {dataset.observation_size}/"
                             f"{dataset.action_size}; "
                             "pass a learner trained on this dataset's env")


def learner_policy(algo: Any, *, stochastic: bool | None = None) -> Any:
    """A d3rlpy learner as a Policy: deterministic actors use ``predict``, stochastic ones
    ``sample_action`` (a ~ pi(.|s), as the rollouts of DyDiff Eq. 8), unless ``stochastic`` says."""
    from baselines.learners import LearnerPolicy

    if stochastic is None:
        stochastic = type(algo).__name__ not in DETERMINISTIC_ALGOS
    return LearnerPolicy(algo, stochastic=stochastic)


def behavior_policy(dataset: OfflineDataset, *, profile: str | None = None, seed: int = 0,
                    steps: int | None = None, progress: bool = True) -> Any:
    """A behaviour-cloned policy (d3rlpy BC, MSE, observations z-scored) fitted on the dataset, cached
    under ``augment_home()/bc/<dataset hash>-<steps>-<seed>``; returns the d3rlpy learner."""
    import d3rlpy

    from augment.cache import load_or_train
    from baselines.learners import observation_scaler
    from baselines.sampler import MixedSampler
    from stores.paths import augment_home

    n_steps = int(steps if steps is not None else by_profile(resolve_profile(profile), **BC_STEPS))
    target = augment_home() / "bc" / f"{dataset.content_hash}-{n_steps}-{seed}"

    def train() -> Any:
        import torch

        from augment.progress import progress_bar

        algo = d3rlpy.algos.BCConfig(batch_size=256, learning_rate=1e-3,
                                     observation_scaler=observation_scaler(dataset.stats)).create(device="cpu:0")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            algo.create_impl((dataset.observation_size,), dataset.action_size)
            sampler = MixedSampler(dataset.transitions, batch_size=256, real_ratio=1.0, seed=seed)
            for _ in progress_bar(range(n_steps), desc="behaviour cloning", disable=not progress,
                                  leave=False):
                algo.update(sampler.sample())
        return algo

    algo, _ = load_or_train(target, complete="model.d3",
                            load=lambda d: d3rlpy.load_learnable(str(d / "model.d3")), train=train,
                            save=lambda a, d: a.save(str(Path(d) / "model.d3")))
    return algo


@dataclass
class PolicySpec:
    """A resolved ``--policy``: the Policy (None for policy-free generators) and a description for the
    store's attributes."""

    policy: Any
    description: str
    algo: Any = None


def resolve_policy(spec: Any, dataset: OfflineDataset | None, generator_name: str, *,
                   profile: str | None = None, seed: int = 0, progress: bool = True,
                   preloaded: Any = None) -> PolicySpec:
    """``behavior`` | a d3rlpy model path | a Policy | any ``obs -> action`` callable -> :class:`PolicySpec`.

    With ``dataset`` None only what needs no data is checked (the file loads). ``preloaded``: the learner
    already loaded from the path by :func:`check_generate_request`.
    """
    if generator_name in POLICY_FREE:
        return PolicySpec(None, f"none ({generator_name} ignores the policy)")
    if spec is None or (isinstance(spec, str) and spec == "behavior"):
        if dataset is None:
            return PolicySpec(None, "behavior")
        algo = behavior_policy(dataset, profile=profile, seed=seed, progress=progress)
        return PolicySpec(learner_policy(algo, stochastic=False), "behavior cloning (d3rlpy BC) on the data",
                          algo)
    if isinstance(spec, (str, Path)):
        algo = preloaded if preloaded is not None else load_learner(spec)
        if dataset is not None:
            check_policy_fits(algo, dataset)
        return PolicySpec(learner_policy(algo), f"d3rlpy {type(algo).__name__} from {spec}", algo)
    from augment.integrations.plain import as_policy

    return PolicySpec(as_policy(spec), f"python object {type(spec).__name__}")


# ----------------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------------

def trim_batch(batch: TrajectoryBatch, max_transitions: int) -> TrajectoryBatch:
    """The first trajectories of ``batch`` holding exactly ``min(max_transitions, total)`` transitions.

    The last kept row is shortened when needed (its terminal flag cleared when the cut falls before it,
    so it ends as a timeout).
    """
    if max_transitions >= batch.num_transitions:
        return batch
    if max_transitions <= 0:
        return _rows(batch, np.zeros(0, np.int64), batch.lengths[:0])
    cum = np.cumsum(batch.lengths)
    k = int(np.searchsorted(cum, max_transitions, side="left")) + 1  # rows needed
    rows = np.arange(k)
    lengths = batch.lengths[:k].copy()
    before = int(cum[k - 2]) if k > 1 else 0
    lengths[-1] = max_transitions - before
    out = _rows(batch, rows, lengths)
    if lengths[-1] < batch.lengths[k - 1]:
        out.terminals[-1, :] = False
    return out


def _rows(batch: TrajectoryBatch, rows: np.ndarray, lengths: np.ndarray) -> TrajectoryBatch:
    return TrajectoryBatch(
        observations=batch.observations[rows], actions=batch.actions[rows], rewards=batch.rewards[rows],
        terminals=batch.terminals[rows].copy(), lengths=np.asarray(lengths, np.int64),
        generator=batch.generator, round=batch.round[rows], learner_step=batch.learner_step[rows],
        filter_score=batch.filter_score[rows], start_index=batch.start_index[rows])


def round_size(generator: Any) -> int:
    """How many items (start states, or SynthER transitions) one ``generate`` call asks for."""
    cfg = getattr(generator, "config", None)
    for attr in ("rollout_batch", "sample_batch"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


@dataclass
class GenerateResult:
    """What :func:`generate_store` did. seconds: wall time of generation alone (fit excluded);
    cpu_seconds: process CPU time of generation; fit_seconds: fitting/loading the generator's models."""

    store: Path | None
    generator: str
    rows: int
    trajectories: int
    rounds: int
    seconds: float
    cpu_seconds: float
    fit_seconds: float
    policy: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def transitions_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.nan

    @property
    def transitions_per_cpu_s(self) -> float:
        return self.rows / self.cpu_seconds if self.cpu_seconds > 0 else math.nan

    def table_row(self) -> dict[str, Any]:
        return {"generator": self.generator, "rows": self.rows, "trajectories": self.trajectories,
                "rounds": self.rounds, "fit s": self.fit_seconds, "wall s": self.seconds,
                "transitions/s": self.transitions_per_s, "transitions/CPU-s": self.transitions_per_cpu_s}


def check_generate_out(out: Path | None, *, overwrite: bool = False) -> None:
    """UserInputError when the output store may not be written: it exists and ``overwrite`` is off, or
    (``overwrite``) it is not a replay store or another process is writing it
    (:func:`stores.guards.check_replaceable`). Checked before the generator is fitted."""
    if out is None:
        return
    if overwrite:
        check_replaceable(out, ("store",))
    elif Path(out).exists() or Path(out).is_symlink():
        raise UserInputError(f"'{out}' already exists; choose another --out or pass --overwrite")


def check_generate_request(generator: str, n: int, out: Path | None, *, overwrite: bool = False,
                           policy: Any = "behavior") -> Any:
    """The checks that need no data (generator name, n, output path, policy file). Returns the loaded
    d3rlpy learner when ``policy`` is a path (else None)."""
    check_generator(generator)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise UserInputError(f"--n must be a positive number of transitions (got {n})")
    check_generate_out(out, overwrite=overwrite)
    if generator not in POLICY_FREE and isinstance(policy, (str, Path)) and str(policy) != "behavior":
        return load_learner(policy)
    return None


def fit_generator(generator: Any, dataset: OfflineDataset) -> dict[str, Any]:
    """``generator.fit(dataset)``, then the data's termination rule for a world model without an env rule
    (DyDiff; the rollout generator does it itself). Returns the termination record."""
    from augment.generators.data_termination import apply_data_termination, quiet_fallback_warning

    with quiet_fallback_warning(dataset):
        generator.fit(dataset)
    record = getattr(generator, "termination", None)
    if record:
        return dict(record)
    world = getattr(generator, "world", None)
    if world is not None:
        return apply_data_termination(world, dataset)
    if getattr(generator, "name", "") == "synther":
        return {"source": generator.terminal_source(), "env_id": dataset.env_id,
                "rule": "env rule on s'" if generator.terminal_source() == "env"
                else f"SynthER's d channel > {generator.config.terminal_threshold}"}
    return {}


def iter_batches(generator: Any, policy: Any, n: int, rng: np.random.Generator, *,
                 progress: bool = True, desc: str = "generate") -> Any:
    """Yield trajectory batches from repeated ``generate`` calls until exactly ``n`` transitions came out.

    The first call asks for :func:`round_size` items; later calls for about as many as the remaining
    transitions need at the transitions per item seen so far. Stops with UserInputError when 20 calls in
    a row return nothing (a model that only produces non-finite rows).
    """
    from augment.progress import progress_bar

    size = round_size(generator)
    done, items, rounds, empty = 0, 0, 0, 0
    bar = progress_bar(total=n, desc=desc, unit="tr", disable=not progress, dynamic_ncols=True)
    try:
        while done < n:
            per_item = done / items if done else None  # no rows yet (empty rounds too): ask the full size
            ask = size if per_item is None else int(min(size, max(1, math.ceil((n - done) / per_item))))
            batch = generator.generate(ask, policy, rng, round=rounds, learner_step=0)
            rounds += 1
            items += ask
            if batch.num_transitions == 0:
                empty += 1
                if empty >= 20:
                    raise UserInputError(f"{getattr(generator, 'name', 'generator')} returned no transitions "
                                         "in 20 rounds (non-finite model outputs?); check the models")
                continue
            empty = 0
            batch = trim_batch(batch, n - done)
            done += batch.num_transitions
            bar.update(batch.num_transitions)
            yield batch
    finally:
        bar.close()


def generate_store(generator: str | Any, dataset: OfflineDataset, n: int, out: str | Path | None, *,
                   policy: Any = "behavior", profile: str | None = None, seed: int = 0,
                   overwrite: bool = False, options: dict[str, Any] | None = None, progress: bool = True,
                   preloaded_policy: Any = None) -> tuple[GenerateResult, TrajectoryBatch | None]:
    """Generate exactly ``n`` transitions with ``generator`` (a name, or a generator object) and append
    them to a new ReplayStore at ``out`` (None: keep them in memory and return them as one batch).

    Returns (:class:`GenerateResult`, the concatenated batch when ``out`` is None else None).
    """
    from stores.replay import ReplayStore

    name = generator if isinstance(generator, str) else str(getattr(generator, "name", "generator"))
    out_path = None if out is None else Path(out)
    if isinstance(generator, str):
        preloaded_policy = preloaded_policy or check_generate_request(name, n, out_path, overwrite=overwrite,
                                                                      policy=policy)
    else:
        check_generate_out(out_path, overwrite=overwrite)
        if n < 1:
            raise UserInputError(f"--n must be a positive number of transitions (got {n})")
        if preloaded_policy is None and isinstance(policy, (str, Path)) and str(policy) != "behavior" \
                and name not in POLICY_FREE:
            preloaded_policy = load_learner(policy)
    if preloaded_policy is not None:
        check_policy_fits(preloaded_policy, dataset)
    profile = resolve_profile(profile)
    gen = generator
    if isinstance(generator, str):
        gen = build_generator(name, profile=profile, dataset_name=dataset.name, options=options,
                              progress=progress)
    t0 = time.perf_counter()
    termination = fit_generator(gen, dataset)
    pol = resolve_policy(policy, dataset, name, profile=profile, seed=seed, progress=progress,
                         preloaded=preloaded_policy)
    fit_seconds = time.perf_counter() - t0

    from baselines.loop import dataset_store_attrs
    from baselines.seeding import derive_seed

    attrs = {**dataset_store_attrs(dataset), **_store_attrs(gen), "seed": int(seed),
             "policy": pol.description, "requested_transitions": int(n), "termination": termination,
             "profile": profile,
             "model_diagnostics": _diagnostics(gen)}
    rng = np.random.default_rng(derive_seed(seed, f"generate-{name}"))
    store = None
    kept: list[TrajectoryBatch] = []
    rows = trajectories = rounds = 0
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        for batch in iter_batches(gen, pol.policy, n, rng, progress=progress, desc=f"{name} -> store"):
            if out_path is not None:
                if store is None:
                    store = ReplayStore.create(out_path, observation_size=dataset.observation_size,
                                               action_size=dataset.action_size, attrs=attrs,
                                               overwrite=overwrite)
                store.append(batch)
            else:
                kept.append(batch)
            rows += batch.num_transitions
            trajectories += batch.batch_size
            rounds += 1
        if store is not None:
            store.flush()
    finally:
        if store is not None:
            store.close()
    seconds, cpu = time.perf_counter() - w0, time.process_time() - c0
    generation = {"rows": rows, "trajectories": trajectories, "rounds": rounds, "wall_seconds": seconds,
                  "cpu_seconds": cpu, "fit_seconds": fit_seconds,
                  "cpu_seconds_per_1k": 1000.0 * cpu / rows if rows else None}
    attrs["generation"] = generation
    if out_path is not None and store is not None:
        with ReplayStore.open(out_path, mode="a") as done:
            done.update_attrs(generation=generation)
    result = GenerateResult(store=out_path, generator=name, rows=rows, trajectories=trajectories,
                            rounds=rounds, seconds=seconds, cpu_seconds=cpu, fit_seconds=fit_seconds,
                            policy=pol.description, attrs=attrs)
    return result, (TrajectoryBatch.concatenate(kept) if kept else None)


def _store_attrs(generator: Any) -> dict[str, Any]:
    maker = getattr(generator, "store_attrs", None)
    attrs = dict(maker()) if maker is not None else {"generator_name": getattr(generator, "name", "")}
    from baselines.runs import to_jsonable

    return to_jsonable(attrs)


def _diagnostics(generator: Any) -> dict[str, Any] | None:
    """World-model holdout errors (raw units) or the diffusion model's final loss, when the generator has
    them: what an env-less run reports instead of an evaluation."""
    from baselines.runs import to_jsonable

    out: dict[str, Any] = {}
    world = getattr(generator, "world", None)
    rep = getattr(world, "report", None) or {}
    for key in ("holdout_next_state_mse_raw", "holdout_reward_mse_raw", "elite_holdout_mse"):
        if key in rep:
            out[f"world_{key}"] = rep[key]
    for attr in ("diffusion", "model"):
        meta = getattr(getattr(generator, attr, None), "meta", None)
        if isinstance(meta, dict) and "final_loss" in meta:
            out[f"{attr}_final_loss"] = meta["final_loss"]
    return to_jsonable(out) or None
