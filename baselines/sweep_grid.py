"""The grid of a sweep: datasets x learners x arms x seeds, read from YAML or options, and its layout.

A :class:`SweepSpec` says what to run (the grid, one budget profile with TrainConfig overrides, the
score metric, retries, what one run needs); :class:`EngineOptions` says where (local pool or Ray). The
spec expands to :class:`Cell` s, one per run, in seed-major order (every arm of seed 0, then seed 1, ...)
so that complete comparisons build up while a sweep runs.

Layout under the run root (``augment compare`` reads the same ``<task>/runs/<arm>/seed_<s>`` folders)::

    ROOT/sweep.json                          the spec and every cell of the latest invocation
    ROOT/cells/<cell id>.json                a cell's state: status and every attempt with its error
    ROOT/<dataset>/<learner>/runs/<arm>/seed_<s>/   the run directory (config, metrics, results, ...)
    ROOT/<dataset>/<learner>/compare.{md,csv,json}, curves.png, finals.png
    ROOT/summary.{md,json,png}               all tasks: IQM over tasks, P(improvement) over the reference
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.compare import safe_name
from baselines.learner_names import check_learner
from stores.errors import UserInputError, did_you_mean

#: Arm prefixes that train no shared model (no world or diffusion model cache): never warmed up.
MODEL_FREE_ARMS: tuple[str, ...] = ("base", "synthetic")
#: Engines a sweep runs on.
ENGINES: tuple[str, ...] = ("local", "ray")
#: TrainConfig fields a sweep may not override (the grid sets them).
GRID_FIELDS: tuple[str, ...] = ("seed", "profile")
#: File suffixes that make a dataset entry a file (labelled by its stem).
DATASET_FILE_SUFFIXES: tuple[str, ...] = (".npz", ".hdf5", ".h5")


@dataclass(frozen=True)
class RunResources:
    """What one run reserves: ``cpus`` (Ray ``num_cpus``; the run uses ``max(1, int(cpus))`` torch
    threads on every engine, so results do not depend on the engine) and ``gpus`` (Ray ``num_gpus``;
    > 0 makes the learner's device ``cuda:0`` unless the overrides name one)."""

    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs.

    root: the run root (every run, table and state file lands under it). datasets / arms / learners /
    seeds: the grid (the first arm is the reference of every difference and P(improvement)).
    profile: budget profile of every run; overrides: TrainConfig fields for every run (steps, eval_every,
    ...). metric: per-seed score, ``last5`` or ``final``. retries: extra attempts of a failed run in one
    invocation. resources: what one run reserves. warmup: run the first cell of each (dataset, arm) that
    trains shared models alone before its other seeds, so those seeds load the cache instead of waiting.
    """

    root: Path
    datasets: tuple[str, ...]
    arms: tuple[str, ...] = ("base",)
    learners: tuple[str, ...] = ("td3bc",)
    seeds: tuple[int, ...] = (0, 1, 2)
    profile: str = "cpu"
    overrides: dict[str, Any] = field(default_factory=dict)
    metric: str = "last5"
    retries: int = 1
    resources: RunResources = field(default_factory=RunResources)
    warmup: bool = True

    def validate(self) -> None:
        """Raise :class:`UserInputError` for a grid that cannot run."""
        from augment.profiles import resolve_profile
        from baselines.loop import TrainConfig

        for name in ("datasets", "arms", "learners", "seeds"):
            values = getattr(self, name)
            if not values:
                raise UserInputError(f"the sweep needs at least one of '{name}'")
            if len(set(values)) != len(values):
                raise UserInputError(f"'{name}' repeats an entry: {list(values)}")
        for learner in self.learners:
            check_learner(learner)
        resolve_profile(self.profile)
        if self.metric not in ("last5", "final"):
            raise UserInputError(f"metric must be 'last5' or 'final', got '{self.metric}'")
        if self.retries < 0:
            raise UserInputError(f"retries must be >= 0, got {self.retries}")
        if self.resources.cpus <= 0 or self.resources.gpus < 0:
            raise UserInputError(f"resources need cpus > 0 and gpus >= 0, got {self.resources}")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in self.overrides:
            if key in GRID_FIELDS:
                raise UserInputError(f"overrides may not set '{key}': the grid sets it (seeds:, profile:)")
            if key not in known:
                raise UserInputError(did_you_mean(key, sorted(known - set(GRID_FIELDS)),
                                                  hint="overrides are TrainConfig fields"))
        TrainConfig.for_profile(self.profile, **self.overrides).validate()
        labels = [dataset_label(d) for d in self.datasets]
        if len(set(labels)) != len(labels):
            raise UserInputError(f"two datasets share a folder name ({labels}); rename one of the files")

    def run_overrides(self) -> dict[str, Any]:
        """The TrainConfig overrides every run gets (``device`` set to ``cuda:0`` when gpus > 0)."""
        out = {k: v for k, v in self.overrides.items() if v is not None}
        if self.resources.gpus > 0 and "device" not in out:
            out["device"] = "cuda:0"
        return out

    def budget(self) -> dict[str, Any]:
        """What every run of a root must share (checked when a root is swept again)."""
        return {"profile": self.profile, "overrides": {k: v for k, v in sorted(self.run_overrides().items())}}

    def to_json(self) -> dict[str, Any]:
        return {"root": str(self.root), "datasets": list(self.datasets), "arms": list(self.arms),
                "learners": list(self.learners), "seeds": list(self.seeds), "profile": self.profile,
                "overrides": dict(self.overrides), "metric": self.metric, "retries": self.retries,
                "resources": dataclasses.asdict(self.resources), "warmup": self.warmup}


@dataclass(frozen=True)
class EngineOptions:
    """Where a sweep runs: ``engine`` ``local`` (``jobs`` spawned processes; 1 = in this process) or
    ``ray`` (each run one Ray task; ``address`` of a running cluster, None = start or join as
    ``ray.init()`` does)."""

    engine: str = "local"
    jobs: int = 1
    address: str | None = None

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise UserInputError(did_you_mean(self.engine, ENGINES, hint="engines are: local, ray"))
        if self.jobs < 1:
            raise UserInputError(f"jobs must be >= 1, got {self.jobs}")
        if self.address and self.engine != "ray":
            raise UserInputError("address is for the ray engine: add --engine ray (engine: ray)")


@dataclass(frozen=True)
class Cell:
    """One run of the grid. dataset: as given (files as absolute paths); arm: the spec; arm_name: the
    resolved arm's name (its folder); label: the dataset's folder name."""

    dataset: str
    label: str
    learner: str
    arm: str
    arm_name: str
    seed: int

    @property
    def cell_id(self) -> str:
        return f"{self.label}__{self.learner}__{safe_name(self.arm_name)}__seed{self.seed}"

    @property
    def task(self) -> tuple[str, str]:
        """(dataset label, learner): the folder of one comparison."""
        return self.label, self.learner

    def task_dir(self, root: Path) -> Path:
        return Path(root) / self.label / self.learner

    def run_dir(self, root: Path) -> Path:
        return self.task_dir(root) / "runs" / safe_name(self.arm_name) / f"seed_{self.seed}"

    def describe(self) -> str:
        return f"{self.label} {self.learner} {self.arm_name} seed {self.seed}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dataset_label(dataset: str) -> str:
    """Folder name of a dataset: a file's stem, else the (sanitised) name."""
    path = Path(dataset)
    if path.suffix.lower() in DATASET_FILE_SUFFIXES or path.exists():
        return safe_name(path.stem)
    return safe_name(dataset)


def is_file_dataset(dataset: str) -> bool:
    return Path(dataset).suffix.lower() in DATASET_FILE_SUFFIXES


def expand(spec: SweepSpec, arm_names: Mapping[str, str]) -> list[Cell]:
    """Every cell of the grid, seed-major: seeds, then datasets, learners, arms (in the spec's order).

    arm_names: arm spec -> resolved arm name (:func:`baselines.compare.resolve_arm`).
    """
    names = [arm_names[a] for a in spec.arms]
    if len(set(names)) != len(names):
        raise UserInputError(f"arm names repeat: {names}")
    return [Cell(dataset=d, label=dataset_label(d), learner=learner, arm=a, arm_name=arm_names[a], seed=s)
            for s in spec.seeds for d in spec.datasets for learner in spec.learners for a in spec.arms]


def warmup_key(cell: Cell) -> tuple[str, str] | None:
    """(dataset, arm) whose cells share trained models, or None for a model-free arm (base, synthetic)."""
    prefix = cell.arm.partition(":")[0]
    return None if prefix in MODEL_FREE_ARMS else (cell.dataset, cell.arm)


@dataclass
class WarmupPlan:
    """Which cells start at once (``ready``) and which wait (``held``, per warm-up key) for their group's
    first cell (``leaders``: cell id -> key) to end."""

    ready: list[Cell]
    held: dict[tuple[str, str], list[Cell]]
    leaders: dict[str, tuple[str, str]]


def warmup_plan(todo: Sequence[Cell], *, finished: set[tuple[str, str]], enabled: bool = True) -> WarmupPlan:
    """Split ``todo`` (in order) into cells to start now and cells held behind their group's leader.

    finished: warm-up keys with a finished cell already (their models are cached: nothing is held).
    """
    plan = WarmupPlan(ready=[], held={}, leaders={})
    for cell in todo:
        key = warmup_key(cell)
        if not enabled or key is None or key in finished:
            plan.ready.append(cell)
        elif key not in plan.held:
            plan.held[key] = []
            plan.leaders[cell.cell_id] = key
            plan.ready.append(cell)
        else:
            plan.held[key].append(cell)
    return plan


# ------------------------------------------------------------------------------------------- parsing
SPEC_KEYS: tuple[str, ...] = ("root", "datasets", "arms", "learners", "seeds", "profile", "overrides",
                              "metric", "retries", "resources", "warmup", "engine", "jobs", "address")


def parse_seeds(value: Any) -> tuple[int, ...]:
    """``[0, 1, 2]``, ``"0,1,2"`` or ``"0-4"`` (inclusive) -> a tuple of ints."""
    if isinstance(value, bool):
        raise UserInputError(f"seeds: give a list [0, 1, 2] or a range '0-4', got {value!r}")
    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        text = value.strip()
        try:
            if "-" in text[1:] and "," not in text:
                lo, hi = (int(t) for t in text.split("-", 1))
                if hi < lo:
                    raise ValueError
                return tuple(range(lo, hi + 1))
            return tuple(int(t) for t in text.split(",") if t.strip())
        except ValueError as exc:
            raise UserInputError(f"seeds: give a list [0, 1, 2] or a range '0-4', got '{value}'") from exc
    if isinstance(value, Iterable):
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise UserInputError(f"seeds must be integers, got {value!r}") from exc
    raise UserInputError(f"seeds: give a list [0, 1, 2] or a range '0-4', got {value!r}")


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise UserInputError(f"'{key}' must be a name or a list of names, got {value!r}")


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The mapping in a sweep YAML file (keys: :data:`SPEC_KEYS`)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"sweep file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserInputError(f"{path} must hold a mapping (root:, datasets:, arms:, ...)")
    return data


def build(options: Mapping[str, Any], *, default_root: Path | None = None) -> tuple[SweepSpec, EngineOptions]:
    """A validated (SweepSpec, EngineOptions) from a mapping (a YAML file's, with command-line values
    merged in). Relative paths (root, dataset files) are taken from the current directory."""
    from augment.profiles import resolve_profile

    unknown = [k for k in options if k not in SPEC_KEYS]
    if unknown:
        raise UserInputError(did_you_mean(unknown[0], SPEC_KEYS,
                                          hint=f"sweep keys are: {', '.join(SPEC_KEYS)}"))
    if options.get("datasets") is None:
        raise UserInputError("the sweep needs datasets: (YAML) or --dataset (command line)")
    root = options.get("root") or default_root
    if root is None:
        raise UserInputError("the sweep needs a run root: root: (YAML) or --root (command line)")
    datasets = tuple(str(Path(d).resolve()) if is_file_dataset(d) or Path(d).exists() else d
                     for d in _strings("datasets", options["datasets"]))
    learners = _strings("learners", options.get("learners") or ("td3bc",))
    resources = options.get("resources") or {}
    if not isinstance(resources, Mapping) or set(resources) - {"cpus", "gpus"}:
        raise UserInputError(f"resources: takes cpus: and gpus: (per run), got {resources!r}")
    overrides = options.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise UserInputError(f"overrides: must map TrainConfig fields to values, got {overrides!r}")
    try:
        spec = SweepSpec(
            root=Path(root).expanduser().resolve(), datasets=datasets,
            arms=_strings("arms", options.get("arms") or ("base",)), learners=learners,
            seeds=parse_seeds(options.get("seeds", (0, 1, 2))),
            profile=resolve_profile(options.get("profile")), overrides=dict(overrides),
            metric=str(options.get("metric") or "last5"), retries=int(options.get("retries", 1)),
            resources=RunResources(cpus=float(resources.get("cpus", 1.0)),
                                   gpus=float(resources.get("gpus", 0.0))),
            warmup=bool(options.get("warmup", True)))
        engine = EngineOptions(engine=str(options.get("engine") or "local"),
                               jobs=int(options.get("jobs") or 1), address=options.get("address") or None)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"bad sweep setting: {exc}") from exc
    spec.validate()
    engine.validate()
    return spec, engine
