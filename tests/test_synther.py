"""SynthER (augment/generators/synther.py): packing, normalisation, config hashing, terminal sources,
agreement statistics, and a tiny real training run whose samples follow the data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from augment.generators.synther import (
    FeatureNormalizer,
    SynthERConfig,
    SynthERGenerator,
    agreement,
    feature_size,
    fit_synther,
    pack_transitions,
    terminal_report,
    unpack_transitions,
)
from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset


def gaussian_dataset(n_episodes: int = 100, steps: int = 10, seed: int = 0, env_id: str | None = None
                     ) -> OfflineDataset:
    """s_0 ~ N((1, -2), diag(0.5, 2)^2), a ~ U(-1, 1), s_{t+1} = s_t + 0.1 a_t, r = s[0] + s[1]; the last
    step of every 5th episode is terminal. The states' marginal is close to the start distribution (the
    walk moves at most 1 in 10 steps)."""
    rng = np.random.default_rng(seed)
    eps = []
    for e in range(n_episodes):
        a = rng.uniform(-1, 1, size=(steps, 2)).astype(np.float32)
        start = rng.normal([1.0, -2.0], [0.5, 2.0]).astype(np.float32)
        s = np.concatenate([start[None], start + 0.1 * np.cumsum(a, axis=0)]).astype(np.float32)
        term = np.zeros(steps, bool)
        term[-1] = e % 5 == 0
        eps.append(Episode(observations=s, actions=a, rewards=s[:-1].sum(axis=1).astype(np.float32),
                           terminated=term, truncated=~term & (np.arange(steps) == steps - 1)))
    return OfflineDataset(name="gauss", episodes=tuple(eps), env_id=env_id)


def test_pack_unpack_round_trip_and_layout() -> None:
    rng = np.random.default_rng(0)
    o, a, r, o2, d = (rng.normal(size=(5, 3)), rng.normal(size=(5, 2)), rng.normal(size=5),
                      rng.normal(size=(5, 3)), np.array([0, 1, 0, 0, 1], bool))
    x = pack_transitions(o, a, r, o2, d)
    assert x.shape == (5, feature_size(3, 2)) == (5, 10)
    np.testing.assert_allclose(x[:, 5], r, rtol=1e-6)  # r sits right after s (3) and a (2)
    back = unpack_transitions(x, 3, 2)
    for key, ref in (("observations", o), ("actions", a), ("rewards", r), ("next_observations", o2)):
        np.testing.assert_allclose(back[key], ref, rtol=1e-6, err_msg=key)
    np.testing.assert_array_equal(back["done"], d.astype(np.float32))
    with pytest.raises(ValueError):
        unpack_transitions(x[:, :9], 3, 2)


def test_normalizer_z_scores_all_but_the_done_channel() -> None:
    x = np.array([[1.0, 10.0, 0.0], [3.0, 30.0, 1.0], [5.0, 50.0, 1.0]], np.float32)
    norm = FeatureNormalizer.fit(x)
    z = norm.normalize(x)
    np.testing.assert_allclose(z[:, 0], [-1.2247449, 0.0, 1.2247449], rtol=1e-5)  # (x - 3) / sqrt(8/3)
    np.testing.assert_array_equal(z[:, 2], x[:, 2])
    np.testing.assert_allclose(norm.denormalize(z), x, rtol=1e-6)


def test_config_hash_ignores_sampling_settings_only() -> None:
    cfg = SynthERConfig.for_profile("smoke")
    assert cfg.config_hash() == dataclasses.replace(cfg, terminals="model", sample_batch=7).config_hash()
    assert cfg.config_hash() == SynthERConfig.for_profile("smoke", num_steps=20).config_hash()
    assert cfg.config_hash() != dataclasses.replace(cfg, width=64).config_hash()
    paper = SynthERConfig.for_profile("paper")
    assert (paper.width, paper.blocks, paper.edm.num_steps, paper.train_steps) == (1024, 6, 128, 100_000)
    with pytest.raises(UserInputError, match="terminals"):
        SynthERConfig(terminals="maybe")


def test_agreement_matches_a_hand_count() -> None:
    a = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1], bool)
    b = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 1], bool)
    out = agreement(a, b)
    # rates 0.3 / 0.3, equal on 8 of 10; chance agreement 0.3*0.3 + 0.7*0.7 = 0.58; kappa = 0.22 / 0.42
    assert out["rate_a"] == pytest.approx(0.3) and out["rate_b"] == pytest.approx(0.3)
    assert out["agreement"] == pytest.approx(0.8)
    assert out["kappa"] == pytest.approx(0.22 / 0.42)


@pytest.fixture(scope="module")
def trained():
    data = gaussian_dataset()
    cfg = SynthERConfig.for_profile("smoke", width=64, blocks=2, train_steps=400, batch_size=128, lr=2e-3,
                                    num_steps=12)
    return data, cfg, fit_synther(data, cfg, progress=False, cache=False)


def test_samples_follow_the_data_distribution(trained) -> None:
    data, _, model = trained
    rows = unpack_transitions(model.sample_rows(2000, np.random.default_rng(0)), 2, 2)
    s = rows["observations"]
    # the data: s[0] ~ N(1, 0.5^2), s[1] ~ N(-2, 2^2) roughly; r = s[0] + s[1]; s' = s + 0.1 a
    assert s[:, 0].mean() == pytest.approx(1.0, abs=0.25)
    assert s[:, 1].mean() == pytest.approx(-2.0, abs=0.6)
    assert s[:, 1].std() == pytest.approx(2.0, rel=0.35)
    assert np.corrcoef(rows["rewards"], s.sum(axis=1))[0, 1] > 0.8
    assert np.corrcoef(rows["next_observations"][:, 1], s[:, 1])[0, 1] > 0.8


def test_generator_batches_terminal_sources_and_clipping(trained) -> None:
    data, cfg, model = trained
    gen = SynthERGenerator(cfg, progress=False)
    with pytest.raises(UserInputError, match="before fit"):
        gen.generate(3)
    gen.model, gen.env_id = model, None
    assert gen.terminal_source() == "model"  # auto without an env rule
    batch = gen.generate(300, None, np.random.default_rng(1))
    assert batch.observations.shape == (300, 2, 2) and (batch.lengths == 1).all()
    assert np.isnan(batch.filter_score).all() and (batch.start_index == -1).all()
    assert batch.actions.min() >= model.act_low.min() and batch.actions.max() <= model.act_high.max()
    # the model channel: same draws, terminal exactly where d > 0.5
    rows = unpack_transitions(model.sample_rows(300, np.random.default_rng(1)), 2, 2)
    np.testing.assert_array_equal(batch.terminals[:, 0], rows["done"] > 0.5)
    assert gen.last_round["terminal_source"] == "model"
    gen.config = dataclasses.replace(cfg, terminals="env")
    with pytest.raises(UserInputError, match="termination rule"):
        gen.generate(3)


def test_env_rule_terminals_and_terminal_report() -> None:
    from augment.world.termination import hopper_terminal
    from tests.baselines_data import hopper_random_dataset

    data = hopper_random_dataset(episodes=6, seed=1)
    cfg = SynthERConfig.for_profile("smoke")
    gen = SynthERGenerator(cfg, progress=False)
    gen.fit(data)
    assert gen.terminal_source() == "env"
    batch = gen.generate(200, None, np.random.default_rng(2))
    np.testing.assert_array_equal(batch.terminals[:, 0], hopper_terminal(batch.observations[:, 1]))
    report = terminal_report(gen.model, data, 200, np.random.default_rng(3))
    assert report["data_rate"] == pytest.approx(float(data.transitions.terminals.mean()))
    assert report["rule_on_data"]["agreement"] == 1.0  # the rule reproduces the simulator's terminals
    assert 0.0 <= report["model_rate"] <= 1.0 and 0.0 <= report["rule_rate"] <= 1.0
