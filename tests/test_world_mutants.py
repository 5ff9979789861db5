"""augment/world pinned where the mutation run found it loose
(benchmarks/mutation/augment_world_survivors.txt).

Every expected value is computed independently of the code under test: by hand, in closed form, or with
NumPy in float64. Models are tiny (a scalar ensemble for :func:`fit_ensemble`, 3-dim observations and
8-unit layers for the world model), so the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from augment.nn.mlp import EnsembleMLP
from augment.world import WorldModel, WorldModelConfig, fit_world_model, holdout_split
from augment.world import termination as term
from augment.world.dynamics import GaussianDynamicsEnsemble, decay_schedule, weight_decay_penalty
from augment.world.model import train_world_model
from augment.world.reward import RewardModel
from augment.world.training import FitReport, FitSettings, fit_ensemble, relative_improvement
from stores.schema import Episode, OfflineDataset

# ---------------------------------------------------------------------------------------------- training


def test_relative_improvement_by_hand() -> None:
    best = np.array([2.0, 4.0, np.inf, 1.0, 0.5])
    current = np.array([1.0, 4.0, 3.0, 1.5, 0.4])
    # (best - current) / best: 1/2, 0, (inf: +inf), -1/2, 0.1/0.5
    out = relative_improvement(best, current)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.5, 0.0, np.inf, -0.5, 0.2], rtol=1e-12)


def test_holdout_keeps_at_least_one_training_row() -> None:
    rng = np.random.default_rng(0)
    train, hold = holdout_split(2, 0.9, 5000, rng)  # int(1.8) = 1 = n - 1
    assert (train.size, hold.size) == (1, 1)
    train, hold = holdout_split(10, 0.95, 5000, rng)  # int(9.5) = 9 = n - 1: the cap does not bite
    assert (train.size, hold.size) == (1, 9)
    train, hold = holdout_split(10, 0.99, 5000, rng)  # int(9.9) = 9
    assert (train.size, hold.size) == (1, 9)
    assert np.array_equal(np.union1d(train, hold), np.arange(10))
    train, hold = holdout_split(3, 0.01, 5000, rng)  # int(0.03) = 0, raised to the minimum of one row
    assert (train.size, hold.size) == (2, 1)


class ScalarEnsemble(nn.Module):
    """E members, each a scalar w_e predicting every target: member loss ``mean (w_e - y)^2`` and
    regularizer ``lam * sum_e w_e^2``; the minimiser of their sum on targets all 1 is ``1 / (1 + lam)``."""

    def __init__(self, members: int, lam: float, w0: float) -> None:
        super().__init__()
        self.ensemble_size = members
        self.lam = lam
        self.w = nn.Parameter(torch.full((members, 1), float(w0)))

    def member_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (E, B, in), y: (E, B, 1) -> (E,)."""
        return (self.w[:, None, :] - y).pow(2).mean(dim=(1, 2))

    def member_mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, in), y: (B, 1) -> (E,)."""
        return (self.w[:, None, :] - y[None]).pow(2).mean(dim=(1, 2))

    def regularizer(self) -> torch.Tensor:
        return self.lam * self.w.pow(2).sum()


def _fit(model: ScalarEnsemble, settings: FitSettings, n: int = 10, hold_target: float = 1.0) -> FitReport:
    """Train on n rows of targets 1 (inputs unused), holdout 4 rows of ``hold_target``, no progress bar."""
    x = torch.zeros(n, 1)
    return fit_ensemble(model, x, torch.ones(n, 1), x[:4], torch.full((4, 1), hold_target), settings,
                        np.random.default_rng(0), progress=False)


def test_the_regularizer_is_added_to_the_loss() -> None:
    # train targets 1, lam 3: the ridge optimum is w = 1/4. The holdout targets are 1/4, so the best
    # snapshot is the member closest to it; starting from 0.5 the gradient 8w - 2 moves w down to 1/4,
    # a subtracted regularizer (gradient -4w - 2) would move it up and away, leaving the start, 0.5.
    lam = 3.0
    model = ScalarEnsemble(2, lam, w0=0.5)
    rep = _fit(model, FitSettings(batch_size=10, lr=0.02, max_epochs=150, patience=1000, improvement=0.0),
               hold_target=1 / (1 + lam))
    np.testing.assert_allclose(model.w.detach().numpy(), 1 / (1 + lam), atol=0.01)
    assert rep.best_holdout_mse[0] < 1e-4 < rep.initial_holdout_mse[0]


def test_no_improvement_stops_after_patience_epochs() -> None:
    # lr 0: the holdout error never moves, so every epoch is one without improvement
    t0 = time.perf_counter()
    rep = _fit(ScalarEnsemble(2, 0.0, 0.0), FitSettings(batch_size=4, lr=0.0, max_epochs=10, patience=3))
    wall = time.perf_counter() - t0
    assert rep.epochs == 3 and rep.stopped_early is True
    assert rep.steps == 3 * 3  # ceil(10 / 4) = 3 steps per epoch
    assert rep.train_rows == 10 and rep.holdout_rows == 4
    assert 0.0 <= rep.seconds <= wall
    assert rep.history == pytest.approx([1.0, 1.0, 1.0]) and all(type(h) is float for h in rep.history)
    # no max_epochs: early stopping alone ends training
    rep = _fit(ScalarEnsemble(1, 0.0, 0.0), FitSettings(batch_size=4, lr=0.0, max_epochs=None, patience=2))
    assert (rep.epochs, rep.steps, rep.stopped_early) == (2, 6, True)


def test_max_epochs_without_early_stop_and_the_step_cap() -> None:
    model = ScalarEnsemble(1, 0.0, 0.0)
    rep = _fit(model, FitSettings(batch_size=4, lr=0.1, max_epochs=4, steps_per_epoch=2, patience=50,
                                  improvement=0.0))
    assert (rep.epochs, rep.steps, rep.stopped_early) == (4, 8, False)
    # one member: history is its holdout MSE (w - 1)^2 after each epoch; w is restored to the best one
    assert len(rep.history) == 4
    assert rep.best_holdout_mse[0] == pytest.approx(min(rep.history))
    assert rep.best_holdout_mse[0] == pytest.approx((model.w.item() - 1.0) ** 2)


def test_a_parameter_without_the_member_dimension_is_refused() -> None:
    model = ScalarEnsemble(2, 0.0, 0.0)
    model.extra = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"extra of shape \(3,\) lacks the member dimension 2"):
        _fit(model, FitSettings(max_epochs=1))


def test_fit_ensemble_shows_progress_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    x = torch.zeros(6, 1)
    fit_ensemble(ScalarEnsemble(1, 0.0, 0.0), x, torch.ones(6, 1), x[:2], torch.ones(2, 1),
                 FitSettings(max_epochs=1), np.random.default_rng(0), desc="unit-fit")
    assert "unit-fit" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- dynamics


def test_decay_schedule_is_linear_from_first_to_last() -> None:
    assert decay_schedule(1, 1.0, 3.0) == [3.0]
    assert decay_schedule(2, 1.0, 3.0) == [1.0, 3.0]
    np.testing.assert_allclose(decay_schedule(5, 2.5e-5, 1e-4), [2.5e-5, 4.375e-5, 6.25e-5, 8.125e-5, 1e-4],
                               rtol=1e-12)


def test_regularizer_by_hand_with_the_default_settings() -> None:
    # defaults: silu, weight decay (2.5e-5, 1e-4), log-variance penalty 0.01
    dyn = GaussianDynamicsEnsemble(3, 2, 2, (5,))
    with torch.no_grad():
        dyn.net.layers[0].weight.fill_(2.0)  # (2, 5, 5): squared norm 50 * 4 = 200
        dyn.net.layers[1].weight.fill_(3.0)  # (2, 5, 6): squared norm 60 * 9 = 540
    logvar = 0.01 * (2 * 3 * 0.5 - 2 * 3 * -10.0)  # limits start at 0.5 and -10
    decay = 0.5 * 2.5e-5 * 200 + 0.5 * 1e-4 * 540
    assert dyn.regularizer().item() == pytest.approx(logvar + decay, rel=1e-6)
    assert dyn.activation == "silu" and dyn.net.activation_name == "silu"


def test_weight_decay_of_a_single_layer_network() -> None:
    net = EnsembleMLP(2, 3, 4, ())  # no hidden layer: one weight (2, 3, 4)
    with torch.no_grad():
        net.layers[0].weight.fill_(-1.5)
    assert weight_decay_penalty(net, [0.2]).item() == pytest.approx(0.5 * 0.2 * 24 * 2.25)
    assert weight_decay_penalty(net, [0.0]).item() == 0.0


# ---------------------------------------------------------------------------------------------- reward


def test_reward_normalisation_against_numpy() -> None:
    rng = np.random.default_rng(5)
    inputs = (rng.normal(size=(40, 5)) * [1.0, 3.0, 0.1, 10.0, 1.0] + [0.0, -2.0, 5.0, 1.0, 0.0])
    inputs[:, 4] = 7.0  # a constant column: std floored at 1e-6
    inputs = inputs.astype(np.float32)
    rewards = rng.normal(2.0, 4.0, size=40).astype(np.float32)
    model = RewardModel(3, 2, (4,))  # default activation
    assert model.activation == "silu"
    model.set_normalizer(inputs, rewards)
    x64 = inputs.astype(np.float64)
    mean, std = x64.mean(axis=0), np.maximum(x64.std(axis=0), 1e-6)
    probe = rng.normal(size=(6, 5)).astype(np.float32)
    expected = (probe.astype(np.float64) - mean) / std
    got = model.normalize_inputs(torch.from_numpy(probe)).numpy()
    np.testing.assert_allclose(got[:, :4], expected[:, :4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 4], expected[:, 4], rtol=1e-5)  # (x - 7) * 1e6
    r64 = rewards.astype(np.float64)
    got_r = model.normalize_rewards(torch.tensor([2.0, -1.0])).numpy()
    np.testing.assert_allclose(got_r[:, 0], (np.array([2.0, -1.0]) - r64.mean()) / r64.std(), rtol=1e-5)


def test_reward_statistics_are_taken_in_float64() -> None:
    # float32 data whose squared deviations (1e40) overflow float32: the statistics must not
    model = RewardModel(1, 1, (4,))
    model.set_normalizer(np.array([[-1e20, 1.0], [1e20, 3.0]], np.float32),
                         np.array([-1e20, 1e20], np.float32))
    np.testing.assert_allclose(model.input_std.numpy(), [1e20, 1.0], rtol=1e-6)
    np.testing.assert_allclose(model.input_mean.numpy(), [0.0, 2.0], atol=1e-6)
    assert float(model.reward_std) == pytest.approx(1e20, rel=1e-6)


# ---------------------------------------------------------------------------------------------- config


def test_smoke_and_cpu_profiles_differ_from_the_paper_exactly_so() -> None:
    assert WorldModelConfig.for_profile("smoke").differences_from_paper() == [
        "members: 7 -> 3", "elites: 5 -> 2", "hidden: 200x200x200x200 -> 32x32", "batch_size: 256 -> 64",
        "max_epochs: unlimited -> 5", "steps_per_epoch: unlimited -> 20", "patience: 7 -> 3",
        "reward_hidden: 256x256 -> 32x32", "reward_batch_size: 256 -> 64",
        "reward_max_epochs: unlimited -> 5", "reward_steps_per_epoch: unlimited -> 20"]
    assert WorldModelConfig.for_profile("cpu").differences_from_paper() == [
        "max_epochs: unlimited -> 40", "steps_per_epoch: unlimited -> 100",
        "reward_max_epochs: unlimited -> 40", "reward_steps_per_epoch: unlimited -> 100"]
    assert WorldModelConfig.for_profile("smoke", seed=9).differences_from_paper()[0] == "members: 7 -> 3"


def test_config_bounds() -> None:
    WorldModelConfig(members=3, elites=1)
    WorldModelConfig(members=3, elites=3, holdout_ratio=0.999)
    for bad in ({"elites": 0}, {"members": 2, "elites": 3}, {"holdout_ratio": 0.0}, {"holdout_ratio": 1.0}):
        with pytest.raises(ValueError):
            WorldModelConfig(**bad)  # type: ignore[arg-type]


def test_config_hash_is_12_hex_of_the_sorted_json() -> None:
    c = WorldModelConfig.for_profile("smoke")
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(c).items()}
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    assert c.config_hash() == expected[:12]


def test_fit_settings_carry_every_field() -> None:
    c = WorldModelConfig(batch_size=17, lr=3e-3, max_epochs=9, steps_per_epoch=13, patience=4,
                         improvement=0.05, reward_batch_size=19, reward_lr=2e-4, reward_max_epochs=6,
                         reward_steps_per_epoch=11)
    assert c.dynamics_settings() == FitSettings(batch_size=17, lr=3e-3, max_epochs=9, steps_per_epoch=13,
                                                patience=4, improvement=0.05)
    assert c.reward_settings() == FitSettings(batch_size=19, lr=2e-4, max_epochs=6, steps_per_epoch=11,
                                              patience=4, improvement=0.05)


# ---------------------------------------------------------------------------------------------- termination


def test_hopper_bounds_are_per_row() -> None:
    obs = np.zeros((4, 11))
    obs[:, 0] = 1.25  # healthy height
    obs[1, 5] = 150.0  # a joint beyond the +-100 bound
    obs[2, 7] = np.nan
    np.testing.assert_array_equal(term.hopper_terminal(obs), [False, True, True, False])


def test_env_family_drops_any_namespace() -> None:
    assert term.env_family("diffusion-augment/PointMaze_UMaze-v3") == "pointmaze_umaze"
    assert term.env_family("a/b/Walker2d-v5") == "walker2d"
    assert term.termination_fn("diffusion-augment/PointMaze_MediumDense-v3") is term.never_terminal


def test_each_unknown_env_warns_once_at_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(term, "_WARNED", set())
    for env in ("MutantBotA-v0", "MutantBotB-v1", None):
        with pytest.warns(UserWarning) as record:
            assert term.termination_fn(env) is term.never_terminal
        assert len(record) == 1 and record[0].filename == __file__
        assert f"env {env!r}" in str(record[0].message)
        assert "add one with augment.world.termination.register_termination" in str(record[0].message)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            term.termination_fn(env)


# ---------------------------------------------------------------------------------------------- world model


def _tiny_dataset() -> OfflineDataset:
    rng = np.random.default_rng(3)
    eps = tuple(Episode(observations=rng.normal(size=(t + 1, 3)).astype(np.float32),
                        actions=rng.uniform(-1, 1, size=(t, 2)).astype(np.float32),
                        rewards=rng.normal(size=t).astype(np.float32), terminated=np.zeros(t, bool),
                        truncated=np.eye(1, t, t - 1, dtype=bool)[0]) for t in (30, 25))
    return OfflineDataset(name="tiny-world", episodes=eps, env_id="HalfCheetah-v5")


def _tiny_config() -> WorldModelConfig:
    """Two 8-unit members (one elite), one epoch of two steps for each model."""
    return WorldModelConfig(members=2, elites=1, hidden=(8,), batch_size=16, max_epochs=1, steps_per_epoch=2,
                            patience=1, reward_hidden=(8,), reward_batch_size=16, reward_max_epochs=1,
                            reward_steps_per_epoch=2)


def test_train_world_model_defaults_and_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = _tiny_dataset()
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ-5"  # local time 5 h ahead of UTC: trained_at must still be UTC
    time.tzset()
    try:
        before = datetime.now(timezone.utc).replace(microsecond=0)
        model = train_world_model(data, _tiny_config())  # default: progress on
        after = datetime.now(timezone.utc)
    finally:
        if old_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
    err = capsys.readouterr().err
    assert "world model: dynamics" in err and "world model: reward" in err
    rep = model.report
    assert rep["dataset"] == "tiny-world"
    assert rep["dataset_hash"] == data.content_hash and rep["transitions"] == 55
    stamp = datetime.strptime(rep["trained_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= stamp <= after
    assert model.from_cache is False and model.path is None
    # save creates missing parents
    assert model.save(tmp_path / "a" / "b" / "wm") == tmp_path / "a" / "b" / "wm"
    assert WorldModel.load(tmp_path / "a" / "b" / "wm").elites == model.elites


def test_fit_world_model_without_cache_trains_on_the_named_device() -> None:
    model = fit_world_model(_tiny_dataset(), _tiny_config(), progress=False, cache=False, device="cpu")
    assert model.report["device"] == "cpu" and model.from_cache is False

