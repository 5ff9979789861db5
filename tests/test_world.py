"""DyDiff's world models on tiny real Hopper-v5 data: training, elites, caching, determinism, shapes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from augment.world import (
    WorldModel,
    WorldModelConfig,
    cache_dir,
    fit_world_model,
    gaussian_nll,
    holdout_split,
    select_elites,
    soft_bound_log_variance,
)
from stores.errors import UserInputError
from stores.recipes import collect_rollouts
from stores.schema import OfflineDataset


def hopper_random_dataset(transitions: int = 2500, seed: int = 0) -> OfflineDataset:
    """Real Hopper-v5 episodes under uniform random actions scaled by 0.5 (episodes end on termination)."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        return (0.5 * rng.uniform(-1, 1, size=(len(obs), 3))).astype(np.float32)

    episodes = collect_rollouts(act, "Hopper-v5", transitions=transitions, num_envs=1, seed=seed,
                                max_episode_steps=1000, progress=False)
    return OfflineDataset(name="hopper-random-test", episodes=tuple(episodes), env_id="Hopper-v5")


SMOKE = WorldModelConfig.for_profile("smoke")


def smoke_holdout_rows(n: int) -> np.ndarray:
    """The holdout rows training used: the split is the first draw of the config seed's generator."""
    return holdout_split(n, SMOKE.holdout_ratio, SMOKE.max_holdout, np.random.default_rng(SMOKE.seed))[1]


@pytest.fixture(scope="module")
def data() -> OfflineDataset:
    return hopper_random_dataset()


@pytest.fixture(scope="module")
def model(data: OfflineDataset) -> WorldModel:
    return fit_world_model(data, SMOKE, progress=False, cache=False)


# ---------------------------------------------------------------------------------------------- math

def test_gaussian_nll_is_twice_the_negative_log_likelihood_without_constant() -> None:
    mean, logvar, y = torch.randn(3, 5, 2), torch.randn(3, 5, 2), torch.randn(3, 5, 2)
    dist = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    expected = (-2 * dist.log_prob(y) - np.log(2 * np.pi)).mean(dim=(1, 2))
    torch.testing.assert_close(gaussian_nll(mean, logvar, y), expected)


def test_soft_bound_stays_inside_and_is_identity_in_the_middle() -> None:
    raw = torch.linspace(-50, 50, 201)
    hi, lo = torch.tensor(0.5), torch.tensor(-10.0)
    out = soft_bound_log_variance(raw, hi, lo)
    # the second softplus can lift the top by at most softplus(lo - hi) = 2.8e-5
    assert (out <= hi + 1e-4).all() and (out >= lo).all()
    assert torch.all(out[1:] >= out[:-1])
    torch.testing.assert_close(soft_bound_log_variance(torch.tensor(-4.0), hi, lo), torch.tensor(-4.0),
                               atol=0.02, rtol=0)


def test_holdout_split_ratio_cap_and_disjointness() -> None:
    rng = np.random.default_rng(0)
    train, hold = holdout_split(100, 0.2, 5000, rng)
    assert hold.size == 20 and train.size == 80
    assert np.array_equal(np.union1d(train, hold), np.arange(100))
    train, hold = holdout_split(40_000, 0.2, 5000, rng)
    assert hold.size == 5000 and train.size == 35_000
    with pytest.raises(UserInputError, match="at least 2 transitions"):
        holdout_split(1, 0.2, 5000, rng)


def test_select_elites_picks_lowest_holdout_error() -> None:
    assert select_elites([0.5, 0.1, 0.3, 0.2, 0.9], 3) == [1, 3, 2]
    with pytest.raises(ValueError):
        select_elites([0.1, 0.2], 3)


# ---------------------------------------------------------------------------------------------- config

def test_paper_profile_is_reference_section_6() -> None:
    c = WorldModelConfig.for_profile("paper")
    assert (c.members, c.elites, c.hidden) == (7, 5, (200, 200, 200, 200))
    assert (c.holdout_ratio, c.max_holdout, c.patience) == (0.2, 5000, 7)
    assert c.reward_hidden == (256, 256) and c.max_epochs is None
    assert c.differences_from_paper() == []
    cpu = WorldModelConfig.for_profile("cpu")
    assert (cpu.members, cpu.elites, cpu.hidden) == (7, 5, (200, 200, 200, 200))
    assert any(line.startswith("max_epochs") for line in cpu.differences_from_paper())


