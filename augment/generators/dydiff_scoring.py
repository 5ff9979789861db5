"""Scoring, filtering and cutting a DyDiff round (dydiff.txt Algorithm 1, steps 4-5; Eq. 11, section 4.2).

Trajectory scores (Eq. 11), the hardmax / softmax filter keeping floor(eta * B_r) rows, the cut at each
row's first terminal state and the zeroed padding of the stored :class:`TrajectoryBatch`. Pure functions.
Re-exported by :mod:`augment.generators.dydiff`.

Two guards the paper does not have (``DyDiffConfig.reward_clip`` / ``state_box``, off by default):
:func:`clip_rewards` clips r_psi's predictions to the data's reward range, and :func:`state_box` /
:func:`box_lengths` cut each rollout before its first state outside the data's per-dimension box (a
MOPO-style truncation at the edge of the data's support). With the box on, Eq. 11 sums only the steps
that will be stored (:func:`masked_scores`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from augment.generators.dydiff_config import FILTERS
from stores.errors import UserInputError
from stores.schema import TrajectoryBatch


def trajectory_scores(rewards: np.ndarray) -> np.ndarray:
    """Eq. 11: r_psi(tau) = r_psi(s_0, a_0) + sum_{i=1}^{L-1} r_psi(s_i, a_i). rewards: (B, L) -> (B,).

    Summed over the whole generated window, as the paper writes it (before the cut at terminals).
    Rows holding NaN/inf get -inf so no filter keeps them.
    """
    scores = rewards.astype(np.float64).sum(axis=1)
    return np.where(np.isfinite(scores), scores, -np.inf)


def masked_scores(rewards: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Eq. 11 over each row's first ``lengths`` steps: rewards (B, L), lengths (B,) -> (B,) float64.

    Rows with no step left (length 0) or a non-finite sum get -inf, so no filter keeps them. The sum is
    :func:`augment.generators.filters.trajectory_scores` with lengths.
    """
    from augment.generators import filters

    scores = filters.trajectory_scores(rewards, lengths)
    return np.where(np.isfinite(scores) & (np.asarray(lengths) > 0), scores, -np.inf)


def clip_rewards(rewards: np.ndarray, low: float, high: float) -> np.ndarray:
    """r_psi(s, a) clipped to the data's reward range [low, high]; same shape, float32. NaN stays NaN."""
    if not low <= high:
        raise ValueError(f"reward range must have low <= high, got [{low}, {high}]")
    return np.clip(np.asarray(rewards, dtype=np.float32), np.float32(low), np.float32(high))


