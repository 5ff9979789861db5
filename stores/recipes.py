"""Build D4RL-style datasets locally when no D4RL file or Minari dataset is on the machine.

Locomotion (``hopper`` / ``halfcheetah`` / ``walker2d``; :mod:`stores.recipe_training`): an online agent,
d3rlpy's SAC as in D4RL (TD3 on request), trains in Gymnasium MuJoCo with one update per env step and is
evaluated every ``eval_every`` steps over ``eval_episodes`` episodes. The kinds:

* ``random``: rollouts of a uniform random policy (no training needed);
* ``medium``: rollouts of the policy snapshot taken at the **first evaluation that reaches the medium
  threshold** (normalized score ``medium_score`` = 33, about a third of expert, as D4RL stopped its SAC
  run); a step cap only says the threshold was not reached: the snapshot is then taken at the cap and
  the output and the metadata say so (``threshold_reached: false``, ``stopped_by: "step cap"``);
* ``medium-replay``: the whole replay buffer (every env step, exploration included) up to that snapshot;
* ``expert``: rollouts of the snapshot at the first evaluation reaching ``expert_score`` (90), or at the
  expert cap (said loudly likewise);
* ``medium-expert``: medium followed by expert.

maze2d (``maze2d-{umaze,medium,large}``; :mod:`stores.maze`): D4RL's waypoint controller drives the
point mass of gymnasium-robotics' PointMaze to random goals; one dataset per maze.

A run asked for random/medium/medium-replay stops at the medium snapshot; one asked for expert or
medium-expert trains on and caches all four trained kinds. Every dataset is cached as a Minari dataset
``diffusion-augment/<profile>/<name>[-seedS]-v<RECIPE_VERSION>`` in the local Minari root; it is written
into a hidden temporary root beside the cache and moved into place only when complete. A lock file
serialises builds of the same run across processes; the locomotion training keeps a resumable checkpoint
(:mod:`stores.recipe_training`) so a killed build continues where it stopped. Datasets of older recipe
versions stay where they are under their own ids (``...-v0``) and are still found by
:func:`cached_recipe_id` when no current-version build exists.

Every build first says what it is about to do (:func:`announcement`): that no D4RL file or Minari
dataset was found, that the recipe is built instead, how long it should take (the budget over a
throughput measured on the spot), and where the result will be cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from augment.profiles import resolve_profile
from stores.errors import UserInputError
from stores.maze import maze_budget_for
from stores.names import DatasetName, parse_name
from stores.paths import augment_home, minari_root
from stores.recipe_budgets import RecipeBudget, budget_for
from stores.recipe_rollouts import collect_rollouts, evaluate_returns, make_env, uniform_policy
from stores.recipe_training import RunResult, Snapshot, train_online
from stores.schema import Episode, OfflineDataset
from stores.scores import normalized_score
from stores.sources import (
    ensure_minari_namespace,
    minari_dataset_dir,
    minari_exists,
    read_minari,
    write_minari,
)

#: v0: TD3, snapshot at a 5-episode evaluation, no checkpoints. v1: SAC, 10-episode evaluations, expert
#: threshold, checkpoints, maze2d.
RECIPE_VERSION = 1
NAMESPACE = "diffusion-augment"

__all__ = ["NAMESPACE", "RECIPE_VERSION", "RecipeBudget", "announcement", "budget_for", "build_recipe",
           "cached_recipe_id", "collect_rollouts", "evaluate_returns", "maze_budget_for", "recipe_cached",
           "recipe_dataset_id"]

log = logging.getLogger(__name__)


def _say(line: str) -> None:
    """One line to stderr (stdout stays clean for tables and --json)."""
    print(line, file=sys.stderr, flush=True)


def recipe_dataset_id(name: str, *, profile: str, seed: int = 0, version: int = RECIPE_VERSION) -> str:
    """Minari id of a recipe dataset: ``diffusion-augment/<profile>/<name>[-seed<S>]-v<version>``."""
    canonical = parse_name(name).name
    profile = resolve_profile(profile)
    suffix = "" if seed == 0 else f"-seed{seed}"
    return f"{NAMESPACE}/{profile}/{canonical}{suffix}-v{version}"


def recipe_cached(name: str, *, profile: str, seed: int = 0) -> bool:
    """True when the current recipe version's dataset is complete in the local Minari root."""
    return minari_exists(recipe_dataset_id(name, profile=profile, seed=seed))


