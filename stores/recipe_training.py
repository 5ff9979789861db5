"""The online training run behind the locomotion recipes, with thresholds and resumable checkpoints.

One run trains an :class:`~stores.recipe_agents.OnlineAgent` (SAC by default) in a Gymnasium MuJoCo env
with one gradient update per env step after ``warmup_steps`` uniform-random steps, and evaluates the
deterministic policy every ``eval_every`` steps on ``eval_episodes`` episodes (same reset seeds every
time). Two snapshots are taken:

* **medium**: at the first evaluation whose mean return reaches the medium threshold (normalized
  ``medium_score``), or at ``medium_max_steps`` when none does (then ``reached`` is False and the run says
  so loudly). The replay buffer up to that step is ``medium-replay``; ``rollout_transitions`` steps of the
  snapshot's data policy are ``medium``;
* **expert** (only when asked): the same rule with ``expert_score`` and ``expert_steps``.

Checkpoints: every ``checkpoint_every`` env steps, at the next episode end (so the env needs no more than
its RNG to continue), the run writes one ``.npz`` holding the agent (networks, optimizers, step counter),
the replay buffer, every random state (NumPy generators, the env's generator, torch's), the evaluation
history and the medium snapshot's data once taken. It is written to a temporary file and renamed, so a
kill leaves the previous checkpoint intact. A new run with the same fingerprint (env, budget, seed,
recipe version) continues from it: the result is bit-identical to an uninterrupted run on the same
machine (tested). A checkpoint with another fingerprint is ignored with a message.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.recipe_agents import OnlineAgent
from stores.recipe_budgets import RecipeBudget
from stores.recipe_rollouts import (
    buffer_episodes,
    collect_rollouts,
    episodes_from_arrays,
    episodes_to_arrays,
    evaluate_returns,
    make_env,
)
from stores.schema import Episode
from stores.scores import normalized_score, return_for_score


@dataclass
class Snapshot:
    """A threshold snapshot: ``name`` medium / expert; threshold as score and return; ``reached``;
    ``step`` (env steps trained); evaluation ``eval_mean`` / ``eval_std`` over ``eval_episodes``;
    ``stopped_by`` ``threshold`` or ``step cap``; ``wall_s`` since the run started (summed over resumes)."""

    name: str
    threshold_score: float
    threshold_return: float
    reached: bool
    step: int
    eval_mean: float
    eval_std: float
    eval_episodes: int
    stopped_by: str
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    """What one training run produced: episodes per kind, snapshots, evaluation history
    [(step, mean, std)], the run's length, wall time, resumes, and throughput (env steps per second of
    the step + update loop alone, and per second of wall time with evaluations and rollouts)."""

    medium_replay: list[Episode] = field(default_factory=list)
    medium: list[Episode] = field(default_factory=list)
    expert: list[Episode] = field(default_factory=list)
    medium_snapshot: Snapshot | None = None
    expert_snapshot: Snapshot | None = None
    eval_history: list[tuple[int, float, float]] = field(default_factory=list)
    final_step: int = 0
    wall_s: float = 0.0
    resumed_from: list[int] = field(default_factory=list)
    steps_per_s: float = float("nan")
    wall_steps_per_s: float = float("nan")


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON-native) and ``arrays`` to ``path`` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, meta_json=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """(meta, arrays) of a checkpoint, or None when there is none or it cannot be read."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError):
        return None
    meta = json.loads(str(arrays.pop("meta_json")))
    return meta, arrays


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


# --------------------------------------------------------------------------- the run


