"""DyDiff reward filters: proportions, Eq. 11 scores, and the softmax temperature limits (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from augment.generators.filters import (
    filter_trajectories,
    hardmax_filter,
    keep_count,
    softmax_filter,
    softmax_probabilities,
    trajectory_scores,
    zscore,
)
from stores.errors import UserInputError

CASES = [(10, 0.8, 8), (2048, 0.8, 1638), (2048, 0.6, 1228), (7, 0.5, 3), (5, 1.0, 5), (5, 0.0, 0),
         (3, 2 / 3, 2)]


@pytest.mark.parametrize(("batch", "eta", "expected"), CASES)
def test_both_filters_keep_floor_eta_b_distinct_rows(batch: int, eta: float, expected: int) -> None:
    assert keep_count(batch, eta) == expected
    scores = np.random.default_rng(0).normal(size=batch)
    hard = hardmax_filter(scores, eta)
    soft = softmax_filter(scores, eta, temperature=0.05, rng=np.random.default_rng(1))
    for idx in (hard, soft):
        assert idx.dtype == np.int64 and idx.shape == (expected,)
        assert np.unique(idx).size == expected and (idx >= 0).all() and (idx < batch).all()


def test_hardmax_keeps_the_highest_scores_best_first() -> None:
    scores = np.array([3.0, -1.0, 7.0, 0.5, 7.0, 2.0])
    np.testing.assert_array_equal(hardmax_filter(scores, 0.5), [2, 4, 0])
    kept = hardmax_filter(scores, 0.5)
    assert scores[kept].min() >= np.delete(scores, kept).max()


def test_trajectory_scores_sum_valid_steps_eq11() -> None:
    rewards = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 100.0]], dtype=np.float32)
    np.testing.assert_allclose(trajectory_scores(rewards), [6.0, 101.0])
    np.testing.assert_allclose(trajectory_scores(rewards, np.array([3, 2])), [6.0, 1.0])


def test_softmax_probabilities_follow_zscored_softmax() -> None:
    scores = np.array([10.0, 20.0, 30.0, 40.0])
    p = softmax_probabilities(scores, temperature=2.0)
    # z-scores by hand: mean 25, population standard deviation sqrt(500 / 4) (ddof = 0)
    z = np.array([-15.0, -5.0, 5.0, 15.0]) / np.sqrt(125.0)
    np.testing.assert_allclose(p, np.exp(z / 2) / np.exp(z / 2).sum(), rtol=1e-12)
    np.testing.assert_allclose(zscore(scores), z, rtol=1e-12)
    # scale and shift of the rewards do not matter after the z-score
    np.testing.assert_allclose(softmax_probabilities(3 * scores - 7, 2.0), p)
    np.testing.assert_allclose(softmax_probabilities(np.ones(4), 0.05), np.full(4, 0.25))
    smoothed = softmax_probabilities(scores, 0.01, eps=0.1)
    assert smoothed.min() >= 0.1 / 4 and np.isclose(smoothed.sum(), 1.0)


def test_softmax_single_draw_frequencies_match_probabilities() -> None:
    scores = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    p = softmax_probabilities(scores, temperature=1.0)
    rng = np.random.default_rng(123)
    draws = 20_000
    counts = np.bincount([softmax_filter(scores, 0.2, temperature=1.0, rng=rng)[0] for _ in range(draws)],
                         minlength=5)
    sigma = np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(counts / draws - p) < 4 * sigma)


def test_softmax_tends_to_hardmax_as_temperature_goes_to_zero() -> None:
    rng = np.random.default_rng(7)
    for trial in range(20):
        scores = rng.normal(size=64)
        soft = softmax_filter(scores, 0.6, temperature=1e-6, rng=np.random.default_rng(trial))
        np.testing.assert_array_equal(soft, hardmax_filter(scores, 0.6))


def test_softmax_tends_to_uniform_as_temperature_grows() -> None:
    scores = np.linspace(-5.0, 5.0, 20)
    rng = np.random.default_rng(11)
    reps = 3000
    hot = np.zeros(20)
    paper = np.zeros(20)
    for _ in range(reps):
        hot[softmax_filter(scores, 0.5, temperature=1e6, rng=rng)] += 1
        paper[softmax_filter(scores, 0.5, temperature=0.05, rng=rng)] += 1
    # each row is kept with probability K/B = 0.5 under a uniform draw of 10 out of 20
    freq = hot / reps
    assert np.all(np.abs(freq - 0.5) < 4 * np.sqrt(0.25 / reps))
    assert abs(freq[:10].mean() - freq[10:].mean()) < 0.03
    # at the paper's temperature the draw is far from uniform: the top half dominates
    assert (paper[10:] / reps).mean() > 0.95 and (paper[:5] / reps).max() < 0.01


def test_filter_trajectories_returns_indices_and_scores() -> None:
    rewards = np.array([[1.0, 1.0], [5.0, 5.0], [0.0, 0.0], [3.0, 3.0]])
    res = filter_trajectories(rewards, "hardmax", 0.5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(res.indices, [1, 3])
    np.testing.assert_allclose(res.scores, [2.0, 10.0, 0.0, 6.0])
    a = filter_trajectories(rewards, "softmax", 0.5, rng=np.random.default_rng(3), temperature=1.0)
    b = filter_trajectories(rewards, "softmax", 0.5, rng=np.random.default_rng(3), temperature=1.0)
    np.testing.assert_array_equal(a.indices, b.indices)
    with pytest.raises(UserInputError, match="did you mean 'softmax'"):
        filter_trajectories(rewards, "softmx", 0.5, rng=np.random.default_rng(0))


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(UserInputError, match="eta"):
        keep_count(10, 1.5)
    with pytest.raises(UserInputError, match="temperature"):
        softmax_filter(np.zeros(3), 0.5, temperature=0.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="finite"):
        zscore(np.array([1.0, np.nan]))