def cached_recipe_id(name: str, *, profile: str, seed: int = 0) -> tuple[str, int] | None:
    """(Minari id, recipe version) of the newest cached build of ``name``: the current version when it is
    built, else the newest older version on disk (kept loadable under its own id), else None."""
    for version in range(RECIPE_VERSION, -1, -1):
        dataset_id = recipe_dataset_id(name, profile=profile, seed=seed, version=version)
        if minari_exists(dataset_id):
            return dataset_id, version
    return None


def checkpoint_path(parsed: DatasetName, profile: str, seed: int) -> Path:
    """Where the resumable checkpoint of a locomotion run lives (deleted once the run is cached)."""
    return (augment_home() / "recipe-checkpoints"
            / f"{parsed.run_key}-{profile}-seed{seed}-v{RECIPE_VERSION}.npz")


def build_recipe(name: str, *, profile: str, seed: int = 0, progress: bool = True,
                 force: bool = False, announce: bool = True) -> OfflineDataset:
    """Build (or load from the cache) the recipe dataset ``name`` for ``profile`` and ``seed``.

    name: a registered name or alias (``hopper-medium-replay``, ``hopper-mr``, ``maze2d-umaze``). force:
    rebuild even when cached (the old cache entries of this run are replaced only once the new ones are
    complete). announce: print the four lines of :func:`announcement` to stderr before building.
    Returns the dataset as read back from its Minari cache entry (provenance holds the recipe metadata).
    """
    parsed = parse_name(name)
    profile = resolve_profile(profile)
    if seed < 0:
        raise UserInputError(f"seed must be >= 0, got {seed}")
    dataset_id = recipe_dataset_id(parsed.name, profile=profile, seed=seed)
    if not force and minari_exists(dataset_id):
        return read_minari(dataset_id, name=parsed.name)
    with _build_lock(parsed.run_key, profile, seed, progress=progress):
        if not force and minari_exists(dataset_id):  # another process built it while we waited
            return read_minari(dataset_id, name=parsed.name)
        if announce:
            for line in announcement(parsed.name, profile=profile, seed=seed):
                _say(line)
        produced = _produce(parsed, profile=profile, seed=seed, progress=progress)
        _commit(produced, replace=force)
        if not parsed.is_maze and parsed.kind != "random":
            checkpoint_path(parsed, profile, seed).unlink(missing_ok=True)
    return read_minari(dataset_id, name=parsed.name)


# --------------------------------------------------------------------------- saying what happens


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _measure_locomotion(env_id: str, budget: RecipeBudget, repeats: int = 24) -> dict[str, float]:
    """Seconds per env step, per single action and per update of this budget's agent, timed on the spot
    (a few dozen updates on random data: about a second)."""
    from stores.recipe_agents import OnlineAgent

    env = make_env(env_id, budget.max_episode_steps)
    try:
        obs_dim, act_dim = int(env.observation_space.shape[0]), int(env.action_space.shape[0])
        agent = OnlineAgent(budget.agent_config, obs_dim, act_dim, seed=12345)
        rng = np.random.default_rng(0)
        n = budget.batch_size
        batch = (rng.standard_normal((n, obs_dim)).astype(np.float32),
                 rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
                 rng.standard_normal(n).astype(np.float32),
                 rng.standard_normal((n, obs_dim)).astype(np.float32), np.zeros(n, dtype=bool))
        obs = np.asarray(env.reset(seed=0)[0], dtype=np.float32)
        for _ in range(3):
            agent.update(*batch)
            agent.explore(obs, rng)
        t0 = time.perf_counter()
        for _ in range(repeats):
            agent.update(*batch)
        update_s = (time.perf_counter() - t0) / repeats
        t0 = time.perf_counter()
        for _ in range(repeats):
            agent.explore(obs, rng)
        act_s = (time.perf_counter() - t0) / repeats
        t0 = time.perf_counter()
        for _ in range(200):
            o, _, term, trunc, _ = env.step(rng.uniform(-1, 1, act_dim))
            if term or trunc:
                env.reset()
        env_s = (time.perf_counter() - t0) / 200
    finally:
        env.close()
    return {"update_s": update_s, "act_s": act_s, "env_s": env_s}


