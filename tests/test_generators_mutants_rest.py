"""The survivors of benchmarks/mutation/augment_generators_survivors.txt that the other
tests/test_generators_mutants_*.py files leave alive: SynthER's profiles, terminal report, generate
defaults and load; DyDiff's fitted check, rollout modes, evaluation count, load and filter edge; the
dataset-kind aliases; the rollout generator's defaults, diagnostics and load; option parsing and the
policy checks of offline generation. Stand-ins and tiny real models from the other test modules; every
expected value is computed by hand or by a different code path than the one under test."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_dydiff import OBS, LinearPolicy, ToyWorld, tiny_dataset
from test_dydiff_behaviour import B_DYN, ExactDiffusion, W
from test_generators_mutants_offline import ScriptedGenerator, toy_dataset
from test_generators_mutants_rollout import WalkWorld
from test_generators_mutants_synther import small_dataset, tiny_config

from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator, dataset_kind, select_trajectories
from augment.generators.offline import check_generate_request, generate_store, parse_options
from augment.generators.rollout import RolloutConfig, RolloutGenerator
from augment.generators.synther import (
    FeatureNormalizer,
    SynthERConfig,
    SynthERGenerator,
    SynthERModel,
    terminal_report,
    train_synther,
)
from augment.world.termination import termination_fn
from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset


@pytest.fixture(scope="module")
def synther_model() -> SynthERModel:
    return train_synther(small_dataset(), tiny_config(), progress=False)


def healthy_hopper_dataset(seed: int = 0) -> OfflineDataset:
    """4 Hopper-v5 episodes (obs 11, act 3) of states near z = 1.25, angle 0: the env rule holds for some
    states and not others once a barely trained model spreads them out."""
    rng = np.random.default_rng(seed)
    eps = tuple(Episode(observations=(rng.normal(scale=0.1, size=(7, 11)) + 1.25 * (np.arange(11) == 0)
                                      ).astype(np.float32),
                        actions=rng.uniform(-1, 1, size=(6, 3)).astype(np.float32),
                        rewards=rng.normal(size=6).astype(np.float32), terminated=np.zeros(6, bool),
                        truncated=np.arange(6) == 5) for _ in range(4))
    return OfflineDataset(name="hop", episodes=eps, env_id="Hopper-v5")


# ------------------------------------------------------------------------------------------------ SynthER
def test_profile_sizes_match_the_documented_table() -> None:
    # docs/generators.md: residual MLP width x blocks 1024 x 6 | 256 x 4 | 32 x 2 (paper | cpu | smoke)
    smoke, cpu = SynthERConfig.for_profile("smoke"), SynthERConfig.for_profile("cpu")
    assert (smoke.width, smoke.blocks) == (32, 2) and (cpu.width, cpu.blocks) == (256, 4)
    assert smoke.sample_batch == 512 and cpu.sample_batch == 4096  # not the paper's 100k at once
    assert SynthERConfig.for_profile("paper").sample_batch == 100_000


def test_normalizer_from_json_is_float32_on_both_fields() -> None:
    back = FeatureNormalizer.from_json({"mean": [0.5, 1.0], "std": [2.0, 1.0]})
    assert back.mean.dtype == np.float32 and back.std.dtype == np.float32  # the documented dtypes
    assert back.mean.tolist() == [0.5, 1.0]


def test_terminal_report_model_flags_are_strictly_above_the_threshold(synther_model) -> None:
    rows = synther_model.sample_rows(40, np.random.default_rng(3))
    d = rows[:, -1]
    model = copy.copy(synther_model)  # threshold = a sampled d exactly: only '>' leaves that row out
    model.config = dataclasses.replace(synther_model.config, terminal_threshold=float(d[0]))
    rep = terminal_report(model, small_dataset(), 40, np.random.default_rng(3))
    expected = float(np.mean(d > d[0]))
    assert expected != float(np.mean(d >= d[0]))
    assert rep["model_rate"] == pytest.approx(expected)
    assert rep["rule_rate"] is None and rep["model_vs_rule"] is None  # no env, no rule


def test_terminal_report_rule_rate_is_the_env_rule_on_the_sampled_next_states() -> None:
    data = healthy_hopper_dataset()
    model = train_synther(data, tiny_config(), progress=False)
    obs, act = 11, 3
    rows = model.sample_rows(60, np.random.default_rng(1))
    next_obs = rows[:, obs + act + 1: 2 * obs + act + 1]
    assert np.isfinite(next_obs).all()
    expected_flags = termination_fn("Hopper-v5")(next_obs)
    assert 0 < expected_flags.sum() < 60, "the check needs healthy and fallen samples"
    rep = terminal_report(model, data, 60, np.random.default_rng(1))
    assert rep["rule_rate"] == pytest.approx(float(expected_flags.mean()))
    assert rep["model_vs_rule"]["rate_b"] == pytest.approx(float(expected_flags.mean()))


def test_generate_defaults_to_round_0_and_accepts_one_transition(synther_model) -> None:
    gen = SynthERGenerator(tiny_config(), progress=False)
    gen.model = synther_model
    batch = gen.generate(3, rng=np.random.default_rng(0))
    assert batch.batch_size == 3 and batch.round.tolist() == [0, 0, 0]
    assert batch.learner_step.tolist() == [0, 0, 0]
    one = gen.generate(1, rng=np.random.default_rng(0))
    assert gen.last_round["generated"] == 1 and one.batch_size == 1
    with pytest.raises(UserInputError, match=">= 1"):
        gen.generate(0)


def test_load_defaults_the_dataset_and_keeps_the_saved_sampling_settings(synther_model, tmp_path) -> None:
    gen = SynthERGenerator(tiny_config(), progress=False)
    gen.model = synther_model
    gen.save(tmp_path / "g")
    meta_path = tmp_path / "g" / "synther.json"
    meta = json.loads(meta_path.read_text())
    del meta["dataset"]  # an older synther.json: no dataset recorded
    meta["config"]["edm"]["num_steps"] = 5  # sampling settings: same trained model, other sampler
    meta["config"]["terminal_threshold"] = 0.25
    meta_path.write_text(json.dumps(meta))
    loaded = SynthERGenerator(progress=False)
    loaded.load(tmp_path / "g")
    assert loaded.dataset_name == ""
    assert loaded.model is not None and loaded.model.config.edm.num_steps == 5
    assert loaded.model.config.terminal_threshold == 0.25
    assert loaded.model.network_evaluations_per_sample == 2 * 5 - 1


# ------------------------------------------------------------------------------------------------- DyDiff
L = 6


class MeanWorld(ToyWorld):
    """s' = s + B a exactly with ``deterministic=True`` (the elite mean), else shifted by +1 in every dim."""

    def predict_next(self, obs, act, rng, *, deterministic=False):  # type: ignore[no-untyped-def]
        mean = (obs + act @ self.b.T).astype(np.float32)
        return mean if deterministic else mean + np.float32(1.0)


