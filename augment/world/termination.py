"""Termination rules on observations, taken from Gymnasium's MuJoCo sources (v4/v5 share them).

A rule maps next observations ``(B, obs)`` to ``(B,)`` bool, True where the state is terminal. Synthetic
trajectories are cut at their first terminal state with these rules (DyDiff Sec. 4.2; REFERENCE §6).
Observations exclude the x position (the Gymnasium and D4RL default), so ``obs[0]`` is the torso height
``z`` = qpos[1] and ``obs[1]`` its angle = qpos[2].

* Hopper (``Hopper-v2..v5``): healthy while ``z > 0.7``, ``-0.2 < angle < 0.2`` and every entry of
  ``obs[1:]`` lies in (-100, 100). The env checks the *unclipped* joint velocities while observations
  clip them to [-10, 10], so a velocity above 100 in magnitude (never seen in practice) is the one case
  the observation cannot show.
* Walker2d (``Walker2d-v2..v5``): healthy while ``0.8 < z < 2.0`` and ``-1 < angle < 1``.
* HalfCheetah (any version): never terminates.
* PointMaze / maze2d (``PointMaze_{UMaze,Medium,Large}[Dense]``, with or without the
  ``diffusion-augment/`` namespace of the maze2d datasets): never terminates (a continuing task; DyDiff
  uses no terminals on maze2d).
* Anything else, or an unknown env (``None``): the fallback never terminates, so rollouts run their
  full length and no synthetic transition is marked terminal. A warning says so once per env id. This
  is right for continuing tasks (HalfCheetah-like, PointMaze) and optimistic for tasks that can fail;
  register a rule with :func:`register_termination` to do better.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import numpy as np

TerminationFn = Callable[[np.ndarray], np.ndarray]


def _as_2d(next_obs: np.ndarray) -> np.ndarray:
    obs = np.asarray(next_obs)
    if obs.ndim != 2:
        raise ValueError(f"termination rules take next observations of shape (B, obs), got {obs.shape}")
    return obs


def hopper_terminal(next_obs: np.ndarray) -> np.ndarray:
    """Hopper v2-v5: (B, 11) -> (B,) bool, True where not healthy (z <= 0.7, |angle| >= 0.2, or some
    |obs[1:]| >= 100)."""
    obs = _as_2d(next_obs)
    z, angle = obs[:, 0], obs[:, 1]
    healthy = ((z > 0.7) & (angle > -0.2) & (angle < 0.2)
               & np.all((obs[:, 1:] > -100.0) & (obs[:, 1:] < 100.0), axis=1) & np.isfinite(obs).all(axis=1))
    return ~healthy


def walker2d_terminal(next_obs: np.ndarray) -> np.ndarray:
    """Walker2d v2-v5: (B, 17) -> (B,) bool, True where not (0.8 < z < 2.0 and -1 < angle < 1)."""
    obs = _as_2d(next_obs)
    z, angle = obs[:, 0], obs[:, 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0) & np.isfinite(obs).all(axis=1)
    return ~healthy


def never_terminal(next_obs: np.ndarray) -> np.ndarray:
    """(B, obs) -> (B,) all False (HalfCheetah, continuing tasks, and the fallback)."""
    return np.zeros(_as_2d(next_obs).shape[0], dtype=bool)


_RULES: dict[str, TerminationFn] = {
    "hopper": hopper_terminal,
    "walker2d": walker2d_terminal,
    "halfcheetah": never_terminal,
    # maze2d (PointMaze, continuing task: never terminates; DyDiff uses no terminals on maze2d). Covers the
    # D4RL-style ids diffusion-augment/PointMaze_*-v3 of stores.maze_env and gymnasium-robotics' own.
    **{f"pointmaze_{maze}{dense}": never_terminal for maze in ("umaze", "medium", "large")
       for dense in ("", "dense")},
}
_WARNED: set[str] = set()


def env_family(env_id: str) -> str:
    """``Hopper-v5`` -> ``hopper``; ``Walker2d-v4`` -> ``walker2d``; a namespace (``ns/Name-v1``) is
    dropped."""
    name = env_id.rsplit("/", 1)[-1]
    return re.sub(r"-v\d+$", "", name).lower()


def register_termination(family: str, fn: TerminationFn) -> None:
    """Add (or replace) the rule for an env family (``env_family(env_id)``, e.g. ``ant``)."""
    _RULES[family.lower()] = fn


def has_rule(env_id: str | None) -> bool:
    """True when ``env_id`` has a rule of its own (not the fallback)."""
    return env_id is not None and env_family(env_id) in _RULES


def termination_fn(env_id: str | None) -> TerminationFn:
    """The termination rule of ``env_id``: (B, obs) next observations -> (B,) bool.

    Envs without a rule get :func:`never_terminal` and one warning (see the module docstring).
    """
    if has_rule(env_id):
        return _RULES[env_family(env_id)]  # type: ignore[arg-type]
    key = str(env_id)
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(f"no termination rule for env {env_id!r}: synthetic rollouts will never terminate "
                      f"(rules exist for {', '.join(sorted(_RULES))}; add one with "
                      "augment.world.termination.register_termination)", stacklevel=2)
    return never_terminal
