"""Training windows of DyDiff Eq. 2 and the one pack/unpack pair for the trajectory tensor layout.

Layout of one trajectory of L steps as the diffusion model sees it (``pack`` / ``unpack``)::

    x[b, t, :obs]  = s_t                 for t = 0..L        (L+1 states)
    x[b, t, obs:]  = a_t                 for t = 0..L-1      (L actions)
    x[b, L, obs:]  = 0                   the action slot of the last state is zero padding

so x is (B, L+1, obs+act). The conditions of Eq. 3 are s_0 and every action slot (including the padded
one, which is always zero); :func:`condition_mask` marks them.

Eq. 2: an episode of H actions (H+1 states) gives the windows starting at i = 0..H-L when H >= L
(H-L+1 windows of L+1 states and L actions), and, when H < L, one window holding the whole episode
followed by zeros. :class:`WindowIndex` keeps only (episode, start) pairs and gathers batches on demand
from one packed array, so no window is materialised in advance. Padding is applied after normalisation
(a zero there is the dataset mean in raw units), and a validity mask marks the real steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stores.errors import UserInputError


def pack(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """states (B, L+1, obs), actions (B, L, act) -> x (B, L+1, obs+act) with a zero last action slot."""
    b, l1, _ = states.shape
    if actions.shape[:2] != (b, l1 - 1):
        raise UserInputError(
            f"actions have shape {actions.shape}, expected ({b}, {l1 - 1}, act) for states {states.shape}")
    pad = np.zeros((b, 1, actions.shape[2]), dtype=actions.dtype)
    return np.concatenate([states, np.concatenate([actions, pad], axis=1)], axis=2).astype(np.float32)


def unpack(x: np.ndarray, obs_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """x (B, L+1, obs+act) -> states (B, L+1, obs), actions (B, L, act)."""
    return x[:, :, :obs_dim], x[:, :-1, obs_dim:]


def to_relative(x: np.ndarray, obs_dim: int, valid: np.ndarray | None = None) -> np.ndarray:
    """States relative to the start: x[:, t, :obs] - x[:, 0, :obs] for t >= 1, s_0 kept absolute.

    x: (B, L+1, obs+act) in the layout of :func:`pack`; valid: (B, L+1) bool or None (padded steps are
    set to 0, i.e. "equal to s_0"). Returns a new array; :func:`to_absolute` inverts it on real steps.
    """
    out = np.array(x, dtype=np.float32, copy=True)
    delta = out[:, 1:, :obs_dim] - out[:, :1, :obs_dim]
    if valid is not None:
        delta = np.where(valid[:, 1:, None], delta, 0.0)
    out[:, 1:, :obs_dim] = delta
    return out


def to_absolute(x: np.ndarray, obs_dim: int) -> np.ndarray:
    """Inverse of :func:`to_relative`: x[:, t, :obs] + x[:, 0, :obs] for t >= 1. x: (B, L+1, obs+act)."""
    out = np.array(x, dtype=np.float32, copy=True)
    out[:, 1:, :obs_dim] += out[:, :1, :obs_dim]
    return out


def condition_mask(horizon: int, obs_dim: int, act_dim: int) -> np.ndarray:
    """(L+1, obs+act) bool, True on the conditioned entries of Eq. 3: s_0 and every action slot."""
    m = np.zeros((horizon + 1, obs_dim + act_dim), dtype=bool)
    m[0, :obs_dim] = True
    m[:, obs_dim:] = True
    return m


def windows_per_episode(lengths: np.ndarray, horizon: int) -> np.ndarray:
    """Eq. 2 window counts: H - L + 1 for an episode of H >= L actions, 1 (padded) for H < L. (E,) int64."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.maximum(lengths - horizon + 1, 1)


@dataclass(frozen=True)
class WindowIndex:
    """All windows of Eq. 2 over a set of episodes, as indices into one packed array.

    rows: (R, obs+act) float32, every episode's H+1 steps in the layout of :func:`pack` (normalised,
    last action slot zero), episodes back to back; episode_offsets: (E,) int64 first row of each episode;
    episode_lengths: (E,) int64 H (actions) per episode; window_episode, window_start: (W,) int64, the
    episode and first step of each window; horizon: L; obs_dim: obs.
    """

    rows: np.ndarray
    episode_offsets: np.ndarray
    episode_lengths: np.ndarray
    window_episode: np.ndarray
    window_start: np.ndarray
    horizon: int
    obs_dim: int

    def __len__(self) -> int:
        return int(self.window_episode.shape[0])

    def gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``idx`` (B,) -> x (B, L+1, obs+act) float32 and valid (B, L+1) bool.

        valid[b, t] is True when state t of the window is a real state of its episode; entries of
        padded steps are zero, and the action slot of every window's last state is zero.
        """
        ep = self.window_episode[idx]
        start = self.window_start[idx]
        steps = start[:, None] + np.arange(self.horizon + 1)[None, :]
        valid = steps <= self.episode_lengths[ep][:, None]
        row = self.episode_offsets[ep][:, None] + np.minimum(steps, self.episode_lengths[ep][:, None])
        x = self.rows[row]
        x[~valid] = 0.0
        x[:, -1, self.obs_dim:] = 0.0
        return x, valid


def build_windows(
    observations: list[np.ndarray], actions: list[np.ndarray], horizon: int
) -> WindowIndex:
    """Index every window of Eq. 2 over episodes given as lists of (H_e+1, obs) and (H_e, act) arrays.

    The arrays should already be normalised (padding happens after normalisation, see the module doc).
    """
    if horizon < 1:
        raise UserInputError(f"the diffusion horizon L must be >= 1, got {horizon}")
    if not observations:
        raise UserInputError("cannot build diffusion training windows from an empty dataset")
    lengths = np.array([a.shape[0] for a in actions], dtype=np.int64)
    obs_dim = int(observations[0].shape[1])
    act_dim = int(actions[0].shape[1])
    blocks = []
    for o, a in zip(observations, actions, strict=True):
        a_pad = np.concatenate([a, np.zeros((1, act_dim), dtype=a.dtype)], axis=0)
        blocks.append(np.concatenate([o, a_pad], axis=1))
    rows = np.concatenate(blocks).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    counts = windows_per_episode(lengths, horizon)
    window_episode = np.repeat(np.arange(len(lengths), dtype=np.int64), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    window_start = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first, counts)
    return WindowIndex(rows=rows, episode_offsets=offsets, episode_lengths=lengths,
                       window_episode=window_episode, window_start=window_start, horizon=horizon,
                       obs_dim=obs_dim)
