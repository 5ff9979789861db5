"""Record types at the boundaries between rooms, and their validation.

All arrays are NumPy; observations, actions and rewards are float32 once inside the toolkit. Shapes use
``T`` for an episode's number of steps, ``B`` for a batch, ``L`` for a trajectory window's length,
``obs`` / ``act`` for the observation and action sizes.

* :class:`Episode` - one episode: T+1 observations, T actions / rewards / terminated / truncated.
* :class:`OfflineDataset` - episodes plus the env to evaluate in, statistics, a content hash, provenance;
  flat transition arrays via :meth:`OfflineDataset.transitions` (built once, cached).
* :class:`TrajectoryBatch` - B synthetic trajectories of at most L steps with per-trajectory provenance;
  what generators return and what the replay store appends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from stores.errors import UserInputError


def _first_bad_row(array: np.ndarray) -> int | None:
    """Index of the first row (axis 0) holding NaN or inf, or None."""
    if array.dtype.kind not in "fc" or array.size == 0:
        return None
    bad = ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else None


def check_finite(name: str, array: np.ndarray, *, where: str = "") -> None:
    """Raise :class:`UserInputError` naming ``name`` and the first row with NaN/inf."""
    row = _first_bad_row(array)
    if row is not None:
        raise UserInputError(f"{where}'{name}' holds NaN or inf (first bad row {row})")


@dataclass(frozen=True)
class Episode:
    """One episode.

    observations: (T+1, obs) float32, including the state reached after the last action.
    actions: (T, act) float32. rewards: (T,) float32.
    terminated: (T,) bool, True on a step that entered a terminal state (only the last can be True).
    truncated: (T,) bool, True on a last step cut by a time limit (or by the end of the data).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def episode_return(self) -> float:
        """Undiscounted sum of rewards."""
        return float(self.rewards.sum(dtype=np.float64))

    def validate(self, where: str = "") -> None:
        """Check shapes, lengths, dtypes and finiteness; raise :class:`UserInputError` naming the key."""
        t = self.actions.shape[0]
        if self.observations.shape[0] != t + 1:
            raise UserInputError(
                f"{where}'observations' has {self.observations.shape[0]} rows but an episode of {t} "
                f"actions needs {t + 1}")
        for name in ("rewards", "terminated", "truncated"):
            arr = getattr(self, name)
            if arr.shape != (t,):
                raise UserInputError(f"{where}'{name}' has shape {arr.shape}, expected ({t},)")
        for name in ("observations", "actions", "rewards"):
            check_finite(name, getattr(self, name), where=where)


@dataclass(frozen=True)
class DatasetStats:
    """Per-dimension statistics of a dataset, float32 arrays.

    obs_mean, obs_std: (obs,); act_min, act_max: (act,); reward_mean, reward_std: scalars;
    return_mean, return_std, return_min, return_max: episode-return statistics (raw units).
    ``obs_std`` is floored at 1e-3 so it can divide.
    """

    obs_mean: np.ndarray
    obs_std: np.ndarray
    act_min: np.ndarray
    act_max: np.ndarray
    reward_mean: float
    reward_std: float
    return_mean: float
    return_std: float
    return_min: float
    return_max: float

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict (lists and floats)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetStats:
        arrays = {"obs_mean", "obs_std", "act_min", "act_max"}
        return cls(**{k: (np.asarray(v, dtype=np.float32) if k in arrays else float(v))
                      for k, v in data.items()})