def state_box(observations: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The data's per-dimension box widened by ``margin`` times its width on each side.

    observations: (N, obs) real states (the dataset's observations and next observations); margin >= 0.
    Returns lo, hi: (obs,) float32, ``min - margin * (max - min)`` and ``max + margin * (max - min)``.
    """
    if margin < 0.0:
        raise ValueError(f"state box margin must be >= 0, got {margin}")
    x = np.asarray(observations, dtype=np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    width = hi - lo
    return (lo - margin * width).astype(np.float32), (hi + margin * width).astype(np.float32)


def box_lengths(states: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Steps before each row's first state outside [lo, hi]: (B,) int64 in [0, L].

    states: (B, L+1, obs) with s_0 at index 0 (a real state, not checked); step i (s_i, a_i, s_{i+1}) is
    kept while every s_1 .. s_{i+1} lies inside the box, so a row whose s_1 is outside has length 0.
    Non-finite states count as outside.
    """
    nxt = np.asarray(states)[:, 1:]
    inside = np.isfinite(nxt).all(axis=-1) & (nxt >= lo).all(axis=-1) & (nxt <= hi).all(axis=-1)
    outside = ~inside
    length = outside.shape[1]
    return np.where(outside.any(axis=1), outside.argmax(axis=1), length).astype(np.int64)


def truncate_at_terminals(terminal_flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut each row at its first terminal state.

    terminal_flags: (B, L) bool, True where the env's termination rule holds for s_{i+1}.
    Returns lengths (B,) int64 = first terminal step + 1 (L when none) and terminals (B, L) bool, True
    only on that first terminal step (later steps are dropped as padding).
    """
    flags = np.asarray(terminal_flags, dtype=bool)
    b, length = flags.shape
    any_terminal = flags.any(axis=1)
    first = np.where(any_terminal, flags.argmax(axis=1), length - 1)
    lengths = (first + 1).astype(np.int64)
    terminals = np.zeros((b, length), dtype=bool)
    rows = np.flatnonzero(any_terminal)
    terminals[rows, first[rows]] = True
    return lengths, terminals


def mask_padding(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                 lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero every step past each row's length (observations past ``s_length``) so padding is inert.

    observations (B, L+1, obs), actions (B, L, act), rewards (B, L), lengths (B,); returns copies.
    """
    length = actions.shape[1]
    step_valid = np.arange(length)[None, :] < lengths[:, None]
    obs_valid = np.arange(length + 1)[None, :] <= lengths[:, None]
    return (np.where(obs_valid[..., None], observations, 0.0).astype(np.float32),
            np.where(step_valid[..., None], actions, 0.0).astype(np.float32),
            np.where(step_valid, rewards, 0.0).astype(np.float32))


def finite_rows(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """(B,) bool: rows whose states (B, L+1, obs), actions (B, L, act) and rewards (B, L) are all finite."""
    return (np.isfinite(states).all(axis=(1, 2)) & np.isfinite(actions).all(axis=(1, 2))
            & np.isfinite(rewards).all(axis=1))


def kept_batch(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, flags: np.ndarray,
               keep: np.ndarray, *, generator: str, round: int, learner_step: int,
               filter_score: np.ndarray | Callable[[np.ndarray], np.ndarray],
               start_index: np.ndarray, max_lengths: np.ndarray | None = None) -> TrajectoryBatch:
    """The rows ``keep`` (K,) of a round as a validated :class:`TrajectoryBatch`: each cut at its first
    terminal (:func:`truncate_at_terminals` on flags (B, L)) with the padding zeroed (:func:`mask_padding`).

    states (B, L+1, obs), actions (B, L, act), rewards (B, L): the whole round; filter_score: (K,) float32,
    or a function of the kept rows' lengths (K,) that returns it; start_index: (K,) of the kept rows.
    max_lengths: (B,) int64 in [1, L] or None: a cut that is not a terminal (the state box, see
    :func:`box_lengths`); a row cut there ends truncated, with no terminal flag.
    """
    lengths, terminals = truncate_at_terminals(flags[keep])
    if max_lengths is not None:
        cap = np.asarray(max_lengths, dtype=np.int64)[keep]
        cut = cap < lengths
        lengths = np.where(cut, cap, lengths)
        terminals[cut] = False
    obs_k, act_k, rew_k = mask_padding(states[keep], actions[keep], rewards[keep], lengths)
    k = keep.shape[0]
    score = filter_score(lengths) if callable(filter_score) else filter_score
    batch = TrajectoryBatch(
        observations=obs_k, actions=act_k, rewards=rew_k, terminals=terminals, lengths=lengths,
        generator=generator, round=np.full(k, round, dtype=np.int64),
        learner_step=np.full(k, learner_step, dtype=np.int64), filter_score=score, start_index=start_index)
    if k:
        batch.validate()
    return batch


def select_trajectories(scores: np.ndarray, kind: str, eta: float, temperature: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Indices (K,) int64 kept by the ``hardmax`` / ``softmax`` filter (section 4.2), K = floor(eta*B).

    Delegates to :mod:`augment.generators.filters`; rows with a score of -inf (non-finite rollouts) are
    never kept. The result is sorted so the store keeps the rollout order.
    """
    from augment.generators import filters

    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return np.zeros(0, dtype=np.int64)
    keep = max(1, int(np.floor(eta * scores.shape[0] + 1e-9)))
    keep = min(keep, finite.size)
    eta_eff = keep / finite.size
    sub = scores[finite]
    if kind == "hardmax":
        picked = filters.hardmax_filter(sub, eta_eff)
    elif kind == "softmax":
        picked = filters.softmax_filter(sub, eta_eff, temperature=temperature, rng=rng)
    else:
        raise UserInputError(f"unknown filter '{kind}'; use one of {', '.join(FILTERS)}")
    return np.sort(finite[np.asarray(picked, dtype=np.int64)])