class _Run:
    """State of one training run (kept together so it can be checkpointed and restored)."""

    def __init__(self, env_id: str, score_name: str, budget: RecipeBudget, *, seed: int, total_steps: int,
                 fingerprint: dict[str, Any]) -> None:
        self.env_id, self.score_name, self.budget, self.seed = env_id, score_name, budget, seed
        self.fingerprint = fingerprint
        self.env = make_env(env_id, budget.max_episode_steps)
        self.obs_dim = int(self.env.observation_space.shape[0])
        self.act_dim = int(self.env.action_space.shape[0])
        space = self.env.action_space
        if not (np.allclose(space.low, -1.0) and np.allclose(space.high, 1.0)):
            raise UserInputError(f"{env_id}: recipes expect actions in [-1, 1]")
        self.agent = OnlineAgent(budget.agent_config, self.obs_dim, self.act_dim, seed)
        self.rng = np.random.default_rng(seed)  # warm-up actions, TD3 noise, batch indices
        self.rollout_rng = np.random.default_rng(seed + 1_000_003)  # TD3 data-rollout noise
        self._allocate(total_steps)
        self.t = 0
        self.eval_history: list[tuple[int, float, float]] = []
        self.medium_snapshot: Snapshot | None = None
        self.expert_snapshot: Snapshot | None = None
        self.medium: list[Episode] = []
        self.expert: list[Episode] = []
        self.wall_before = 0.0  # seconds spent before this process (resumes)
        self.train_s_before = 0.0
        self.resumed_from: list[int] = []
        self.obs = np.asarray(self.env.reset(seed=seed)[0], dtype=np.float32)

    def _allocate(self, n: int) -> None:
        self.total_steps = n
        self.obs_buf = np.zeros((n, self.obs_dim), dtype=np.float32)
        self.nxt_buf = np.zeros((n, self.obs_dim), dtype=np.float32)
        self.act_buf = np.zeros((n, self.act_dim), dtype=np.float32)
        self.rew_buf = np.zeros(n, dtype=np.float32)
        self.term_buf = np.zeros(n, dtype=bool)
        self.trunc_buf = np.zeros(n, dtype=bool)

    # ---- checkpoints

    def checkpoint(self, path: Path, wall_s: float, train_s: float) -> None:
        """Save the run; call only at an episode end, before the env is reset."""
        import torch

        t = self.t
        meta = {
            "fingerprint": self.fingerprint, "t": t, "eval_history": [list(e) for e in self.eval_history],
            "rng": _rng_state(self.rng), "rollout_rng": _rng_state(self.rollout_rng),
            "env_rng": _rng_state(self.env.unwrapped.np_random),
            "medium_snapshot": self.medium_snapshot.to_json() if self.medium_snapshot else None,
            "wall_s": wall_s, "train_s": train_s, "resumed_from": self.resumed_from,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        arrays = {"obs": self.obs_buf[:t], "nxt": self.nxt_buf[:t], "act": self.act_buf[:t],
                  "rew": self.rew_buf[:t], "term": self.term_buf[:t], "trunc": self.trunc_buf[:t],
                  "agent": np.frombuffer(self.agent.state_bytes(), dtype=np.uint8),
                  "torch_rng": torch.get_rng_state().numpy()}
        arrays.update(episodes_to_arrays(self.medium, "med_"))
        save_checkpoint(path, meta, arrays)

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Continue from a checkpoint taken by :meth:`checkpoint`."""
        import torch

        t = int(meta["t"])
        if t > self.total_steps:
            self._allocate(t)
        for name, buf in (("obs", self.obs_buf), ("nxt", self.nxt_buf), ("act", self.act_buf),
                          ("rew", self.rew_buf), ("term", self.term_buf), ("trunc", self.trunc_buf)):
            buf[:t] = arrays[name]
        self.t = t
        self.agent.load_state(arrays["agent"].tobytes())
        torch.set_rng_state(torch.from_numpy(arrays["torch_rng"].copy()))
        _set_rng_state(self.rng, meta["rng"])
        _set_rng_state(self.rollout_rng, meta["rollout_rng"])
        _set_rng_state(self.env.unwrapped.np_random, meta["env_rng"])
        self.obs = np.asarray(self.env.reset()[0], dtype=np.float32)  # the reset the checkpoint stood before
        self.eval_history = [(int(s), float(m), float(d)) for s, m, d in meta["eval_history"]]
        snap = meta.get("medium_snapshot")
        self.medium_snapshot = Snapshot(**snap) if snap else None
        self.medium = episodes_from_arrays(arrays, "med_")
        self.wall_before = float(meta["wall_s"])
        self.train_s_before = float(meta["train_s"])
        self.resumed_from = [*meta.get("resumed_from", []), t]

    # ---- pieces of a step

    def evaluate(self) -> tuple[float, float]:
        b = self.budget
        returns = evaluate_returns(self.agent.act, self.env_id, episodes=b.eval_episodes,
                                   seed=self.seed * 7919 + 100_000, max_episode_steps=b.max_episode_steps)
        return float(returns.mean()), float(returns.std())

    def record(self, name: str, score: float, step: int, mean: float, std: float, wall_s: float) -> Snapshot:
        threshold = return_for_score(score, self.score_name)
        reached = bool(mean >= threshold)
        return Snapshot(name=name, threshold_score=score, threshold_return=threshold, reached=reached,
                        step=step, eval_mean=mean, eval_std=std, eval_episodes=self.budget.eval_episodes,
                        stopped_by="threshold" if reached else "step cap", wall_s=wall_s)

    def rollouts(self, seed_offset: int, desc: str, progress: bool) -> list[Episode]:
        b = self.budget
        policy = self.agent.data_policy(self.rollout_rng)
        with self.agent.rollout_stream(self.seed * 7919 + seed_offset):
            return collect_rollouts(policy, self.env_id, transitions=b.rollout_transitions,
                                    num_envs=b.rollout_envs, seed=self.seed * 7919 + seed_offset,
                                    max_episode_steps=b.max_episode_steps, desc=desc, progress=progress)


def _loud(lines: list[str], write: Any) -> None:
    for line in lines:
        write(line)


def not_reached_lines(snap: Snapshot, family: str, agent: str, best: tuple[int, float] | None) -> list[str]:
    """The loud report of a snapshot taken at the step cap (threshold not reached)."""
    best_txt = "" if best is None else (f"; best evaluation {best[1]:.1f} (normalized "
                                        f"{normalized_score(best[1], family):.1f}) at step {best[0]:,}")
    return [f"WARNING: {family} {agent} did NOT reach the {snap.name} threshold (normalized "
            f"{snap.threshold_score:g} = return {snap.threshold_return:.1f}) within the {snap.step:,}-step "
            f"cap{best_txt}.",
            f"WARNING: the {snap.name} data are the snapshot at the cap (eval return {snap.eval_mean:.1f}, "
            f"normalized {normalized_score(snap.eval_mean, family):.1f}); their metadata say "
            "threshold_reached: false."]


def train_online(env_id: str, score_name: str, budget: RecipeBudget, *, seed: int, until_expert: bool,
                 checkpoint_path: Path | None, fingerprint: dict[str, Any], progress: bool = True,
                 say: Any = print) -> RunResult:
    """Run the recipe's online training (module docstring) and return what it produced.

    score_name: the reference-return family (``hopper``). checkpoint_path: where to keep the resumable
    checkpoint (None: no checkpoints). fingerprint: JSON-native identity of the run; a checkpoint with
    another one is not resumed. say: where one-line messages go (resumes, warnings).
    """
    from tqdm.auto import tqdm

    b = budget
    total = max(b.expert_steps, b.medium_max_steps) if until_expert else b.medium_max_steps
    run = _Run(env_id, score_name, b, seed=seed, total_steps=total, fingerprint=fingerprint)
    family = score_name
    if checkpoint_path is not None:
        loaded = load_checkpoint(checkpoint_path)
        if loaded is not None and loaded[0].get("fingerprint") == fingerprint:
            run.restore(*loaded)
            say(f"resuming from the checkpoint at env step {run.t:,} (saved {loaded[0].get('saved_at')}, "
                f"{loaded[0]['wall_s'] / 60:.1f} min of work kept): {checkpoint_path}")
        elif loaded is not None:
            say(f"ignoring a checkpoint of another budget or version: {checkpoint_path}")
    started = time.perf_counter()
    train_s = 0.0
    last_ckpt = run.t
    snapshot_dirty = False
    out = RunResult()

    def wall() -> float:
        return run.wall_before + time.perf_counter() - started

    def best_eval() -> tuple[int, float] | None:
        return max(((s, m) for s, m, _ in run.eval_history), key=lambda x: x[1], default=None)

    def note(line: str) -> None:  # above the progress bar, on stderr
        tqdm.write(line, file=sys.stderr)

    def snapshot(name: str, score: float, step: int, mean: float, std: float, detail: str) -> Snapshot:
        """Record the ``name`` snapshot at this evaluation and say so (loudly when the threshold was not
        reached); ``detail`` goes between the eval return and the threshold in the message."""
        snap = run.record(name, score, step, mean, std, wall())
        note(f"{name} snapshot at step {step:,}: eval return {mean:.1f} +- {std:.1f}{detail}"
             f"threshold {snap.threshold_return:.1f}, {'reached' if snap.reached else 'NOT reached'})")
        if not snap.reached:
            _loud(not_reached_lines(snap, family, run.agent.name, best_eval()), note)
        return snap

    target = "expert" if until_expert else "medium"
    bar = tqdm(total=total, initial=run.t, desc=f"{family} {run.agent.name} ({target})", unit="step",
               disable=not progress, dynamic_ncols=True)
    done = run.medium_snapshot is not None and not until_expert
    try:
        while not done and run.t < run.total_steps:
            t0 = time.perf_counter()
            t = run.t
            if t < b.warmup_steps:
                action = run.rng.uniform(-1.0, 1.0, size=run.act_dim).astype(np.float32)
            else:
                action = run.agent.explore(run.obs, run.rng)
            next_obs, reward, terminated, truncated, _ = run.env.step(action)
            run.obs_buf[t], run.act_buf[t], run.rew_buf[t] = run.obs, action, reward
            run.nxt_buf[t], run.term_buf[t], run.trunc_buf[t] = next_obs, terminated, truncated
            step = run.t = t + 1
            if step >= b.warmup_steps:
                idx = run.rng.integers(0, step, size=b.batch_size)
                run.agent.update(run.obs_buf[idx], run.act_buf[idx], run.rew_buf[idx], run.nxt_buf[idx],
                                 run.term_buf[idx])
            train_s += time.perf_counter() - t0
            bar.update(1)
            eval_due = step >= b.warmup_steps and (
                step % b.eval_every == 0 or step in (b.medium_max_steps, total))
            if eval_due:
                mean, std = run.evaluate()
                run.eval_history.append((step, mean, std))
                bar.set_postfix(eval_return=f"{mean:.0f}", score=f"{normalized_score(mean, family):.1f}")
                if run.medium_snapshot is None and (
                        mean >= return_for_score(b.medium_score, family) or step >= b.medium_max_steps):
                    detail = (f" over {b.eval_episodes} episodes "
                              f"(normalized {normalized_score(mean, family):.1f}; ")
                    run.medium_snapshot = snapshot("medium", b.medium_score, step, mean, std, detail)
                    run.medium = run.rollouts(200_000, "medium rollouts", progress)
                    snapshot_dirty = True
                    if not until_expert:
                        done = True
                        break
                if until_expert and run.expert_snapshot is None and (
                        mean >= return_for_score(b.expert_score, family) or step >= total):
                    run.expert_snapshot = snapshot("expert", b.expert_score, step, mean, std, " (")
                    run.expert = run.rollouts(300_000, "expert rollouts", progress)
                    done = True
                    break
            if terminated or truncated:
                if checkpoint_path is not None and (step - last_ckpt >= b.checkpoint_every or snapshot_dirty):
                    run.checkpoint(checkpoint_path, wall(), run.train_s_before + train_s)
                    last_ckpt, snapshot_dirty = step, False
                run.obs = np.asarray(run.env.reset()[0], dtype=np.float32)
            else:
                run.obs = np.asarray(next_obs, dtype=np.float32)
    finally:
        bar.close()
        run.env.close()
    snap = run.medium_snapshot
    assert snap is not None, "the medium snapshot is taken at the latest at the medium cap"
    out.medium_snapshot, out.expert_snapshot = snap, run.expert_snapshot
    out.medium_replay = buffer_episodes(run.obs_buf, run.act_buf, run.rew_buf, run.nxt_buf, run.term_buf,
                                        run.trunc_buf, snap.step)
    out.medium, out.expert = run.medium, run.expert
    out.eval_history = list(run.eval_history)
    out.final_step = run.t
    out.wall_s = wall()
    out.resumed_from = list(run.resumed_from)
    trained = run.t
    out.steps_per_s = trained / max(run.train_s_before + train_s, 1e-9) if trained else float("nan")
    out.wall_steps_per_s = trained / max(out.wall_s, 1e-9) if trained else float("nan")
    return out
