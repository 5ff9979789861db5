"""What DyDiff stores, checked against an independent re-implementation of Algorithm 1 in the test.

The stand-ins of tests/test_dydiff.py are made deterministic (no noise), so every stored number can be
recomputed by hand from the start state alone: the single-step rollout (Eq. 6), M rounds of diffusion
(Eq. 7/9) and policy relabelling (Eq. 8), the rewards r(s_i, a_i) (Eq. 10), the score (Eq. 11) and the
cut at the first terminal. The real models are used for ``save``/``load`` (tiny ones, see tiny_dydiff.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_dydiff import ACT, OBS, LinearPolicy, ToyDiffusion, ToyWorld, tiny_dataset

from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator
from stores.errors import UserInputError
from stores.replay import ReplayStore

L = 6  # rollout length of the toy diffusion model
W = LinearPolicy().w.astype(np.float64)
B_DYN = ToyWorld().b.astype(np.float64)


class ExactDiffusion(ToyDiffusion):
    """ToyDiffusion without noise: states^(k) = s0 + cumsum(0.9 B a^(k-1)) exactly."""

    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator,
               *, num_steps: int | None = None) -> np.ndarray:
        self.calls.append(actions.copy())
        steps = 0.9 * actions @ self.b.T
        out = np.concatenate([s0[:, None], s0[:, None] + np.cumsum(steps, axis=1)], axis=1)
        return out.astype(np.float32)


def by_hand(s0: np.ndarray, m: int, rule: str = "replace") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Algorithm 1 for one start state (obs,), in float64: states (L+1, obs), actions (L, act), r (L,).

    rule ``replace``: states^(k) is the k-th diffusion sample; ``average``: the mean of that sample and
    states^(k-1), states^(0) being the single-step rollout (the official code's rule).
    """
    pi = lambda s: np.tanh(W @ s)  # noqa: E731 - the policy of the stand-in
    states = [s0.astype(np.float64)]
    actions = []
    for _ in range(L):  # Eq. 6 with the noiseless toy world s' = s + B a
        actions.append(pi(states[-1]))
        states.append(states[-1] + B_DYN @ actions[-1])
    acts = np.array(actions)
    traj = np.array(states)
    for _ in range(m):  # Eq. 7/9 (diffusion given the previous actions), then Eq. 8
        sample = np.concatenate([s0[None].astype(np.float64), s0 + np.cumsum(0.9 * acts @ B_DYN.T, axis=0)])
        traj = sample if rule == "replace" else 0.5 * (sample + traj)
        acts = np.array([pi(s) for s in traj[:-1]])
    rewards = traj[:-1, 0] + acts[:, 0]  # Eq. 10 of the stand-in: r(s_i, a_i) = s_i[0] + a_i[0]
    return traj, acts, rewards


def make(m: int, n: int, *, eta: float = 1.0, filter_kind: str = "hardmax", rule: str = "replace"
         ) -> DyDiffGenerator:
    cfg = DyDiffConfig(iterations=m, rollout_batch=n, rollout_length=L, filter=filter_kind, eta=eta,
                       sample_batch=7, profile="smoke", iteration_rule=rule, dynamics="sample")
    gen = DyDiffGenerator(cfg, progress=False)
    gen.attach(tiny_dataset(), ToyWorld(noise=0.0), ExactDiffusion())
    start = np.random.default_rng(9).uniform(-0.4, 0.6, size=(200, OBS)).astype(np.float32)
    gen.set_start_states(start)  # start states spread enough that some rollouts cross the terminal rule
    return gen


@pytest.mark.parametrize(("m", "rule"), [(0, "replace"), (1, "replace"), (2, "replace"), (3, "replace"),
                                         (2, "average")])