def estimate_locomotion_seconds(budget: RecipeBudget, costs: dict[str, float], *, until_expert: bool,
                                start_step: int = 0) -> float:
    """Upper estimate (s) of a run to its step cap from per-operation costs (``env_s``, ``act_s``,
    ``update_s`` seconds): training steps, evaluations at full episode length, and the rollouts."""
    cap = max(budget.expert_steps, budget.medium_max_steps) if until_expert else budget.medium_max_steps
    warm_left = max(0, budget.warmup_steps - start_step)
    trained_left = max(0, cap - max(start_step, budget.warmup_steps))
    train = warm_left * costs["env_s"] + trained_left * (costs["env_s"] + costs["act_s"] + costs["update_s"])
    evals = max(0, cap - max(start_step, budget.warmup_steps)) // budget.eval_every
    per_eval = (budget.eval_episodes * budget.max_episode_steps * costs["env_s"]
                + budget.max_episode_steps * costs["act_s"])
    kinds = 2 if until_expert else 1
    rollouts = kinds * budget.rollout_transitions * (costs["env_s"] + costs["act_s"] / budget.rollout_envs)
    return train + evals * per_eval + rollouts


def _measure_maze(maze: str, short: int = 100, long: int = 2100) -> float:
    """Seconds per controller step in ``maze``: a ``long``-step run minus a ``short`` one, timed on the spot
    after an untimed warm-up run (the difference leaves out making the env; the warm-up takes the first
    call's one-time imports and model compilation, ~0.3 s, which once made the difference negative and the
    estimate "~0 s at 500,000,000 steps/s")."""
    from stores.maze import collect_maze_data

    collect_maze_data(maze, transitions=short, seed=0, progress=False)
    times = []
    for n in (short, long):
        t0 = time.perf_counter()
        collect_maze_data(maze, transitions=n, seed=0, progress=False)
        times.append(time.perf_counter() - t0)
    return max(times[1] - times[0], 1e-6) / (long - short)


