"""Tests of the boundary record types in stores.schema."""

from __future__ import annotations

import numpy as np
import pytest

from stores.errors import UserInputError, did_you_mean
from stores.schema import Episode, OfflineDataset, TrajectoryBatch


def make_episode(
    rng: np.random.Generator, t: int, obs: int = 3, act: int = 2, terminal: bool = False
) -> Episode:
    terminated = np.zeros(t, bool)
    truncated = np.zeros(t, bool)
    (terminated if terminal else truncated)[-1] = True
    return Episode(
        observations=rng.normal(size=(t + 1, obs)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(t, act)).astype(np.float32),
        rewards=rng.normal(size=t).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
    )


def make_dataset(seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    eps = (make_episode(rng, 5, terminal=True), make_episode(rng, 7), make_episode(rng, 3))
    return OfflineDataset(name="toy", episodes=eps, env_id=None)


def test_transitions_align_next_observations_with_episode_boundaries() -> None:
    ds = make_dataset()
    tr = ds.transitions
    assert len(tr) == 15 == ds.num_transitions
    np.testing.assert_array_equal(tr.episode_starts, [0, 5, 12, 15])
    # row 5 is the first step of episode 1: its next observation is episode 1's second observation
    np.testing.assert_array_equal(tr.observations[5], ds.episodes[1].observations[0])
    np.testing.assert_array_equal(tr.next_observations[4], ds.episodes[0].observations[5])
    np.testing.assert_array_equal(tr.next_observations[11], ds.episodes[1].observations[7])
    assert tr.terminals.sum() == 1 and tr.terminals[4]
    assert tr.timeouts.sum() == 2 and tr.timeouts[11] and tr.timeouts[14]
    np.testing.assert_array_equal(tr.episode_index, [0] * 5 + [1] * 7 + [2] * 3)


def test_stats_and_hash() -> None:
    ds = make_dataset()
    all_obs = np.concatenate([ep.observations for ep in ds.episodes])
    np.testing.assert_allclose(ds.stats.obs_mean, all_obs.mean(0), rtol=1e-5)
    returns = [ep.episode_return for ep in ds.episodes]
    assert ds.stats.return_max == pytest.approx(max(returns))
    assert ds.content_hash == make_dataset().content_hash
    assert ds.content_hash != make_dataset(seed=1).content_hash
    again = type(ds.stats).from_json(ds.stats.to_json())
    np.testing.assert_array_equal(again.obs_std, ds.stats.obs_std)


def test_episode_validation_names_key_and_row() -> None:
    rng = np.random.default_rng(0)
    ep = make_episode(rng, 6)
    ep.observations[3, 1] = np.nan
    with pytest.raises(UserInputError, match=r"'observations'.*first bad row 3"):
        ep.validate()
    short = Episode(ep.observations[:-2], ep.actions, ep.rewards, ep.terminated, ep.truncated)
    with pytest.raises(UserInputError, match="'observations' has 5 rows"):
        short.validate()
    ds = OfflineDataset("bad", (make_episode(rng, 4), make_episode(rng, 4, obs=5)), None)
    with pytest.raises(UserInputError, match="episode 1"):
        ds.validate()


def make_batch(b: int = 4, length: int = 5, obs: int = 3, act: int = 2) -> TrajectoryBatch:
    rng = np.random.default_rng(0)
    lengths = np.array([5, 2, 3, 1][:b], dtype=np.int64)
    terminals = np.zeros((b, length), bool)
    terminals[1, 1] = True
    return TrajectoryBatch(
        observations=rng.normal(size=(b, length + 1, obs)).astype(np.float32),
        actions=rng.normal(size=(b, length, act)).astype(np.float32),
        rewards=rng.normal(size=(b, length)).astype(np.float32),
        terminals=terminals, lengths=lengths, generator="test",
        round=np.zeros(b, np.int64), learner_step=np.zeros(b, np.int64),
        filter_score=np.full(b, np.nan, np.float32), start_index=np.arange(b, dtype=np.int64),
    )


def test_trajectory_batch_to_transitions() -> None:
    batch = make_batch()
    batch.validate()
    tr = batch.to_transitions()
    assert len(tr["rewards"]) == batch.num_transitions == 11
    np.testing.assert_array_equal(tr["traj"], [0] * 5 + [1] * 2 + [2] * 3 + [3])
    np.testing.assert_array_equal(tr["next_observations"][6], batch.observations[1, 2])
    # trajectory 1 terminates at its last step; the others end in timeouts
    assert tr["terminals"].sum() == 1 and tr["terminals"][6]
    assert list(np.flatnonzero(tr["timeouts"])) == [4, 9, 10]


def test_trajectory_batch_validation_ignores_padding_but_not_valid_steps() -> None:
    batch = make_batch()
    batch.observations[3, 4] = np.inf  # padding of trajectory 3 (length 1): allowed
    batch.validate()
    batch.actions[2, 1] = np.nan
    with pytest.raises(UserInputError, match="'actions'"):
        batch.validate()


def test_concatenate_and_did_you_mean() -> None:
    both = TrajectoryBatch.concatenate([make_batch(), make_batch()])
    assert both.batch_size == 8
    assert "did you mean 'hopper-medium-replay'" in did_you_mean(
        "hoper-medium-replay", ["hopper-medium-replay", "walker2d-medium"])
