"""baselines.stats against hand computations and independent implementations of the same resampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from baselines.stats import (
    aggregate_iqm,
    aggregate_iqm_ci,
    bootstrap_ci,
    difference_ci,
    iqm,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)


def _old_bootstrap_ci(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """``augment compare``'s former hand-written percentile bootstrap of the IQM (before scipy)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = sps.trim_mean(x[idx], 0.25, axis=1)
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def _old_difference_ci(x: np.ndarray, y: np.ndarray, n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    bx = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    by = y[rng.integers(0, y.size, size=(n_boot, y.size))].mean(axis=1)
    d = bx - by
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


@pytest.mark.parametrize("n", [1, 3, 8])
def test_compare_figures_are_unchanged_by_the_move_to_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    x, y = rng.normal(10, 3, size=n), rng.normal(8, 2, size=n + 1)
    np.testing.assert_allclose(bootstrap_ci(x, iqm), _old_bootstrap_ci(x),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(difference_ci(x, y), _old_difference_ci(x, y), rtol=0, atol=1e-12)


def test_pooled_iqm_and_probability_of_improvement_by_hand() -> None:
    # pooled runs [1, 2, 3, 4, 10, 20]: trim int(0.25 * 6) = 1 from each end -> mean(2, 3, 4, 10)
    assert aggregate_iqm([np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0])]) == pytest.approx(4.75)
    # task 1: pairs (1,1) tie, (1,0), (2,1), (2,0) -> 3.5 / 4; task 2: 0 > 5 never -> 0
    x = [np.array([1.0, 2.0]), np.array([0.0])]
    y = [np.array([1.0, 0.0]), np.array([5.0, 6.0])]
    assert probability_of_improvement(x, y) == pytest.approx((3.5 / 4 + 0.0) / 2)
    # the per-task value is the Mann-Whitney U statistic over N K
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 5).astype(float)
    u = sps.mannwhitneyu(a, b, method="asymptotic").statistic
    assert probability_of_improvement([a], [b]) == pytest.approx(u / (a.size * b.size))
    with pytest.raises(ValueError, match="same"):
        probability_of_improvement(x, y[:1])


def _stratified_by_hand(samples: list[np.ndarray], statistic, n_boot: int = 300,
                        seed: int = 0) -> tuple[float, float]:
    """Independent stratified bootstrap: each sample of >1 run resampled in turn from one Generator."""
    rng = np.random.default_rng(seed)
    draws = [s[rng.integers(0, s.size, size=(n_boot, s.size))] if s.size > 1 else np.tile(s, (n_boot, 1))
             for s in samples]
    boots = np.array([statistic(*[d[b] for d in draws]) for b in range(n_boot)])
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def test_stratified_cis_match_an_independent_resampler() -> None:
    rng = np.random.default_rng(3)
    tasks = [rng.normal(50, 10, 5), np.array([42.0]), rng.normal(70, 5, 3)]
    pooled = _stratified_by_hand(tasks, lambda *t: sps.trim_mean(np.concatenate(t), 0.25))
    np.testing.assert_allclose(aggregate_iqm_ci(tasks, n_boot=300), pooled, rtol=0, atol=1e-9)
    x = [rng.normal(1, 1, 4), rng.normal(0, 1, 3)]
    y = [rng.normal(0, 1, 4), np.array([0.5])]

    def poi(x1, x2, y1, y2):
        return 0.5 * (np.mean(x1[:, None] > y1[None, :]) + 0.5 * np.mean(x1[:, None] == y1[None, :])
                      + np.mean(x2[:, None] > y2[None, :]) + 0.5 * np.mean(x2[:, None] == y2[None, :]))

    np.testing.assert_allclose(probability_of_improvement_ci(x, y, n_boot=300),
                               _stratified_by_hand([*x, *y], poi),
                               rtol=0, atol=1e-9)
    lo, hi = probability_of_improvement_ci(x, y)
    assert 0.0 <= lo <= probability_of_improvement(x, y) <= hi <= 1.0


def test_degenerate_cases() -> None:
    # every run of X beats every run of Y on every task: P = 1 in every resample
    assert probability_of_improvement_ci([np.array([5.0, 6.0])], [np.array([1.0, 2.0, 3.0])]) == (1.0, 1.0)
    # a single run per sample: the bootstrap distribution is one point
    assert stratified_bootstrap_ci([np.array([2.0]), np.array([1.0])],
                                   lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis)) == (1.0, 1.0)
    assert np.isnan(aggregate_iqm([])) and np.isnan(aggregate_iqm_ci([np.array([])])[0])
    assert bootstrap_ci(np.array([3.0]), iqm) == (3.0, 3.0)