def announcement(name: str, *, profile: str, seed: int = 0) -> list[str]:
    """The four lines every recipe build prints first: what was looked for and not found, what is built
    instead, how long it should take (budget over throughput measured now) and where it is cached."""
    from stores.datasets import sources_looked_for

    parsed = parse_name(name)
    profile = resolve_profile(profile)
    dataset_id = recipe_dataset_id(parsed.name, profile=profile, seed=seed)
    lines = [f"{parsed.name}: {sources_looked_for(parsed)}"]
    where = f"cached at: {minari_dataset_dir(dataset_id)} (Minari id {dataset_id})"
    if parsed.is_maze:
        budget = maze_budget_for(profile)
        step_s = _measure_maze(parsed.kind)
        size = budget.size(parsed.kind)
        lines.append("building the project's recipe instead: D4RL's waypoint controller drives the point "
                     f"mass of gymnasium-robotics' PointMaze ({parsed.env_id}) to random goals for {size:,} "
                     f"steps (profile {profile}, seed {seed}).")
        lines.append(f"estimated time: ~{_minutes(size * step_s * 1.1)} (~{1 / step_s:,.0f} controller "
                     "steps/s measured just now).")
        return [*lines, where]
    budget = budget_for(profile)
    if parsed.kind == "random":
        costs = _measure_locomotion(parsed.env_id, budget)
        lines.append(f"building the project's recipe instead: {budget.rollout_transitions:,} steps of a "
                     f"uniform random policy in {parsed.env_id} (profile {profile}, seed {seed}).")
        lines.append(f"estimated time: ~{_minutes(budget.rollout_transitions * costs['env_s'] * 1.2)} "
                     f"(~{1 / costs['env_s']:,.0f} env steps/s measured just now).")
        return [*lines, where]
    until_expert = parsed.kind in ("expert", "medium-expert")
    target, score = ("expert", budget.expert_score) if until_expert else ("medium", budget.medium_score)
    cap = max(budget.expert_steps, budget.medium_max_steps) if until_expert else budget.medium_max_steps
    costs = _measure_locomotion(parsed.env_id, budget)
    ckpt = checkpoint_path(parsed, profile, seed)
    start = _checkpoint_step(ckpt)
    seconds = estimate_locomotion_seconds(budget, costs, until_expert=until_expert, start_step=start)
    rate = 1.0 / (costs["env_s"] + costs["act_s"] + costs["update_s"])
    lines.append(f"building the project's recipe instead: {budget.agent.upper()} trained online in "
                 f"{parsed.env_id} until its evaluation over {budget.eval_episodes} episodes reaches the "
                 f"{target} threshold (normalized {score:g}), at most {cap:,} env steps "
                 f"(profile {profile}, seed {seed}).")
    resume = f"; resuming at env step {start:,} from {ckpt}" if start else (
        f"; a kill resumes from the checkpoint {ckpt}")
    lines.append(f"estimated time: up to {_minutes(seconds)} if it runs to the cap (~{rate:,.0f} training "
                 f"steps/s measured just now; evaluations and {budget.rollout_transitions:,}-step rollouts "
                 f"included); it stops at the first evaluation that reaches the threshold{resume}.")
    return [*lines, where]


def _checkpoint_step(path: Path) -> int:
    """The env step a checkpoint holds (0 when there is none)."""
    from stores.recipe_training import load_checkpoint

    loaded = load_checkpoint(path) if path.exists() else None
    return int(loaded[0]["t"]) if loaded is not None else 0


# --------------------------------------------------------------------------- locking and committing


@contextlib.contextmanager
def _build_lock(run_key: str, profile: str, seed: int, *, progress: bool) -> Iterator[None]:
    """Exclusive inter-process lock per (run key, profile, seed) recipe run."""
    lock_dir = augment_home() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"recipe-{run_key}-{profile}-seed{seed}-v{RECIPE_VERSION}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                _say(f"waiting for another process building the {run_key} recipe ({profile}, seed {seed})...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _commit(produced: dict[str, tuple[OfflineDataset, dict[str, Any]]], *, replace: bool) -> None:
    """Write every produced dataset into a hidden temporary root, then move each into the Minari root.

    produced: dataset id -> (dataset, metadata). Existing entries are kept unless ``replace``.
    """
    root = minari_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp_root = root / f".build-{uuid.uuid4().hex[:12]}"
    try:
        for dataset_id, (dataset, metadata) in produced.items():
            if minari_exists(dataset_id) and not replace:
                continue
            write_minari(dataset, dataset_id, root=tmp_root, metadata=metadata,
                         description=f"{dataset.name}: diffusion-augment recipe v{RECIPE_VERSION} "
                                     f"({metadata['profile']}, seed {metadata['seed']})")
        for dataset_id in produced:
            src = tmp_root / dataset_id
            if not src.exists():
                continue
            ensure_minari_namespace(root, dataset_id.rsplit("/", 1)[0],
                                    description="datasets built by diffusion-augment recipes")
            dst = root / dataset_id
            if dst.exists():
                old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(dst, old)
                os.replace(src, dst)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(src, dst)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


# --------------------------------------------------------------------------- producing the datasets


def _versions() -> dict[str, str]:
    import d3rlpy
    import gymnasium
    import minari
    import mujoco

    out = {"d3rlpy": d3rlpy.__version__, "gymnasium": gymnasium.__version__, "minari": minari.__version__,
           "mujoco": mujoco.__version__}
    with contextlib.suppress(ImportError):
        from importlib.metadata import version

        out["gymnasium_robotics"] = version("gymnasium-robotics")
    return out