def test_generate_stores_algorithm_1_exactly(m: int, rule: str, tmp_path: Path) -> None:
    gen = make(m, 40, rule=rule)
    batch = gen.generate(40, LinearPolicy(), np.random.default_rng(4), round=3, learner_step=77)
    assert batch.batch_size == 40  # eta = 1 keeps every row, in rollout order
    real = gen._start_states
    assert real is not None
    terminated = 0
    for b in range(40):
        traj, acts, rew = by_hand(real[batch.start_index[b]], m, rule)
        flags = traj[1:, 0] > 1.0  # the toy termination rule on s_{i+1}
        n = int(np.argmax(flags)) + 1 if flags.any() else L
        terminated += bool(flags.any())
        assert batch.lengths[b] == n
        np.testing.assert_allclose(batch.observations[b, :n + 1], traj[:n + 1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batch.actions[b, :n], acts[:n], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batch.rewards[b, :n], rew[:n], rtol=1e-5, atol=1e-6)
        # Eq. 11 sums the whole generated window, before the cut
        assert batch.filter_score[b] == pytest.approx(rew.sum(), rel=1e-5, abs=1e-5)
        np.testing.assert_array_equal(batch.terminals[b], np.arange(L) == n - 1 if flags.any() else False)
        assert not batch.observations[b, n + 1:].any() and not batch.actions[b, n:].any()
        assert not batch.rewards[b, n:].any()
    assert 0 < terminated < 40, "the start states should end some rollouts early and not others"
    assert (batch.round == 3).all() and (batch.learner_step == 77).all()
    # the diffusion model saw a^(0), then each iteration's relabelled actions
    diffusion = gen.diffusion
    assert len(diffusion.calls) == m * 6  # 40 rows in chunks of 7

    # and a real store keeps exactly these transitions
    with ReplayStore.create(tmp_path / "s.zarr", observation_size=OBS, action_size=ACT,
                            attrs=gen.store_attrs()) as store:
        store.append(batch)
    with ReplayStore.open(tmp_path / "s.zarr") as store:
        data = store.load()
        assert store.attrs["generator_config"]["iterations"] == m
    pairs = zip(batch.start_index, batch.lengths, strict=True)
    rows = [(by_hand(real[i], m, rule), int(k)) for i, k in pairs]
    np.testing.assert_allclose(data["rewards"], np.concatenate([r[2][:k] for r, k in rows]), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(data["actions"], np.concatenate([r[1][:k] for r, k in rows]), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(data["observations"], np.concatenate([r[0][:k] for r, k in rows]), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(data["next_observations"], np.concatenate([r[0][1:k + 1] for r, k in rows]),
                               rtol=1e-5, atol=1e-6)
    assert int(data["terminals"].sum()) == terminated


def test_hardmax_keeps_the_rows_with_the_best_hand_computed_scores() -> None:
    gen = make(2, 30, eta=0.5)
    batch = gen.generate(30, LinearPolicy(), np.random.default_rng(2))
    full = make(2, 30).generate(30, LinearPolicy(), np.random.default_rng(2))  # same draws, all kept
    real = gen._start_states
    assert real is not None
    scores = np.array([by_hand(real[i], 2)[2].sum() for i in full.start_index])
    best = np.sort(np.argsort(-scores, kind="stable")[:15])
    np.testing.assert_array_equal(batch.start_index, full.start_index[best])
    np.testing.assert_allclose(batch.filter_score, scores[best], rtol=1e-5, atol=1e-5)


def test_nonfinite_rollouts_are_never_kept() -> None:
    class NaNDiffusion(ExactDiffusion):
        def sample(self, s0, actions, rng, *, num_steps=None):  # type: ignore[no-untyped-def]
            out = super().sample(s0, actions, rng)
            out[::2, 3] = np.nan  # every other row of each chunk blows up
            return out

    gen = make(1, 20)
    gen.attach(tiny_dataset(), ToyWorld(noise=0.0), NaNDiffusion())
    gen.set_start_states(np.random.default_rng(9).uniform(-0.4, 0.6, size=(200, OBS)).astype(np.float32))
    batch = gen.generate(20, LinearPolicy(), np.random.default_rng(0))
    assert gen.last_round is not None and gen.last_round.nonfinite == 4 + 4 + 3  # chunks of 7, 7, 6
    assert batch.batch_size == 20 - 11 and np.isfinite(batch.observations).all()
    assert np.isfinite(batch.filter_score).all()


# ---------------------------------------------------------------------------------------------- save/load

def test_save_load_round_trips_config_models_and_samples(tmp_path: Path) -> None:
    from tiny_dydiff import tiny_models

    dataset, world, diffusion = tiny_models()
    cfg = DyDiffConfig(iterations=2, rollout_batch=6, rollout_length=diffusion.horizon, filter="softmax",
                       eta=0.5, temperature=0.7, sample_batch=4, profile="smoke", dataset=dataset.name,
                       notes=("a note",))
    gen = DyDiffGenerator(cfg, progress=False)
    gen.attach(dataset, world, diffusion)
    gen.save(tmp_path / "gen")

    loaded = DyDiffGenerator(DyDiffConfig(profile="smoke", rollout_length=diffusion.horizon), progress=False)
    loaded.load(tmp_path / "gen")
    assert loaded.config == cfg and loaded.config.notes == ("a note",)
    assert (loaded.dataset_name, loaded.env_id) == (dataset.name, dataset.env_id)
    with pytest.raises(UserInputError, match="before fit"):  # start states come from the dataset
        loaded.generate(6, LinearHopperPolicy(), np.random.default_rng(0))
    loaded.set_start_states(dataset.transitions.observations)
    a = gen.generate(6, LinearHopperPolicy(), np.random.default_rng(5))
    b = loaded.generate(6, LinearHopperPolicy(), np.random.default_rng(5))
    for name in ("observations", "actions", "rewards", "terminals", "lengths", "filter_score", "start_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.batch_size == 3 and loaded.store_attrs() == gen.store_attrs()
    with pytest.raises(UserInputError, match="no dydiff.json"):
        DyDiffGenerator(cfg, progress=False).load(tmp_path / "nothing")


class LinearHopperPolicy:
    """a = tanh(W s) for Hopper (11 -> 3)."""

    def __init__(self) -> None:
        self.w = np.random.default_rng(0).normal(scale=0.3, size=(3, 11)).astype(np.float32)

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.tanh(observations @ self.w.T).astype(np.float32)

    def reset(self, n: int) -> None:
        pass


# ---------------------------------------------------------------------------------------------- bookkeeping

def test_network_evaluations_per_trajectory() -> None:
    gen = make(2, 10)
    # L = 6 steps: the policy acts on Eq. 6's L states and relabels L states per iteration (M = 2); the
    # toy denoiser reports 67 calls per sample
    expected = {"policy": 6 * 3, "dynamics": 6, "denoiser": 2 * 67, "reward": 6}
    assert gen.network_evaluations() == {**expected, "total": sum(expected.values())}


def test_network_evaluations_of_the_real_sampler() -> None:
    from tiny_dydiff import tiny_models

    dataset, world, diffusion = tiny_models()
    cfg = DyDiffConfig(iterations=3, rollout_batch=4, rollout_length=diffusion.horizon, profile="smoke",
                       iteration_rule="replace", dynamics="sample")
    gen = DyDiffGenerator(cfg, progress=False)
    gen.attach(dataset, world, diffusion)
    heun = 2 * diffusion.config.edm.num_steps - 1  # one call per Heun step plus all corrections but the last
    assert gen.network_evaluations()["denoiser"] == 3 * heun


def test_store_attrs_record_every_setting() -> None:
    cfg = DyDiffConfig(iterations=3, rollout_batch=9, rollout_length=L, rollout_interval=77, filter="softmax",
                       eta=0.4, temperature=0.3, real_ratio=0.35, max_synthetic=1234, sample_batch=5,
                       iteration_rule="average", dynamics="sample", profile="smoke", reward_clip="data",
                       state_box=0.5)
    gen = DyDiffGenerator(cfg, progress=False)
    assert gen.dataset_name == "" and gen.env_id is None  # nothing fitted yet
    gen.attach(tiny_dataset(), ToyWorld(), ExactDiffusion())
    attrs = gen.store_attrs()
    assert attrs["generator_name"] == "dydiff" and attrs["env_id"] is None
    assert attrs["generator_config"] == {
        "iterations": 3, "filter": "softmax", "eta": 0.4, "temperature": 0.3, "rollout_length": L,
        "rollout_batch": 9, "rollout_interval": 77, "real_ratio": 0.35, "sample_batch": 5, "profile": "smoke",
        "iteration_rule": "average", "dynamics": "sample", "sdedit_sigma": None, "max_synthetic": 1234,
        "reward_clip": "data", "state_box": 0.5, "dataset": "toy-medium-replay"}


def test_round_stats_and_float64_dynamics() -> None:
    import time

    class Float64World(ToyWorld):
        def predict_next(self, obs, act, rng):  # type: ignore[no-untyped-def]
            return super().predict_next(obs, act, rng).astype(np.float64)

    gen = make(0, 12)
    gen.attach(tiny_dataset(), Float64World(noise=0.0), ExactDiffusion())
    t0 = time.perf_counter()
    batch = gen.generate(12, LinearPolicy(), np.random.default_rng(1))
    wall = time.perf_counter() - t0
    assert batch.observations.dtype == np.float32 and batch.actions.dtype == np.float32
    stats = gen.last_round
    assert stats is not None and stats.generated == 12 and stats.kept == 12
    assert stats.transitions == int(batch.lengths.sum())
    assert stats.terminated == int(batch.terminals.any(1).sum())
    assert 0.0 <= stats.seconds["rollout"] <= wall and 0.0 <= stats.seconds["score_filter"] <= wall


def test_config_bounds_and_aliases() -> None:
    from augment.generators.dydiff import dataset_kind

    assert DyDiffConfig(rollout_length=1, rollout_batch=1, rollout_interval=1, sample_batch=1,
                        iterations=0, eta=1.0, real_ratio=0.0).rollout_length == 1
    for bad in ({"rollout_length": 0}, {"rollout_batch": 0}, {"rollout_interval": 0}, {"sample_batch": 0},
                {"iterations": -1}, {"eta": 1.01}, {"temperature": 0.0}, {"real_ratio": -0.1}):
        with pytest.raises(UserInputError, match="must"):
            DyDiffConfig(**bad)
    assert dataset_kind("walker2d-me") == "medium-expert" and dataset_kind("halfcheetah-md") == "medium"
    assert dataset_kind("hopper-medium-expert-v2") == "medium-expert"
    assert dataset_kind("maze2d-large") == "maze2d"
    assert dataset_kind("hopper-random") == "random" and dataset_kind("walker2d-expert") == "expert"
    with pytest.raises(UserInputError, match="rollout batch"):
        make(1, 4).generate(0, LinearPolicy(), np.random.default_rng(0))


def test_filter_keeps_at_least_one_and_profiles_keep_their_inputs() -> None:
    from augment.generators.dydiff import select_trajectories
    from augment.world import WorldModelConfig

    scores = np.array([0.5, 2.0, -1.0])
    np.testing.assert_array_equal(select_trajectories(scores, "hardmax", 0.2, 0.05, np.random.default_rng(0)),
                                  [1])  # floor(0.2 * 3) = 0, but one row is always kept
    with_nonfinite = np.array([1.0, -np.inf, 3.0, 2.0])
    np.testing.assert_array_equal(select_trajectories(with_nonfinite, "hardmax", 0.5, 0.05,
                                                      np.random.default_rng(0)), [2, 3])
    cfg = DyDiffConfig.for_profile("smoke", "walker2d-me")
    assert cfg.dataset == "walker2d-me" and cfg.profile == "smoke" and cfg.eta == 0.8
    assert DyDiffGenerator(cfg, progress=False).world_config() == WorldModelConfig.for_profile("smoke")
