"""augment/generators/synther.py beyond tests/test_synther.py: the config's checks, profiles, hash and text,
the normaliser's dtypes, one-step batches, the training record, the cache, save / load of the model and of
the generator, the round record and provenance. A denoiser of width 8 trained for a few steps: these
tests pin bookkeeping, not sample quality (tests/test_synther.py does that)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from augment.generators.synther import (
    SYNTHER_EDM,
    FeatureNormalizer,
    SynthERConfig,
    SynthERGenerator,
    SynthERModel,
    agreement,
    build_denoiser,
    cache_dir,
    dataset_rows,
    feature_size,
    fit_synther,
    terminal_report,
    train_synther,
    transitions_to_batch,
    unpack_transitions,
)
from stores.errors import UserInputError
from stores.paths import augment_home
from stores.schema import Episode, OfflineDataset

OBS, ACT = 2, 2


def small_dataset(env_id: str | None = None, obs: int = OBS, act: int = ACT, seed: int = 0) -> OfflineDataset:
    """6 episodes of 5 steps, Gaussian states, actions in [-0.5, 0.5], the last step of episode 0 terminal."""
    rng = np.random.default_rng(seed)
    eps = []
    for e in range(6):
        term = np.zeros(5, bool)
        term[-1] = e == 0
        eps.append(Episode(observations=rng.normal(size=(6, obs)).astype(np.float32),
                           actions=rng.uniform(-0.5, 0.5, size=(5, act)).astype(np.float32),
                           rewards=rng.normal(size=5).astype(np.float32), terminated=term,
                           truncated=~term & (np.arange(5) == 4)))
    return OfflineDataset(name="small", episodes=tuple(eps), env_id=env_id)


def tiny_config(**overrides) -> SynthERConfig:
    return SynthERConfig.for_profile("smoke", width=8, blocks=1, emb_dim=4, train_steps=4, batch_size=8,
                                     num_steps=2, **overrides)


@pytest.fixture(scope="module")
def data() -> OfflineDataset:
    return small_dataset()


@pytest.fixture(scope="module")
def model(data) -> SynthERModel:
    return train_synther(data, tiny_config(), progress=False)


# ------------------------------------------------------------------------------------------------ config
def test_config_checks() -> None:
    for bad in ({"width": 0}, {"blocks": -1}, {"emb_dim": 3}, {"emb_dim": 0}, {"train_steps": -1},
                {"batch_size": 0}, {"sample_batch": 0},
                {"edm": dataclasses.replace(SYNTHER_EDM, num_steps=0)}):
        with pytest.raises(UserInputError):
            SynthERConfig(**bad)
    SynthERConfig(width=1, blocks=0, emb_dim=2, train_steps=0, batch_size=1, sample_batch=1,
                  edm=dataclasses.replace(SYNTHER_EDM, num_steps=1))


def test_profiles_their_notes_and_explain() -> None:
    cpu = SynthERConfig.for_profile("cpu", "any")
    # the docstring's cpu settings: width 256, 4 blocks, 4000 steps, N = 32 Heun steps
    assert (cpu.width, cpu.blocks, cpu.train_steps, cpu.edm.num_steps) == (256, 4, 4000, 32)
    assert cpu.profile == "cpu"
    assert cpu.edm.s_churn == SYNTHER_EDM.s_churn and cpu.edm.sigma_max == SYNTHER_EDM.sigma_max
    assert cpu.notes[0].startswith("denoiser width 256 x 4 blocks (paper 1024 x 6) and 4,000 training steps")
    assert cpu.notes[1].startswith("N = 32 Heun steps (paper 128)") and len(cpu.notes) == 3
    paper = SynthERConfig.for_profile("paper")
    assert paper == SynthERConfig() and paper.notes == ()
    smoke = SynthERConfig.for_profile("smoke", num_steps=5, seed=3)
    assert smoke.edm.num_steps == 5 and smoke.seed == 3 and smoke.profile == "smoke"
    lines = cpu.explain()
    assert lines[0] == ("SynthER (cpu): residual MLP 256 x 4, 4,000 steps of 256, N=32 Heun steps, "
                        "terminals 'auto'")
    assert lines[1:] == [f"  - {note}" for note in cpu.notes]
    assert len(paper.explain()) == 1


def test_json_round_trip_and_what_the_hash_covers() -> None:
    cfg = tiny_config(terminals="model")
    data = cfg.to_json()
    assert data["notes"] == list(cfg.notes) and data["edm"]["num_steps"] == 2
    assert SynthERConfig.from_json(data) == cfg
    h = cfg.config_hash()
    assert len(h) == 12 and int(h, 16) >= 0
    same = (dataclasses.replace(cfg, device="cpu", clip_actions=False, terminal_threshold=0.2, notes=("x",),
                                profile="paper"),
            dataclasses.replace(cfg, edm=dataclasses.replace(cfg.edm, s_churn=0.0, sigma_max=10.0, rho=3.0)))
    assert all(c.config_hash() == h for c in same)
    other = (dataclasses.replace(cfg, seed=1), dataclasses.replace(cfg, lr=1e-4),
             dataclasses.replace(cfg, blocks=2),
             dataclasses.replace(cfg, edm=dataclasses.replace(cfg.edm, p_mean=0.0)),
             dataclasses.replace(cfg, edm=dataclasses.replace(cfg.edm, sigma_data=0.5)))
    assert len({c.config_hash() for c in other} | {h}) == 6


# ------------------------------------------------------------------------------------ rows and batches
def test_normalizer_dtypes_floor_and_json() -> None:
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 1.0]], np.float64)
    norm = FeatureNormalizer.fit(x)
    assert norm.mean.dtype == np.float32 and norm.std.dtype == np.float32
    assert norm.mean.tolist() == [2.0, 5.0, 0.0] and norm.std.tolist() == [1.0, pytest.approx(1e-3), 1.0]
    back = FeatureNormalizer.from_json(norm.to_json())
    assert back.std.dtype == np.float32
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    z = norm.normalize(x)
    assert z.dtype == np.float32 and z[:, 0].tolist() == [-1.0, 1.0] and z[:, 2].tolist() == [0.0, 1.0]
    assert norm.denormalize(z).dtype == np.float32


def test_transitions_to_batch_types_and_provenance() -> None:
    rng = np.random.default_rng(0)
    rows = {"observations": rng.normal(size=(4, OBS)), "actions": rng.normal(size=(4, ACT)),
            "rewards": rng.normal(size=4), "next_observations": rng.normal(size=(4, OBS))}
    batch = transitions_to_batch(rows, np.array([0, 1, 0, 0]), "syn", round=3, learner_step=8)
    assert batch.observations.dtype == np.float32 and batch.observations.shape == (4, 2, OBS)
    np.testing.assert_allclose(batch.observations[:, 0], rows["observations"], rtol=1e-6)
    np.testing.assert_allclose(batch.observations[:, 1], rows["next_observations"], rtol=1e-6)
    assert batch.actions.dtype == np.float32 and batch.actions.shape == (4, 1, ACT)
    assert batch.rewards.dtype == np.float32 and batch.rewards.shape == (4, 1)
    assert batch.terminals.dtype == bool and batch.terminals[:, 0].tolist() == [False, True, False, False]
    for field, value in (("round", 3), ("learner_step", 8), ("lengths", 1), ("start_index", -1)):
        arr = getattr(batch, field)
        assert arr.dtype == np.int64 and (arr == value).all(), field
    assert np.isnan(batch.filter_score).all() and batch.generator == "syn"
    batch.validate()


def test_dataset_rows_and_unpack_error(data) -> None:
    rows = dataset_rows(data)
    tr = data.transitions
    assert rows.shape == (30, feature_size(OBS, ACT)) == (30, 8) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:, -1], tr.terminals.astype(np.float32))
    np.testing.assert_array_equal(rows[:, 5:7], tr.next_observations)
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        unpack_transitions(rows[None], OBS, ACT)


def test_agreement_edge_cases() -> None:
    empty = agreement(np.zeros(0, bool), np.zeros(0, bool))
    assert math.isnan(empty["rate_a"]) and math.isnan(empty["rate_b"]) and empty["agreement"] == 0.0
    same = agreement(np.zeros(4, bool), np.zeros(4, bool))  # chance agreement 1: kappa defined as 1
    assert same == {"rate_a": 0.0, "rate_b": 0.0, "agreement": 1.0, "kappa": 1.0}
    opposite = agreement(np.array([1, 0], bool), np.array([0, 1], bool))
    assert opposite["agreement"] == 0.0 and opposite["kappa"] == pytest.approx(-1.0)


# -------------------------------------------------------------------------------------------- the model
def test_denoiser_is_seeded_without_touching_the_global_rng() -> None:
    cfg = tiny_config()
    state = torch.random.get_rng_state()
    a, b = build_denoiser(cfg, 8), build_denoiser(cfg, 8)
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    c = build_denoiser(dataclasses.replace(cfg, seed=1), 8)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_training_record(data, model) -> None:
    cfg = model.config
    meta = model.meta
    assert set(meta) == {"dataset", "dataset_hash", "config_hash", "transitions", "train_seconds",
                         "final_loss", "loss_history", "parameters", "data_terminal_rate", "torch_version"}
    assert (meta["dataset"], meta["dataset_hash"], meta["config_hash"]) == ("small", data.content_hash,
                                                                              cfg.config_hash())
    assert meta["transitions"] == 30 and meta["torch_version"] == torch.__version__
    assert meta["data_terminal_rate"] == pytest.approx(1 / 30) and meta["train_seconds"] >= 0.0
    assert meta["parameters"] == sum(p.numel() for p in build_denoiser(cfg, 8).parameters())
    assert math.isfinite(meta["final_loss"])
    assert (model.obs_dim, model.act_dim, model.features) == (OBS, ACT, 8)
    tr = data.transitions
    np.testing.assert_array_equal(model.act_low, tr.actions.min(axis=0))
    np.testing.assert_array_equal(model.act_high, tr.actions.max(axis=0))
    assert model.act_low.dtype == np.float32 and model.act_high.dtype == np.float32
    assert model.network_evaluations_per_sample == 3  # 2N - 1 with N = 2
    assert not model.network.training
    other = SynthERModel(cfg, model.network, model.normalizer, OBS, ACT, np.zeros(ACT), np.ones(ACT))
    assert other.act_low.dtype == np.float32 and other.act_high.dtype == np.float32 and other.meta == {}


def test_sample_rows_chunks_and_seeding(model) -> None:
    cfg = dataclasses.replace(model.config, sample_batch=2)
    chunked = SynthERModel(cfg, model.network, model.normalizer, OBS, ACT, model.act_low, model.act_high)
    rows = chunked.sample_rows(5, np.random.default_rng(0))
    assert rows.shape == (5, 8) and rows.dtype == np.float32 and np.isfinite(rows).all()
    np.testing.assert_array_equal(rows, chunked.sample_rows(5, np.random.default_rng(0)))
    assert not np.array_equal(rows, chunked.sample_rows(5, np.random.default_rng(1)))
    assert not np.array_equal(rows, chunked.sample_rows(5, np.random.default_rng(0), num_steps=3))
    assert chunked.sample_rows(0, np.random.default_rng(0)).shape == (0, 8)
    with pytest.raises(UserInputError, match="cannot sample -1"):
        chunked.sample_rows(-1, np.random.default_rng(0))
    x = torch.zeros((3, 8))
    assert chunked.denoise(x, 1.0).shape == (3, 8)


def test_model_save_load_keeps_the_record_and_the_draws(model, tmp_path) -> None:
    model.save(tmp_path / "m")
    back = SynthERModel.load(tmp_path / "m")
    assert back.meta == json.loads(json.dumps(model.meta)) and back.config == model.config
    np.testing.assert_array_equal(back.act_low, model.act_low)
    np.testing.assert_array_equal(back.act_high, model.act_high)
    np.testing.assert_array_equal(back.sample_rows(4, np.random.default_rng(3)),
                                  model.sample_rows(4, np.random.default_rng(3)))
    resampled = SynthERModel.load(tmp_path / "m", config=dataclasses.replace(
        model.config, edm=dataclasses.replace(model.config.edm, num_steps=4)))
    assert resampled.config.edm.num_steps == 4
    with pytest.raises(UserInputError, match="trained with other settings"):
        SynthERModel.load(tmp_path / "m", config=dataclasses.replace(model.config, width=16))
    with pytest.raises(UserInputError, match="no SynthER model"):
        SynthERModel.load(tmp_path)


def test_fit_synther_caches_under_the_dataset_and_config_hash(monkeypatch, tmp_path, data) -> None:
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    cfg = tiny_config()
    assert cache_dir(data, cfg) == tmp_path / "home" / "synther" / f"{data.content_hash}-{cfg.config_hash()}"
    first = fit_synther(data, cfg, progress=False)
    assert first.from_cache is False and (cache_dir(data, cfg) / "model.pt").is_file()
    second = fit_synther(data, cfg, progress=False)
    assert second.from_cache is True and second.meta["final_loss"] == first.meta["final_loss"]
    assert augment_home() == tmp_path / "home"
    plain = fit_synther(data, dataclasses.replace(cfg, seed=5), progress=False, cache=False)
    assert plain.from_cache is False and not cache_dir(data, dataclasses.replace(cfg, seed=5)).exists()


# ------------------------------------------------------------------------------------------ the generator
def test_generate_round_record_default_rng_and_clipping(data, model) -> None:
    gen = SynthERGenerator(tiny_config(), progress=False)
    gen.model, gen.dataset_name = model, "small"
    default = gen.generate(6)
    np.testing.assert_array_equal(default.observations,
                                  gen.generate(6, None, np.random.default_rng(0)).observations)
    rec = gen.last_round
    assert set(rec) == {"generated", "kept", "nonfinite", "terminals", "terminal_source", "seconds"}
    assert (rec["generated"], rec["kept"], rec["nonfinite"], rec["terminal_source"]) == (6, 6, 0, "model")
    rows = unpack_transitions(model.sample_rows(6, np.random.default_rng(0)), OBS, ACT)
    assert rec["terminals"] == int((rows["done"] > 0.5).sum()) and rec["seconds"] >= 0.0
    with pytest.raises(UserInputError, match="must be >= 1"):
        gen.generate(0)
    narrow = SynthERModel(model.config, model.network, model.normalizer, OBS, ACT, np.zeros(ACT),
                          np.zeros(ACT))
    gen.model = narrow
    assert (gen.generate(5, None, np.random.default_rng(1)).actions == 0).all()
    gen.config = dataclasses.replace(gen.config, clip_actions=False)
    free = gen.generate(5, None, np.random.default_rng(1)).actions
    np.testing.assert_allclose(free[:, 0], rows_at(model, 5, 1)["actions"], rtol=1e-6)
    assert (free != 0).any()
    gen.config = dataclasses.replace(gen.config, terminal_threshold=-1e9)
    assert gen.generate(5, None, np.random.default_rng(1)).terminals.all()


def rows_at(model: SynthERModel, n: int, seed: int) -> dict[str, np.ndarray]:
    return unpack_transitions(model.sample_rows(n, np.random.default_rng(seed)), OBS, ACT)


def test_store_attrs_terminal_sources_and_report(data, model) -> None:
    gen = SynthERGenerator(tiny_config(terminals="model"), progress=False)
    gen.model, gen.dataset_name, gen.env_id = model, "small", "Hopper-v5"
    cfg = gen.config
    assert gen.terminal_source() == "model"  # asked for, even with an env rule
    assert gen.store_attrs() == {"generator_name": "synther", "env_id": "Hopper-v5", "generator_config": {
        "width": 8, "blocks": 1, "num_steps": 2, "train_steps": 4, "terminals": "model",
        "terminal_source": "model", "profile": "smoke", "dataset": "small", "config_hash": cfg.config_hash()}}
    gen.config = dataclasses.replace(cfg, terminals="auto")
    assert gen.terminal_source() == "env"
    gen.config = dataclasses.replace(cfg, terminals="env")
    assert gen.terminal_source() == "env"
    gen.env_id = None
    with pytest.raises(UserInputError, match="terminals='env' needs an env"):
        gen.terminal_source()
    report = terminal_report(model, data, 10, np.random.default_rng(0))
    assert report["samples"] == 10 and report["env_id"] is None
    assert report["rule_rate"] is None and report["rule_on_data"] is None and report["model_vs_rule"] is None
    assert report["data_rate"] == pytest.approx(1 / 30)
    rows = rows_at(model, 10, 0)
    assert report["model_rate"] == pytest.approx(float((rows["done"] > 0.5).mean()))


def test_generator_save_load_round_trip(data, model, tmp_path) -> None:
    gen = SynthERGenerator(tiny_config(terminals="model"), progress=False)
    with pytest.raises(UserInputError, match="before fit"):
        gen.save(tmp_path / "g")
    gen.model, gen.dataset_name, gen.env_id = model, "small", "Hopper-v5"
    gen.save(tmp_path / "g")
    other = SynthERGenerator(progress=False)
    other.load(tmp_path / "g")
    assert other.config == gen.config and (other.dataset_name, other.env_id) == ("small", "Hopper-v5")
    assert other.model.meta == json.loads(json.dumps(model.meta))  # the training record, as JSON
    np.testing.assert_array_equal(other.generate(4, None, np.random.default_rng(2)).observations,
                                  gen.generate(4, None, np.random.default_rng(2)).observations)
    with pytest.raises(UserInputError, match="holds no synther.json"):
        SynthERGenerator().load(tmp_path)