# The variables that pin which CPU kernels MKL, ATen and oneDNN choose; the float arithmetic of a torch
# recipe (and so its data) follows those kernels (docs/datasets.md, "Guarantees").
KERNEL_VARIABLES: tuple[str, ...] = (
    "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``; None if unknown."""
    import platform

    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def machine_record() -> dict[str, Any]:
    """What decides a build's float arithmetic on this machine: the CPU model, the kernel family torch
    dispatches to (``torch.backends.cpu.get_cpu_capability()``), torch's thread count and the kernel
    variables as set (None when unset). A build is reproducible only where these match (or where the
    variables pin them); kept in the metadata so two builds that differ can be told apart."""
    import torch

    return {"cpu": _cpu_model(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(),
            "variables": {name: os.environ.get(name) for name in KERNEL_VARIABLES}}


def _metadata(parsed: DatasetName, kind: str, profile: str, seed: int, **extra: Any) -> dict[str, Any]:
    md: dict[str, Any] = {
        "recipe_version": RECIPE_VERSION, "name": f"{parsed.family}-{kind}", "family": parsed.family,
        "kind": kind, "env_id": parsed.env_id, "profile": profile, "seed": seed, "versions": _versions(),
        "machine": machine_record(),
    }
    md.update(extra)
    return md


def _score(value: float | None, score_name: str) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(normalized_score(value, score_name))


def snapshot_metadata(snap: Snapshot, score_name: str) -> dict[str, Any]:
    """The threshold and behaviour fields of a snapshot, as stored in the dataset metadata."""
    return {
        "threshold": snap.name, "threshold_score": snap.threshold_score,
        "threshold_return": snap.threshold_return, "threshold_reached": snap.reached,
        "threshold_step": snap.step if snap.reached else None, "stopped_by": snap.stopped_by,
        "snapshot_step": snap.step, "env_steps": snap.step,
        "behaviour_eval_return": snap.eval_mean, "behaviour_eval_std": snap.eval_std,
        "behaviour_eval_episodes": snap.eval_episodes,
        "behaviour_eval_score": _score(snap.eval_mean, score_name),
        "behaviour_eval_policy": "deterministic policy of the snapshot",
        "wall_time_s": snap.wall_s,
    }


def _produce(parsed: DatasetName, *, profile: str, seed: int, progress: bool,
             budget: RecipeBudget | None = None) -> dict[str, tuple[OfflineDataset, dict[str, Any]]]:
    """Run what the requested kind needs; return every dataset produced, by Minari id.

    budget: override the profile's locomotion budget (tests); the ids still name ``profile``.
    """
    produced: dict[str, tuple[OfflineDataset, dict[str, Any]]] = {}

    def add(name: str, episodes: list[Episode], md: dict[str, Any]) -> None:
        ds = OfflineDataset(name=name, episodes=tuple(episodes), env_id=parsed.env_id)
        ds.validate()
        md = dict(md, episodes=ds.num_episodes, transitions=ds.num_transitions,
                  data_mean_return=ds.stats.return_mean)
        md.setdefault("data_score", _score(ds.stats.return_mean, parsed.score_name))
        produced[recipe_dataset_id(name, profile=profile, seed=seed)] = (ds, md)

    if parsed.is_maze:
        from stores.maze import build_maze_episodes

        episodes, md = build_maze_episodes(parsed.kind, profile=profile, seed=seed, progress=progress)
        add(parsed.name, episodes, _metadata(
            parsed, parsed.kind, profile, seed, recipe="waypoint-controller", **md,
            data_score=None, data_score_note="segments of one continuing controller run, not evaluation "
                                             "episodes: their mean return is no normalized score"))
        return produced

    budget = budget or budget_for(profile)
    if parsed.kind == "random":
        started = time.perf_counter()
        env = make_env(parsed.env_id, budget.max_episode_steps)
        act_dim = int(env.action_space.shape[0])
        env.close()
        episodes = collect_rollouts(uniform_policy(np.random.default_rng(seed), act_dim), parsed.env_id,
                                    transitions=budget.rollout_transitions, num_envs=budget.rollout_envs,
                                    seed=seed * 7919 + 400_000, max_episode_steps=budget.max_episode_steps,
                                    desc="random rollouts", progress=progress)
        add(parsed.name, episodes, _metadata(parsed, "random", profile, seed, recipe="uniform-random",
                                             budget=budget.to_json(), env_steps=0,
                                             behaviour="uniform random policy",
                                             wall_time_s=time.perf_counter() - started))
        return produced

    until_expert = parsed.kind in ("expert", "medium-expert")
    fingerprint = {"recipe_version": RECIPE_VERSION, "env_id": parsed.env_id, "seed": seed,
                   "budget": budget.to_json()}
    run = train_online(parsed.env_id, parsed.score_name, budget, seed=seed, until_expert=until_expert,
                       checkpoint_path=checkpoint_path(parsed, profile, seed), fingerprint=fingerprint,
                       progress=progress, say=_say)
    _record_speed(parsed.env_id, budget, run)
    common = {"recipe": f"d3rlpy-{budget.agent}-online", "agent": budget.agent, "budget": budget.to_json(),
              "eval_history": [[s, m, d] for s, m, d in run.eval_history], "resumed_from": run.resumed_from,
              "train_steps_per_s": run.steps_per_s, "wall_steps_per_s": run.wall_steps_per_s,
              "final_step": run.final_step, "rollout_noise": budget.rollout_noise if budget.agent == "td3"
              else "SAC policy samples", "medium_threshold_score": budget.medium_score}
    medium = run.medium_snapshot
    assert medium is not None
    medium_md = dict(common, **snapshot_metadata(medium, parsed.score_name),
                     medium_threshold_return=medium.threshold_return)
    add(f"{parsed.family}-medium-replay", run.medium_replay,
        _metadata(parsed, "medium-replay", profile, seed, **medium_md))
    add(f"{parsed.family}-medium", run.medium, _metadata(parsed, "medium", profile, seed, **medium_md))
    if until_expert:
        expert = run.expert_snapshot
        assert expert is not None
        expert_md = dict(common, **snapshot_metadata(expert, parsed.score_name),
                         medium_threshold_return=medium.threshold_return,
                         medium_snapshot=snapshot_metadata(medium, parsed.score_name))
        add(f"{parsed.family}-expert", run.expert, _metadata(parsed, "expert", profile, seed, **expert_md))
        add(f"{parsed.family}-medium-expert", run.medium + run.expert,
            _metadata(parsed, "medium-expert", profile, seed, **expert_md))
    _report(run, parsed, _say)
    return produced


def _report(run: RunResult, parsed: DatasetName, say: Callable[[str], None]) -> None:
    """One loud line per snapshot that stopped at a step cap (repeated after the progress bars)."""
    for snap in (run.medium_snapshot, run.expert_snapshot):
        if snap is not None and not snap.reached:
            say(f"WARNING: {parsed.family} {snap.name} threshold NOT reached: stopped by the "
                f"{snap.step:,}-step cap at eval return {snap.eval_mean:.1f} (normalized "
                f"{normalized_score(snap.eval_mean, parsed.score_name):.1f} < {snap.threshold_score:g}).")


def _record_speed(env_id: str, budget: RecipeBudget, run: RunResult) -> None:
    """Append the run's measured throughput to ``$AUGMENT_HOME/recipe-speed.jsonl`` (for the record)."""
    line = {"env_id": env_id, "agent": budget.agent, "hidden": list(budget.hidden),
            "batch": budget.batch_size,
            "final_step": run.final_step, "train_steps_per_s": run.steps_per_s,
            "wall_steps_per_s": run.wall_steps_per_s, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    with contextlib.suppress(OSError), open(augment_home() / "recipe-speed.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
