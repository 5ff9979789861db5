"""Statistics over seeds and tasks: the numbers behind ``augment compare`` and ``augment sweep``.

Every resampling is :func:`scipy.stats.bootstrap` (percentile method, a seeded NumPy Generator) and every
trimmed mean is :func:`scipy.stats.trim_mean`; this module only chooses the statistics and the strata.

Per arm on one task (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"):

* IQM, the interquartile mean: ``trim_mean(x, 0.25)``, the mean of the middle 50% of runs;
* its 95% percentile-bootstrap CI, seeds resampled with replacement;
* against a reference arm: the difference of means with a bootstrap CI (each arm's seeds resampled
  independently) and Welch's t-test p-value.

Over tasks (rliable's aggregate metrics, scores ``x[m][i]`` of run ``i`` on task ``m``):

* aggregate IQM: ``trim_mean`` of all runs of all tasks pooled (rliable ``aggregate_iqm`` on the
  (runs x tasks) matrix);
* probability of improvement, Eq. of Sec. 4.3 / App. A.4::

      P(X > Y) = 1/M sum_m P(X_m > Y_m),
      P(X_m > Y_m) = 1/(N K) sum_i sum_j S(x_{m,i}, y_{m,j}),  S(x, y) = 1 if x > y, 1/2 if x = y, else 0

  (the Mann-Whitney U statistic of task m over N K);
* CIs by the stratified bootstrap: runs are resampled with replacement within each task (and, for
  P(X > Y), within each arm), tasks are kept.

A sample with a single run has a one-point bootstrap distribution (every resample is that run); it is
held fixed instead of being handed to scipy (which needs two observations per sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

#: Bootstrap resamples and seed used by every CI unless a caller says otherwise.
N_BOOT = 2000
BOOT_SEED = 0


def iqm(x: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean ``trim_mean(x, 0.25)``: a float for ``axis=None`` (all of ``x``), else an array
    reduced over ``axis``; NaN for an empty ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if axis is None:
        return float(sps.trim_mean(x, 0.25, axis=None)) if x.size else math.nan
    return sps.trim_mean(x, 0.25, axis=axis)


def _interval(result: Any) -> tuple[float, float]:
    """(low, high) of a :class:`scipy.stats.BootstrapResult`."""
    ci = result.confidence_interval
    return float(ci.low), float(ci.high)


def bootstrap_ci(x: np.ndarray, statistic: Callable[..., float], *, level: float = 0.95,
                 n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over the runs ``x`` (E,), resampled with replacement.

    ``statistic(x)`` or, when it takes ``axis`` (``np.mean``, :func:`iqm`), ``statistic(x, axis=-1)``
    on a (n_boot, E) batch. (NaN, NaN) for no runs; (s, s) for one run (its bootstrap distribution).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        value = float(statistic(x))
        return value, value
    res = sps.bootstrap((x,), statistic, n_resamples=n_boot, confidence_level=level, method="percentile",
                        rng=np.random.default_rng(seed))
    return _interval(res)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def difference_ci(x: np.ndarray, y: np.ndarray, *, level: float = 0.95, n_boot: int = N_BOOT,
                  seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(x) - mean(y), each arm's runs resampled independently."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan
    return stratified_bootstrap_ci([x, y], _mean_difference, level=level, n_boot=n_boot, seed=seed)


def welch_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Welch t-test p-value of mean(x) != mean(y); NaN with fewer than 2 runs or no spread."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or y.size < 2 or (x.std() == 0 and y.std() == 0):
        return math.nan
    return float(sps.ttest_ind(x, y, equal_var=False).pvalue)


def stratified_bootstrap_ci(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], *,
                            level: float = 0.95, n_boot: int = N_BOOT,
                            seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile CI of ``statistic(*samples, axis=-1)`` with every sample resampled independently.

    samples: 1-D arrays (one per stratum: task, or task x arm), each with at least one run; those with a
    single run stay fixed (their bootstrap distribution is one point), the others go to
    :func:`scipy.stats.bootstrap` (``paired=False``, vectorized over a leading resample axis).
    """
    arrays = [np.asarray(s, np.float64).ravel() for s in samples]
    if not arrays or any(a.size == 0 for a in arrays):
        return math.nan, math.nan
    varying = [i for i, a in enumerate(arrays) if a.size > 1]
    if not varying:
        value = float(statistic(*arrays, axis=-1))
        return value, value

    def on_resamples(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = resampled[0].shape[:-1]
        full = list(arrays)
        for i, r in zip(varying, resampled, strict=True):
            full[i] = r
        full = [a if i in varying else np.broadcast_to(a, (*batch, a.size)) for i, a in enumerate(full)]
        return statistic(*full, axis=axis)

    res = sps.bootstrap(tuple(arrays[i] for i in varying), on_resamples, n_resamples=n_boot,
                        confidence_level=level, method="percentile", paired=False, vectorized=True,
                        rng=np.random.default_rng(seed))
    return _interval(res)


# ------------------------------------------------------------------------------------------- over tasks
def _pooled_iqm(*tasks: np.ndarray, axis: int = -1) -> np.ndarray:
    return sps.trim_mean(np.concatenate(tasks, axis=axis), 0.25, axis=axis)


def aggregate_iqm(tasks: Sequence[np.ndarray]) -> float:
    """IQM of all runs of all tasks pooled (rliable ``aggregate_iqm``); NaN when there is no run."""
    arrays = [np.asarray(t, np.float64).ravel() for t in tasks]
    arrays = [a for a in arrays if a.size]
    return float(_pooled_iqm(*arrays)) if arrays else math.nan


def aggregate_iqm_ci(tasks: Sequence[np.ndarray], *, level: float = 0.95, n_boot: int = N_BOOT,
                     seed: int = BOOT_SEED) -> tuple[float, float]:
    """Stratified-bootstrap CI of :func:`aggregate_iqm` (runs resampled within each task)."""
    arrays = [np.asarray(t, np.float64).ravel() for t in tasks]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return math.nan, math.nan
    return stratified_bootstrap_ci(arrays, _pooled_iqm, level=level, n_boot=n_boot, seed=seed)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X_m > Y_m) of one task: mean over run pairs of S(x_i, y_j), over the last axes (..., N), (..., K)."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    ties = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * ties


