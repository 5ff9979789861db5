"""D4RL normalized scores.

The normalized score of an undiscounted episode return ``R`` is (D4RL, Fu et al. 2020)

    score(R) = 100 * (R - R_random) / (R_expert - R_random)                              (1)

with D4RL's reference returns ``R_random`` (a uniform random policy) and ``R_expert`` (a policy trained
online to convergence) per environment. A score of 0 is a random policy, 100 an expert.

Names accepted everywhere: a registered dataset name or alias (``hopper-medium-replay``, ``hopper-mr``), a
D4RL-style name with a version (``hopper-medium-replay-v2``), a bare environment family (``hopper``,
``maze2d-umaze``, ``maze2d-u``) or a Gymnasium id (``Hopper-v5``, ``Walker2d-v4``, ``PointMaze_UMaze-v3``,
``diffusion-augment/PointMaze_UMaze-v3``).
"""

from __future__ import annotations

import re

import numpy as np

from stores.errors import UserInputError, did_you_mean

# (R_random, R_expert) per environment family, D4RL's REF_MIN_SCORE / REF_MAX_SCORE.
REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
}

# Gymnasium environment names (without version) -> family.
_GYM_FAMILIES: dict[str, str] = {
    "hopper": "hopper",
    "halfcheetah": "halfcheetah",
    "walker2d": "walker2d",
    "pointmaze_umaze": "maze2d-umaze",
    "pointmaze_umazedense": "maze2d-umaze",
    "pointmaze_medium": "maze2d-medium",
    "pointmaze_mediumdense": "maze2d-medium",
    "pointmaze_large": "maze2d-large",
    "pointmaze_largedense": "maze2d-large",
}


def family_of(name_or_env: str) -> str:
    """The reference-return family (``hopper``, ``maze2d-umaze``, ...) of a dataset name or env id.

    Raises :class:`UserInputError` with a suggestion when nothing matches.
    """
    text = name_or_env.strip()
    if text.startswith("minari:"):
        text = text[len("minari:"):]
    # Gymnasium ids: "Hopper-v5", "PointMaze_UMaze-v3"; Minari ids: "mujoco/hopper/medium-v0".
    if "/" in text:
        parts = [p for p in text.lower().split("/") if p]
        for part in parts:
            key = re.sub(r"-v\d+$", "", part)
            if key in REFERENCE_RETURNS:
                return key
            if key in _GYM_FAMILIES:
                return _GYM_FAMILIES[key]
            if key == "pointmaze" and parts[-1].split("-")[0] in ("umaze", "medium", "large"):
                return "maze2d-" + parts[-1].split("-")[0]
    key = re.sub(r"-v\d+$", "", text.lower())
    if key in _GYM_FAMILIES:
        return _GYM_FAMILIES[key]
    if key.startswith("maze2d-"):
        for fam in ("maze2d-umaze", "maze2d-medium", "maze2d-large"):
            if key == fam or key.startswith(fam + "-"):
                return fam
    head = re.split(r"[-_]", key)[0]
    if head in REFERENCE_RETURNS:
        return head
    from stores.names import parse_name  # aliases such as maze2d-u, umaze, pointmaze-large

    try:
        return parse_name(text).score_name
    except UserInputError:
        pass
    raise UserInputError(did_you_mean(
        name_or_env, list(REFERENCE_RETURNS) + ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v4"],
        hint="normalized scores exist for hopper, halfcheetah, walker2d and maze2d-{umaze,medium,large}"))


def reference_returns(name_or_env: str) -> tuple[float, float]:
    """D4RL's (random, expert) reference returns for a dataset name or env id (raw return units)."""
    return REFERENCE_RETURNS[family_of(name_or_env)]


def normalized_score(returns: float | np.ndarray, name_or_env: str) -> float | np.ndarray:
    """Eq. (1): ``100 * (R - R_random) / (R_expert - R_random)``.

    returns: a scalar or an array of undiscounted episode returns (any shape); the result has the same
    shape (a Python float for a scalar input).
    """
    low, high = reference_returns(name_or_env)
    arr = np.asarray(returns, dtype=np.float64)
    score = 100.0 * (arr - low) / (high - low)
    if np.ndim(returns) == 0:
        return float(score)
    return score


def return_for_score(score: float, name_or_env: str) -> float:
    """Inverse of Eq. (1): the raw return whose normalized score is ``score``."""
    low, high = reference_returns(name_or_env)
    return float(low + score / 100.0 * (high - low))
