"""Training windows of DyDiff Eq. 2 and the pack/unpack layout."""

from __future__ import annotations

import numpy as np
import pytest

from augment.diffusion.windows import (
    build_windows,
    condition_mask,
    pack,
    unpack,
    windows_per_episode,
)
from stores.errors import UserInputError

OBS, ACT = 3, 2


def _episodes(lengths: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    obs, act = [], []
    for e, h in enumerate(lengths):
        # values encode (episode, step, dim) so every gathered entry can be checked
        steps = np.arange(h + 1, dtype=np.float32)[:, None]
        obs.append(100 * (e + 1) + steps + np.arange(OBS, dtype=np.float32)[None] / 10)
        act.append(-(100 * (e + 1) + steps[:-1] + np.arange(ACT, dtype=np.float32)[None] / 10))
    return obs, act


def test_window_counts_follow_eq2() -> None:
    lengths = np.array([10, 4, 3, 1, 7])
    np.testing.assert_array_equal(windows_per_episode(lengths, 4), [7, 1, 1, 1, 4])
    index = build_windows(*_episodes(list(lengths)), horizon=4)
    assert len(index) == 7 + 1 + 1 + 1 + 4
    np.testing.assert_array_equal(index.window_start[:7], np.arange(7))
    np.testing.assert_array_equal(index.window_episode, np.repeat(np.arange(5), [7, 1, 1, 1, 4]))


def test_full_windows_are_slices() -> None:
    obs, act = _episodes([10, 6])
    index = build_windows(obs, act, horizon=4)
    x, valid = index.gather(np.arange(len(index)))
    assert x.shape == (len(index), 5, OBS + ACT) and x.dtype == np.float32
    assert valid.all()
    for w in range(len(index)):
        e, i = index.window_episode[w], index.window_start[w]
        states, actions = unpack(x[w:w + 1], OBS)
        np.testing.assert_array_equal(states[0], obs[e][i:i + 5])
        np.testing.assert_array_equal(actions[0], act[e][i:i + 4])
        # the action slot of the last state is zero padding even when the episode has an action there
        np.testing.assert_array_equal(x[w, -1, OBS:], 0.0)


def test_short_episode_is_zero_padded_with_mask() -> None:
    obs, act = _episodes([3])
    index = build_windows(obs, act, horizon=6)
    x, valid = index.gather(np.array([0, 0]))
    np.testing.assert_array_equal(valid[0], [True] * 4 + [False] * 3)
    np.testing.assert_array_equal(x[0, :4, :OBS], obs[0])
    np.testing.assert_array_equal(x[0, :3, OBS:], act[0])
    np.testing.assert_array_equal(x[0, 3:, OBS:], 0.0)
    np.testing.assert_array_equal(x[0, 4:], 0.0)
    # gathering does not modify the packed rows
    x2, _ = index.gather(np.array([0]))
    np.testing.assert_array_equal(x2[0], x[0])


def test_pack_unpack_and_condition_mask() -> None:
    rng = np.random.default_rng(0)
    s, a = rng.normal(size=(2, 5, OBS)), rng.normal(size=(2, 4, ACT))
    x = pack(s, a)
    assert x.shape == (2, 5, OBS + ACT)
    s2, a2 = unpack(x, OBS)
    np.testing.assert_allclose(s2, s, rtol=1e-6)
    np.testing.assert_allclose(a2, a, rtol=1e-6)
    np.testing.assert_array_equal(x[:, -1, OBS:], 0.0)
    m = condition_mask(4, OBS, ACT)
    assert m.shape == (5, OBS + ACT)
    assert m[0].all() and m[:, OBS:].all() and not m[1:, :OBS].any()
    with pytest.raises(UserInputError):
        pack(s, a[:, :3])
    with pytest.raises(UserInputError):
        build_windows([], [], horizon=4)
    with pytest.raises(UserInputError):
        build_windows(*_episodes([3]), horizon=0)
