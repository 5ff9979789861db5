"""DyDiff generator: Table 4 config, the pure functions of Algorithm 1, truncation, determinism.

The world model and the diffusion model are replaced by tiny deterministic stand-ins that satisfy the
contracts (``predict_next / predict_reward / is_terminal`` and ``sample(s0, actions, rng)`` with
hard replacement), so each equation can be checked exactly; the real models are exercised end to end
in tests/test_dydiff_cli.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from augment.generators.dydiff import (
    DyDiffConfig,
    DyDiffGenerator,
    dataset_kind,
    mask_padding,
    refine,
    single_step_rollout,
    trajectory_scores,
    truncate_at_terminals,
)
from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset

OBS, ACT = 3, 2


class LinearPolicy:
    """a = tanh(W s): deterministic, so Eq. 8 relabels are checkable."""

    def __init__(self) -> None:
        self.w = np.array([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6]], dtype=np.float32)
        self.calls = 0

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.tanh(observations @ self.w.T).astype(np.float32)

    def reset(self, n: int) -> None:
        pass


class ToyWorld:
    """s' = s + B a + noise; r = s[0] + a[0]; terminal when s'[0] > 1.0 (a 'falls over' rule)."""

    def __init__(self, noise: float = 0.01) -> None:
        self.b = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
        self.noise = noise

    def predict_next(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (obs + act @ self.b.T + self.noise * rng.standard_normal(obs.shape)).astype(np.float32)

    def predict_reward(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        return (obs[:, 0] + act[:, 0]).astype(np.float32)

    def is_terminal(self, next_obs: np.ndarray) -> np.ndarray:
        return next_obs[:, 0] > 1.0


class ToyDiffusion:
    """Integrates the conditioning actions (s_{t+1} = s_t + 0.9 B a_t) plus rng noise; out[:, 0] == s0."""

    horizon = 6
    network_evaluations_per_sample = 67

    def __init__(self) -> None:
        self.b = ToyWorld().b
        self.calls: list[np.ndarray] = []

    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator,
               *, num_steps: int | None = None) -> np.ndarray:
        self.calls.append(actions.copy())
        steps = 0.9 * actions @ self.b.T + 0.01 * rng.standard_normal(actions.shape[:2] + (OBS,))
        return np.concatenate([s0[:, None], s0[:, None] + np.cumsum(steps, axis=1)], axis=1).astype(
            np.float32)


def tiny_dataset(n_episodes: int = 4, steps: int = 10) -> OfflineDataset:
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(n_episodes):
        episodes.append(Episode(
            observations=(0.1 * rng.standard_normal((steps + 1, OBS))).astype(np.float32),
            actions=rng.uniform(-1, 1, (steps, ACT)).astype(np.float32),
            rewards=rng.standard_normal(steps).astype(np.float32),
            terminated=np.zeros(steps, bool), truncated=np.eye(1, steps, steps - 1, dtype=bool)[0]))
    return OfflineDataset(name="toy-medium-replay", episodes=tuple(episodes), env_id=None)


def make_generator(m: int = 2, filter_kind: str = "hardmax", n: int = 12) -> DyDiffGenerator:
    cfg = DyDiffConfig(iterations=m, rollout_batch=n, rollout_length=6, filter=filter_kind, eta=0.5,
                       sample_batch=5, profile="smoke")
    gen = DyDiffGenerator(cfg, progress=False)
    gen.attach(tiny_dataset(), ToyWorld(), ToyDiffusion())
    return gen


# ---------------------------------------------------------------------------------------------- config

def test_for_profile_follows_table_4() -> None:
    mr = DyDiffConfig.for_profile("paper", "hopper-medium-replay")
    assert (mr.eta, mr.iterations, mr.rollout_batch, mr.rollout_length) == (0.8, 2, 2048, 100)
    assert (mr.rollout_interval, mr.temperature, mr.filter, mr.real_ratio) == (500, 0.05, "softmax", 0.6)
    assert mr.max_synthetic == 2_000_000 and mr.notes == ()
    assert DyDiffConfig.for_profile("paper", "walker2d-medium-expert").eta == 0.8
    assert DyDiffConfig.for_profile("paper", "halfcheetah-medium").eta == 0.6
    maze = DyDiffConfig.for_profile("paper", "maze2d-umaze")
    assert (maze.eta, maze.iterations) == (0.6, 1)
    assert DyDiffConfig.for_profile("paper", "hopper-mr").eta == 0.8
    cpu = DyDiffConfig.for_profile("cpu", "hopper-medium-replay")
    assert cpu.rollout_batch < 2048 and cpu.notes and "(paper 2048)" in "\n".join(cpu.explain())
    assert mr.kept_per_round == int(0.8 * 2048)


def test_dataset_kind_and_validation() -> None:
    assert dataset_kind("hopper-medium-replay") == "medium-replay"
    assert dataset_kind("/tmp/hopper_medium-v2.hdf5") == "medium"
    assert dataset_kind("something.npz") == "other"
    with pytest.raises(UserInputError, match="--filter"):
        DyDiffConfig(filter="topk")
    with pytest.raises(UserInputError, match="eta"):
        DyDiffConfig(eta=0.0)
    with pytest.raises(UserInputError, match="--real-ratio"):
        DyDiffConfig(real_ratio=1.5)


# ---------------------------------------------------------------------------------------------- equations

def test_single_step_rollout_is_eq6() -> None:
    policy, world = LinearPolicy(), ToyWorld(noise=0.0)
    s0 = np.array([[0.1, 0.2, 0.3], [-0.1, 0.0, 0.2]], dtype=np.float32)
    states, actions = single_step_rollout(s0, policy, world, 4, np.random.default_rng(0))
    assert states.shape == (2, 5, OBS) and actions.shape == (2, 4, ACT)
    np.testing.assert_array_equal(states[:, 0], s0)
    for i in range(4):
        np.testing.assert_allclose(actions[:, i], policy.act(states[:, i]), rtol=1e-6)
        expected = world.predict_next(states[:, i], actions[:, i], np.random.default_rng(0))
        np.testing.assert_allclose(states[:, i + 1], expected, rtol=1e-6)


def test_refine_conditions_each_iteration_on_the_previous_actions() -> None:
    policy, diffusion = LinearPolicy(), ToyDiffusion()
    s0 = np.zeros((3, OBS), np.float32) + 0.2
    a0 = np.full((3, 6, ACT), 0.3, np.float32)
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    states, actions = refine(s0, a0, policy, diffusion, 3, np.random.default_rng(1),
                             on_iteration=lambda k, s, a: seen.__setitem__(k, (s.copy(), a.copy())))
    assert len(diffusion.calls) == 3 and sorted(seen) == [1, 2, 3]
    np.testing.assert_array_equal(diffusion.calls[0], a0)  # Eq. 7 conditions on tau_a,dyn

    def by_hand(st: np.ndarray) -> np.ndarray:  # Eq. 8 written out: a_i = tanh(W s_i), i = 0..L-1
        return np.tanh(np.einsum("ij,blj->bli", policy.w.astype(np.float64), st[:, :-1].astype(np.float64)))

    # Eq. 9: iteration k >= 2 is conditioned on a^(k-1), relabelled from iteration k-1's states (not a^(0))
    for k in (2, 3):
        expected = by_hand(seen[k - 1][0])
        assert not np.allclose(expected, a0, atol=1e-3)
        np.testing.assert_allclose(diffusion.calls[k - 1], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(seen[k][1], expected, rtol=1e-5, atol=1e-6)
    assert states is not None
    np.testing.assert_array_equal(states, seen[3][0])  # the last iteration's states are returned
    np.testing.assert_allclose(actions, by_hand(states), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actions[:, 0], np.tanh(s0 @ policy.w.T), rtol=1e-5)
    none_states, same = refine(s0, a0, policy, diffusion, 0, np.random.default_rng(1))
    assert none_states is None and same is a0


def test_trajectory_scores_eq11_and_nonfinite_rows() -> None:
    rewards = np.array([[1.0, 2.0, 3.0], [0.5, np.nan, 0.0]], np.float32)
    np.testing.assert_array_equal(trajectory_scores(rewards), [6.0, -np.inf])


def test_truncation_at_terminals() -> None:
    flags = np.array([[False, False, False, False],
                      [False, True, False, True],
                      [True, True, True, True],
                      [False, False, False, True]])
    lengths, terminals = truncate_at_terminals(flags)
    np.testing.assert_array_equal(lengths, [4, 2, 1, 4])
    np.testing.assert_array_equal(terminals.sum(axis=1), [0, 1, 1, 1])
    assert terminals[1, 1] and terminals[2, 0] and terminals[3, 3] and not terminals[1, 3]
    obs = np.ones((4, 5, 2), np.float32)
    act = np.ones((4, 4, 1), np.float32)
    rew = np.ones((4, 4), np.float32)
    o, a, r = mask_padding(obs, act, rew, lengths)
    assert o[1, :3].all() and not o[1, 3:].any()  # s_0..s_2 kept for 2 steps, later states zeroed
    assert a[2, 0].all() and not a[2, 1:].any() and r.sum() == lengths.sum()


def test_generate_cuts_kept_trajectories_at_their_first_terminal() -> None:
    gen = make_generator(m=2, filter_kind="hardmax", n=40)
    batch = gen.generate(40, LinearPolicy(), np.random.default_rng(3), round=2, learner_step=1000)
    batch.validate()
    assert batch.generator == "dydiff" and batch.batch_size == 20  # floor(0.5 * 40)
    assert (batch.round == 2).all() and (batch.learner_step == 1000).all()
    world = ToyWorld()
    for b in range(batch.batch_size):
        n = batch.lengths[b]
        nxt = batch.observations[b, 1: n + 1]
        flags = world.is_terminal(nxt)
        assert not flags[:-1].any()  # no terminal state before the cut
        assert batch.terminals[b, n - 1] == flags[-1]
        assert batch.terminals[b].sum() == int(flags[-1])
        assert not batch.observations[b, n + 1:].any() and not batch.actions[b, n:].any()
    assert batch.terminals.any(), "the toy rule should end some rollouts early"
    # provenance: start_index names the real row each s0 came from; hardmax kept the top scores
    real = gen._start_states
    assert real is not None
    np.testing.assert_array_equal(batch.observations[:, 0], real[batch.start_index])
    assert gen.last_round is not None and gen.last_round.kept == 20
    assert gen.network_evaluations()["denoiser"] == 2 * 67


def test_hardmax_keeps_the_top_scores() -> None:
    gen = make_generator(m=1, filter_kind="hardmax", n=30)
    rng = np.random.default_rng(5)
    batch = gen.generate(30, LinearPolicy(), rng)
    # regenerate the unfiltered scores with the same draws by turning the filter into "keep all"
    gen_all = make_generator(m=1, filter_kind="hardmax", n=30)
    gen_all.config = DyDiffConfig(**{**gen.config.to_json(), "eta": 1.0, "notes": ()})
    everything = gen_all.generate(30, LinearPolicy(), np.random.default_rng(5))
    scores = np.sort(everything.filter_score)[::-1]
    np.testing.assert_allclose(np.sort(batch.filter_score)[::-1], scores[:15], rtol=1e-6)


def test_same_seed_same_batch_softmax() -> None:
    a = make_generator(filter_kind="softmax").generate(12, LinearPolicy(), np.random.default_rng(7))
    b = make_generator(filter_kind="softmax").generate(12, LinearPolicy(), np.random.default_rng(7))
    c = make_generator(filter_kind="softmax").generate(12, LinearPolicy(), np.random.default_rng(8))
    for name in ("observations", "actions", "rewards", "terminals", "lengths", "start_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.start_index, c.start_index)


def test_generate_needs_fit_and_a_policy() -> None:
    gen = DyDiffGenerator(DyDiffConfig(profile="smoke"), progress=False)
    with pytest.raises(UserInputError, match="fit"):
        gen.generate(4, LinearPolicy(), np.random.default_rng(0))
    with pytest.raises(UserInputError, match="policy"):
        make_generator().generate(4, None, np.random.default_rng(0))
    bad = DyDiffGenerator(DyDiffConfig(rollout_length=5, profile="smoke"), progress=False)
    with pytest.raises(UserInputError, match="--rollout-length 6"):
        bad.attach(tiny_dataset(), ToyWorld(), ToyDiffusion())