class UncountedDiffusion:
    """A horizon-L sampler (s_i = s0 for all i) that reports no network-evaluation count at all."""

    horizon = L

    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.repeat(s0[:, None], actions.shape[1] + 1, axis=1).astype(np.float32)


def _dydiff(m: int = 0, dynamics: str = "sample") -> DyDiffGenerator:
    cfg = DyDiffConfig(iterations=m, rollout_batch=4, rollout_length=L, sample_batch=4, profile="smoke",
                       dynamics=dynamics)
    return DyDiffGenerator(cfg, progress=False)


def test_each_missing_model_counts_as_unfitted() -> None:
    gen = _dydiff()
    gen.world = ToyWorld()
    gen.set_start_states(np.zeros((3, OBS), np.float32))
    with pytest.raises(UserInputError, match="before fit"):  # the diffusion model is missing
        gen.network_evaluations()
    with pytest.raises(UserInputError, match="before fit"):
        gen.generate(2, LinearPolicy(), np.random.default_rng(0))
    with pytest.raises(AssertionError):
        gen.rollout(np.zeros((2, OBS), np.float32), LinearPolicy(), np.random.default_rng(0))


def test_mean_dynamics_roll_the_elite_mean() -> None:
    gen = _dydiff(dynamics="mean")
    gen.attach(tiny_dataset(), MeanWorld(), ExactDiffusion())
    s0 = np.random.default_rng(2).uniform(-0.3, 0.3, size=(3, OBS)).astype(np.float32)
    states, actions = gen.rollout(s0, LinearPolicy(), np.random.default_rng(0))
    for b in range(3):  # Eq. 6 by hand with s' = s + B tanh(W s)
        s = s0[b].astype(np.float64)
        for i in range(L):
            a = np.tanh(W @ s)
            np.testing.assert_allclose(actions[b, i], a, rtol=1e-5, atol=1e-6)
            s = s + B_DYN @ a
            np.testing.assert_allclose(states[b, i + 1], s, rtol=1e-5, atol=1e-6)


