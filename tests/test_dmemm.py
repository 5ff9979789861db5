"""DMEMM (augment/planners/dmemm*.py): tests D5-D8 of PLANNERS.md §1.5 and the planner on real pieces.

The fitted planner uses the smoke profile on tiny real Hopper-v5 data (the project's world model, U-Net,
MuJoCo evaluation, Zarr store); the math tests use the values stated in PLANNERS.md.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from augment.diffusion import ddpm
from augment.planners.dmemm import DMEMMConfig
from augment.planners.dmemm_math import (
    algorithm1_sample,
    dual_guidance_gradient,
    eq11_weights,
    minmax_weights,
    window_columns,
    window_reward_sums,
)
from augment.planners.run import make_planner
from stores.errors import UserInputError
from tests.baselines_data import planner_dataset


@pytest.fixture(scope="module")
def dataset():
    return planner_dataset()


@pytest.fixture(scope="module")
def planner(dataset):
    return make_planner("dmemm", dataset, profile="smoke", progress=False)


# ------------------------------------------------------------------------------------------------ math

def test_d5_eq11_weight() -> None:
    w = eq11_weights(np.array([1.0 + 2.0 + 3.0]), t_max=3, r_max=3, w_min=0.05)
    assert w[0] == pytest.approx(6 / 9, abs=1e-12)
    assert eq11_weights(np.array([-3.0]), 3, 3, 0.05)[0] == 0.05  # raw -1/3 is clipped, not used
    np.testing.assert_allclose(minmax_weights(np.array([0.0, 5.0, 10.0]), 0.05), [0.05, 0.5, 1.0])
    # window sums over the real columns only (episode of 4 rewards, windows of 3 columns)
    sums = window_reward_sums([np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0])], np.array([0, 0, 1]),
                              np.array([0, 1, 0]), columns=3)
    np.testing.assert_allclose(sums, [6.0, 9.0, 10.0])


def test_window_columns_layout() -> None:
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    valid = np.array([[True, True, True, True], [True, True, False, False]])
    tau, sv, av = window_columns(x, valid, obs_dim=2)
    assert tau.shape == (2, 3, 3)
    np.testing.assert_array_equal(sv, [[True, True, True], [True, True, False]])
    np.testing.assert_array_equal(av, [[True, True, True], [True, False, False]])  # a_t needs s_{t+1}


def _d6_models():
    def reward_fn(s, a):
        return 0.5 * s[..., 0] - 1.0 * a[..., 0]

    def log_t(s_next, s, a):
        return -((s_next[..., 0] - s[..., 0] - 0.5 * a[..., 0]) ** 2) / (2 * 0.25)

    return reward_fn, log_t


def test_d6_dual_guidance_both_readings() -> None:
    tau = torch.tensor([[[0.0, 1.0], [0.4, -1.0], [0.0, 0.0]]], dtype=torch.float64)
    reward_fn, log_t = _d6_models()
    full = dual_guidance_gradient(tau, 1, reward_fn=reward_fn, log_transition_fn=log_t, lam=1.0,
                                  reading="full")
    literal = dual_guidance_gradient(tau, 1, reward_fn=reward_fn, log_transition_fn=log_t, lam=1.0,
                                     reading="literal")
    torch.testing.assert_close(full[0], torch.tensor([[0.1, -1.2], [1.3, -0.8], [0.1, -1.0]],
                                                     dtype=torch.float64))
    torch.testing.assert_close(literal[0], torch.tensor([[0.1, -1.2], [0.9, -0.8], [0.5, -1.0]],
                                                        dtype=torch.float64))
    # the guided step: mean + alpha sigma_k^2 g exactly, then s_0 clamped
    sched = ddpm.DDPMSchedule.cosine(10)
    x = tau.transpose(1, 2)  # (1, C, T+1)
    eps_fn = lambda xx, kk: torch.tanh(xx)  # noqa: E731
    alpha = 0.5
    var = float(sched.posterior_var[4])

    def guide(x_k, k, mean, v):
        return alpha * v * dual_guidance_gradient(x_k.transpose(1, 2), 1, reward_fn=reward_fn,
                                                  log_transition_fn=log_t, lam=1.0).transpose(1, 2)

    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[:, 0, 0] = True
    clamp = lambda y: ddpm.inpaint(y, torch.full_like(y, 0.7), mask)  # noqa: E731
    out = ddpm.ancestral_step(x, 4, eps_fn, sched, None, guide=guide, inpaint_fn=clamp)
    mean = ddpm.reverse_mean(x, 4, torch.tanh(x), sched)
    expected = mean + alpha * var * full.transpose(1, 2)
    torch.testing.assert_close(out[:, :, 1:], expected[:, :, 1:])
    torch.testing.assert_close(out[:, 1, 0], expected[:, 1, 0])
    assert float(out[0, 0, 0]) == 0.7


def test_d8_oracle_planner_returns_the_point_mass() -> None:
    sched = ddpm.DDPMSchedule.cosine(20)
    obs, act, cols = 3, 2, 6
    c = torch.as_tensor(np.random.default_rng(0).normal(size=(obs + act, cols)), dtype=torch.float64)
    ab = sched.alpha_bar

    def oracle(x, k):
        a = ab[k].to(x.dtype)[:, None, None]
        return (x - a.sqrt() * c) / (1 - a).sqrt()

    gen = torch.Generator().manual_seed(1)
    s0 = c[:obs, 0].expand(4, obs).clone()
    out = algorithm1_sample(oracle, sched, s0, (4, obs + act, cols), generator=gen)
    assert float((out - c).abs().max()) < 1e-10
    other = algorithm1_sample(oracle, sched, s0 + 1.0, (4, obs + act, cols), generator=gen)
    diff = (other - c).abs() > 1e-9
    assert bool(diff[:, :obs, 0].all())
    assert not bool(diff[:, obs:, :].any()) and not bool(diff[:, :, 1:].any())


def test_x0_clip_bounds_the_plan_where_eq4_amplifies_a_wrong_eps() -> None:
    """At k = K the cosine schedule has alpha-bar_K ~ 6e-6: an eps off by 0.1 makes x0-hat ~40 off (Eq. 4),
    and the posterior mean passes ~8% of it into x_{K-1}; x0_clip caps that term (the gap between the two
    x_{K-1} is exactly coef * (x0-hat + c)). The noise-free last step returns a clipped x0-hat, so the
    plan stays in [-c, c]; the oracle (exact eps) is unchanged by a clip above its values."""
    sched = ddpm.DDPMSchedule.cosine(20)
    obs, act, cols = 3, 2, 6
    s0 = torch.zeros(8, obs, dtype=torch.float64)

    def off_by_a_tenth(x, k):
        a = sched.alpha_bar[k].to(x.dtype)[:, None, None]
        return x / (1 - a).sqrt() + 0.1  # the exact eps for c = 0, plus 0.1

    first: dict[str, torch.Tensor] = {}

    def run(name: str, clip: float | None) -> torch.Tensor:
        def keep(k: int, x: torch.Tensor) -> None:
            if k == sched.num_steps:
                first[name] = x.clone()  # x_{K-1}: after the step from pure noise

        return algorithm1_sample(off_by_a_tenth, sched, s0, (8, obs + act, cols), on_step=keep,
                                 generator=torch.Generator().manual_seed(0), clip_x0=clip)

    run("plain", None)
    clipped = run("clipped", 2.0)
    ab = sched.alpha_bar.to(torch.float64)
    big_k = sched.num_steps
    x0_hat = -0.1 * float(((1 - ab[big_k]) / ab[big_k]).sqrt())  # Eq. 4 at k = K: ~ -40.6
    # the posterior mean's coefficient on x0 at k = K
    coef = float(ab[big_k - 1].sqrt() * (1 - ab[big_k] / ab[big_k - 1]) / (1 - ab[big_k]))
    assert x0_hat < -40.0
    gap = first["plain"][:, :, 1:] - first["clipped"][:, :, 1:]  # same noise: only the x0 term differs
    torch.testing.assert_close(gap, torch.full_like(gap, coef * (x0_hat + 2.0)))
    assert float(clipped.abs().max()) <= 2.0 + 1e-12
    c = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, size=(obs + act, cols)), dtype=torch.float64)

    def oracle(x, k):
        a = sched.alpha_bar[k].to(x.dtype)[:, None, None]
        return (x - a.sqrt() * c) / (1 - a).sqrt()

    out = algorithm1_sample(oracle, sched, c[:obs, 0].expand(4, obs).clone(), (4, obs + act, cols),
                            generator=torch.Generator().manual_seed(1), clip_x0=1.5)
    assert float((out - c).abs().max()) < 1e-10
    with pytest.raises(UserInputError, match="x0_clip"):
        DMEMMConfig(x0_clip=0.0).validate()
    assert "x0_clip" in DMEMMConfig.PLAN_FIELDS  # an acting setting: the trained model is reused


# ------------------------------------------------------------------------------------------------ planner

def test_d7_inpainting_and_the_executed_action(planner, dataset) -> None:
    s = dataset.transitions.observations[:3]
    s_n = torch.as_tensor(planner.normalizer.norm_obs(s))
    seen: list[int] = []

    def check(k, x):
        seen.append(k)
        assert torch.equal(x[:, :planner.obs_dim, 0], s_n)

    tau = planner.sample_plans(s, torch.Generator().manual_seed(0), on_step=check)
    assert seen == list(range(planner.config.diffusion_steps, 0, -1))
    planner.seed_acting(0)
    a = planner.act(s)
    n = planner.normalizer
    expected = np.clip(tau[:, planner.obs_dim:, 0].numpy() * n.act_std + n.act_mean, planner.act_low,
                       planner.act_high)
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)
    assert a.shape == (3, 3) and (a >= -1).all() and (a <= 1).all()


def test_calls_per_action_and_ablation_switches(planner) -> None:
    obs = np.zeros((2, planner.obs_dim), dtype=np.float32) + planner.normalizer.obs_mean
    planner.reset_stats()
    planner.act(obs)
    k = planner.config.diffusion_steps
    assert planner.acting_stats()["network_calls_per_act_call"] == {"denoiser": k, "guidance": k}
    off = dataclasses.replace(planner.config, alpha=0.0)
    assert off.config_hash() == planner.config.config_hash()  # acting-only field: same trained model
    planner.config, saved = off, planner.config
    try:
        planner.reset_stats()
        planner.act(obs)
        assert planner.acting_stats()["network_calls_per_action"] == k
    finally:
        planner.config = saved
    base = DMEMMConfig.for_profile("smoke")
    diffuser = base.VARIANTS["diffuser"]
    assert diffuser == {"weighting": False, "lambda_tr": 0.0, "lambda_rd": 0.0, "transition_guidance": False}
    d1 = dataclasses.replace(base, **diffuser)
    d2 = dataclasses.replace(d1, prop1_mode="exact")
    assert d1.config_hash() == d2.config_hash() != base.config_hash()


def test_fit_is_cached_by_dataset_and_training_config(planner, dataset) -> None:
    again = make_planner("dmemm", dataset, profile="smoke", progress=False)
    assert again.from_cache and again.cache_path == planner.cache_path
    for a, b in zip(again.network.state_dict().values(), planner.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    guided = make_planner("dmemm", dataset, profile="smoke", overrides="alpha=0.01", progress=False)
    assert guided.from_cache
    record = json.loads((planner.cache_path / "planner.json").read_text())
    assert record["planner"] == "dmemm" and record["train_record"]["train_steps"] == 20
    final = record["train_record"]["final"]
    assert all(np.isfinite(final[k]) for k in ("l_wdiff", "l_tr", "l_rd"))


def test_eq11_loss_covers_real_entries_after_s0() -> None:
    from augment.planners.dmemm_train import eps_loss_mask, weighted_eps_loss

    sv = torch.tensor([[True, True, True], [True, True, False]])
    av = torch.tensor([[True, True, True], [True, False, False]])
    mask = eps_loss_mask(sv, av, obs_dim=2, channels=3)
    expected = torch.tensor([[[0, 1, 1], [0, 1, 1], [1, 1, 1]], [[0, 1, 0], [0, 1, 0], [1, 0, 0]]],
                            dtype=torch.bool)
    assert torch.equal(mask, expected)
    eps, eps_hat = torch.ones(2, 3, 3), torch.zeros(2, 3, 3)
    # row 0 covers 7 entries, row 1 covers 3; weights 0.5 and 2 -> (0.5 * 7 + 2 * 3) / 2
    assert float(weighted_eps_loss(eps, eps_hat, mask, torch.tensor([0.5, 2.0]))) == pytest.approx(4.75)


def test_generator_cuts_at_the_first_terminal(planner, dataset) -> None:
    from augment.world.termination import termination_fn

    batch = planner.generate(12, None, np.random.default_rng(0))
    batch.validate()
    assert batch.generator == "dmemm" and batch.batch_size == 12
    starts = dataset.transitions.observations[batch.start_index]
    np.testing.assert_array_equal(batch.observations[:, 0], starts)
    rule = termination_fn("Hopper-v5")
    for b in range(batch.batch_size):
        n = int(batch.lengths[b])
        flags = rule(batch.observations[b, 1:n + 1])
        assert not flags[:-1].any() and bool(flags[-1]) == bool(batch.terminals[b, n - 1])
        r = planner.world.predict_reward(batch.observations[b, :n], batch.actions[b, :n])
        np.testing.assert_allclose(batch.rewards[b, :n], r, rtol=1e-5, atol=1e-5)
    attrs = planner.store_attrs()
    assert attrs["generator_config"]["prop1_mode"] == "mc"
    assert attrs["generator_config"]["guidance"]["alpha"] == planner.config.alpha


@pytest.mark.slow
def test_augment_plan_dmemm_smoke_end_to_end(tmp_path, dataset) -> None:
    from cli import cli
    from stores.replay import ReplayStore
    from stores.sources import write_npz

    path = write_npz(dataset, tmp_path / "hopper-random.npz")  # real Hopper-v5 data, no recipe build
    out = tmp_path / "run"
    args = ["plan", "dmemm", "--dataset", str(path), "--profile", "smoke", "--generate", "8",
            "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "calls / action" in result.output
    res = json.loads((out / "results.json").read_text())
    k = DMEMMConfig.for_profile("smoke").diffusion_steps
    assert res["network_calls_per_action"] == 2 * k and res["seconds_per_action"] > 0
    assert res["final"]["episodes"] == 2 and res["score"] == res["final_normalized"]  # Hopper-v5 references
    assert res["profile"] == "smoke" and res["planner"] == "dmemm"
    cfg = json.loads((out / "config.json").read_text())
    assert any("horizon: 100 -> 7" in line for line in cfg["scaled"])
    assert (out / "metrics.csv").read_text().startswith("step,")
    with ReplayStore.open(out / "synthetic.zarr") as store:
        assert store.attrs["generator_name"] == "dmemm" and len(store) == res["num_synthetic"] > 0


def test_planner_evaluation_reports_its_act_calls_to_a_sweep(planner, dataset, tmp_path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # a sweep runs cells without bars; `sweep status` reads the evaluation's progress from this file
    from augment.planners.run import evaluate_planner
    from augment.progress import PROGRESS_FILE_ENV, read_progress

    report = tmp_path / "cell.progress.json"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(report))
    result = evaluate_planner(planner, dataset.env_id, seed=0, episodes=1, score_name=None, envs=1,
                              max_steps=3)
    last = read_progress(report)
    assert last is not None and (last["desc"], last["total"], last["closed"]) == ("dmemm: evaluate", 3, True)
    assert last["n"] == int(result.lengths[0]) <= 3  # one act call per step (fewer if Hopper falls)
