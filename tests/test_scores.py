"""Normalized scores (Eq. 1 of stores.scores) with D4RL's reference returns."""

from __future__ import annotations

import numpy as np
import pytest

from stores.errors import UserInputError
from stores.names import NAMES
from stores.scores import family_of, normalized_score, reference_returns, return_for_score


def test_reference_returns_match_d4rl() -> None:
    assert reference_returns("hopper-medium-replay") == (-20.272305, 3234.3)
    assert reference_returns("halfcheetah-medium") == (-280.178953, 12135.0)
    assert reference_returns("walker2d-expert") == (1.629008, 4592.3)
    assert reference_returns("maze2d-umaze") == (23.85, 161.86)
    assert reference_returns("maze2d-medium-v1") == (13.13, 277.39)
    assert reference_returns("maze2d-large") == (6.7, 273.99)


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_name_has_a_score(name: str) -> None:
    low, high = reference_returns(name)
    assert normalized_score(low, name) == pytest.approx(0.0)
    assert normalized_score(high, name) == pytest.approx(100.0)


@pytest.mark.parametrize(("env_id", "family"), [
    ("Hopper-v5", "hopper"), ("Hopper-v4", "hopper"), ("HalfCheetah-v5", "halfcheetah"),
    ("Walker2d-v4", "walker2d"), ("PointMaze_UMaze-v3", "maze2d-umaze"),
    ("PointMaze_LargeDense-v3", "maze2d-large"), ("hopper-mr", "hopper"),
    ("hopper_medium_replay-v2", "hopper"), ("mujoco/walker2d/medium-v0", "walker2d"),
    ("D4RL/pointmaze/medium-v2", "maze2d-medium"), ("minari:mujoco/hopper/expert-v0", "hopper"),
    ("diffusion-augment/PointMaze_UMaze-v3", "maze2d-umaze"), ("diffusion-augment/PointMaze_Large-v3",
                                                               "maze2d-large"),
    ("maze2d-u", "maze2d-umaze"), ("maze2d-medium-v1", "maze2d-medium"),
])
def test_env_ids_and_ids_map_to_families(env_id: str, family: str) -> None:
    assert family_of(env_id) == family


def test_arrays_and_scalars() -> None:
    low, high = reference_returns("hopper")
    returns = np.array([[low, (low + high) / 2], [high, low - (high - low)]])
    scores = normalized_score(returns, "Hopper-v5")
    assert isinstance(scores, np.ndarray) and scores.shape == (2, 2)
    np.testing.assert_allclose(scores, [[0.0, 50.0], [100.0, -100.0]])
    scalar = normalized_score(1000.0, "hopper-medium")
    assert isinstance(scalar, float)
    assert scalar == pytest.approx(100 * (1000.0 + 20.272305) / (3234.3 + 20.272305))
    assert return_for_score(scalar, "hopper") == pytest.approx(1000.0)


def test_unknown_env_suggests() -> None:
    with pytest.raises(UserInputError, match="did you mean 'hopper'"):
        reference_returns("hoper")
    with pytest.raises(UserInputError):
        normalized_score(1.0, "CartPole-v1")
