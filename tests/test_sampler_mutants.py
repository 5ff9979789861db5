"""baselines/sampler.py pinned where the mutation run found it loose
(benchmarks/mutation/baselines_sampler_py_survivors.txt): pool-age accounting and its counters in
``state_dict``, the dtypes of the pool and of a checkpoint, next actions from non-bool episode flags.

Expected values are worked out by hand in the comments (ages are ``updates - birth``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from baselines.sampler import MixedSampler, next_actions_within_episodes, pack_transitions, unpack_batch


def _rows(n: int, obs: int = 3, act: int = 2, start: int = 0) -> dict[str, np.ndarray]:
    """n transitions whose observation[0] is a row id start..start+n-1."""
    o = np.zeros((n, obs), np.float32)
    o[:, 0] = np.arange(start, start + n)
    return {"observations": o, "actions": np.zeros((n, act), np.float32), "rewards": np.zeros(n, np.float32),
            "next_observations": o, "terminals": np.zeros(n, bool)}


def _draw(s: MixedSampler, k: int) -> None:
    for _ in range(k):
        s.sample_rows()


# ---------------------------------------------------------------------------------------------- next actions


def test_next_actions_contract() -> None:
    acts = np.array([[1.0, 2.0], [3.0, 4.0]])  # float64 in, float32 out
    nxt = next_actions_within_episodes(acts, np.array([False, True]))
    assert nxt.dtype == np.float32
    np.testing.assert_array_equal(nxt, [[3.0, 4.0], [0.0, 0.0]])  # two rows: the first gets a'_0 = a_1
    five = np.arange(10, dtype=np.float32).reshape(5, 2)
    as_ints = next_actions_within_episodes(five, np.array([0, 1, 0, 0, 1]))  # 0/1 flags act as a mask
    np.testing.assert_array_equal(as_ints, [[2, 3], [0, 0], [6, 7], [8, 9], [0, 0]])
    np.testing.assert_array_equal(next_actions_within_episodes(five[:1], np.array([False])), [[0, 0]])


def test_float_terminals_and_column_timeouts_end_episodes() -> None:
    arrays = _rows(6)
    arrays["actions"] = np.arange(12, dtype=np.float32).reshape(6, 2)
    arrays["terminals"] = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0], np.float32)  # D4RL-style float flags
    arrays["timeouts"] = np.array([[False], [False], [False], [True], [False], [False]])  # (N, 1)
    batch = unpack_batch(pack_transitions(arrays), 3, 2)
    a = arrays["actions"]
    np.testing.assert_array_equal(batch.next_actions, [a[1], [0, 0], a[3], [0, 0], a[5], [0, 0]])
    np.testing.assert_array_equal(batch.terminals[:, 0], [0, 1, 0, 0, 0, 0])


# ---------------------------------------------------------------------------------------------- pool age


def test_pool_age_uses_the_first_row_of_an_unfilled_pool() -> None:
    for cap in (None, 10):
        s = MixedSampler(_rows(20), batch_size=2, real_ratio=0.5, max_synthetic=cap, seed=0)  # B_syn = 1
        assert math.isnan(s.pool_age()[0]) and s.pool_age()[1] == 0  # empty: (nan, 0)
        s.add_synthetic(_rows(1))  # birth 0
        _draw(s, 3)  # ages 0, 1, 2
        s.add_synthetic(_rows(1))  # birth 3
        assert s.pool_age() == (pytest.approx(3 - 3 / 2), 3), cap  # births [0, 3] at update 3
        stats = s.pool_stats()
        assert stats["age_mean"] == pytest.approx(1.0) and stats["age_max"] == 2
        assert (stats["age_mean_now"], stats["age_max_now"]) == (pytest.approx(1.5), 3)


def test_age_max_is_zero_when_every_batch_draws_fresh_rows() -> None:
    s = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, max_synthetic=6, seed=0)
    for _ in range(3):
        s.add_synthetic(_rows(6))  # refills the whole pool at the current update: age 0 when drawn
        _draw(s, 1)
    stats = s.pool_stats()
    assert stats["age_max"] == 0 and stats["age_mean"] == 0.0 and stats["synthetic_draws"] == 6


def test_pool_stats_keys_capacity_and_pool_size() -> None:
    keys = {"updates", "synthetic_added", "pool_size", "capacity", "inflow_per_update", "age_mean", "age_max",
            "age_mean_now", "age_max_now", "synthetic_draws", "draws_per_row", "expected_draws_per_row"}
    bounded = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, max_synthetic=10, seed=0)
    bounded.add_synthetic(_rows(13))
    stats = bounded.pool_stats()
    assert set(stats) == keys
    assert stats["capacity"] == 10 and stats["pool_size"] == 10 and stats["synthetic_added"] == 13
    unbounded = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, seed=0)
    unbounded.add_synthetic(_rows(7))
    stats = unbounded.pool_stats()
    assert math.isnan(stats["capacity"]) and stats["pool_size"] == 7


def test_no_inflow_leaves_the_expected_reuse_undefined() -> None:
    s = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, seed=0)
    _draw(s, 5)  # updates without any synthetic row: inflow 0 per update
    stats = s.pool_stats()
    assert stats["inflow_per_update"] == 0.0 and math.isnan(stats["expected_draws_per_row"])
    assert math.isnan(stats["draws_per_row"]) and math.isnan(stats["age_max"])
    assert stats["age_max_now"] == 0 and stats["updates"] == 5


# ---------------------------------------------------------------------------------------------- pool storage


def test_pool_and_checkpoint_dtypes() -> None:
    for cap in (None, 8):
        s = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, max_synthetic=cap, seed=1)
        s.add_synthetic(_rows(5))
        assert s.synthetic_rows().dtype == np.float32, cap
        s.add_synthetic(_rows(5, start=5))  # bounded: full and wrapped
        assert s.synthetic_rows().dtype == np.float32, cap
        state = s.state_dict()
        assert state["synthetic"].dtype == np.float32 and state["synthetic_birth"].dtype == np.int64
        assert state["raw"].dtype == np.uint64


def test_grown_pool_and_restored_pool_keep_integer_births() -> None:
    s = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, seed=2)
    s.add_synthetic(_rows(1000))
    _draw(s, 2)
    s.add_synthetic(_rows(100, start=1000))  # beyond the initial 1024 rows: the pool grows
    state = s.state_dict()
    assert state["synthetic_birth"].dtype == np.int64
    np.testing.assert_array_equal(state["synthetic_birth"], np.r_[np.zeros(1000), np.full(100, 2)])
    r = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, seed=5)
    r.load_state_dict(state)
    again = r.state_dict()
    assert again["synthetic"].dtype == np.float32 and again["synthetic_birth"].dtype == np.int64
    assert r.synthetic_rows().dtype == np.float32
    np.testing.assert_array_equal(again["synthetic_birth"], state["synthetic_birth"])


def test_wide_rows_grow_past_the_initial_capacity() -> None:
    # 520-dim observations: rows of 2*520 + 2*1 + 2 = 1044 floats, wider than the initial 1024-row pool
    s = MixedSampler(_rows(4, obs=520, act=1), batch_size=4, real_ratio=0.5, seed=0)
    s.add_synthetic(_rows(1030, obs=520, act=1))
    assert s.num_synthetic == 1030
    np.testing.assert_array_equal(s.synthetic_rows()[:, 0], np.arange(1030))


def test_batches_share_one_read_only_intervals_array() -> None:
    s = MixedSampler(_rows(20), batch_size=4, seed=0)
    a, b = s.sample(), s.sample()
    assert not a.intervals.flags.writeable
    assert np.shares_memory(a.intervals, b.intervals)


# ---------------------------------------------------------------------------------------------- restore


def test_a_checkpoint_without_pool_counters_restarts_them_at_zero() -> None:
    a = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, max_synthetic=10, seed=3)
    a.add_synthetic(_rows(8))
    _draw(a, 4)
    old = {k: v for k, v in a.state_dict().items() if k not in ("pool_counters", "synthetic_birth")}
    b = MixedSampler(_rows(20), batch_size=4, real_ratio=0.5, max_synthetic=10, seed=9)
    b.load_state_dict(old)  # an older checkpoint: counters and births unknown, so they start from 0
    stats = b.pool_stats()
    assert (stats["updates"], stats["synthetic_draws"], stats["synthetic_added"]) == (0, 0, 8)
    assert math.isnan(stats["age_mean"]) and math.isnan(stats["age_max"])
    _draw(b, 1)  # births all 0, drawn at update 0: age 0
    stats = b.pool_stats()
    assert (stats["updates"], stats["synthetic_draws"]) == (1, 2)
    assert stats["age_mean"] == 0.0 and stats["age_max"] == 0


def test_a_state_of_plain_python_lists_continues_identically() -> None:
    a = MixedSampler(_rows(30), batch_size=4, real_ratio=0.5, max_synthetic=6, seed=4)
    a.add_synthetic(_rows(9, start=100))
    _draw(a, 3)
    state = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in a.state_dict().items()}
    b = MixedSampler(_rows(30), batch_size=4, real_ratio=0.5, max_synthetic=6, seed=8)
    b.load_state_dict(state)
    for _ in range(5):
        np.testing.assert_array_equal(b.sample_rows(), a.sample_rows())
    assert b.pool_stats() == a.pool_stats()
