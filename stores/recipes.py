"""Build D4RL-style datasets locally: online TD3 in Gymnasium MuJoCo, every transition recorded.

One recipe run (per env, profile and seed) trains d3rlpy's TD3 online with one gradient update per env
step after ``warmup_steps`` uniform-random steps, and evaluates the deterministic policy every
``eval_every`` steps on ``eval_episodes`` episodes. It produces the D4RL kinds:

* ``random``: rollouts of a uniform random policy (no training needed);
* ``medium``: rollouts of the policy snapshot taken at the first evaluation whose mean return reaches the
  medium threshold (normalized score ``medium_score``, Eq. (1) of :mod:`stores.scores`; D4RL stopped its
  SAC run at about a third of expert), or at ``medium_max_steps`` when the threshold is never reached
  (then the metadata says ``threshold_reached: false``);
* ``medium-replay``: the whole replay buffer (every env step, exploration noise included) up to that
  snapshot;
* ``expert``: rollouts of the final policy after ``expert_steps`` env steps;
* ``medium-expert``: medium followed by expert.

A run asked for random/medium/medium-replay stops at the medium snapshot; one asked for expert or
medium-expert trains on to ``expert_steps`` and caches all four trained kinds. Data rollouts add the same
Gaussian exploration noise as training (``rollout_noise``, like D4RL's stochastic SAC policies).

Every dataset is cached as a Minari dataset ``diffusion-augment/<profile>/<name>[-seedS]-v<RECIPE_VERSION>``
in the local Minari root; it is written into a hidden temporary root beside the cache and moved into place
only when complete, so an interrupted build leaves nothing half-written. A lock file serialises builds of
the same run across processes. Same env, profile and seed -> the same arrays (and content hash) on the
same machine: env resets, exploration noise, d3rlpy and torch are all seeded.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augment.profiles import by_profile, resolve_profile
from stores.errors import UserInputError
from stores.names import DatasetName, parse_name
from stores.paths import augment_home, minari_root
from stores.schema import Episode, OfflineDataset
from stores.scores import normalized_score, return_for_score
from stores.sources import minari_exists, minari_root_env, read_minari, write_minari

RECIPE_VERSION = 0
NAMESPACE = "diffusion-augment"

log = logging.getLogger(__name__)

ActFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RecipeBudget:
    """Budget of one recipe run (env steps are single environment transitions).

    warmup_steps: uniform-random env steps before updates start. medium_max_steps: cap on training env
    steps while waiting for the medium threshold. expert_steps: training env steps for the expert policy.
    eval_every / eval_episodes: evaluation schedule. rollout_transitions: size of the random, medium and
    expert datasets (transitions). rollout_envs: environments stepped together for rollouts.
    max_episode_steps: time limit per episode. hidden: actor/critic MLP widths. batch_size: TD3 batch.
    medium_score: normalized score of the medium threshold. exploration_noise / rollout_noise: std of the
    Gaussian added to the [-1, 1] actions while training / while recording rollouts.
    """

    warmup_steps: int
    medium_max_steps: int
    expert_steps: int
    eval_every: int
    eval_episodes: int
    rollout_transitions: int
    rollout_envs: int
    max_episode_steps: int
    hidden: tuple[int, ...]
    batch_size: int
    medium_score: float = 33.0
    exploration_noise: float = 0.1
    rollout_noise: float = 0.1


def budget_for(profile: str) -> RecipeBudget:
    """The recipe budget of a profile: ``smoke`` (seconds), ``cpu`` (~10^5 transitions), ``paper`` (D4RL)."""
    return by_profile(
        profile,
        smoke=RecipeBudget(warmup_steps=300, medium_max_steps=1000, expert_steps=1400, eval_every=500,
                           eval_episodes=2, rollout_transitions=1000, rollout_envs=4, max_episode_steps=200,
                           hidden=(32, 32), batch_size=32),
        cpu=RecipeBudget(warmup_steps=10_000, medium_max_steps=200_000, expert_steps=300_000,
                         eval_every=5_000, eval_episodes=5, rollout_transitions=100_000, rollout_envs=16,
                         max_episode_steps=1000, hidden=(256, 256), batch_size=256),
        paper=RecipeBudget(warmup_steps=25_000, medium_max_steps=1_000_000, expert_steps=1_000_000,
                           eval_every=5_000, eval_episodes=10, rollout_transitions=1_000_000, rollout_envs=32,
                           max_episode_steps=1000, hidden=(256, 256), batch_size=256),
    )


def recipe_dataset_id(name: str, *, profile: str, seed: int = 0) -> str:
    """Minari id of a recipe dataset: ``diffusion-augment/<profile>/<name>[-seed<S>]-v<RECIPE_VERSION>``."""
    canonical = parse_name(name).name
    profile = resolve_profile(profile)
    suffix = "" if seed == 0 else f"-seed{seed}"
    return f"{NAMESPACE}/{profile}/{canonical}{suffix}-v{RECIPE_VERSION}"


def recipe_cached(name: str, *, profile: str, seed: int = 0) -> bool:
    """True when the recipe dataset is complete in the local Minari root."""
    return minari_exists(recipe_dataset_id(name, profile=profile, seed=seed))


def build_recipe(name: str, *, profile: str, seed: int = 0, progress: bool = True,
                 force: bool = False) -> OfflineDataset:
    """Build (or load from the cache) the recipe dataset ``name`` for ``profile`` and ``seed``.

    name: a registered name or alias (``hopper-medium-replay``, ``hopper-mr``). force: rebuild even when
    cached (the old cache entries of this run are replaced only once the new ones are complete).
    Returns the dataset as read back from its Minari cache entry (provenance holds the recipe metadata).
    """
    parsed = parse_name(name)
    profile = resolve_profile(profile)
    if seed < 0:
        raise UserInputError(f"seed must be >= 0, got {seed}")
    dataset_id = recipe_dataset_id(parsed.name, profile=profile, seed=seed)
    if not force and minari_exists(dataset_id):
        return read_minari(dataset_id, name=parsed.name)
    with _build_lock(parsed.family, profile, seed, progress=progress):
        if not force and minari_exists(dataset_id):  # another process built it while we waited
            return read_minari(dataset_id, name=parsed.name)
        produced = _produce(parsed, profile=profile, seed=seed, progress=progress)
        _commit(produced, replace=force)
    return read_minari(dataset_id, name=parsed.name)


# --------------------------------------------------------------------------- locking and committing


@contextlib.contextmanager
def _build_lock(family: str, profile: str, seed: int, *, progress: bool) -> Iterator[None]:
    """Exclusive inter-process lock per (family, profile, seed) recipe run."""
    lock_dir = augment_home() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"recipe-{family}-{profile}-seed{seed}-v{RECIPE_VERSION}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"waiting for another process building the {family} recipe ({profile}, seed {seed})...",
                      flush=True)
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
            _ensure_namespace(root, dataset_id.rsplit("/", 1)[0])
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


def _ensure_namespace(root: Path, namespace: str) -> None:
    """Create Minari namespace metadata for ``namespace`` (and its parents) in ``root`` when missing."""
    from minari.namespace import create_namespace, list_local_namespaces

    with minari_root_env(root):
        existing = set(list_local_namespaces())
        parts = namespace.split("/")
        for i in range(1, len(parts) + 1):
            ns = "/".join(parts[:i])
            if ns not in existing:
                with contextlib.suppress(ValueError):
                    create_namespace(ns, description="datasets built by diffusion-augment recipes")


# --------------------------------------------------------------------------- environments and rollouts


def _make_env(env_id: str, max_episode_steps: int) -> Any:
    import gymnasium as gym

    return gym.make(env_id, max_episode_steps=max_episode_steps)


def _episode(obs: list[np.ndarray], act: list[np.ndarray], rew: list[float], terminated: bool) -> Episode:
    t = len(act)
    term = np.zeros(t, dtype=bool)
    trunc = np.zeros(t, dtype=bool)
    if terminated:
        term[-1] = True
    else:
        trunc[-1] = True
    return Episode(observations=np.asarray(obs, dtype=np.float32), actions=np.asarray(act, dtype=np.float32),
                   rewards=np.asarray(rew, dtype=np.float32), terminated=term, truncated=trunc)


def evaluate_returns(act_fn: ActFn, env_id: str, *, episodes: int, seed: int,
                     max_episode_steps: int) -> np.ndarray:
    """Undiscounted returns (episodes,) of ``act_fn`` (batched: (K, obs) float32 -> (K, act)), one episode
    per environment, env ``k`` reset with ``seed + k``."""
    envs = [_make_env(env_id, max_episode_steps) for _ in range(episodes)]
    try:
        obs = np.stack([env.reset(seed=seed + k)[0] for k, env in enumerate(envs)]).astype(np.float32)
        returns = np.zeros(episodes, dtype=np.float64)
        alive = np.ones(episodes, dtype=bool)
        while alive.any():
            idx = np.flatnonzero(alive)
            actions = act_fn(obs[idx])
            for j, k in enumerate(idx.tolist()):
                o, r, term, trunc, _ = envs[k].step(actions[j])
                returns[k] += float(r)
                obs[k] = o
                if term or trunc:
                    alive[k] = False
        return returns
    finally:
        for env in envs:
            env.close()


def collect_rollouts(act_fn: ActFn, env_id: str, *, transitions: int, num_envs: int, seed: int,
                     max_episode_steps: int, desc: str = "rollouts", progress: bool = True) -> list[Episode]:
    """Roll out ``act_fn`` in ``num_envs`` environments until ``transitions`` steps of finished episodes.

    Episodes are kept in the order they finish (ties by env index); the one that crosses the total is cut
    to hit ``transitions`` exactly and marked truncated; unfinished episodes are dropped.
    """
    from tqdm.auto import tqdm

    envs = [_make_env(env_id, max_episode_steps) for _ in range(num_envs)]
    finished: list[Episode] = []
    total = 0
    try:
        cur_obs: list[list[np.ndarray]] = []
        for k, env in enumerate(envs):
            cur_obs.append([np.asarray(env.reset(seed=seed + k)[0], dtype=np.float32)])
        cur_act: list[list[np.ndarray]] = [[] for _ in envs]
        cur_rew: list[list[float]] = [[] for _ in envs]
        with tqdm(total=transitions, desc=desc, unit="step", disable=not progress, leave=False) as bar:
            while total < transitions:
                obs = np.stack([o[-1] for o in cur_obs])
                actions = act_fn(obs)
                for k, env in enumerate(envs):
                    o, r, term, trunc, _ = env.step(actions[k])
                    cur_obs[k].append(np.asarray(o, dtype=np.float32))
                    cur_act[k].append(np.asarray(actions[k], dtype=np.float32))
                    cur_rew[k].append(float(r))
                    if term or trunc:
                        ep = _episode(cur_obs[k], cur_act[k], cur_rew[k], bool(term))
                        take = min(len(ep), transitions - total)
                        if take > 0:
                            if take < len(ep):
                                ep = _cut(ep, take)
                            finished.append(ep)
                            total += take
                            bar.update(take)
                        cur_obs[k] = [np.asarray(env.reset()[0], dtype=np.float32)]
                        cur_act[k], cur_rew[k] = [], []
    finally:
        for env in envs:
            env.close()
    return finished


def _cut(ep: Episode, steps: int) -> Episode:
    """The first ``steps`` steps of an episode, ending truncated."""
    trunc = np.zeros(steps, dtype=bool)
    trunc[-1] = True
    return Episode(observations=ep.observations[:steps + 1], actions=ep.actions[:steps],
                   rewards=ep.rewards[:steps], terminated=np.zeros(steps, dtype=bool), truncated=trunc)


def _noisy(policy: ActFn, rng: np.random.Generator, sigma: float) -> ActFn:
    """Policy plus clipped Gaussian noise of std ``sigma`` (actions in [-1, 1])."""

    def act(obs: np.ndarray) -> np.ndarray:
        a = policy(obs)
        if sigma > 0:
            a = a + sigma * rng.standard_normal(a.shape).astype(np.float32)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    return act


def _uniform(rng: np.random.Generator, act_dim: int) -> ActFn:
    def act(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(obs.shape[0], act_dim)).astype(np.float32)

    return act


# --------------------------------------------------------------------------- the training run


@dataclass
class _RunOutput:
    """What one training run produced (episodes per kind, evaluations, timings)."""

    medium_replay: list[Episode] = field(default_factory=list)
    medium: list[Episode] = field(default_factory=list)
    expert: list[Episode] = field(default_factory=list)
    eval_history: list[tuple[int, float]] = field(default_factory=list)
    threshold_reached: bool = False
    snapshot_step: int = 0
    medium_eval_return: float = float("nan")
    expert_eval_return: float = float("nan")
    final_step: int = 0
    wall_medium_s: float = 0.0
    wall_total_s: float = 0.0


def _buffer_episodes(obs: np.ndarray, act: np.ndarray, rew: np.ndarray, nxt: np.ndarray, term: np.ndarray,
                     trunc: np.ndarray, n: int) -> list[Episode]:
    """Split the first ``n`` rows of the replay buffer into episodes; an unfinished tail ends truncated."""
    ends = np.flatnonzero(term[:n] | trunc[:n])
    if ends.size == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    episodes = []
    start = 0
    for end in ends.tolist():
        stop = end + 1
        t = stop - start
        terminated = np.zeros(t, dtype=bool)
        truncated = np.zeros(t, dtype=bool)
        if term[end]:
            terminated[-1] = True
        else:
            truncated[-1] = True
        episodes.append(Episode(observations=np.concatenate([obs[start:stop], nxt[end:end + 1]]),
                                actions=act[start:stop].copy(), rewards=rew[start:stop].copy(),
                                terminated=terminated, truncated=truncated))
        start = stop
    return episodes


def _make_td3(obs_dim: int, act_dim: int, budget: RecipeBudget, seed: int) -> Any:
    import d3rlpy
    import torch

    d3rlpy.seed(seed)
    torch.manual_seed(seed)
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(budget.hidden))
    algo = d3rlpy.algos.TD3Config(batch_size=budget.batch_size, actor_encoder_factory=encoder,
                                  critic_encoder_factory=encoder).create(device="cpu:0")
    algo.create_impl((obs_dim,), act_dim)
    return algo


def _train(parsed: DatasetName, budget: RecipeBudget, *, seed: int, until_expert: bool,
           progress: bool) -> _RunOutput:
    """Online TD3 with one update per env step; see the module docstring for what is recorded."""
    from d3rlpy.dataset import TransitionMiniBatch
    from tqdm.auto import tqdm

    env_id = parsed.env_id
    env = _make_env(env_id, budget.max_episode_steps)
    obs_dim = int(env.observation_space.shape[0])
    act_dim = int(env.action_space.shape[0])
    if not (np.allclose(env.action_space.low, -1.0) and np.allclose(env.action_space.high, 1.0)):
        raise UserInputError(f"{env_id}: recipes expect actions in [-1, 1]")
    algo = _make_td3(obs_dim, act_dim, budget, seed)
    rng = np.random.default_rng(seed)  # exploration noise, warm-up actions, batch indices
    rollout_rng = np.random.default_rng(seed + 1_000_003)  # data-rollout noise (separate stream)
    threshold = return_for_score(budget.medium_score, parsed.family)

    total_steps = budget.medium_max_steps
    if until_expert:
        total_steps = max(budget.expert_steps, budget.medium_max_steps)
    obs_buf = np.zeros((total_steps, obs_dim), dtype=np.float32)
    nxt_buf = np.zeros((total_steps, obs_dim), dtype=np.float32)
    act_buf = np.zeros((total_steps, act_dim), dtype=np.float32)
    rew_buf = np.zeros(total_steps, dtype=np.float32)
    term_buf = np.zeros(total_steps, dtype=bool)
    trunc_buf = np.zeros(total_steps, dtype=bool)
    ones = np.ones((budget.batch_size, 1), dtype=np.float32)

    def policy(o: np.ndarray) -> np.ndarray:
        return np.asarray(algo.predict(np.asarray(o, dtype=np.float32)), dtype=np.float32)

    out = _RunOutput()
    started = time.perf_counter()
    obs = np.asarray(env.reset(seed=seed)[0], dtype=np.float32)
    eval_seed = seed * 7919 + 100_000
    latest = float("nan")
    bar = tqdm(total=total_steps, desc=f"{parsed.family} TD3 ({'expert' if until_expert else 'medium'})",
               unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for t in range(total_steps):
            if t < budget.warmup_steps:
                action = rng.uniform(-1.0, 1.0, size=act_dim).astype(np.float32)
            else:
                action = policy(obs[None])[0]
                action = np.clip(action + budget.exploration_noise * rng.standard_normal(act_dim),
                                 -1.0, 1.0).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            obs_buf[t] = obs
            act_buf[t] = action
            rew_buf[t] = reward
            nxt_buf[t] = next_obs
            term_buf[t] = terminated
            trunc_buf[t] = truncated
            obs = (np.asarray(env.reset()[0], dtype=np.float32) if terminated or truncated
                   else np.asarray(next_obs, dtype=np.float32))
            if t + 1 >= budget.warmup_steps:
                idx = rng.integers(0, t + 1, size=budget.batch_size)
                algo.update(TransitionMiniBatch(
                    observations=obs_buf[idx], actions=act_buf[idx], rewards=rew_buf[idx, None],
                    next_observations=nxt_buf[idx], next_actions=act_buf[idx],
                    terminals=term_buf[idx, None].astype(np.float32), intervals=ones, transitions=[]))
            bar.update(1)
            step = t + 1
            if step % budget.eval_every == 0 or step in (total_steps, budget.medium_max_steps):
                if step >= budget.warmup_steps:
                    latest = float(evaluate_returns(policy, env_id, episodes=budget.eval_episodes,
                                                    seed=eval_seed, max_episode_steps=budget.max_episode_steps
                                                    ).mean())
                    out.eval_history.append((step, latest))
                    bar.set_postfix(eval_return=f"{latest:.0f}",
                                    score=f"{normalized_score(latest, parsed.family):.1f}")
                snapshot_due = not out.medium_replay and (
                    (latest >= threshold and step >= budget.warmup_steps) or step >= budget.medium_max_steps)
                if snapshot_due:
                    out.threshold_reached = bool(latest >= threshold)
                    out.snapshot_step = step
                    out.medium_eval_return = latest
                    out.medium_replay = _buffer_episodes(obs_buf, act_buf, rew_buf, nxt_buf, term_buf,
                                                         trunc_buf, step)
                    out.medium = collect_rollouts(
                        _noisy(policy, rollout_rng, budget.rollout_noise), env_id,
                        transitions=budget.rollout_transitions, num_envs=budget.rollout_envs,
                        seed=seed * 7919 + 200_000, max_episode_steps=budget.max_episode_steps,
                        desc="medium rollouts", progress=progress)
                    out.wall_medium_s = time.perf_counter() - started
                    if progress:
                        reached = "reached" if out.threshold_reached else "NOT reached"
                        bar.write(f"medium snapshot at step {step}: eval return {latest:.1f} (threshold "
                                  f"{threshold:.1f}, {reached})")
                    if not until_expert:
                        out.final_step = step
                        break
        else:
            out.final_step = total_steps
        if until_expert:
            out.expert_eval_return = latest
            out.expert = collect_rollouts(
                _noisy(policy, rollout_rng, budget.rollout_noise), env_id,
                transitions=budget.rollout_transitions, num_envs=budget.rollout_envs,
                seed=seed * 7919 + 300_000, max_episode_steps=budget.max_episode_steps,
                desc="expert rollouts", progress=progress)
    finally:
        bar.close()
        env.close()
    out.wall_total_s = time.perf_counter() - started
    return out


# --------------------------------------------------------------------------- producing the datasets


def _metadata(parsed: DatasetName, kind: str, profile: str, seed: int, budget: RecipeBudget,
              **extra: Any) -> dict[str, Any]:
    import d3rlpy
    import gymnasium
    import minari
    import mujoco

    md: dict[str, Any] = {
        "recipe": "d3rlpy-td3-online", "recipe_version": RECIPE_VERSION, "name": f"{parsed.family}-{kind}",
        "family": parsed.family, "kind": kind, "env_id": parsed.env_id, "profile": profile, "seed": seed,
        "budget": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(budget).items()},
        "medium_threshold_score": budget.medium_score,
        "medium_threshold_return": return_for_score(budget.medium_score, parsed.family),
        "versions": {"d3rlpy": d3rlpy.__version__, "gymnasium": gymnasium.__version__,
                     "minari": minari.__version__, "mujoco": mujoco.__version__},
    }
    md.update(extra)
    return md


def _score(value: float, family: str) -> float | None:
    return None if not np.isfinite(value) else float(normalized_score(value, family))


def _produce(parsed: DatasetName, *, profile: str, seed: int,
             progress: bool) -> dict[str, tuple[OfflineDataset, dict[str, Any]]]:
    """Run what the requested kind needs; return every dataset produced, by Minari id."""
    budget = budget_for(profile)
    produced: dict[str, tuple[OfflineDataset, dict[str, Any]]] = {}

    def add(kind: str, episodes: list[Episode], md: dict[str, Any]) -> None:
        name = f"{parsed.family}-{kind}"
        ds = OfflineDataset(name=name, episodes=tuple(episodes), env_id=parsed.env_id)
        ds.validate()
        md = dict(md, episodes=ds.num_episodes, transitions=ds.num_transitions,
                  data_mean_return=ds.stats.return_mean,
                  data_score=_score(ds.stats.return_mean, parsed.family))
        produced[recipe_dataset_id(name, profile=profile, seed=seed)] = (ds, md)

    if parsed.kind == "random":
        started = time.perf_counter()
        env = _make_env(parsed.env_id, budget.max_episode_steps)
        act_dim = int(env.action_space.shape[0])
        env.close()
        episodes = collect_rollouts(_uniform(np.random.default_rng(seed), act_dim), parsed.env_id,
                                    transitions=budget.rollout_transitions, num_envs=budget.rollout_envs,
                                    seed=seed * 7919 + 400_000, max_episode_steps=budget.max_episode_steps,
                                    desc="random rollouts", progress=progress)
        add("random", episodes, _metadata(parsed, "random", profile, seed, budget, env_steps=0,
                                          behaviour="uniform random policy",
                                          wall_time_s=time.perf_counter() - started))
        return produced

    until_expert = parsed.kind in ("expert", "medium-expert")
    run = _train(parsed, budget, seed=seed, until_expert=until_expert, progress=progress)
    common = {"eval_history": [[s, r] for s, r in run.eval_history],
              "threshold_reached": run.threshold_reached, "snapshot_step": run.snapshot_step,
              "rollout_noise": budget.rollout_noise}
    medium_md = dict(common, env_steps=run.snapshot_step, behaviour_eval_return=run.medium_eval_return,
                     behaviour_eval_score=_score(run.medium_eval_return, parsed.family),
                     wall_time_s=run.wall_medium_s)
    add("medium-replay", run.medium_replay,
        _metadata(parsed, "medium-replay", profile, seed, budget, **medium_md))
    add("medium", run.medium, _metadata(parsed, "medium", profile, seed, budget, **medium_md))
    if until_expert:
        expert_md = dict(common, env_steps=run.final_step, behaviour_eval_return=run.expert_eval_return,
                         behaviour_eval_score=_score(run.expert_eval_return, parsed.family),
                         medium_behaviour_eval_return=run.medium_eval_return, wall_time_s=run.wall_total_s)
        add("expert", run.expert, _metadata(parsed, "expert", profile, seed, budget, **expert_md))
        add("medium-expert", run.medium + run.expert,
            _metadata(parsed, "medium-expert", profile, seed, budget, **expert_md))
    return produced