def test_config_json_roundtrip_and_hash() -> None:
    c = WorldModelConfig.for_profile("smoke")
    again = WorldModelConfig.from_json(json.loads(json.dumps(c.to_json())))
    assert again == c and again.config_hash() == c.config_hash()
    assert dataclasses.replace(c, seed=1).config_hash() != c.config_hash()
    with pytest.raises(ValueError, match="elites"):
        WorldModelConfig(members=2, elites=3)


# ---------------------------------------------------------------------------------------------- training

def test_training_reduces_holdout_error(model: WorldModel, data: OfflineDataset) -> None:
    dyn = model.report["dynamics"]
    assert np.all(np.array(dyn["best_holdout_mse"]) < 0.8 * np.array(dyn["initial_holdout_mse"]))
    # the elites' mean next state beats "nothing moves" (s' = s) on the holdout rows, in raw units
    tr = data.transitions
    hold = smoke_holdout_rows(len(tr))
    still = float(np.mean((tr.next_observations[hold] - tr.observations[hold]) ** 2))
    assert model.report["holdout_next_state_mse_raw"] < 0.8 * still
    rew = model.report["reward"]
    assert rew["best_holdout_mse"][0] < 0.8 * rew["initial_holdout_mse"][0]
    assert model.report["holdout_reward_mse_raw"] < float(np.var(tr.rewards[hold]))


def test_elites_are_the_members_best_on_holdout(model: WorldModel, data: OfflineDataset) -> None:
    tr = data.transitions
    hold = smoke_holdout_rows(len(tr))
    dyn = model.dynamics
    with torch.no_grad():
        inputs = np.concatenate([tr.observations[hold], tr.actions[hold]], axis=1)
        x = dyn.normalize_inputs(torch.from_numpy(inputs))
        y = dyn.normalize_targets(torch.from_numpy(tr.next_observations[hold] - tr.observations[hold]))
        mse = dyn.member_mse(x, y).numpy()
    np.testing.assert_allclose(mse, model.report["dynamics"]["best_holdout_mse"], rtol=1e-4)
    assert len(model.elites) == SMOKE.elites
    assert set(model.elites) == set(np.argsort(mse)[:SMOKE.elites].tolist())
    assert mse[model.elites].max() <= np.delete(mse, model.elites).min()


# ---------------------------------------------------------------------------------------------- predictions

def test_prediction_shapes_dtypes_and_rng(model: WorldModel, data: OfflineDataset) -> None:
    tr = data.transitions
    obs, act = tr.observations[:9], tr.actions[:9]
    nxt = model.predict_next(obs, act, np.random.default_rng(0))
    assert nxt.shape == (9, 11) and nxt.dtype == np.float32
    np.testing.assert_array_equal(nxt, model.predict_next(obs, act, np.random.default_rng(0)))
    assert not np.array_equal(nxt, model.predict_next(obs, act, np.random.default_rng(1)))
    mean, std = model.predict_next_distribution(obs, act)
    assert mean.shape == std.shape == (SMOKE.elites, 9, 11) and (std > 0).all()
    np.testing.assert_allclose(model.predict_next(obs, act, np.random.default_rng(0), deterministic=True),
                               mean.mean(axis=0), rtol=1e-6)
    rew = model.predict_reward(obs.astype(np.float64), act)
    assert rew.shape == (9,) and rew.dtype == np.float32
    flags = model.is_terminal(np.concatenate([obs[:2], np.full((1, 11), 0.0, np.float32)]))
    np.testing.assert_array_equal(flags, [False, False, True])  # z = 0 is a fallen hopper
    with pytest.raises(UserInputError, match=r"\(B, 3\)"):
        model.predict_next(obs, act[:, :2], np.random.default_rng(0))


def test_sample_is_the_drawn_elites_gaussian(model: WorldModel, data: OfflineDataset) -> None:
    tr = data.transitions
    obs, act = tr.observations[:200], tr.actions[:200]
    mean, std = model.predict_next_distribution(obs, act)
    rng = np.random.default_rng(4)
    member = rng.integers(0, len(model.elites), size=200)
    noise = rng.standard_normal(size=(200, 11)).astype(np.float32)
    expected = mean[member, np.arange(200)] + std[member, np.arange(200)] * noise
    np.testing.assert_allclose(model.predict_next(obs, act, np.random.default_rng(4)), expected,
                               rtol=1e-5, atol=1e-5)
    # one row per member only, and an empty member, still work
    few = model.predict_next(obs[:1], act[:1], np.random.default_rng(0))
    assert few.shape == (1, 11) and np.isfinite(few).all()
    assert model.predict_next(obs[:0], act[:0], np.random.default_rng(0)).shape == (0, 11)


