"""augment/generators/rollout.py beyond the hand-rolled loop of tests/test_rollout.py: the dtypes the pure
functions promise, rewards taken as the world's float32 before MOPO's penalty, bool terminal flags, the
round record, the uncertainty score over each row's real steps, provenance, save / load with a real (tiny)
world model, and the config's checks and text."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augment.generators.rollout import (
    RolloutConfig,
    RolloutGenerator,
    model_rollout,
    mopo_uncertainty,
    penalized_rewards,
)
from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset

OBS, ACT = 3, 2
#: Start states: row 0 walks 0, .3, .6, ...; row 1 starts at .6 and terminates after 2 steps (s'[0] > 1);
#: row 2 has s[1] = 9, where the toy reward is +inf (a non-finite row, dropped).
POOL = np.array([[0.0, 0.0, 0.0], [0.6, 0.0, 0.0], [0.0, 9.0, 0.0]], np.float32)


class WalkWorld:
    """s' = s + (0.3, 0, 0) (no noise), r = s[0] (inf where s[1] > 5), terminal when s'[0] > 1 (as 0/1
    ints); elite stds (0.01, 0, 0) and (|s[0]|, 0, 0), so u(s, a) = max(0.01, |s[0]|)."""

    def predict_next_distribution(self, obs, act):
        stds = np.zeros((2,) + obs.shape, np.float32)
        stds[0, :, 0] = 0.01
        stds[1, :, 0] = np.abs(obs[:, 0])
        return np.stack([obs, obs]), stds

    def predict_next(self, obs, act, rng, *, deterministic=False):
        return obs + np.array([0.3, 0.0, 0.0], np.float32)

    def predict_reward(self, obs, act):
        return np.where(obs[:, 1] > 5.0, np.inf, obs[:, 0]).astype(np.float32)

    def is_terminal(self, next_obs):
        return (next_obs[:, 0] > 1.0).astype(np.int64)


class ZeroPolicy:
    def __init__(self, act: int = ACT) -> None:
        self.size = act
        self.resets: list[int] = []

    def act(self, observations):
        return np.zeros((observations.shape[0], self.size), np.float32)

    def reset(self, n: int) -> None:
        self.resets.append(n)


def _walk_generator(penalty: float = 0.0) -> RolloutGenerator:
    gen = RolloutGenerator(RolloutConfig(horizon=3, penalty=penalty, profile="smoke"), progress=False)
    gen.world = WalkWorld()
    gen.set_start_states(POOL.astype(np.float64))
    return gen


def test_pure_functions_return_float32() -> None:
    u = mopo_uncertainty(np.array([[[3.0, 4.0]], [[1.0, 1.0]]], np.float64))
    assert u.dtype == np.float32 and u.tolist() == [5.0]
    r = penalized_rewards(np.array([1.5], np.float64), np.array([0.25], np.float64), 2.0)
    assert r.dtype == np.float32 and r.tolist() == [1.0]


def test_rewards_are_the_worlds_float32_then_penalised() -> None:
    """r~ = float32(float32(r) - lambda u): a float64 reward 1 + 2^-24 + 2^-30 rounds up to 1 + 2^-23 in
    float32; minus u = 2^-30 it stays 1 + 2^-23. Penalising the float64 reward first would land exactly
    half-way (1 + 2^-24) and round to 1.0."""
    r64 = 1.0 + 2.0 ** -24 + 2.0 ** -30

    class FineWorld(WalkWorld):
        def predict_next_distribution(self, obs, act):
            stds = np.zeros((1,) + obs.shape, np.float32)
            stds[0, :, 0] = 2.0 ** -30
            return obs[None], stds

        def predict_reward(self, obs, act):
            return np.full(obs.shape[0], r64, np.float64)

    _, _, rewards, uncert, flags = model_rollout(POOL[:2], ZeroPolicy(), FineWorld(), 1,
                                                 np.random.default_rng(0), penalty=1.0)
    assert uncert[0, 0] == np.float32(2.0 ** -30)
    expected = np.float32(np.float64(np.float32(r64)) - 2.0 ** -30)
    assert expected == np.float32(1.0 + 2.0 ** -23)
    assert rewards.dtype == np.float32 and (rewards == expected).all()
    assert flags.dtype == bool  # the toy rule answers 0/1 ints


def test_generate_records_the_round_and_resets_the_policy() -> None:
    gen = _walk_generator()
    policy = ZeroPolicy()
    batch = gen.generate(8, policy, np.random.default_rng(3), round=2, learner_step=9)
    assert policy.resets == [8]
    idx = np.random.default_rng(3).integers(0, 3, size=8)  # the start rows generate() draws first
    kept = idx[idx != 2]
    np.testing.assert_array_equal(batch.start_index, kept)
    # row 0: 3 steps, no terminal; row 1: 0.6 -> 0.9 -> 1.2, terminal at its 2nd step
    np.testing.assert_array_equal(batch.lengths, np.where(kept == 0, 3, 2))
    np.testing.assert_array_equal(batch.terminals.any(axis=1), kept == 1)
    assert batch.terminals.dtype == bool and (batch.round == 2).all() and (batch.learner_step == 9).all()
    np.testing.assert_allclose(batch.rewards[kept == 0][0], [0.0, 0.3, 0.6], atol=1e-6)
    assert np.isnan(batch.filter_score).all()
    rec = gen.last_round
    assert set(rec) == {"generated", "kept", "nonfinite", "transitions", "terminated", "mean_uncertainty",
                        "seconds"}
    assert (rec["generated"], rec["kept"], rec["nonfinite"]) == (8, kept.size, int((idx == 2).sum()))
    assert rec["transitions"] == int(np.where(kept == 0, 3, 2).sum())
    assert rec["terminated"] == int((kept == 1).sum()) and rec["mean_uncertainty"] is None
    assert rec["seconds"] >= 0.0
    assert gen.network_evaluations() == {"policy": 3, "dynamics": 3, "reward": 3, "total": 9}
    with pytest.raises(UserInputError, match="rollout batch must be >= 1"):
        gen.generate(0, policy, np.random.default_rng(0))


def test_penalty_scores_each_row_over_its_real_steps_only() -> None:
    gen = _walk_generator(penalty=0.5)
    batch = gen.generate(8, ZeroPolicy(), np.random.default_rng(3))
    idx = np.random.default_rng(3).integers(0, 3, size=8)
    kept = idx[idx != 2]
    # u = max(0.01, |s0|): row 0 sees 0 (-> 0.01), 0.3, 0.6; row 1 sees 0.6, 0.9 (its 3rd step is padding)
    row0, row1 = (0.01 + 0.3 + 0.6) / 3, (0.6 + 0.9) / 2
    np.testing.assert_allclose(batch.filter_score, np.where(kept == 0, row0, row1), rtol=1e-6)
    assert batch.filter_score.dtype == np.float32
    # every generated row, the dropped one (s0 = 0 as row 0) included, all h steps
    u_all = {0: [0.01, 0.3, 0.6], 1: [0.6, 0.9, 1.2], 2: [0.01, 0.3, 0.6]}
    expected = np.mean([u_all[int(i)] for i in idx])
    assert gen.last_round["mean_uncertainty"] == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(batch.rewards[kept == 1][0][:2], [0.6 - 0.5 * 0.6, 0.9 - 0.5 * 0.9], atol=1e-6)


def test_store_attrs_and_diagnostics_after_attach() -> None:
    rng = np.random.default_rng(0)
    ep = Episode(observations=rng.normal(size=(5, OBS)).astype(np.float32),
                 actions=rng.uniform(-1, 1, size=(4, ACT)).astype(np.float32), rewards=np.ones(4, np.float32),
                 terminated=np.zeros(4, bool), truncated=np.arange(4) == 3)
    data = OfflineDataset(name="walk", episodes=(ep,), env_id=None)
    cfg = RolloutConfig(horizon=2, penalty=0.25, deterministic=True, rollout_batch=7, rollout_interval=11,
                        real_ratio=0.4, profile="smoke")
    gen = RolloutGenerator(cfg, progress=False)
    assert gen.diagnostics() == {}
    world = WalkWorld()
    world.report = {"holdout_next_state_mse_raw": 0.5, "elite_holdout_mse": [1.0], "epochs": 3}
    gen.attach(data, world)
    np.testing.assert_array_equal(gen._start_states, data.transitions.observations)
    assert gen.store_attrs() == {
        "generator_name": "rollout", "env_id": None,
        "termination": {"source": "none", "env_id": None, "data_terminals": 0, "data_transitions": 4,
                        "rule": "none: the data hold no terminal transition, rollouts never terminate"},
        "generator_config": {"horizon": 2, "penalty": 0.25, "deterministic": True, "rollout_batch": 7,
                             "rollout_interval": 11, "real_ratio": 0.4, "profile": "smoke",
                             "dataset": "walk"}}
    assert gen.diagnostics() == {"holdout_next_state_mse_raw": 0.5, "elite_holdout_mse": [1.0]}
    assert gen.network_evaluations() == {"policy": 2, "dynamics": 4, "reward": 2, "total": 8}


def test_save_and_load_keep_config_dataset_env_and_termination(tmp_path) -> None:
    from augment.world import WorldModelConfig

    rng = np.random.default_rng(1)
    obs, act = 11, 3  # Hopper-v5 sizes, so the env's termination rule applies
    eps = tuple(Episode(observations=rng.normal(scale=0.05, size=(9, obs)).astype(np.float32) + 1.25 * (
        np.arange(obs) == 0), actions=rng.uniform(-1, 1, size=(8, act)).astype(np.float32),
        rewards=np.ones(8, np.float32), terminated=np.zeros(8, bool), truncated=np.arange(8) == 7)
        for _ in range(3))
    data = OfflineDataset(name="hop-toy", episodes=eps, env_id="Hopper-v5")
    world_cfg = WorldModelConfig(members=2, elites=1, hidden=(8,), batch_size=16, max_epochs=1,
                                 steps_per_epoch=2, reward_hidden=(8,), reward_batch_size=16,
                                 reward_max_epochs=1, reward_steps_per_epoch=2)
    assert RolloutGenerator(world_config=world_cfg).world_config() is world_cfg
    gen = RolloutGenerator(RolloutConfig(horizon=2, penalty=0.5, profile="smoke"), world_config=world_cfg,
                           progress=False)
    with pytest.raises(UserInputError, match=r"RolloutGenerator\.save\(\) called before fit"):
        gen.save(tmp_path / "g")
    gen.fit(data)
    assert gen.termination["source"] == "env" and gen.env_id == "Hopper-v5"
    gen.save(tmp_path / "g")
    other = RolloutGenerator(progress=False)
    other.load(tmp_path / "g")
    assert other.config == gen.config and other.config.notes == ()
    assert (other.dataset_name, other.env_id, other.termination) == ("hop-toy", "Hopper-v5", gen.termination)
    other.set_start_states(data.transitions.observations)
    a = gen.generate(4, ZeroPolicy(act), np.random.default_rng(2))
    b = other.generate(4, ZeroPolicy(act), np.random.default_rng(2))
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    with pytest.raises(UserInputError, match="holds no rollout.json"):
        RolloutGenerator().load(tmp_path)


def test_config_checks_json_and_explain() -> None:
    for bad, word in (({"rollout_batch": 0}, "rollout batch"), ({"rollout_interval": 0}, "interval"),
                      ({"real_ratio": 1.5}, "real ratio"), ({"penalty": math.inf}, "lambda"),
                      ({"real_ratio": -0.1}, "real ratio")):
        with pytest.raises(UserInputError, match=word):
            RolloutConfig(**bad)
    RolloutConfig(horizon=1, rollout_batch=1, rollout_interval=1, real_ratio=0.0)
    RolloutConfig(real_ratio=1.0)
    cfg = RolloutConfig.for_profile("smoke", "toy-medium", horizon=4, penalty=1.0)
    # smoke DyDiff on medium data: 9 kept x L = 8 per round -> ceil(72 / 4) = 18 start states
    assert (cfg.horizon, cfg.rollout_batch, cfg.penalty, cfg.rollout_interval) == (4, 18, 1.0, 50)
    assert cfg.notes[0].startswith("rollout batch 18 start states of h=4")
    data = cfg.to_json()
    assert data["notes"] == list(cfg.notes) and data["horizon"] == 4 and data["dataset"] == "toy-medium"
    lines = cfg.explain()
    assert lines[0] == ("single-step rollouts (smoke): h=4, MOPO lambda=1.0, 18 start states every 50 "
                        "updates, real ratio 0.6")
    assert lines[1:] == [f"  - {note}" for note in cfg.notes]
    assert "MBPO (no penalty)" in RolloutConfig().explain()[0]
    assert RolloutConfig.for_profile("smoke", "x", rollout_batch=5).rollout_batch == 5
