"""MixedSampler: exact real/synthetic counts, all-real fallback, FIFO pool, d3rlpy batch layout, state."""

from __future__ import annotations

import numpy as np
import pytest
from d3rlpy.dataset import TransitionMiniBatch

from baselines.sampler import MixedSampler, next_actions_within_episodes, split_batch
from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset


def _arrays(n: int, *, reward: float, obs: int = 3, act: int = 2, start: int = 0) -> dict[str, np.ndarray]:
    """Rows whose observation[0] is a row id (start..start+n-1) and whose reward marks the source."""
    ids = np.arange(start, start + n, dtype=np.float32)
    o = np.zeros((n, obs), np.float32)
    o[:, 0] = ids
    return {"observations": o, "actions": np.tile(ids[:, None], (1, act)) / 1000.0,
            "rewards": np.full(n, reward, np.float32), "next_observations": o + 0.5,
            "terminals": np.zeros(n, bool)}


@pytest.mark.parametrize(("b", "alpha", "pool", "expected"), [
    (256, 0.6, 10_000, (153, 103)), (256, 0.6, 102, (256, 0)), (256, 0.6, 103, (153, 103)),
    (10, 0.7, 3, (7, 3)), (256, 1.0, 10_000, (256, 0)), (256, 0.0, 256, (0, 256)), (256, 0.0, 255, (256, 0)),
])
def test_split_batch_counts_and_fallback(b: int, alpha: float, pool: int, expected: tuple[int, int]) -> None:
    assert split_batch(b, alpha, pool) == expected


def test_batches_hold_exact_counts_and_fall_back_to_all_real() -> None:
    s = MixedSampler(_arrays(500, reward=1.0), batch_size=64, real_ratio=0.75, seed=0)
    assert (s.sample().rewards == 1.0).all()  # empty pool: all real
    s.add_synthetic(_arrays(15, reward=-1.0))  # 15 < B_syn = 16: still all real
    assert s.split() == (64, 0) and (s.sample().rewards == 1.0).all()
    s.add_synthetic(_arrays(1, reward=-1.0, start=15))
    for _ in range(20):
        batch = s.sample()
        assert int((batch.rewards == 1.0).sum()) == 48
        assert int((batch.rewards == -1.0).sum()) == 16


