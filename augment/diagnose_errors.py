"""State errors of the diagnostics (dydiff.txt Eq. 37): per start and step, their means, alive masks.

Pure functions on (B, L+1, obs) state arrays; re-exported by :mod:`augment.diagnose`.
"""

from __future__ import annotations

import numpy as np


def state_errors(model_states: np.ndarray, sim_states: np.ndarray) -> np.ndarray:
    """Eq. 37 per start state and step: ||s_model,t - s_t||_2^2 for t = 1..L.

    model_states, sim_states: (B, L+1, obs). Returns (B, L) float64.
    """
    diff = model_states[:, 1:].astype(np.float64) - sim_states[:, 1:].astype(np.float64)
    return (diff ** 2).sum(axis=-1)


def mean_errors(per_start: np.ndarray, alive: np.ndarray | None = None) -> np.ndarray:
    """Mean over start states of (B, L) errors -> (L,); with ``alive`` (B, L) bool only alive rows count
    (NaN where none is alive)."""
    if alive is None:
        return per_start.mean(axis=0)
    counts = alive.sum(axis=0)
    sums = np.where(alive, per_start, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def alive_mask(terminal_step: np.ndarray, length: int) -> np.ndarray:
    """(B, L) bool: state s_t (t = 1..L) counts while the simulated trajectory had not terminated before
    it (the terminal state itself counts). terminal_step: (B,) from :func:`replay_actions`."""
    t = np.arange(1, length + 1)[None, :]
    first = np.where(terminal_step < 0, length, terminal_step)[:, None]
    return t <= first + 1

