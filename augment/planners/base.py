"""What every diffusion planner shares: it is a Policy and a Generator, registered by name, cached.

A planner (DMEMM, Trajectory Diffuser, AEPO) subclasses :class:`Planner` and implements four methods:

* :meth:`Planner.train_models` - train its networks on a dataset (no cache logic);
* :meth:`Planner.save_models` / :meth:`Planner.load_models` - write / read them in a directory;
* :meth:`Planner.plan_actions` - the batched policy: ``(B, obs)`` raw observations -> ``(B, act)`` raw
  actions (one plan per row; count network calls with :meth:`Planner.count_calls`);

and, to be a Generator too, :meth:`Planner.plan_trajectories` (plans from start states, raw units).
Optionally :meth:`Planner.prepare` (fetch shared models such as the world model before the cache is
consulted), :meth:`Planner.reset` and :meth:`Planner.observe` (planners with per-env history),
:meth:`Planner.label_rewards` (default: the world model's reward model R-hat).

**Policy.** ``act(observations (B, obs)) -> (B, act)`` (timed, and the network calls counted, by the base
class); ``reset(n)`` before ``n`` new episodes; ``observe(rewards (B,), observations (B, obs), dones (B,))``
after every env step - the evaluation harness (:func:`baselines.evaluate.evaluate`) calls it when the
policy has it, d3rlpy learners do not. ``rewards`` is each env's reward of that step (0 for rows whose
episode had already ended), ``observations`` what the next ``act`` call will see, ``dones`` True for rows
whose episode has ended (at this step or before).

**Generator.** ``fit(dataset)`` trains or loads from the cache
``augment_home()/planners/<name>/<dataset hash>-<config hash>/`` (the hash covers every config field
that changes the trained networks, plus the hashes of shared models, e.g. the world model, so that
acting-only settings such as guidance scales reuse one trained model); ``generate(n, policy, rng)`` draws
``n`` real start states from the dataset, plans once from each, labels rewards with R-hat, cuts each
trajectory at its first terminal state by the env's termination rule and returns a TrajectoryBatch
(``filter_score`` = the planned window's summed R-hat, ``start_index`` = the dataset row of s_0);
``save(dir)`` / ``load(dir)``.

**Registry.** :data:`PLANNERS` maps a name to ``"module:Class"``; adding a planner is one line there plus
its own module. The ``augment plan NAME`` command (:mod:`augment.planners.commands`) and the
``augment compare`` arms (:mod:`augment.planners.arms`) work for every registered planner.

**Configs.** A planner's config is a frozen dataclass that also subclasses :class:`PlannerConfig`:
``PLAN_FIELDS`` names the acting-only fields (left out of the cache key), ``VARIANTS`` named sets of
overrides (e.g. DMEMM's Table 3 ablations); ``device`` (``auto`` / ``cpu`` / ``cuda``, not in the cache
key) is where it trains and acts (:mod:`augment.planners.devices`). :func:`apply_overrides` turns
``KEY=VALUE`` text into typed field values with clear errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from augment.planners.config import PlannerConfig, _jsonable, apply_overrides, parse_overrides
from baselines.protocols import Policy
from stores.errors import UserInputError, did_you_mean
from stores.schema import OfflineDataset, TrajectoryBatch

__all__ = [
    "PLANNERS", "ObservingPolicy", "Plan", "Planner", "PlannerConfig", "apply_overrides", "check_planner",
    "check_env_fit", "parse_overrides", "planner_cache_dir", "planner_class", "registered_planners",
]

#: name -> "module:Class" of every planner in the toolkit (the class subclasses :class:`Planner`).
PLANNERS: dict[str, str] = {
    "dmemm": "augment.planners.dmemm:DMEMMPlanner",
    "aepo": "augment.planners.aepo:AEPOPlanner",
    "td": "augment.planners.trajectory_diffuser:TrajectoryDiffuserPlanner",
}

#: File whose presence marks a complete planner directory (cache entry or ``save`` output).
PLANNER_MARKER = "planner.json"


def registered_planners() -> list[str]:
    """Names of the registered planners, in registration order."""
    return list(PLANNERS)


def check_planner(name: str) -> str:
    """Return ``name`` when it is a registered planner; else raise :class:`UserInputError` (with a
    did-you-mean suggestion)."""
    if name not in PLANNERS:
        raise UserInputError(did_you_mean(name, PLANNERS, hint=f"planners are: {', '.join(PLANNERS)}"))
    return name


def planner_class(name: str) -> type[Planner]:
    """Import and return the class registered under ``name``."""
    module_name, _, attr = PLANNERS[check_planner(name)].partition(":")
    return getattr(importlib.import_module(module_name), attr)


@runtime_checkable
class ObservingPolicy(Policy, Protocol):
    """A :class:`~baselines.protocols.Policy` that also wants every env step's outcome.

    ``observe(rewards (B,) float64, observations (B, obs) float32, dones (B,) bool)`` is called by the
    evaluation harness after every vector step (see the module docstring for the meaning of each row).
    """

    def observe(self, rewards: np.ndarray, observations: np.ndarray, dones: np.ndarray) -> None: ...


@dataclass(frozen=True)
class Plan:
    """Plans from B start states, raw env units.

    states: (B, L+1, obs) float32 with ``states[:, 0]`` the start states; actions: (B, L, act) float32,
    ``actions[:, t]`` taken in ``states[:, t]``; info: JSON-native notes (e.g. guidance settings).
    """

    states: np.ndarray
    actions: np.ndarray
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------
# dataset / env checks and the cache location
# ----------------------------------------------------------------------------------------------------

def check_env_fit(dataset: OfflineDataset, env_id: str | None) -> str:
    """The env id to evaluate in; :class:`UserInputError` when there is none or the dataset's observation
    and action sizes do not fit its spaces."""
    env = env_id or dataset.env_id
    if env is None:
        raise UserInputError(f"dataset '{dataset.name}' names no environment to evaluate in; pass --env, "
                             "e.g. Hopper-v5")
    from stores.sources import env_dims

    obs_dim, act_dim = env_dims(env)
    if (dataset.observation_size, dataset.action_size) != (obs_dim, act_dim):
        raise UserInputError(
            f"dataset '{dataset.name}' has observations/actions of {dataset.observation_size}/"
            f"{dataset.action_size} columns but {env} needs {obs_dim}/{act_dim}; pass the right --env or "
            "dataset")
    return env


def planner_cache_dir(name: str, dataset: OfflineDataset, key: str) -> Path:
    """``augment_home()/planners/<name>/<dataset.content_hash>-<key>``."""
    from stores.paths import augment_home

    return augment_home() / "planners" / name / f"{dataset.content_hash}-{key}"


# ----------------------------------------------------------------------------------------------------
# the base class
# ----------------------------------------------------------------------------------------------------

class Planner(ABC):
    """Base class of every planner: Policy + Generator + cached fit + timing and call counts.

    Subclasses set ``name`` and ``config_class`` and implement the abstract methods. Attributes the base
    class keeps: config, progress, device (``config.device`` resolved), dataset_name, env_id, obs_dim,
    act_dim, start_states (N, obs) raw, world (the WorldModel when the planner uses one), from_cache,
    cache_path, train_record (JSON-native), act_seconds / act_calls / act_rows, network_calls (Counter of
    calls during ``act``).
    """

    name: ClassVar[str] = "planner"
    config_class: ClassVar[type] = PlannerConfig

    def __init__(self, config: Any, *, progress: bool = True) -> None:
        from augment.planners.devices import planner_device

        self.config = config
        self.progress = progress
        self.device = planner_device(getattr(config, "device", "auto"), self.name)
        self.dataset_name = ""
        self.env_id: str | None = None
        self.obs_dim = 0
        self.act_dim = 0
        self.start_states: np.ndarray | None = None
        self.world: Any = None
        self.from_cache = False
        self.cache_path: Path | None = None
        self.train_record: dict[str, Any] = {}
        self.network_calls: Counter[str] = Counter()
        self._counting = False
        self.act_seconds = 0.0
        self.act_calls = 0
        self.act_rows = 0
        #: WorldModelConfig field overrides for :meth:`world_config` (e.g. a benchmark's tiny budget).
        self.world_overrides: dict[str, Any] = {}
        #: seconds of training between two mid-training checkpoints of a cached fit
        #: (:mod:`augment.planners.checkpoint`); None: the default, ``CHECKPOINT_SECONDS``
        self.checkpoint_seconds: float | None = None
        self._resume_dir: Path | None = None
        self._world_config: Any = None
        self.seed_acting(int(getattr(config, "seed", 0)))

    def fit_world(self, dataset: OfflineDataset) -> Any:
        """The shared T-hat / R-hat for ``dataset`` (:meth:`world_config`, cached as DyDiff's), trained on
        :attr:`device` when not cached; returns the WorldModel (it predicts on the CPU)."""
        from augment.world import fit_world_model

        return fit_world_model(dataset, self.world_config(), progress=self.progress, cache=True,
                               device=self.device)

    def world_config(self) -> Any:
        """The :class:`augment.world.WorldModelConfig` of the shared T-hat / R-hat for this planner's
        profile (the same cache entry DyDiff uses), with :attr:`world_overrides` applied."""
        if self._world_config is None:
            from augment.world import WorldModelConfig

            self._world_config = WorldModelConfig.for_profile(getattr(self.config, "profile", "paper"),
                                                              **self.world_overrides)
        return self._world_config

    # -- configs --------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def default_config(cls, profile: str, dataset_name: str = "") -> Any:
        """The config for ``profile`` (smoke / cpu / paper) and dataset (paper hyper-parameters vary)."""

    def explain(self) -> list[str]:
        """Lines for the user: what this config scaled down from the paper profile (empty for paper)."""
        paper = self.default_config("paper", self.dataset_name)
        diffs = self.config.differences(paper) if hasattr(self.config, "differences") else []
        profile = getattr(self.config, "profile", "paper")
        if not diffs:
            return []
        return [f"{self.name} (profile '{profile}') differs from the paper settings: " + "; ".join(diffs)]

    # -- hooks for subclasses -------------------------------------------------------------------------
    def prepare(self, dataset: OfflineDataset) -> None:
        """Before the cache is consulted: fetch shared models (world model, ...). Default: nothing."""
        return None

    def dependency_hashes(self) -> dict[str, str]:
        """Hashes of shared models the trained networks depend on (enter the cache key)."""
        return {}

    @abstractmethod
    def train_models(self, dataset: OfflineDataset) -> dict[str, Any]:
        """Train the planner's networks on ``dataset`` (no cache); return a JSON-native training record."""

    @abstractmethod
    def save_models(self, directory: Path) -> None:
        """Write the trained networks (and normalisers) into ``directory``."""

    @abstractmethod
    def load_models(self, directory: Path) -> None:
        """Read what :meth:`save_models` wrote."""

    @abstractmethod
    def plan_actions(self, observations: np.ndarray) -> np.ndarray:
        """The policy proper: raw observations (B, obs) float32 -> raw actions (B, act) float32."""

    def plan_trajectories(self, s0: np.ndarray, rng: np.random.Generator) -> Plan:
        """Plans from start states s0 (B, obs) raw, for :meth:`generate`. Override to be a Generator."""
        raise UserInputError(f"planner '{self.name}' cannot generate trajectories")

    def label_rewards(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Rewards (B, L) of planned (states (B, L+1, obs), actions (B, L, act)); default R-hat."""
        if self.world is None:
            raise UserInputError(f"planner '{self.name}' has no reward model to label generated data")
        b, length = actions.shape[:2]
        r = self.world.predict_reward(states[:, :length].reshape(b * length, -1),
                                      actions.reshape(b * length, -1))
        return np.asarray(r, dtype=np.float32).reshape(b, length)

    def is_terminal(self, next_states: np.ndarray) -> np.ndarray:
        """Termination rule of the env on (N, obs) next states -> (N,) bool."""
        from augment.world.termination import termination_fn

        return np.asarray(termination_fn(self.env_id)(next_states), dtype=bool)

    # -- Policy ---------------------------------------------------------------------------------------
    def seed_acting(self, seed: int) -> None:
        """Seed the noise of acting and generating: ``self.rng`` (NumPy) and ``self.torch_generator``."""
        import torch

        self.rng = np.random.default_rng(seed)
        self.torch_generator = torch.Generator().manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)

    def count_calls(self, kind: str, n: int = 1) -> None:
        """Record ``n`` network calls of ``kind`` (``denoiser``, ``guidance``, ``gpt``, ...) made by act."""
        if self._counting:
            self.network_calls[kind] += n

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Policy: observations (B, obs) -> actions (B, act), raw env units (timed and counted)."""
        obs = np.asarray(observations, dtype=np.float32)
        if obs.ndim == 1:
            obs = obs[None]
        if obs.shape[1] != self.obs_dim:
            raise UserInputError(f"planner '{self.name}' was fitted on observations of {self.obs_dim} "
                                 f"columns, got {obs.shape[1]}")
        t0 = time.perf_counter()
        self._counting = True
        try:
            out = np.asarray(self.plan_actions(obs), dtype=np.float32).reshape(obs.shape[0], self.act_dim)
        finally:
            self._counting = False
        self.act_seconds += time.perf_counter() - t0
        self.act_calls += 1
        self.act_rows += int(obs.shape[0])
        return out

    def reset(self, n: int) -> None:
        """Called before ``n`` new episodes start; planners without history ignore it."""
        return None

    def observe(self, rewards: np.ndarray, observations: np.ndarray, dones: np.ndarray) -> None:
        """Called after every env step (see the module docstring); planners without history ignore it."""
        return None

    def reset_stats(self) -> None:
        """Zero the acting timers and call counters."""
        self.network_calls = Counter()
        self.act_seconds, self.act_calls, self.act_rows = 0.0, 0, 0

    def acting_stats(self) -> dict[str, Any]:
        """Seconds and network calls per ``act`` call (one vector step of B envs) and per env action."""
        calls = max(self.act_calls, 1)
        per_call = {k: v / calls for k, v in sorted(self.network_calls.items())}
        return {
            "act_calls": self.act_calls, "actions": self.act_rows,
            "seconds_per_act_call": self.act_seconds / calls if self.act_calls else float("nan"),
            "seconds_per_action": self.act_seconds / self.act_rows if self.act_rows else float("nan"),
            "network_calls_per_act_call": per_call,
            "network_calls_per_action": float(sum(per_call.values())),
        }

    # -- fit / cache ------------------------------------------------------------------------------------
    def _attach_dataset(self, dataset: OfflineDataset) -> None:
        dataset.validate()
        self.dataset_name = dataset.name
        self.env_id = dataset.env_id
        self.obs_dim = dataset.observation_size
        self.act_dim = dataset.action_size
        self.start_states = dataset.transitions.observations

    def training_checkpoint(self, part: str) -> Any:
        """The :class:`augment.planners.checkpoint.TrainingCheckpoint` of training loop ``part`` of the
        current cached fit, or None (an uncached fit, or checkpoints switched off). Subclasses pass it to
        their training loops, which save into it and resume from it."""
        from augment.planners.checkpoint import CHECKPOINT_SECONDS, TrainingCheckpoint

        if self._resume_dir is None:
            return None
        every = CHECKPOINT_SECONDS if self.checkpoint_seconds is None else self.checkpoint_seconds
        return TrainingCheckpoint(self._resume_dir / f"{part}.pt", every_seconds=every)

    def cache_key(self) -> str:
        """sha256 (first 12 hex) of the planner name, the config's training fields and the dependencies."""
        train_json = (self.config.training_json() if hasattr(self.config, "training_json")
                      else _jsonable(self.config))
        data = {"planner": self.name, "config": train_json, "depends": self.dependency_hashes()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def fit(self, dataset: OfflineDataset, *, cache: bool = True) -> None:
        """Train on ``dataset`` or load from the cache keyed by (dataset hash, :meth:`cache_key`).

        A cached fit that is killed mid-training leaves checkpoints (:meth:`training_checkpoint`); the
        next fit of the same key continues from them and removes them once the model is saved."""
        from augment.cache import load_or_train
        from augment.planners.checkpoint import remove_resume_dir, resume_dir

        self._attach_dataset(dataset)
        self.prepare(dataset)
        if not cache:
            self.train_record = self.train_models(dataset)
            return
        target = planner_cache_dir(self.name, dataset, self.cache_key())

        def train() -> Planner:
            self._resume_dir = resume_dir(target)
            try:
                self.train_record = self.train_models(dataset)
            finally:
                self._resume_dir = None
            return self

        _, loaded = load_or_train(target, complete=PLANNER_MARKER, load=self._load_into_self, train=train,
                                  save=lambda planner, d: planner.save(d))
        remove_resume_dir(target)  # the model is in the cache now (or was): its checkpoints are spent
        self.from_cache = loaded
        self.cache_path = target

    def _load_into_self(self, directory: Path) -> Planner:
        meta = json.loads((Path(directory) / PLANNER_MARKER).read_text())
        self.train_record = dict(meta.get("train_record", {}))
        self.load_models(Path(directory))
        return self

    # -- Generator --------------------------------------------------------------------------------------
    def store_attrs(self) -> dict[str, Any]:
        """Provenance for a store of generated data (``generator_name`` / ``generator_config`` / env)."""
        return {"generator_name": self.name, "env_id": self.env_id,
                "generator_config": {"planner": self.name, "dataset": self.dataset_name,
                                     **(self.config.to_json() if hasattr(self.config, "to_json")
                                        else _jsonable(self.config))}}

    def generate(self, n: int, policy: Policy | None = None, rng: np.random.Generator | None = None, *,
                 round: int = 0, learner_step: int = 0) -> TrajectoryBatch:
        """``n`` plans from real start states, rewards from R-hat, cut at the first terminal (``policy``
        is ignored: the planner acts itself). ``rng`` draws the start states and the planning noise."""
        from augment.generators.dydiff import finite_rows, kept_batch

        if self.start_states is None:
            raise UserInputError(f"planner '{self.name}': call fit(dataset) before generate()")
        if n < 1:
            raise UserInputError(f"generate needs n >= 1, got {n}")
        rng = rng if rng is not None else self.rng
        start_index = rng.integers(0, self.start_states.shape[0], size=n).astype(np.int64)
        plan = self.plan_trajectories(self.start_states[start_index], rng)
        states = np.asarray(plan.states, dtype=np.float32)
        actions = np.asarray(plan.actions, dtype=np.float32)
        b, length = actions.shape[:2]
        rewards = self.label_rewards(states, actions)
        flags = self.is_terminal(states[:, 1:].reshape(b * length, -1)).reshape(b, length)
        keep = np.flatnonzero(finite_rows(states, actions, rewards))
        return kept_batch(states, actions, rewards, flags, keep, generator=self.name, round=round,
                          learner_step=learner_step,
                          filter_score=rewards[keep].sum(axis=1).astype(np.float32),
                          start_index=start_index[keep])

    def save(self, directory: Path) -> None:
        """Write planner.json (name, config, sizes, env, training record) and the networks."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.save_models(d)
        meta = {"planner": self.name, "config": self.config.to_json() if hasattr(self.config, "to_json")
                else _jsonable(self.config), "dataset": self.dataset_name, "env_id": self.env_id,
                "obs_dim": self.obs_dim, "act_dim": self.act_dim, "cache_key": self.cache_key(),
                "depends": self.dependency_hashes(), "train_record": self.train_record}
        from baselines.runs import to_jsonable

        (d / PLANNER_MARKER).write_text(json.dumps(to_jsonable(meta), indent=2))

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote (config included; ``device`` stays this planner's own). Start states
        and the world model come from the dataset: call :meth:`fit` (a cache hit) to attach them."""
        d = Path(directory)
        if not (d / PLANNER_MARKER).is_file():
            raise UserInputError(f"{d} holds no {PLANNER_MARKER}; point to a directory written by save()")
        meta = json.loads((d / PLANNER_MARKER).read_text())
        if meta.get("planner") != self.name:
            raise UserInputError(f"{d} holds a '{meta.get('planner')}' planner, not '{self.name}'")
        config = self.config_class.from_json(meta["config"])  # type: ignore[attr-defined]
        if hasattr(config, "device") and hasattr(self.config, "device"):
            config = dataclasses.replace(config, device=self.config.device)
        self.config = config
        self.dataset_name, self.env_id = meta.get("dataset", ""), meta.get("env_id")
        self.obs_dim, self.act_dim = int(meta["obs_dim"]), int(meta["act_dim"])
        self._load_into_self(d)
