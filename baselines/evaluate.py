"""One evaluation harness for every policy: d3rlpy learners, diffusion planners, references.

:func:`evaluate` runs ``episodes`` episodes of ``env_id`` in waves of up to ``num_envs`` Gymnasium envs
stepped together, asking the policy for one batch of actions per step (B = envs in the wave). Episode
``k`` resets with seed :func:`episode_seed` ``(seed, k)``, so the same ``seed`` gives the same returns
for a deterministic policy, whatever ``num_envs`` is. Finished envs in a wave keep their last observation
in the batch (the policy sees a fixed-size batch, which planners with per-row history need) and their
actions are ignored. A policy with an ``observe(rewards (B,), observations (B, obs), dones (B,))``
method (planners that keep per-env history, e.g. Trajectory Diffuser's return-to-go) has it called after
every vector step: each row's reward of that step (0 for rows already finished), the observations the
next ``act`` will see, and which rows have finished (at this step or before). Learners have no such
method and are not called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from augment.progress import ReportingBar, progress_bar
from baselines.protocols import Policy
from baselines.seeding import derive_seed
from stores.errors import UserInputError


@dataclass(frozen=True)
class EvalResult:
    """Outcome of :func:`evaluate`.

    returns: (E,) float64 undiscounted episode returns (raw env units); lengths: (E,) int64 steps;
    mean / std: of ``returns``; normalized: (E,) D4RL normalized scores 100 * (R - random) /
    (expert - random) (NaN when no reference returns are known); normalized_mean: their mean (NaN likewise).
    env_id / seed / score_name say how it was produced.
    """

    returns: np.ndarray
    lengths: np.ndarray
    mean: float
    std: float
    normalized: np.ndarray
    normalized_mean: float
    env_id: str = ""
    seed: int = 0
    score_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict (NaN written as None)."""
        def clean(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)
        return {
            "env_id": self.env_id, "seed": self.seed, "score_name": self.score_name,
            "episodes": int(self.returns.size), "return_mean": clean(self.mean),
            "return_std": clean(self.std),
            "normalized_mean": clean(self.normalized_mean),
            "returns": [float(r) for r in self.returns], "lengths": [int(n) for n in self.lengths],
            "normalized": [clean(float(x)) for x in self.normalized],
        }


def episode_seed(seed: int, episode: int) -> int:
    """Reset seed of evaluation episode ``episode`` under ``seed`` (independent 32-bit streams)."""
    return derive_seed(seed, "eval-episode", episode)


def normalized_scores(returns: np.ndarray, name: str | None) -> np.ndarray:
    """D4RL normalized scores of ``returns`` (E,) for a dataset name or env id; NaN when unknown."""
    returns = np.asarray(returns, dtype=np.float64)
    if name is None:
        return np.full(returns.shape, np.nan)
    from stores.scores import normalized_score

    try:
        return np.asarray(normalized_score(returns, name), dtype=np.float64).reshape(returns.shape)
    except (UserInputError, KeyError):
        return np.full(returns.shape, np.nan)


def make_env(env_id: str) -> gym.Env:
    """``gym.make(env_id)`` with a clear error for unknown ids (PointMaze needs gymnasium-robotics).

    The maze2d datasets' envs (``diffusion-augment/PointMaze_*-v3``, :mod:`stores.maze_env`) return the
    flat (x, y, vx, vy) observation themselves, so data and evaluation see the same vector.
    """
    if "PointMaze" in env_id:
        from stores.maze_env import require_gymnasium_robotics  # also registers the maze2d ids

        require_gymnasium_robotics()  # UserInputError naming the [maze] extra when missing
    from stores.sources import install_mujoco_warning_handler

    install_mujoco_warning_handler()  # MuJoCo's warnings to the log, not MUJOCO_LOG.TXT in the cwd
    try:
        return gym.make(env_id)
    except gym.error.Error as exc:
        raise UserInputError(f"cannot make environment '{env_id}': {exc}") from exc


def _flat_observation(obs: Any) -> np.ndarray:
    """Observation as a flat float32 vector (dict observations: ``observation`` then ``desired_goal``)."""
    if isinstance(obs, dict):
        parts = [obs["observation"]] + ([obs["desired_goal"]] if "desired_goal" in obs else [])
        return np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in parts])
    return np.asarray(obs, dtype=np.float32).ravel()


def _act_call_bar(label: str | None, show: bool, *, waves: int, cap: int | None) -> ReportingBar | None:
    """The optional bar of :func:`evaluate` (None without a label); total ``waves * cap`` act calls."""
    if label is None:
        return None
    return progress_bar(total=waves * cap if cap else None, desc=label, unit="act", disable=not show,
                        leave=False)


def evaluate(policy: Policy, env_id: str, *, episodes: int, seed: int, score_name: str | None = None,
             num_envs: int = 10, max_steps: int | None = None, bar: str | None = None,
             show_bar: bool = False) -> EvalResult:
    """Run ``episodes`` episodes of ``policy`` in ``env_id`` and score them.

    score_name: dataset name or env id for normalized scores (default ``env_id``). num_envs: envs stepped
    together per wave. max_steps: optional cap on steps per episode (default: the env's time limit).
    Actions are clipped to the action space before stepping. bar: the label of a progress bar over the
    policy's act calls (one per vector step; total = waves x the step cap, an upper bound when episodes
    terminate), shown when ``show_bar`` and reported to ``$AUGMENT_PROGRESS_FILE`` either way
    (:mod:`augment.progress`); None (the learners' frequent short evaluations): no bar.
    """
    if episodes < 1:
        raise UserInputError(f"evaluation needs at least 1 episode, got {episodes}")
    width = max(1, min(int(num_envs), int(episodes)))
    envs = [make_env(env_id) for _ in range(width)]
    low = np.asarray(envs[0].action_space.low, dtype=np.float32)
    high = np.asarray(envs[0].action_space.high, dtype=np.float32)
    returns = np.zeros(episodes, dtype=np.float64)
    lengths = np.zeros(episodes, dtype=np.int64)
    counter = _act_call_bar(bar, show_bar, waves=math.ceil(episodes / width),
                            cap=max_steps or getattr(envs[0].spec, "max_episode_steps", None))
    try:
        for start in range(0, episodes, width):
            n = min(width, episodes - start)
            policy.reset(n)
            obs = np.stack([_flat_observation(envs[i].reset(seed=episode_seed(seed, start + i))[0])
                            for i in range(n)])
            done = np.zeros(n, dtype=bool)
            observe = getattr(policy, "observe", None)
            while not done.all():
                actions = np.clip(np.asarray(policy.act(obs), dtype=np.float32).reshape(n, -1), low, high)
                if counter is not None:
                    counter.update(1)
                step_rewards = np.zeros(n, dtype=np.float64)
                for i in np.flatnonzero(~done):
                    o, r, terminated, truncated, _ = envs[i].step(actions[i])
                    k = start + i
                    step_rewards[i] = float(r)
                    returns[k] += float(r)
                    lengths[k] += 1
                    obs[i] = _flat_observation(o)
                    if terminated or truncated or (max_steps is not None and lengths[k] >= max_steps):
                        done[i] = True
                if observe is not None:
                    observe(step_rewards, obs.copy(), done.copy())
    finally:
        if counter is not None:
            counter.close()
        for env in envs:
            env.close()
    name = score_name or env_id
    normalized = normalized_scores(returns, name)
    return EvalResult(
        returns=returns, lengths=lengths, mean=float(returns.mean()), std=float(returns.std()),
        normalized=normalized, normalized_mean=float(normalized.mean()), env_id=env_id, seed=int(seed),
        score_name=name)
