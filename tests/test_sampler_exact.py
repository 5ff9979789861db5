"""MixedSampler to the bit: its row draws recomputed from the PCG64 stream, the packed row layout, the
validation bounds, next actions across timeouts, and state restore of an unbounded pool (mutation run,
issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.sampler import RAW_BLOCK_BATCHES, MixedSampler, pack_transitions, unpack_batch
from stores.errors import UserInputError


def _arrays(n: int, *, start: int = 0, obs: int = 3, act: int = 2) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + n, dtype=np.float32)
    o = np.zeros((n, obs), np.float32)
    o[:, 0] = ids
    return {"observations": o, "actions": np.tile(ids[:, None], (1, act)) / 1000.0, "rewards": ids * 0.5,
            "next_observations": o + 0.25, "terminals": (np.arange(n) % 5 == 4)}


def test_row_draws_are_the_pcg64_stream_modulo_the_part_sizes() -> None:
    b, n_real, n_syn = 4, 7, 5
    s = MixedSampler(_arrays(n_real), batch_size=b, real_ratio=0.5, seed=11)
    s.add_synthetic(_arrays(n_syn, start=100))
    bits = np.random.Generator(np.random.PCG64(11)).bit_generator
    raw = np.empty(0, np.uint64)
    batches = RAW_BLOCK_BATCHES + 3  # crosses one refill of the block of raw draws
    for k in range(batches):
        if k % RAW_BLOCK_BATCHES == 0:
            raw = bits.random_raw(RAW_BLOCK_BATCHES * b)
        draw = raw[(k % RAW_BLOCK_BATCHES) * b:(k % RAW_BLOCK_BATCHES + 1) * b]
        expected = np.concatenate([draw[:2] % np.uint64(n_real), 100 + draw[2:] % np.uint64(n_syn)])
        np.testing.assert_array_equal(s.sample().observations[:, 0], expected.astype(np.float32), err_msg=k)


def test_the_default_seed_is_zero() -> None:
    a = MixedSampler(_arrays(50), batch_size=8)
    b = MixedSampler(_arrays(50), batch_size=8, seed=0)
    c = MixedSampler(_arrays(50), batch_size=8, seed=1)
    rows_a = [a.sample_rows() for _ in range(3)]
    for r in rows_a:
        np.testing.assert_array_equal(r, b.sample_rows())
    assert not all(np.array_equal(r, c.sample_rows()) for r in rows_a)


def test_packed_row_layout_and_unpack() -> None:
    arrays = _arrays(6)
    arrays["next_actions"] = np.full((6, 2), 7.0, np.float32)  # given: used as they are
    rows = pack_transitions(arrays)
    assert rows.shape == (6, 2 * 3 + 2 * 2 + 2) and rows.dtype == np.float32
    batch = unpack_batch(rows, 3, 2)
    np.testing.assert_array_equal(batch.observations, arrays["observations"])
    np.testing.assert_array_equal(batch.actions, arrays["actions"])
    np.testing.assert_array_equal(batch.rewards[:, 0], arrays["rewards"])
    np.testing.assert_array_equal(batch.next_observations, arrays["next_observations"])
    np.testing.assert_array_equal(batch.terminals[:, 0], arrays["terminals"].astype(np.float32))
    np.testing.assert_array_equal(batch.next_actions, arrays["next_actions"])
    assert batch.terminals.shape == (6, 1) and batch.intervals.shape == (6, 1)
    assert batch.intervals.dtype == np.float32 and (batch.intervals == 1.0).all()


def test_timeouts_end_episodes_for_the_next_actions() -> None:
    arrays = _arrays(6)
    arrays["terminals"] = np.array([False, True, False, False, False, False])
    arrays["timeouts"] = np.array([False, False, False, True, False, False])
    nact = unpack_batch(pack_transitions(arrays), 3, 2).next_actions
    a = arrays["actions"]
    expected = np.stack([a[1], 0 * a[0], a[3], 0 * a[0], a[5], 0 * a[0]])
    np.testing.assert_array_equal(nact, expected)
    single = {k: v[:1] for k, v in arrays.items()}
    np.testing.assert_array_equal(unpack_batch(pack_transitions(single), 3, 2).next_actions, np.zeros((1, 2)))


@pytest.mark.parametrize(("kwargs", "ok"), [
    ({"real_ratio": 0.0}, True), ({"real_ratio": 1.0}, True), ({"real_ratio": -0.01}, False),
    ({"real_ratio": 1.01}, False), ({"batch_size": 1}, True), ({"batch_size": 0}, False),
    ({"max_synthetic": 1}, True), ({"max_synthetic": 0}, False), ({"max_synthetic": None}, True),
])
def test_bounds_of_the_settings(kwargs: dict, ok: bool) -> None:
    if ok:
        s = MixedSampler(_arrays(5), **kwargs)
        assert s.sample_rows().shape[0] == s.batch_size
    else:
        with pytest.raises(UserInputError, match="must"):
            MixedSampler(_arrays(5), **kwargs)


def test_inputs_that_cannot_be_packed() -> None:
    with pytest.raises(UserInputError, match="holds no transitions"):
        MixedSampler(_arrays(0))
    bad = _arrays(5)
    bad["actions"] = bad["actions"][:4]
    with pytest.raises(UserInputError, match="equal rows"):
        pack_transitions(bad)
    bad = _arrays(5)
    bad["observations"] = bad["observations"][:, 0]
    with pytest.raises(UserInputError, match="2-D"):
        pack_transitions(bad)
    bad = _arrays(5)
    bad["next_observations"] = bad["next_observations"][:, :2]
    with pytest.raises(UserInputError, match="next_observations"):
        pack_transitions(bad)


def test_unbounded_pool_state_restores_past_the_initial_capacity() -> None:
    a = MixedSampler(_arrays(40), batch_size=16, real_ratio=0.25, max_synthetic=None, seed=2)
    a.add_synthetic(_arrays(1000, start=1000))
    a.add_synthetic(_arrays(500, start=2000))  # beyond the initial 1024 rows: the pool grows
    assert a.num_synthetic == 1500
    np.testing.assert_array_equal(a.synthetic_rows()[:, 0], np.r_[1000:2000, 2000:2500].astype(np.float32))
    a.sample_rows()
    b = MixedSampler(_arrays(40), batch_size=16, real_ratio=0.25, max_synthetic=None, seed=7)
    b.load_state_dict(a.state_dict())
    assert b.num_synthetic == 1500
    for _ in range(30):
        np.testing.assert_array_equal(b.sample_rows(), a.sample_rows())
    drawn = np.concatenate([a.sample_rows()[4:, 0] for _ in range(200)])
    assert drawn.min() >= 1000 and drawn.max() < 2500 and np.unique(drawn).size > 1000