def probability_of_improvement(x_tasks: Sequence[np.ndarray], y_tasks: Sequence[np.ndarray]) -> float:
    """P(X > Y): the mean over tasks m of P(X_m > Y_m) (module docstring); tasks aligned by position,
    each with at least one run of both arms."""
    if len(x_tasks) != len(y_tasks) or not x_tasks:
        raise ValueError("probability_of_improvement needs the same (non-zero) number of tasks for both arms")
    return float(np.mean([_improvement(np.asarray(x, np.float64), np.asarray(y, np.float64))
                          for x, y in zip(x_tasks, y_tasks, strict=True)]))


def probability_of_improvement_ci(x_tasks: Sequence[np.ndarray], y_tasks: Sequence[np.ndarray], *,
                                  level: float = 0.95, n_boot: int = N_BOOT,
                                  seed: int = BOOT_SEED) -> tuple[float, float]:
    """Stratified-bootstrap CI of :func:`probability_of_improvement`: runs of each arm on each task
    resampled independently (rliable ``get_interval_estimates`` on ``probability_of_improvement``)."""
    m = len(x_tasks)
    if m == 0 or len(y_tasks) != m:
        return math.nan, math.nan

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        per_task = [_improvement(samples[k], samples[m + k]) for k in range(m)]
        return np.mean(np.stack(per_task, axis=0), axis=0)

    return stratified_bootstrap_ci([*x_tasks, *y_tasks], statistic, level=level, n_boot=n_boot, seed=seed)


# ------------------------------------------------------------------------------------------- per arm
@dataclass
class ArmSummary:
    """Per-arm statistics of one metric over seeds (scores: (S,) per seed, in seed order)."""

    arm: str
    seeds: list[int]
    scores: np.ndarray
    mean: float
    std: float
    iqm: float
    iqm_ci: tuple[float, float]
    diff: float = math.nan
    diff_ci: tuple[float, float] = (math.nan, math.nan)
    p_value: float = math.nan


def summarise(arm: str, seeds: Sequence[int], scores: np.ndarray, *,
              reference: np.ndarray | None = None) -> ArmSummary:
    """Mean, std (ddof=1 when S > 1), IQM + CI and, given a reference arm, difference + CI + Welch p."""
    scores = np.asarray(scores, np.float64)
    s = ArmSummary(arm=arm, seeds=list(seeds), scores=scores, mean=float(scores.mean()),
                   std=float(scores.std(ddof=1)) if scores.size > 1 else 0.0, iqm=float(iqm(scores)),
                   iqm_ci=bootstrap_ci(scores, iqm))
    if reference is not None:
        s.diff = float(scores.mean() - np.mean(reference))
        s.diff_ci = difference_ci(scores, reference)
        s.p_value = welch_p(scores, reference)
    return s