def test_same_seed_same_model_different_seed_different(data: OfflineDataset) -> None:
    cfg = dataclasses.replace(SMOKE, max_epochs=2)
    a = fit_world_model(data, cfg, progress=False, cache=False)
    b = fit_world_model(data, cfg, progress=False, cache=False)
    c = fit_world_model(data, dataclasses.replace(cfg, seed=1), progress=False, cache=False)
    tr = data.transitions
    obs, act = tr.observations[:50], tr.actions[:50]
    pa = a.predict_next(obs, act, np.random.default_rng(7))
    np.testing.assert_array_equal(pa, b.predict_next(obs, act, np.random.default_rng(7)))
    np.testing.assert_array_equal(a.predict_reward(obs, act), b.predict_reward(obs, act))
    assert not np.array_equal(pa, c.predict_next(obs, act, np.random.default_rng(7)))


def test_save_load_roundtrip(model: WorldModel, data: OfflineDataset, tmp_path: Path) -> None:
    model.save(tmp_path / "wm")
    loaded = WorldModel.load(tmp_path / "wm")
    tr = data.transitions
    obs, act = tr.observations[:20], tr.actions[:20]
    np.testing.assert_array_equal(loaded.predict_next(obs, act, np.random.default_rng(3)),
                                  model.predict_next(obs, act, np.random.default_rng(3)))
    np.testing.assert_array_equal(loaded.predict_reward(obs, act), model.predict_reward(obs, act))
    assert loaded.elites == model.elites and loaded.config == model.config and loaded.env_id == "Hopper-v5"
    with pytest.raises(UserInputError, match="no world model"):
        WorldModel.load(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- cache

def test_cache_hit_skips_training(data: OfflineDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    cfg = dataclasses.replace(SMOKE, max_epochs=3)
    first = fit_world_model(data, cfg, progress=True)
    target = cache_dir(data, cfg)
    assert target == tmp_path / "home" / "world" / f"{data.content_hash}-{cfg.config_hash()}"
    assert not first.from_cache and (target / "weights.pt").is_file()
    assert json.loads((target / "config.json").read_text()) == cfg.to_json()
    stamp = (target / "weights.pt").stat().st_mtime_ns
    assert "settings differ from the paper" in capsys.readouterr().err

    second = fit_world_model(data, cfg, progress=True)
    err = capsys.readouterr().err
    assert second.from_cache and "loaded from cache" in err
    assert "world model: training on" not in err  # the training path did not run
    assert (target / "weights.pt").stat().st_mtime_ns == stamp
    assert second.report["trained_at"] == first.report["trained_at"]
    obs, act = data.transitions.observations[:10], data.transitions.actions[:10]
    np.testing.assert_array_equal(second.predict_next(obs, act, np.random.default_rng(0)),
                                  first.predict_next(obs, act, np.random.default_rng(0)))

    other = fit_world_model(data, dataclasses.replace(cfg, seed=5), progress=False)
    assert not other.from_cache
    assert len([p for p in (tmp_path / "home" / "world").iterdir() if p.is_dir()]) == 2


def test_a_second_fit_waits_for_the_first_and_loads_its_model(
        data: OfflineDataset, model: WorldModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from augment.cache import exclusive

    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    target = cache_dir(data, SMOKE)
    target.parent.mkdir(parents=True)
    result: dict[str, WorldModel] = {}
    with exclusive(target.with_name(f"{target.name}.lock")):  # "another process" is training
        def second() -> None:
            result["m"] = fit_world_model(data, SMOKE, progress=False)

        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive(), "the second fit must wait for the lock"
        model.save(target)  # the first process finishes
    waiter.join(timeout=60)
    assert result["m"].from_cache


def test_non_finite_data_is_refused_with_the_column_named(data: OfflineDataset) -> None:
    ep = data.episodes[0]
    bad_obs = ep.observations.copy()
    bad_obs[2, 4] = np.nan
    bad = OfflineDataset(name="bad", episodes=(dataclasses.replace(ep, observations=bad_obs),),
                         env_id="Hopper-v5")
    with pytest.raises(UserInputError, match="'observations' holds NaN"):
        fit_world_model(bad, SMOKE, progress=False, cache=False)