def test_a_sampler_without_a_count_has_no_denoiser_evaluations() -> None:
    gen = _dydiff(m=2)
    gen.attach(tiny_dataset(), ToyWorld(), UncountedDiffusion())
    assert gen.network_evaluations() == {"policy": L * 3, "dynamics": L, "denoiser": 0, "reward": L,
                                         "total": L * 3 + L + 0 + L}


def test_a_single_finite_rollout_is_kept() -> None:
    scores = np.array([-np.inf, 2.0, -np.inf, -np.inf])
    for kind in ("hardmax", "softmax"):
        keep = select_trajectories(scores, kind, 0.5, 1.0, np.random.default_rng(0))
        assert keep.tolist() == [1]
    assert select_trajectories(np.full(3, -np.inf), "hardmax", 0.5, 1.0, np.random.default_rng(0)).size == 0


def test_dataset_kind_aliases_and_pointmaze() -> None:
    assert dataset_kind("hopper-mr") == "medium-replay"
    assert dataset_kind("walker2d-mr.npz") == "medium-replay"
    assert dataset_kind("pointmaze-umaze-v1") == "maze2d"
    assert dataset_kind("hopper-me") == "medium-expert" and dataset_kind("hopper-md") == "medium"


def _strip_dataset(meta_path: Path) -> None:
    meta = json.loads(meta_path.read_text())
    del meta["dataset"]
    meta_path.write_text(json.dumps(meta))


def test_dydiff_and_rollout_load_default_a_missing_dataset_to_empty(tmp_path) -> None:
    from tiny_dydiff import tiny_models

    dataset, world, diffusion = tiny_models()
    gen = DyDiffGenerator(DyDiffConfig(profile="smoke", rollout_length=diffusion.horizon), progress=False)
    gen.attach(dataset, world, diffusion)
    gen.save(tmp_path / "d")
    _strip_dataset(tmp_path / "d" / "dydiff.json")
    loaded = DyDiffGenerator(DyDiffConfig(profile="smoke", rollout_length=diffusion.horizon), progress=False)
    loaded.load(tmp_path / "d")
    assert loaded.dataset_name == "" and loaded.env_id == dataset.env_id

    roll = RolloutGenerator(RolloutConfig(horizon=2, profile="smoke"), progress=False)
    roll.attach(dataset, world)
    roll.save(tmp_path / "r")
    _strip_dataset(tmp_path / "r" / "rollout.json")
    back = RolloutGenerator(progress=False)
    back.load(tmp_path / "r")
    assert back.dataset_name == "" and back.env_id == dataset.env_id
    assert back.store_attrs()["generator_config"]["dataset"] == ""


# ------------------------------------------------------------------------------------- rollout generator
def test_a_fresh_rollout_generator_records_no_termination_choice() -> None:
    gen = RolloutGenerator(RolloutConfig(horizon=2, profile="smoke"), progress=False)
    assert gen.termination == {} and gen.store_attrs()["termination"] == {}


def test_diagnostics_report_the_reward_holdout_error() -> None:
    gen = RolloutGenerator(RolloutConfig(horizon=2, profile="smoke"), progress=False)
    world = WalkWorld()
    world.report = {"holdout_reward_mse_raw": 0.125, "holdout_next_state_mse_raw": 0.5, "epochs": 3}
    gen.world = world
    assert gen.diagnostics() == {"holdout_reward_mse_raw": 0.125, "holdout_next_state_mse_raw": 0.5}


# ------------------------------------------------------------------------------------- offline generation
def test_one_transition_is_a_valid_request() -> None:
    assert check_generate_request("rollout", 1, None) is None


def test_option_values_may_hold_an_equals_sign() -> None:
    assert parse_options("rollout", ["tag=a=b", "h=3"]) == {"tag": "a=b", "horizon": 3}


def test_a_generator_object_with_the_behavior_policy_clones_the_data(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    result, batch = generate_store(ScriptedGenerator(batch=4, per_item=2), toy_dataset(), 6, None,
                                   policy="behavior", profile="smoke", progress=False)
    assert result.policy == "behavior cloning (d3rlpy BC) on the data"
    assert batch is not None and batch.num_transitions == 6
