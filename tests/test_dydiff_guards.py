"""DyDiff's two guards that are not in the paper: the reward clip and the state box (MOPO-style cut).

Pure functions checked on hand-made arrays; the generator checked against the noiseless re-implementation
of Algorithm 1 in tests/test_dydiff_behaviour.py (``by_hand``), with a box and a reward range set by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_dydiff import LinearPolicy, tiny_dataset
from test_dydiff_behaviour import L, by_hand, make

from augment.arms import parse_arm_options
from augment.commands import dydiff_config
from augment.generators.dydiff import (
    DyDiffConfig,
    box_lengths,
    clip_rewards,
    kept_batch,
    masked_scores,
    state_box,
)
from stores.errors import UserInputError


def test_box_lengths_counts_steps_before_the_first_state_outside() -> None:
    lo, hi = np.array([-1.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32)
    states = np.zeros((4, 4, 2), np.float32)  # B=4, L=3
    states[1, 2] = [0.0, 1.5]         # s_2 outside: steps 0 kept, step 1 (-> s_2) not: length 1
    states[2, 1] = [-2.0, 0.0]        # s_1 outside: length 0
    states[3, 3] = [np.nan, 0.0]      # s_3 non-finite: length 2
    states[0, 0] = [9.0, 9.0]         # s_0 is never checked (a real state)
    np.testing.assert_array_equal(box_lengths(states, lo, hi), [3, 1, 0, 2])
    states[1, 3] = [5.0, 5.0]         # a later exit does not matter, the first one cuts
    assert box_lengths(states, lo, hi)[1] == 1


def test_state_box_is_min_max_widened_by_the_margin() -> None:
    obs = np.array([[0.0, 10.0], [2.0, 14.0], [1.0, 12.0]], np.float32)
    lo, hi = state_box(obs, 0.0)
    np.testing.assert_array_equal(lo, [0.0, 10.0])
    np.testing.assert_array_equal(hi, [2.0, 14.0])
    lo, hi = state_box(obs, 0.25)
    np.testing.assert_allclose(lo, [-0.5, 9.0])
    np.testing.assert_allclose(hi, [2.5, 15.0])
    with pytest.raises(ValueError, match="margin"):
        state_box(obs, -0.1)


def test_clip_rewards_and_masked_scores() -> None:
    r = np.array([[-3.0, 0.5, 2.0], [0.2, np.nan, 0.1]], np.float32)
    clipped = clip_rewards(r, 0.0, 1.0)
    np.testing.assert_array_equal(clipped[0], [0.0, 0.5, 1.0])
    assert np.isnan(clipped[1, 1])
    with pytest.raises(ValueError):
        clip_rewards(r, 1.0, 0.0)
    scores = masked_scores(clipped, np.array([2, 1]))
    np.testing.assert_allclose(scores, [0.5, 0.2])  # the NaN lies past row 1's length: ignored
    scores = masked_scores(clipped, np.array([0, 2]))
    assert scores[0] == -np.inf and scores[1] == -np.inf  # no step left / NaN inside


def test_kept_batch_box_cut_is_a_truncation_not_a_terminal() -> None:
    b, length, obs, act = 3, 4, 2, 1
    states = np.ones((b, length + 1, obs), np.float32)
    actions = np.ones((b, length, act), np.float32)
    rewards = np.ones((b, length), np.float32)
    flags = np.zeros((b, length), bool)
    flags[0, 2] = True   # row 0 terminal at step 2; box allows 4 -> length 3, terminal kept
    flags[1, 2] = True   # row 1 terminal at step 2; box allows 2 -> length 2, no terminal
    caps = np.array([4, 2, 1])  # row 2: no terminal, box cut after 1 step
    batch = kept_batch(states, actions, rewards, flags, np.arange(3), generator="dydiff", round=0,
                       learner_step=0, filter_score=np.zeros(3, np.float32), start_index=np.arange(3),
                       max_lengths=caps)
    np.testing.assert_array_equal(batch.lengths, [3, 2, 1])
    assert batch.terminals[0, 2] and not batch.terminals[1].any() and not batch.terminals[2].any()
    assert not batch.rewards[1, 2:].any() and not batch.observations[2, 2:].any()


def test_generate_with_the_state_box_cuts_and_scores_the_kept_steps() -> None:
    gen = make(1, 40)
    gen.config = dataclasses.replace(gen.config, state_box=0.0)
    real = gen._start_states
    assert real is not None
    hand = [by_hand(real[i], 1) for i in range(real.shape[0])]
    # a box on dimension 1 that some rollouts leave at their first step, some later, some never
    lo = np.array([-np.inf, -0.45, -np.inf], np.float32)
    hi = np.array([np.inf, 0.55, np.inf], np.float32)
    gen.box = gen.data_box = (lo, hi)
    batch = gen.generate(40, LinearPolicy(), np.random.default_rng(4))
    stats = gen.last_round
    assert stats is not None and stats.left_box > 0 and stats.box_empty > 0
    assert batch.batch_size == 40 - stats.box_empty  # eta = 1: every row with a step inside is kept
    cut_before_terminal = 0
    for b in range(batch.batch_size):
        traj, acts, rew = hand[batch.start_index[b]]
        inside = (traj[1:] >= lo).all(axis=1) & (traj[1:] <= hi).all(axis=1)
        n_box = int(np.argmin(inside)) if not inside.all() else L
        flags = traj[1:, 0] > 1.0
        n_term = int(np.argmax(flags)) + 1 if flags.any() else L
        n = min(n_box, n_term)
        assert n >= 1 and batch.lengths[b] == n
        assert batch.terminals[b].any() == (flags.any() and n_term <= n_box)
        cut_before_terminal += n_box < n_term
        assert batch.filter_score[b] == pytest.approx(rew[:n_box].sum(), rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(batch.observations[b, :n + 1], traj[:n + 1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batch.actions[b, :n], acts[:n], rtol=1e-5, atol=1e-6)
    assert cut_before_terminal > 0
    assert gen.store_attrs()["generator_config"]["state_box"] == 0.0
    # left_box counts exits from the data's exact box whether or not the cut is on
    plain = make(1, 40)
    assert plain.data_box is not None and plain.box is None
    plain.data_box = (lo, hi)
    plain.generate(40, LinearPolicy(), np.random.default_rng(4))
    assert plain.last_round is not None and plain.last_round.box_empty == 0
    assert plain.last_round.left_box > 0


def test_generate_with_the_reward_clip_stores_clipped_rewards() -> None:
    gen = make(1, 40)
    gen.config = dataclasses.replace(gen.config, reward_clip="data")
    gen.reward_range = (-0.2, 0.3)
    batch = gen.generate(40, LinearPolicy(), np.random.default_rng(4))
    real = gen._start_states
    assert real is not None and gen.last_round is not None
    outside = 0
    for b in range(batch.batch_size):
        _, _, rew = by_hand(real[batch.start_index[b]], 1)
        outside += int(((rew < -0.2) | (rew > 0.3)).sum())
        n = int(batch.lengths[b])
        np.testing.assert_allclose(batch.rewards[b, :n], np.clip(rew, -0.2, 0.3)[:n], rtol=1e-5, atol=1e-6)
        assert batch.filter_score[b] == pytest.approx(np.clip(rew, -0.2, 0.3).sum(), rel=1e-5, abs=1e-5)
    assert outside > 0 and gen.last_round.rewards_clipped == outside
    # without the clip the same round counts the same rewards outside but stores them as predicted
    plain = make(1, 40)
    plain.reward_range = (-0.2, 0.3)
    raw = plain.generate(40, LinearPolicy(), np.random.default_rng(4))
    assert plain.last_round is not None and plain.last_round.rewards_clipped == outside
    assert raw.rewards.max() > 0.3 or raw.rewards.min() < -0.2


def test_attach_takes_the_ranges_from_the_dataset_and_generate_needs_them() -> None:
    data = tiny_dataset()
    t = data.transitions
    gen = make(1, 8)
    gen.config = dataclasses.replace(gen.config, state_box=0.1)
    gen.attach(data, gen.world, gen.diffusion)
    assert gen.reward_range == (float(t.rewards.min()), float(t.rewards.max()))
    assert gen.box is not None
    lo, hi = state_box(np.concatenate([t.observations, t.next_observations]), 0.1)
    np.testing.assert_array_equal(gen.box[0], lo)
    np.testing.assert_array_equal(gen.box[1], hi)
    gen.box = None
    with pytest.raises(UserInputError, match="attach"):
        gen.generate(8, LinearPolicy(), np.random.default_rng(0))


def test_settings_validate_and_parse() -> None:
    with pytest.raises(UserInputError, match="--reward-clip"):
        DyDiffConfig(reward_clip="yes")
    with pytest.raises(UserInputError, match="--state-box"):
        DyDiffConfig(state_box=-1.0)
    cfg = DyDiffConfig.for_profile("cpu", "maze2d-umaze")
    assert cfg.reward_clip == "none" and cfg.state_box is None  # the paper's default
    on = dydiff_config("maze2d-umaze", profile="cpu", reward_clip="data", state_box=0.0)
    assert on.reward_clip == "data" and on.state_box == 0.0
    assert "not in the paper" in on.explain()[0]
    assert dydiff_config("maze2d-umaze", profile="cpu", state_box=-1.0).state_box is None
    assert parse_arm_options("rclip=data,box=0") == {"reward_clip": "data", "state_box": 0.0}
    with pytest.raises(UserInputError):
        parse_arm_options("box=wide")