def test_batch_is_a_float32_2d_d3rlpy_minibatch_with_matching_rows() -> None:
    s = MixedSampler(_arrays(300, reward=1.0), batch_size=32, real_ratio=0.5, seed=1)
    s.add_synthetic(_arrays(40, reward=-1.0, start=1000))
    batch = s.sample()
    assert isinstance(batch, TransitionMiniBatch) and batch.transitions == []
    for name in ("observations", "actions", "rewards", "next_observations", "next_actions", "terminals",
                 "intervals"):
        arr = getattr(batch, name)
        assert arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[0] == 32, name
    assert batch.rewards.shape == (32, 1) and (batch.intervals == 1.0).all()
    ids = batch.observations[:, 0]
    np.testing.assert_allclose(batch.actions, np.tile(ids[:, None], (1, 2)) / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(batch.next_observations, batch.observations + 0.5)
    real = batch.rewards[:, 0] == 1.0
    assert (ids[real] < 300).all() and (ids[~real] >= 1000).all()


def test_fifo_keeps_the_newest_rows() -> None:
    s = MixedSampler(_arrays(50, reward=1.0), batch_size=8, real_ratio=0.5, max_synthetic=10, seed=0)
    s.add_synthetic(_arrays(6, reward=-1.0, start=0))
    s.add_synthetic(_arrays(6, reward=-1.0, start=6))
    assert s.num_synthetic == 10 and s.synthetic_added == 12
    np.testing.assert_array_equal(s.synthetic_rows()[:, 0], np.arange(2, 12))
    s.add_synthetic(_arrays(25, reward=-1.0, start=100))  # more than the capacity at once
    np.testing.assert_array_equal(s.synthetic_rows()[:, 0], np.arange(115, 125))
    drawn = np.concatenate([s.sample().observations[4:, 0] for _ in range(50)])
    assert set(drawn.tolist()) <= set(range(115, 125))


def test_unbounded_pool_grows() -> None:
    s = MixedSampler(_arrays(50, reward=1.0), batch_size=8, max_synthetic=None)
    for k in range(5):
        s.add_synthetic(_arrays(700, reward=-1.0, start=700 * k))
    assert s.num_synthetic == 3500
    np.testing.assert_array_equal(s.synthetic_rows()[:, 0], np.arange(3500))


def test_next_actions_follow_episodes() -> None:
    acts = np.arange(10, dtype=np.float32).reshape(5, 2)
    ends = np.array([False, True, False, False, True])
    nxt = next_actions_within_episodes(acts, ends)
    np.testing.assert_array_equal(nxt, [[2, 3], [0, 0], [6, 7], [8, 9], [0, 0]])


def test_transitions_input_uses_episode_boundaries() -> None:
    rng = np.random.default_rng(0)
    eps = tuple(Episode(observations=rng.normal(size=(t + 1, 3)).astype(np.float32),
                        actions=rng.normal(size=(t, 2)).astype(np.float32),
                        rewards=rng.normal(size=t).astype(np.float32), terminated=np.zeros(t, bool),
                        truncated=np.eye(1, t, t - 1, dtype=bool)[0]) for t in (4, 3))
    ds = OfflineDataset(name="toy", episodes=eps, env_id=None)
    s = MixedSampler(ds.transitions, batch_size=64, seed=0)
    batch = s.sample()
    acts = ds.transitions.actions
    for o, a, na in zip(batch.observations, batch.actions, batch.next_actions, strict=True):
        i = int(np.flatnonzero((ds.transitions.observations == o).all(axis=1))[0])
        np.testing.assert_array_equal(a, acts[i])
        last = i in (3, 6)
        np.testing.assert_array_equal(na, np.zeros(2) if last else acts[i + 1])


def test_state_roundtrip_continues_identically() -> None:
    def make() -> MixedSampler:
        s = MixedSampler(_arrays(100, reward=1.0), batch_size=16, real_ratio=0.5, max_synthetic=12, seed=3)
        s.add_synthetic(_arrays(9, reward=-1.0))
        s.add_synthetic(_arrays(7, reward=-1.0, start=9))  # wraps the ring: head != 0
        return s
    a = make()
    for _ in range(3):
        a.sample()
    state = a.state_dict()
    expected = [a.sample_rows() for _ in range(5)]
    b = MixedSampler(_arrays(100, reward=1.0), batch_size=16, real_ratio=0.5, max_synthetic=12, seed=99)
    b.load_state_dict(state)
    for e in expected:
        np.testing.assert_array_equal(b.sample_rows(), e)
    a.add_synthetic(_arrays(2, reward=-1.0, start=50))
    b.add_synthetic(_arrays(2, reward=-1.0, start=50))
    np.testing.assert_array_equal(a.synthetic_rows(), b.synthetic_rows())


def test_bad_inputs_raise_user_errors() -> None:
    with pytest.raises(UserInputError, match="real ratio"):
        MixedSampler(_arrays(5, reward=1.0), real_ratio=1.5)
    s = MixedSampler(_arrays(5, reward=1.0))
    with pytest.raises(UserInputError, match="packed floats"):
        s.add_synthetic(_arrays(5, reward=1.0, obs=4))
    bad = _arrays(5, reward=1.0)
    bad["rewards"][2] = np.nan
    with pytest.raises(UserInputError, match="row 2"):
        s.add_synthetic(bad)
    with pytest.raises(UserInputError, match="lack"):
        MixedSampler({"observations": np.zeros((3, 2), np.float32)})
