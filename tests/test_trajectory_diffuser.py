"""Trajectory Diffuser (augment/planners/trajectory_diffuser.py, td_math.py, td_train.py): tests T1-T8 of
PLANNERS.md §2.5 with their stated numbers, the planner on real pieces (smoke profile, tiny real Hopper-v5
data, MuJoCo evaluation, the shared world model, a Zarr store) and bad input.

Expected values come from closed forms computed here with NumPy (schedule constants, sqrt(beta_1), RTG
sums by hand), not from the code under test.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from augment.diffusion import ddpm
from augment.planners.run import make_planner
from augment.planners.td_math import (
    ReturnToGoHistory,
    autoregressive_plan,
    cfg_eps_fn,
    condition_dropout,
    refine,
    returns_to_go,
    table_a6,
    window_condition,
)
from augment.planners.trajectory_diffuser import TDConfig, TrajectoryDiffuserPlanner
from baselines.evaluate import evaluate
from stores.errors import UserInputError
from tests.baselines_data import hopper_random_dataset, planner_dataset
from tests.cli_helpers import run_cli


@pytest.fixture(scope="module")
def dataset():
    return planner_dataset()


@pytest.fixture(scope="module")
def planner(dataset):
    return make_planner("td", dataset, profile="smoke", progress=False)


def _linear_abar(k: int) -> float:
    return float(np.prod(1.0 - np.linspace(1e-3, 2e-2, 100)[:k]))


# ------------------------------------------------------------------------------------------------ T1-T3

def test_t1_cfg_combination_batched_as_one_call() -> None:
    e_null, e_y = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 1.0, 1.0])
    calls = []

    def denoiser(x, noise, cond, drop):  # the null rows get e_null, the conditioned rows e_y
        calls.append(x.shape[0])
        return torch.where(drop[:, None, None], e_null[None, :, None], e_y[None, :, None]).expand_as(x)

    sched = ddpm.DDPMSchedule.linear(100, 1e-3, 2e-2)
    x, k, y = torch.zeros(2, 3, 1), torch.full((2,), 3), torch.ones(2, 1)
    out = cfg_eps_fn(denoiser, y, 1.2, sched, on_call=lambda: None)(x, k)
    np.testing.assert_allclose(out[0, :, 0].numpy(), [-0.2, 1.2, 1.4], atol=1e-6)
    np.testing.assert_allclose(out[0, :, 0].numpy(), ((1 - 1.2) * e_null + 1.2 * e_y).numpy(), atol=1e-6)
    assert calls == [4]  # eps_null and eps_y in one forward of 2B rows
    torch.testing.assert_close(cfg_eps_fn(denoiser, y, 1.0, sched)(x, k)[0, :, 0], e_y)
    torch.testing.assert_close(cfg_eps_fn(denoiser, y, 0.0, sched)(x, k)[0, :, 0], e_null)


def _oracle(c: torch.Tensor, sched: ddpm.DDPMSchedule):
    def eps_fn(x, k):
        ab = sched.alpha_bar[k].to(x.dtype)[:, None, None]
        return (x - ab.sqrt() * c) / (1.0 - ab).sqrt()

    return eps_fn


def test_t2_partial_refinement_with_an_oracle_pins_the_variance() -> None:
    sched = ddpm.DDPMSchedule.linear(100, 1e-3, 2e-2)
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(1, 11, 8, generator=gen, dtype=torch.float64).expand(512, 11, 8)
    plan = c + 0.3 * torch.randn(c.shape, generator=gen, dtype=torch.float64)
    eps_fn = _oracle(c, sched)
    x0 = refine(plan, c[:, :, 0], eps_fn, sched, 5, variance="posterior", generator=gen)
    assert float((x0 - c).abs().max()) < 1e-12  # beta-tilde_1 = 0 and the k = 1 mean is x0-hat
    x0 = refine(plan, c[:, :, 0], eps_fn, sched, 5, variance="beta", last_step_noise=True, generator=gen)
    resid = (x0 - c)[:, :, 1:]
    assert float(resid.std()) == pytest.approx(np.sqrt(1e-3), rel=0.02)  # sqrt(beta_1) = 0.0316
    assert float(resid.mean()) == pytest.approx(0.0, abs=2e-3)


def test_t3_schedule_constants_and_addnoise_scale(planner) -> None:
    paper = TrajectoryDiffuserPlanner(TDConfig.for_profile("paper", "hopper-medium-replay"), progress=False)
    ab5 = float(paper.sched.alpha_bar[5])
    assert ab5 == pytest.approx(_linear_abar(5), abs=1e-12) and ab5 == pytest.approx(0.993100, abs=1e-6)
    assert np.sqrt(1 - ab5) == pytest.approx(0.083068, abs=1e-6)
    c = torch.randn(1, 11, 16).expand(400, 11, 16).contiguous()
    from augment.planners.td_math import add_noise

    x5 = add_noise(c, 5, paper.sched, torch.Generator().manual_seed(1))
    assert float((x5 - np.sqrt(ab5) * c).std()) == pytest.approx(0.083068, rel=0.02)


# ------------------------------------------------------------------------------------------------ T5-T8

class StubGPT(torch.nn.Module):
    """Predicts (state + 1, rtg - 0.1) at every position."""

    def forward(self, s, r):
        return s + 1.0, r - 0.1


class Recorder(torch.nn.Module):
    """Stands in for f_phi: records its inputs, returns zeros."""

    def __init__(self, act_dim: int) -> None:
        super().__init__()
        self.act_dim, self.inputs = act_dim, []

    def forward(self, x):
        self.inputs.append(x.clone())
        return torch.zeros(x.shape[0], self.act_dim)


def _stub_planner(planner, **acting) -> TrajectoryDiffuserPlanner:
    """A planner of horizon 4 with the stub GPT and a recording f_phi (normaliser of the fitted one)."""
    cfg = dataclasses.replace(planner.config, horizon=4, refine=False, **acting)
    p = TrajectoryDiffuserPlanner(cfg, progress=False)
    p.obs_dim, p.act_dim = planner.obs_dim, planner.act_dim
    p.normalizer, p.act_low, p.act_high = planner.normalizer, planner.act_low, planner.act_high
    p.data_target_rtg = planner.data_target_rtg
    p.gpt, p.unet, p.inverse_dynamics = StubGPT(), planner.unet, Recorder(planner.act_dim)
    return p


def test_t5_receding_horizon_with_history(planner, dataset) -> None:
    s = torch.randn(2, 1, 11)
    states, rtgs = autoregressive_plan(StubGPT(), s, torch.full((2, 1), 3.0), 3, 3)
    np.testing.assert_allclose(states[:, :, 0].numpy(), (s[:, :, 0] + torch.arange(4.0)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(rtgs.numpy(), [[3.0, 2.9, 2.8, 2.7]] * 2, rtol=1e-6)

    p = _stub_planner(planner, target_rtg=300.0, rtg_floor=1 / 3, rtg_scale=100.0)
    obs = dataset.transitions.observations[:2 * 6].reshape(6, 2, -1)
    p.reset(2)
    rewards = [50.0, 500.0, 1.0, 1.0, 1.0]
    expected_rtg = [3.0]
    for n in range(5):
        p.reset_stats()
        p.act(obs[n])
        assert p.acting_stats()["network_calls_per_act_call"] == {"gpt": 3.0, "inverse_dynamics": 1.0}
        hist = p.history
        assert [len(q) for q in hist.states] == [min(n + 1, 3)] * 2  # only observed states enter h
        seen = p.normalizer.norm_obs(obs[max(0, n - 2):n + 1, 1])
        np.testing.assert_array_equal(np.stack(hist.states[1]), seen)
        np.testing.assert_allclose(list(hist.rtgs[0]), expected_rtg[-3:], rtol=1e-6)
        s_t, s_next = p.inverse_dynamics.inputs[-1][:, :11], p.inverse_dynamics.inputs[-1][:, 11:]
        np.testing.assert_allclose(s_next.numpy(), s_t.numpy() + 1.0, rtol=1e-6)  # f_phi(s_t, s_t + 1)
        p.observe(np.full(2, rewards[n]), obs[n + 1], np.zeros(2, bool))
        expected_rtg.append(max(expected_rtg[-1] - rewards[n] / 100.0, 300.0 / (3 * 100.0)))
    assert expected_rtg[:3] == pytest.approx([3.0, 2.5, 1.0])  # the official floor target / (3 scale)
    p.reset(3)
    assert p.history.n_envs == 3 and all(len(q) == 0 for q in p.history.states)
    assert np.all(p.history.current == 3.0)


def test_history_without_the_reward_hook_is_a_clear_error(planner, dataset) -> None:
    p = _stub_planner(planner)
    obs = dataset.transitions.observations[:2]
    p.reset(2)
    p.act(obs)
    with pytest.raises(UserInputError, match=r"observe\(rewards"):
        p.act(obs)  # a custom harness that never reports rewards
    with pytest.raises(UserInputError, match="reset"):
        p.act(dataset.transitions.observations[:3])
    fixed = _stub_planner(planner, fixed_rtg=True)
    fixed.reset(2)
    for _ in range(3):
        fixed.act(obs)
    assert list(fixed.history.rtgs[0]) == [fixed.target_rtg() / fixed.config.rtg_scale] * 3
    h = ReturnToGoHistory(2, 1.0, 10.0)
    h.reset(1)
    h.insert(np.zeros((1, 3)))
    h.observe(np.array([4.0]))
    assert h.current[0] == pytest.approx(0.6)  # no floor: rtg - r / scale


def test_t6_clamping_after_every_step_and_the_executed_pair(planner, dataset) -> None:
    obs = dataset.transitions.observations[5:8]
    s_n = torch.as_tensor(planner.normalizer.norm_obs(obs))
    window, rtg = planner.propose(s_n[:, None], torch.ones(3, 1))
    seen = []
    x0 = planner.improve(window, s_n, rtg[:, :1], torch.Generator().manual_seed(0),
                         on_step=lambda k, x: seen.append((k, x[:, :, 0].clone())))
    assert [k for k, _ in seen] == [2, 1]
    for _, first in seen:
        assert torch.equal(first, s_n)
    assert torch.equal(x0[:, :, 0], s_n) and not torch.equal(x0[:, :, 1:], window[:, :, 1:])
    rec = Recorder(planner.act_dim)
    original = planner.inverse_dynamics
    planner.inverse_dynamics = rec
    try:
        planner.reset(3)
        planner.act(obs)
    finally:
        planner.inverse_dynamics = original
        planner.reset(1)
    (inp,) = rec.inputs
    torch.testing.assert_close(inp[:, :11], s_n, rtol=0, atol=0)
    torch.testing.assert_close(inp[:, 11:], planner.last_plan[:, :, 1], rtol=0, atol=0)


def test_t7_rtg_labels_and_window_condition() -> None:
    from augment.diffusion.trajectory import Normalizer
    from augment.planners.td_train import TDData
    from stores.schema import Episode, OfflineDataset

    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0, 0.0])
    ep = Episode(observations=np.arange(44, dtype=np.float32).reshape(4, 11),
                 actions=np.zeros((3, 3), np.float32), rewards=np.array([1.0, 2.0, 3.0], np.float32),
                 terminated=np.array([False, False, True]), truncated=np.zeros(3, bool))
    short = dataclasses.replace(ep, observations=ep.observations[:2], actions=ep.actions[:1],
                                rewards=ep.rewards[:1], terminated=np.array([True]),
                                truncated=np.zeros(1, bool))
    ds = OfflineDataset(name="t7", episodes=(ep, short), env_id=None)
    data = TDData.build(ds, Normalizer.from_dataset(ds, 1.0), horizon=3, rtg_scale=1.0)
    np.testing.assert_allclose(data.rtg[:4], [6.0, 5.0, 3.0, 0.0])
    np.testing.assert_array_equal(data.window_starts, [0, 1])  # the 2-state episode holds no 3-state window
    assert window_condition(data.rtg, data.window_starts[1:2])[0] == 5.0
    np.testing.assert_array_equal(data.transition_rows, [0, 1, 2, 4])


def test_t8_condition_dropout_and_the_null_condition() -> None:
    from augment.nn.unet import TemporalUNet

    drop = condition_dropout(10_000, 0.5, torch.Generator().manual_seed(0))
    assert abs(float(drop.float().mean()) - 0.5) < 0.015
    torch.manual_seed(0)
    net = TemporalUNet(11, (8, 16), cond_dim=1).eval()
    torch.nn.init.normal_(net.out.weight, std=0.3)  # the zero-initialised output would hide everything
    x, noise = torch.randn(4, 11, 8), torch.full((4,), 0.2)
    null = net(x, noise)
    for y in (torch.zeros(4, 1), torch.full((4, 1), 7.0)):
        torch.testing.assert_close(net(x, noise, y, torch.ones(4, dtype=torch.bool)), null, rtol=0, atol=0)
    keep = torch.zeros(4, dtype=torch.bool)
    assert not torch.allclose(net(x, noise, torch.zeros(4, 1), keep), net(x, noise, torch.ones(4, 1), keep))


# ------------------------------------------------------------------------------------------------ planner

def test_profiles_and_table_a6() -> None:
    from augment.nn.gpt import StateRTGTransformer
    from augment.nn.unet import TemporalUNet, count_parameters

    assert table_a6("hopper-mr").target_rtg == 3100.0
    assert table_a6("halfcheetah-medium-expert-v2").target_rtg == 11000
    assert table_a6("walker2d-medium").horizon == 32 and table_a6("pen-human-v1").n_refine_steps == 2
    assert table_a6("kitchen-mixed-v0").target_rtg == 400 and table_a6("hopper-random") is None
    cpu = TDConfig.for_profile("cpu", "hopper-medium-replay")
    got = (cpu.horizon, cpu.n_refine_steps, cpu.n_train_steps, cpu.omega, cpu.target_rtg)
    assert got == (16, 5, 100, 1.2, 3100)
    assert 0.35e6 < count_parameters(StateRTGTransformer(11, cpu.gpt_embed, layers=4, heads=4)) < 0.45e6
    assert 1.0e6 < count_parameters(TemporalUNet(11, cpu.unet_widths, cond_dim=1)) < 1.2e6
    assert TDConfig.for_profile("paper", "").target_rtg is None  # unlisted data: the best return in the data
    official = TDConfig.VARIANTS["official"]
    assert official == {"add_noise": False, "variance": "posterior", "last_step_noise": False,
                        "n_candidates": 32, "rtg_floor": 1 / 3}
    smoke = TDConfig.for_profile("smoke", "hopper-medium-replay")
    acting = dataclasses.replace(smoke, omega=3.0, refine=False, target_rtg=1.0)
    assert acting.config_hash() == smoke.config_hash()
    assert dataclasses.replace(smoke, horizon=4).config_hash() != smoke.config_hash()


def test_evaluation_calls_refinement_off_and_candidates(planner) -> None:
    planner.seed_acting(0)
    planner.reset_stats()
    result = evaluate(planner, "Hopper-v5", episodes=2, seed=0, num_envs=2, max_steps=6)
    stats = planner.acting_stats()
    h, k = planner.config.horizon, planner.config.n_refine_steps
    assert stats["network_calls_per_act_call"] == {"gpt": h - 1, "denoiser": k, "inverse_dynamics": 1}
    assert np.isfinite(result.returns).all() and (result.lengths <= 6).all()
    # the RTG went down by the real rewards (scaled), one env per row
    target = planner.target_rtg() / planner.config.rtg_scale
    np.testing.assert_allclose(planner.history.current, target - result.returns / planner.config.rtg_scale,
                               rtol=1e-6)
    base = planner.config
    try:
        planner.set_acting(refine=False)
        planner.reset_stats()
        evaluate(planner, "Hopper-v5", episodes=1, seed=0, num_envs=1, max_steps=3)
        assert planner.acting_stats()["network_calls_per_act_call"] == {"gpt": h - 1, "inverse_dynamics": 1}
        planner.set_acting(refine=True, n_candidates=4)
        planner.reset_stats()
        evaluate(planner, "Hopper-v5", episodes=1, seed=0, num_envs=1, max_steps=3)
        assert planner.acting_stats()["network_calls_per_act_call"]["critic"] == 1
        with pytest.raises(UserInputError, match="not acting settings"):
            planner.set_acting(horizon=4)
    finally:
        planner.config = base


def test_generator_from_real_starts_with_chained_plans(planner, dataset) -> None:
    from augment.world.termination import termination_fn

    h = planner.config.horizon
    base = planner.config
    try:
        planner.set_acting(chain_plans=2)
        batch = planner.generate(12, None, np.random.default_rng(0))
    finally:
        planner.config = base
    batch.validate()
    assert batch.generator == "td" and batch.observations.shape[1] == 2 * (h - 1) + 1
    starts = dataset.transitions.observations[batch.start_index]
    np.testing.assert_array_equal(batch.observations[:, 0], starts)
    rule = termination_fn("Hopper-v5")
    for b in range(batch.batch_size):
        n = int(batch.lengths[b])
        flags = rule(batch.observations[b, 1:n + 1])
        assert not flags[:-1].any() and bool(flags[-1]) == bool(batch.terminals[b, n - 1])
        r = planner.world.predict_reward(batch.observations[b, :n], batch.actions[b, :n])
        np.testing.assert_allclose(batch.rewards[b, :n], r, rtol=1e-5, atol=1e-5)
        assert (batch.actions[b, :n] >= planner.act_low - 1e-6).all()
    attrs = planner.store_attrs()["generator_config"]
    assert attrs["planner"] == "td" and attrs["acting"]["omega"] == planner.config.omega
    assert attrs["target_rtg_used"] == planner.target_rtg() and "R-hat" in attrs["rewards"]


def test_fit_is_cached_and_acting_settings_reuse_it(planner, dataset) -> None:
    again = make_planner("td", dataset, profile="smoke", progress=False, overrides="no-add-noise,omega=2.0")
    assert again.from_cache and again.cache_path == planner.cache_path
    obs = dataset.transitions.observations[:3]
    base = planner.config
    for p in (planner, again):
        p.set_acting(add_noise=False, omega=2.0)
        p.seed_acting(5)
        p.reset(3)
    try:
        np.testing.assert_allclose(planner.act(obs), again.act(obs), rtol=1e-5, atol=1e-6)
    finally:
        planner.config = base
        planner.reset(1)


def test_bad_input_is_one_line(tmp_path, dataset, capsys) -> None:
    from stores.sources import write_npz

    path = write_npz(hopper_random_dataset(episodes=2, seed=1, max_steps=20), tmp_path / "h.npz")
    for bad, needle in (("target_rtg=abc", "target_rtg must be a number"),
                        ("n_refine_steps=200", "n_refine_steps must lie in"),
                        ("variance=wide", "variance must be one of")):
        argv = ["plan", "td", "--dataset", str(path), "--profile", "smoke", "--set", bad, "--quiet"]
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(["plan", "td", "--dataset", str(path), "--profile", "smoke", "--target-rtg",
                            "lots", "--quiet"], capsys)
    assert code == 2 and "target_rtg must be a number" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(["plan", "td", "--dataset", str(path), "--profile", "smoke", "--variant",
                            "no-refin", "--quiet"], capsys)
    assert code == 2 and "did you mean 'no-refine'" in err
    from baselines.compare import resolve_arm

    assert resolve_arm("td:no-refine").name == "td:no-refine" and resolve_arm("td-data").name == "td-data"


@pytest.mark.slow
def test_augment_plan_td_smoke_end_to_end(tmp_path, dataset) -> None:
    from cli import cli
    from stores.replay import ReplayStore
    from stores.sources import write_npz

    path = write_npz(dataset, tmp_path / "hopper-random.npz")
    out = tmp_path / "run"
    args = ["plan", "td", "--dataset", str(path), "--profile", "smoke", "--generate", "8", "--out", str(out),
            "--target-rtg", "250"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "profile 'smoke'" in result.output and "calls / action" in result.output
    res = json.loads((out / "results.json").read_text())
    cfg = TDConfig.for_profile("smoke")
    assert res["network_calls_per_action"] == (cfg.horizon - 1) + cfg.n_refine_steps + 1
    assert res["final"]["episodes"] == 2 and res["planner"] == "td" and res["seconds_per_action"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["target_rtg"] == 250.0
    assert any("horizon: 16 -> 8" in line for line in config["scaled"])
    with ReplayStore.open(out / "synthetic.zarr") as store:
        assert store.attrs["generator_name"] == "td" and len(store) == res["num_synthetic"] > 0
        assert store.attrs["generator_config"]["target_rtg_used"] == 250.0
