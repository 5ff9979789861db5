"""Deterministic tiny data for the replay-store tests (also imported by the writer subprocesses).

``make_batch(k)`` is batch number ``k`` of a reproducible stream: a few trajectories of hopper sizes
(obs 11, act 3) with varied lengths, some ending in a terminal, provenance filled in; ``expected_rows``
flattens the first ``n`` batches the way the store must hold them.
"""

from __future__ import annotations

import numpy as np

from stores.schema import TrajectoryBatch

OBS, ACT = 11, 3


def make_batch(k: int, *, b: int = 5, length: int = 7, generator: str | None = None) -> TrajectoryBatch:
    """Batch ``k``: ``b`` trajectories of up to ``length`` steps, lengths in [1, length], seeded by ``k``."""
    rng = np.random.default_rng(1000 + k)
    lengths = rng.integers(1, length + 1, size=b)
    lengths[0] = length
    terminals = np.zeros((b, length), dtype=bool)
    ends = rng.random(b) < 0.4
    terminals[np.arange(b)[ends], lengths[ends] - 1] = True
    return TrajectoryBatch(
        observations=rng.standard_normal((b, length + 1, OBS)).astype(np.float32),
        actions=rng.uniform(-1, 1, (b, length, ACT)).astype(np.float32),
        rewards=rng.standard_normal((b, length)).astype(np.float32),
        terminals=terminals,
        lengths=lengths.astype(np.int64),
        generator=generator or ("gen-a" if k % 3 else "gen-b"),
        round=np.full(b, k, dtype=np.int64),
        learner_step=np.full(b, 100 * k, dtype=np.int64),
        filter_score=np.where(rng.random(b) < 0.5, np.nan, rng.random(b)).astype(np.float32),
        start_index=rng.integers(0, 10_000, size=b).astype(np.int64),
    )


def expected_rows(n: int, **kwargs: int) -> dict[str, np.ndarray]:
    """The flat columns a store must hold after the first ``n`` batches (trajectory ids included)."""
    parts: list[dict[str, np.ndarray]] = []
    traj = 0
    for k in range(n):
        batch = make_batch(k, **kwargs)
        tr = batch.to_transitions()
        tr["trajectory"] = tr["traj"] + traj
        tr["round"] = batch.round[tr["traj"]]
        tr["learner_step"] = batch.learner_step[tr["traj"]]
        tr["filter_score"] = batch.filter_score[tr["traj"]]
        tr["start_index"] = batch.start_index[tr["traj"]]
        tr["generator_name"] = np.array([batch.generator] * len(tr["traj"]), dtype=object)
        traj += batch.batch_size
        parts.append(tr)
    keys = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "trajectory",
            "round", "learner_step", "filter_score", "start_index", "generator_name")
    return {key: np.concatenate([p[key] for p in parts]) for key in keys}


def batch_ends(n: int, **kwargs: int) -> list[int]:
    """Row counts after each of the first ``n`` batches (the only lengths a store may commit)."""
    ends, total = [0], 0
    for k in range(n):
        total += int(make_batch(k, **kwargs).lengths.sum())
        ends.append(total)
    return ends
