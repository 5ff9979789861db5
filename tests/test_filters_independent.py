"""The softmax filter against an independent, exact model of successive sampling without replacement.

DyDiff's softmax filter keeps K of B rollouts, drawn one after another without replacement, each draw
picking row i among those not drawn yet with probability p_i / (1 - sum of the drawn p). Enumerating
every ordered K-tuple of a small batch gives the exact probability of each outcome, so the filter's
inclusion probabilities and its joint draw order can be checked against numbers that owe nothing to the
code under test (neither its z-score nor its Gumbel construction). The p themselves are written out by
hand: z-scores with the population standard deviation, p = (1 - eps) softmax(z / T) + eps / B.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from augment.generators.filters import filter_trajectories, softmax_filter, softmax_probabilities

SCORES = np.array([0.3, 2.0, -1.0, 0.9, 1.4, -0.2])


def hand_probabilities(scores: np.ndarray, temperature: float, eps: float = 0.0) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    centred = s - s.sum() / s.size
    z = centred / np.sqrt((centred ** 2).sum() / s.size)
    w = np.exp(z / temperature)
    return (1.0 - eps) * w / w.sum() + eps / s.size


def ordered_draw_probabilities(p: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    """P(first k draws are exactly this ordered tuple) under successive sampling, for every tuple."""
    out = {}
    for seq in itertools.permutations(range(p.size), k):
        prob, left = 1.0, 1.0
        for i in seq:
            prob *= p[i] / left
            left -= p[i]
        out[seq] = prob
    return out


def inclusion_probabilities(p: np.ndarray, k: int) -> np.ndarray:
    pi = np.zeros(p.size)
    for seq, prob in ordered_draw_probabilities(p, k).items():
        pi[list(seq)] += prob
    return pi


def test_hand_model_is_a_distribution() -> None:
    p = hand_probabilities(SCORES, 1.0)
    joint = ordered_draw_probabilities(p, 3)
    assert sum(joint.values()) == pytest.approx(1.0, abs=1e-12)
    assert inclusion_probabilities(p, 3).sum() == pytest.approx(3.0, abs=1e-12)
    np.testing.assert_allclose(softmax_probabilities(SCORES, 1.0), p, rtol=1e-12)
    np.testing.assert_allclose(softmax_probabilities(SCORES, 0.5, eps=0.3),
                               hand_probabilities(SCORES, 0.5, 0.3), rtol=1e-12)


@pytest.mark.parametrize(("temperature", "eps", "k"), [(1.0, 0.0, 3), (0.5, 0.3, 2), (2.0, 0.0, 4)])
def test_inclusion_probabilities_match_successive_sampling(temperature: float, eps: float, k: int) -> None:
    b = SCORES.size
    p = hand_probabilities(SCORES, temperature, eps)
    pi = inclusion_probabilities(p, k)
    assert pi.max() - pi.min() > 0.3  # far from a uniform draw, so a wrong p would show
    draws = 10_000
    rng = np.random.default_rng(2024)
    counts = np.zeros(b)
    for _ in range(draws):
        kept = softmax_filter(SCORES, k / b, temperature=temperature, rng=rng, eps=eps)
        assert kept.size == k and np.unique(kept).size == k
        counts[kept] += 1
    freq = counts / draws
    sigma = np.sqrt(pi * (1 - pi) / draws)
    assert np.all(np.abs(freq - pi) < 4.5 * sigma), (freq, pi)


def test_draw_order_is_successive_sampling() -> None:
    """The joint law of the first two kept indices (30 ordered pairs) by a chi-square test (fixed seed)."""
    p = hand_probabilities(SCORES, 1.0)
    exact = ordered_draw_probabilities(p, 2)
    draws = 20_000
    rng = np.random.default_rng(77)
    seen: dict[tuple[int, ...], int] = dict.fromkeys(exact, 0)
    for _ in range(draws):
        kept = softmax_filter(SCORES, 3 / 6, temperature=1.0, rng=rng)
        seen[(int(kept[0]), int(kept[1]))] += 1
    chi2 = sum((seen[c] - draws * q) ** 2 / (draws * q) for c, q in exact.items())
    assert chi2 < 66.0  # the 1e-4 upper quantile of chi-square with 29 degrees of freedom is ~66.6
    # a draw with replacement (p_i p_j) is far off: the test can tell the two apart
    with_replacement = {c: p[c[0]] * p[c[1]] / (1 - sum(p[i] ** 2 for i in range(6))) for c in exact}
    chi2_wrong = sum((seen[c] - draws * q) ** 2 / (draws * q) for c, q in with_replacement.items())
    assert chi2_wrong > 200.0


def test_filter_trajectories_draws_by_the_summed_valid_rewards() -> None:
    """Scores are Eq. 11 over each row's valid steps: padding after a row's length must not count."""
    rewards = np.array([[0.3, 0.0, 50.0], [1.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.4, 0.5, 0.0],
                        [0.7, 0.7, 0.0], [-0.2, 0.0, 0.0]])
    lengths = np.array([1, 2, 1, 3, 2, 2])
    scores = np.array([0.3, 2.0, -1.0, 0.9, 1.4, -0.2])
    pi = inclusion_probabilities(hand_probabilities(scores, 1.0), 3)
    rng = np.random.default_rng(5)
    counts = np.zeros(6)
    draws = 6000
    for _ in range(draws):
        res = filter_trajectories(rewards, "softmax", 0.5, rng=rng, temperature=1.0, lengths=lengths)
        counts[res.indices] += 1
    np.testing.assert_allclose(res.scores, scores, rtol=1e-12)
    sigma = np.sqrt(pi * (1 - pi) / draws)
    assert np.all(np.abs(counts / draws - pi) < 4.5 * sigma)


def test_scores_are_summed_in_double_precision() -> None:
    from augment.generators.filters import trajectory_scores

    rewards = np.array([[1e8, 1.0, -1e8]], dtype=np.float32)  # float32 arithmetic would lose the 1
    assert trajectory_scores(rewards)[0] == 1.0
    assert trajectory_scores(rewards, np.array([2]))[0] == 1e8 + 1.0