@dataclass(frozen=True)
class Transitions:
    """Flat transition arrays of a dataset, N = total steps.

    observations, next_observations: (N, obs) float32; actions: (N, act) float32; rewards: (N,) float32;
    terminals, timeouts: (N,) bool; episode_index: (N,) int64 (which episode each row came from);
    episode_starts: (E+1,) int64 offsets, rows of episode e are ``episode_starts[e]:episode_starts[e+1]``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_index: np.ndarray
    episode_starts: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class OfflineDataset:
    """An offline dataset: episodes, the env to evaluate in, statistics, a content hash and provenance.

    name: canonical name (``hopper-medium-replay``) or the file it came from.
    env_id: Gymnasium id to evaluate in (``Hopper-v5``), or None when unknown.
    provenance: JSON-native dict saying where the data came from (source kind, path or id, recipe
    metadata).
    """

    name: str
    episodes: tuple[Episode, ...]
    env_id: str | None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def observation_size(self) -> int:
        return int(self.episodes[0].observations.shape[1])

    @property
    def action_size(self) -> int:
        return int(self.episodes[0].actions.shape[1])

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_transitions(self) -> int:
        return sum(len(ep) for ep in self.episodes)

    def validate(self) -> None:
        """Validate every episode and that all share observation/action sizes."""
        if not self.episodes:
            raise UserInputError(f"dataset '{self.name}' holds no episodes")
        obs, act = self.observation_size, self.action_size
        for i, ep in enumerate(self.episodes):
            ep.validate(where=f"episode {i}: ")
            if ep.observations.shape[1:] != (obs,) or ep.actions.shape[1:] != (act,):
                raise UserInputError(
                    f"episode {i}: observation/action sizes {ep.observations.shape[1:]}/"
                    f"{ep.actions.shape[1:]} differ from episode 0 ({obs},)/({act},)")

    @cached_property
    def transitions(self) -> Transitions:
        """Flat arrays of all transitions, built once (see :class:`Transitions`)."""
        lengths = np.array([len(ep) for ep in self.episodes], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Transitions(
            observations=np.concatenate([ep.observations[:-1] for ep in self.episodes]).astype(np.float32),
            actions=np.concatenate([ep.actions for ep in self.episodes]).astype(np.float32),
            rewards=np.concatenate([ep.rewards for ep in self.episodes]).astype(np.float32),
            next_observations=np.concatenate([ep.observations[1:] for ep in self.episodes]).astype(
                np.float32),
            terminals=np.concatenate([ep.terminated for ep in self.episodes]).astype(bool),
            timeouts=np.concatenate([ep.truncated for ep in self.episodes]).astype(bool),
            episode_index=np.repeat(np.arange(len(self.episodes), dtype=np.int64), lengths),
            episode_starts=starts,
        )

    @cached_property
    def stats(self) -> DatasetStats:
        """Statistics over all transitions (observations include every episode's final state)."""
        all_obs = np.concatenate([ep.observations for ep in self.episodes]).astype(np.float64)
        tr = self.transitions
        returns = np.array([ep.episode_return for ep in self.episodes], dtype=np.float64)
        return DatasetStats(
            obs_mean=all_obs.mean(axis=0).astype(np.float32),
            obs_std=np.maximum(all_obs.std(axis=0), 1e-3).astype(np.float32),
            act_min=tr.actions.min(axis=0),
            act_max=tr.actions.max(axis=0),
            reward_mean=float(tr.rewards.mean(dtype=np.float64)),
            reward_std=float(tr.rewards.std(dtype=np.float64)),
            return_mean=float(returns.mean()),
            return_std=float(returns.std()),
            return_min=float(returns.min()),
            return_max=float(returns.max()),
        )

    @cached_property
    def content_hash(self) -> str:
        """sha256 (hex, first 16 chars) over every episode's arrays as float32/bool, in order."""
        h = hashlib.sha256()
        for ep in self.episodes:
            for arr, dtype in ((ep.observations, np.float32), (ep.actions, np.float32),
                               (ep.rewards, np.float32), (ep.terminated, bool), (ep.truncated, bool)):
                a = np.ascontiguousarray(arr, dtype=dtype)
                h.update(str(a.shape).encode())
                h.update(a.tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class TrajectoryBatch:
    """B synthetic trajectories of at most L steps, padded to L, with per-trajectory provenance.

    observations: (B, L+1, obs) float32; actions: (B, L, act) float32; rewards: (B, L) float32;
    terminals: (B, L) bool (True at most once per row, at step ``lengths[b]-1``);
    lengths: (B,) int64 in [1, L], valid steps per row (steps past it are padding and ignored).
    generator: name of what made them (``dydiff``, ``synther``, a planner, a test generator).
    round: (B,) int64 generation round; learner_step: (B,) int64 learner updates when generated;
    filter_score: (B,) float32 score the filter saw (NaN when unfiltered);
    start_index: (B,) int64 row of the real start state in the dataset's flat transitions (-1 if none).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    lengths: np.ndarray
    generator: str
    round: np.ndarray
    learner_step: np.ndarray
    filter_score: np.ndarray
    start_index: np.ndarray

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_transitions(self) -> int:
        return int(self.lengths.sum())

    def validate(self) -> None:
        """Check shapes, dtypes, lengths and finiteness; raise :class:`UserInputError` naming the field."""
        b, length = self.actions.shape[:2]
        obs = self.observations.shape[-1]
        expected = {
            "observations": (b, length + 1, obs), "rewards": (b, length), "terminals": (b, length),
            "lengths": (b,), "round": (b,), "learner_step": (b,), "filter_score": (b,),
            "start_index": (b,),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise UserInputError(f"TrajectoryBatch field '{name}' has shape {got}, expected {shape}")
        if self.lengths.size and (self.lengths.min() < 1 or self.lengths.max() > length):
            raise UserInputError(f"TrajectoryBatch field 'lengths' must lie in [1, {length}]")
        for name in ("observations", "actions", "rewards"):
            arr = getattr(self, name)
            if arr.dtype.kind != "f":
                raise UserInputError(f"TrajectoryBatch field '{name}' has dtype {arr.dtype}, expected float")
            valid = self.valid_mask()
            if name == "observations":
                obs_valid = np.concatenate([np.ones((b, 1), bool), valid], axis=1)
                check_finite(name, arr[obs_valid], where="TrajectoryBatch: ")
            else:
                check_finite(name, arr[valid], where="TrajectoryBatch: ")

    def valid_mask(self) -> np.ndarray:
        """(B, L) bool, True on steps before each row's length."""
        length = self.actions.shape[1]
        return np.arange(length)[None, :] < self.lengths[:, None]

    def to_transitions(self) -> dict[str, np.ndarray]:
        """Flatten the valid steps to transition arrays (row-major: trajectory 0's steps first).

        Returns observations/next_observations (N, obs), actions (N, act), rewards (N,), terminals (N,),
        timeouts (N,) (True on the last valid step of a row that did not terminate), traj (N,) row index
        into the batch, step (N,) step within the trajectory.
        """
        mask = self.valid_mask()
        rows, steps = np.nonzero(mask)
        terminals = self.terminals[rows, steps].astype(bool)
        last = steps == (self.lengths[rows] - 1)
        return {
            "observations": self.observations[rows, steps].astype(np.float32),
            "actions": self.actions[rows, steps].astype(np.float32),
            "rewards": self.rewards[rows, steps].astype(np.float32),
            "next_observations": self.observations[rows, steps + 1].astype(np.float32),
            "terminals": terminals,
            "timeouts": last & ~terminals,
            "traj": rows.astype(np.int64),
            "step": steps.astype(np.int64),
        }

    @staticmethod
    def concatenate(batches: list[TrajectoryBatch]) -> TrajectoryBatch:
        """Concatenate batches of the same L and generator along B."""
        if not batches:
            raise ValueError("nothing to concatenate")
        names = {b.generator for b in batches}
        if len(names) != 1:
            raise ValueError(f"cannot concatenate batches of different generators {sorted(names)}")
        cat = {f: np.concatenate([getattr(b, f) for b in batches]) for f in (
            "observations", "actions", "rewards", "terminals", "lengths", "round", "learner_step",
            "filter_score", "start_index")}
        return TrajectoryBatch(generator=batches[0].generator, **cat)
