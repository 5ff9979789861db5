"""DyDiff's rollouts (dydiff.txt Algorithm 1, steps 2-3): Eq. 6 single-step rollouts, Eq. 7/9 diffusion
refinement with the iteration rule, Eq. 8 policy relabels. Pure functions of their inputs and ``rng``.

Re-exported by :mod:`augment.generators.dydiff`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from augment.generators.dydiff_config import ITERATION_RULES
from stores.errors import UserInputError

if TYPE_CHECKING:  # pragma: no cover
    from baselines.protocols import Policy


class _Dynamics(Protocol):
    def predict_next(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


class _Sampler(Protocol):
    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


def policy_actions(policy: Policy, observations: np.ndarray) -> np.ndarray:
    """a ~ pi(.|s) for a batch: (B, obs) -> (B, act) float32, checked finite."""
    actions = np.asarray(policy.act(np.ascontiguousarray(observations, dtype=np.float32)), dtype=np.float32)
    if actions.ndim != 2 or actions.shape[0] != observations.shape[0]:
        raise UserInputError(f"the policy returned actions of shape {actions.shape} for "
                             f"{observations.shape[0]} observations; expected (B, act)")
    return actions


def single_step_rollout(s0: np.ndarray, policy: Policy, dynamics: _Dynamics, length: int,
                        rng: np.random.Generator, *, mean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 6: tau_dyn = (s_0, a_0, s_1, ..., a_{L-1}, s_L) with a_i ~ pi(.|s_i), s_{i+1} ~ T(.|s_i, a_i).

    s0: (B, obs) float32. ``mean``: s_{i+1} = the elite mean (``predict_next(..., deterministic=True)``,
    the official code) instead of a sample. Returns states (B, L+1, obs) with ``states[:, 0] == s0`` and
    actions (B, L, act).
    """
    s0 = np.asarray(s0, dtype=np.float32)
    states = [s0]
    actions = []
    for _ in range(length):
        a = policy_actions(policy, states[-1])
        actions.append(a)
        nxt = (dynamics.predict_next(states[-1], a, rng, deterministic=True) if mean  # type: ignore[call-arg]
               else dynamics.predict_next(states[-1], a, rng))
        states.append(np.asarray(nxt, dtype=np.float32))
    return np.stack(states, axis=1), np.stack(actions, axis=1)


def relabel_actions(policy: Policy, states: np.ndarray) -> np.ndarray:
    """Eq. 8: a_0 ~ pi(.|s_0), a_i ~ pi(.|s_i^DM) for 1 <= i <= L-1.

    states: (B, L+1, obs); the last state s_L gets no action. Returns (B, L, act) float32. All L states of
    a row go to the policy, including those after a (later cut) terminal state.
    """
    b, l_plus_1, obs = states.shape
    flat = states[:, : l_plus_1 - 1].reshape(b * (l_plus_1 - 1), obs)
    acts = policy_actions(policy, flat)
    return acts.reshape(b, l_plus_1 - 1, acts.shape[-1])


def iteration_update(new: np.ndarray, previous: np.ndarray, rule: str) -> np.ndarray:
    """The states of iteration k from its diffusion sample ``new`` and the states of iteration k-1.

    ``replace`` (the paper's text): states^(k) = new. ``average`` (the official code,
    ``dynamics_recursive_sampler``): states^(k) = (new + states^(k-1)) / 2. Both (B, L+1, obs); s_0 is
    shared, so it stays exact.
    """
    if rule == "replace":
        return np.asarray(new, dtype=np.float32)
    if rule == "average":
        return (0.5 * (np.asarray(new, dtype=np.float64) + previous)).astype(np.float32)
    raise UserInputError(f"unknown iteration rule '{rule}'; use one of {', '.join(ITERATION_RULES)}")


def refine(s0: np.ndarray, actions: np.ndarray, policy: Policy, diffusion: _Sampler, iterations: int,
           rng: np.random.Generator, *, states: np.ndarray | None = None, rule: str = "replace",
           sdedit_sigma: float | None = None,
           on_iteration: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
           ) -> tuple[np.ndarray | None, np.ndarray]:
    """Eq. 7-9 iterated M times: a sample ~ p_theta(.|s_0, a^(k-1)), the iteration rule, then Eq. 8.

    s0: (B, obs); actions: (B, L, act) = a^(0), the single-step rollout's actions; states: (B, L+1, obs)
    = states^(0), the single-step rollout's states (needed by ``rule="average"`` and by an SDEdit start).
    rule: :func:`iteration_update`. sdedit_sigma: start each reverse process from states^(k-1) noised to
    that level (``diffusion.sample(..., init_states=, start_sigma=)``) instead of pure noise.
    ``on_iteration(k, states^(k), a^(k-1))`` sees each iteration's states (after the rule) with the
    actions their sample was conditioned on.
    Returns (states^(M) (B, L+1, obs) or None when M = 0, a^(M) (B, L, act)).
    """
    if rule not in ITERATION_RULES:  # checked here too: with states=None the loop never calls the rule
        raise UserInputError(f"unknown iteration rule '{rule}'; use one of {', '.join(ITERATION_RULES)}")
    if (rule == "average" or sdedit_sigma is not None) and iterations > 0 and states is None:
        raise UserInputError("refine() needs the single-step states for the 'average' rule or an SDEdit "
                             "start; pass states=")
    current: np.ndarray | None = states
    refined: np.ndarray | None = None
    for k in range(1, iterations + 1):
        if sdedit_sigma is not None:
            new = diffusion.sample(s0, actions, rng, init_states=current,  # type: ignore[call-arg]
                                   start_sigma=sdedit_sigma)
        else:
            new = diffusion.sample(s0, actions, rng)
        new = np.asarray(new, dtype=np.float32)
        refined = new if rule == "replace" or current is None else iteration_update(new, current, rule)
        current = refined
        if on_iteration is not None:
            on_iteration(k, refined, actions)
        actions = relabel_actions(policy, refined)
    return refined, actions

