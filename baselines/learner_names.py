"""Names of the learners and their validation, without importing d3rlpy (the CLI lists them at start-up).

:mod:`baselines.learners` re-exports these; everything that builds a learner imports from there.
"""

from __future__ import annotations

from stores.errors import UserInputError, did_you_mean

LEARNERS: tuple[str, ...] = ("td3bc", "cql", "iql")

#: Learners whose rollout policy samples a ~ pi(.|s) (DyDiff Eq. 8); td3bc's actor is deterministic.
STOCHASTIC_LEARNERS: frozenset[str] = frozenset({"cql", "iql"})


def check_learner(name: str) -> str:
    """Return ``name`` when it is a known learner; else raise :class:`UserInputError` with a suggestion."""
    if name not in LEARNERS:
        raise UserInputError(did_you_mean(name, LEARNERS, hint="learners are: td3bc, cql, iql"))
    return name
