"""DyDiff's reward filters (Sec. 4.2): keep a proportion eta of B_r rollouts by their predicted return.

Pure functions on NumPy arrays. ``B`` trajectories, ``L`` steps, ``K = floor(eta * B)`` kept.

* :func:`trajectory_scores` - Eq. 11: ``r_psi(tau) = sum_i r_psi(s_i, a_i)`` over each row's valid steps.
* :func:`hardmax_filter` - the K highest scores.
* :func:`softmax_filter` - z-score the scores, ``p_k ∝ exp(z_k / temperature)``, draw K without
  replacement with probabilities p (successive sampling: each draw picks among the rows not yet drawn
  with probability proportional to p). The draw is done exactly, in log space, with the Gumbel-top-K
  construction: the K largest ``z_k / temperature + G_k`` with ``G_k ~ Gumbel(0, 1)`` i.i.d. are a
  successive sample without replacement. As ``temperature -> 0`` it becomes :func:`hardmax_filter`; as it
  grows it becomes a uniform draw of K rows.

The official code smooths p with a small eps so that ``np.random.choice(..., replace=False, p=p)`` never
sees zero probabilities. In log space no probability underflows, so ``eps`` defaults to 0 here; a
positive eps mixes p with the uniform distribution, ``(1 - eps) p + eps / B``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stores.errors import UserInputError, did_you_mean

FILTER_KINDS: tuple[str, ...] = ("softmax", "hardmax")


@dataclass(frozen=True)
class FilterResult:
    """indices: (K,) int64 rows kept (hardmax: best first; softmax: in draw order); scores: (B,) float64
    Eq. 11 trajectory scores of every row."""

    indices: np.ndarray
    scores: np.ndarray


def keep_count(batch: int, eta: float) -> int:
    """K = floor(eta * B) (with a 1e-9 guard so that ``eta = K / B`` computed in floating point gives K)."""
    if not 0.0 <= eta <= 1.0:
        raise UserInputError(f"filter proportion eta must lie in [0, 1], got {eta}")
    return int(np.floor(eta * batch + 1e-9))


def trajectory_scores(rewards: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Eq. 11: predicted return of each trajectory, (B,) float64.

    rewards: (B, L) predicted rewards ``r_psi(s_i, a_i)``; lengths: (B,) valid steps per row (steps at or
    past a row's length are ignored), None for all L.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must have shape (B, L), got {r.shape}")
    if lengths is None:
        return r.sum(axis=1)
    mask = np.arange(r.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return np.where(mask, r, 0.0).sum(axis=1)


def zscore(scores: np.ndarray) -> np.ndarray:
    """(s - mean) / std over the batch, (B,) float64; all zeros when the scores are all equal."""
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("filter scores must be finite")
    std = s.std()
    return np.zeros_like(s) if std == 0.0 else (s - s.mean()) / std


def hardmax_filter(scores: np.ndarray, eta: float) -> np.ndarray:
    """Indices (K,) int64 of the K = floor(eta*B) highest scores, best first (ties: lower index first)."""
    s = np.asarray(scores, dtype=np.float64)
    k = keep_count(s.shape[0], eta)
    return np.argsort(-s, kind="stable")[:k].astype(np.int64)


def softmax_log_weights(scores: np.ndarray, temperature: float, eps: float = 0.0) -> np.ndarray:
    """log p (B,), normalised: ``p = (1 - eps) softmax(zscore(scores) / temperature) + eps / B``."""
    if temperature <= 0.0:
        raise UserInputError(f"softmax temperature must be > 0, got {temperature}")
    if not 0.0 <= eps < 1.0:
        raise UserInputError(f"softmax smoothing eps must lie in [0, 1), got {eps}")
    logits = zscore(scores) / temperature
    logp = logits - np.logaddexp.reduce(logits)
    if eps > 0.0:
        logp = np.logaddexp(np.log1p(-eps) + logp, np.log(eps / logp.shape[0]))
    return logp


def softmax_probabilities(scores: np.ndarray, temperature: float, eps: float = 0.0) -> np.ndarray:
    """p (B,) of :func:`softmax_log_weights`, summing to 1."""
    return np.exp(softmax_log_weights(scores, temperature, eps))


def softmax_filter(scores: np.ndarray, eta: float, *, temperature: float, rng: np.random.Generator,
                   eps: float = 0.0) -> np.ndarray:
    """Indices (K,) int64 drawn without replacement with p ∝ exp(zscore / temperature), in draw order.

    Exact successive sampling via Gumbel-top-K on ``log p`` (see the module docstring); ``rng`` draws
    the B Gumbel variables.
    """
    logp = softmax_log_weights(scores, temperature, eps)
    k = keep_count(logp.shape[0], eta)
    keys = logp + rng.gumbel(size=logp.shape[0])
    return np.argsort(-keys, kind="stable")[:k].astype(np.int64)


def filter_trajectories(rewards: np.ndarray, kind: str, eta: float, *, rng: np.random.Generator,
                        temperature: float = 0.05, lengths: np.ndarray | None = None,
                        eps: float = 0.0) -> FilterResult:
    """Score B trajectories by Eq. 11 and keep floor(eta*B) with the ``hardmax`` or ``softmax`` filter.

    rewards: (B, L) predicted per-step rewards; lengths: (B,) valid steps or None. ``rng`` is used by
    ``softmax`` only. Returns the kept indices and every row's score.
    """
    scores = trajectory_scores(rewards, lengths)
    if kind == "hardmax":
        idx = hardmax_filter(scores, eta)
    elif kind == "softmax":
        idx = softmax_filter(scores, eta, temperature=temperature, rng=rng, eps=eps)
    else:
        raise UserInputError(did_you_mean(kind, FILTER_KINDS, hint="filters are: softmax, hardmax"))
    return FilterResult(indices=idx, scores=scores)
