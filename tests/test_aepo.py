"""AEPO (PLANNERS.md Sec. 3.5, tests A1-A5, A7, A10) and the planner on the smoke profile: d3rlpy IQL
critics with Q' by autograd, the sigma~^2 table, the energy target, batched guided acting, the
Generator side and ``augment plan aepo`` through the real entry point.

Expected numbers are closed forms computed here (Gaussian posterior, moment-generating function,
expectiles of two points) or PLANNERS.md's independent NumPy values.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from baselines_data import hopper_random_dataset

from augment.diffusion.dpm_solver import VPSchedule
from augment.planners import aepo_math as M
from augment.planners.aepo import AEPOConfig, AEPOPlanner, sample_actions
from augment.planners.aepo_critic import IQLCritic, iql_config, make_iql, train_iql
from augment.planners.base import apply_overrides, planner_class
from stores.errors import UserInputError
from tests.cli_helpers import run_cli

# A1-A5 setting: a_0 ~ N(m, s^2 I), d = 2, alpha = 0.8, sigma = 0.6, query a_t = (0.5, 0.3)
MEAN = torch.tensor([0.2, -0.1], dtype=torch.float64)
S, ALPHA, SIGMA = 0.5, 0.8, 0.6
V = ALPHA ** 2 * S ** 2 + SIGMA ** 2  # 0.52
A_T = torch.tensor([[0.5, 0.3]], dtype=torch.float64)
POST_MEAN = MEAN + ALPHA * S ** 2 * (A_T - ALPHA * MEAN) / V  # exact posterior mean
POST_VAR = S ** 2 * SIGMA ** 2 / V  # exact posterior variance 0.173077


def oracle_eps(a_t: torch.Tensor, alpha: float | torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    return sigma * (a_t - alpha * MEAN.to(a_t.dtype)) / (alpha ** 2 * S ** 2 + sigma ** 2)


def test_a1_a2_posterior_mean_and_variance() -> None:
    mu = M.posterior_mean(A_T, oracle_eps(A_T, ALPHA, SIGMA), ALPHA, SIGMA)
    torch.testing.assert_close(mu, torch.tensor([[0.330769, 0.046154]], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(mu, POST_MEAN)
    # E||eps*||^2 / d = sigma^2 / v exactly, so Eq. 22 gives the exact posterior variance
    assert float(M.posterior1_variance(SIGMA ** 2 / V, ALPHA, SIGMA)) == pytest.approx(0.173077, abs=1e-6)
    assert float(M.posterior1_variance(SIGMA ** 2 / V, ALPHA, SIGMA)) == pytest.approx(POST_VAR)
    # Eq. 24 with Var(a_0) = s^2 and u_0 = m: E||mu~ - m||^2 / d = alpha^2 s^4 / v (law of total variance)
    assert float(M.posterior2_variance(S ** 2, ALPHA ** 2 * S ** 4 / V)) == pytest.approx(POST_VAR)


@pytest.mark.parametrize("posterior", [1, 2])
def test_a2_table_estimator_with_the_oracle(posterior: int) -> None:
    sch = VPSchedule()
    t_star = float(sch.inverse_lambda(torch.tensor(math.log(ALPHA / SIGMA), dtype=torch.float64)))
    assert float(sch.alpha(t_star)) == pytest.approx(ALPHA)
    gen = torch.Generator().manual_seed(0)
    n = 50_000
    a0 = (MEAN + S * torch.randn(n, 2, generator=gen, dtype=torch.float64)).float()
    states = torch.zeros(n, 1)
    def eps_fn(s: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return oracle_eps(a, sch.alpha(t)[:, None], sch.sigma(t)[:, None])

    table = M.estimate_sigma_table(eps_fn, states, a0, sch, np.array([t_star]), posterior=posterior,
                                   samples=100_000, generator=gen, var_a0=S ** 2, u0=MEAN.numpy())
    assert table.values[0] == pytest.approx(POST_VAR, abs=0.005)
    assert float(table(torch.tensor([t_star]))) == pytest.approx(table.values[0])


def test_a3_linear_q_is_exact() -> None:
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)
    beta = 3.0
    exact = beta * float(c @ POST_MEAN[0]) + 0.5 * beta ** 2 * POST_VAR * float(c @ c)
    assert exact == pytest.approx(4.609615, abs=1e-6)
    for a0 in ([0.0, 0.0], [1.0, -1.0]):
        target = M.energy_target_from_q(lambda s, a: a @ c, None, torch.tensor([a0], dtype=torch.float64),
                                        POST_MEAN, POST_VAR, beta=beta, nu=1e-3)
        assert float(target) == pytest.approx(exact, abs=1e-9)


def test_a4_a5_quadratic_q_and_the_a_bar_trick() -> None:
    a_star = torch.tensor([0.3, 0.3], dtype=torch.float64)
    beta, d = 3.0, 2

    def q(s: object, a: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((a - a_star) ** 2).sum(-1)

    exact = (-(d / 2) * math.log(1 + beta * POST_VAR)
             - 0.5 * beta * float(((POST_MEAN - a_star) ** 2).sum()) / (1 + beta * POST_VAR))
    assert exact == pytest.approx(-0.482761, abs=1e-6)
    at_mu = M.energy_target_from_q(q, None, POST_MEAN, POST_MEAN, POST_VAR, beta=beta, nu=1e-3)
    at_zero = M.energy_target_from_q(q, None, torch.zeros(1, 2, dtype=torch.float64), POST_MEAN, POST_VAR,
                                     beta=beta, nu=1e-3)
    assert float(at_mu) == pytest.approx(-0.047154, abs=1e-6)
    assert float(at_zero) == pytest.approx(0.209422, abs=1e-6)
    no_bar = M.energy_target_from_q(q, None, POST_MEAN, POST_MEAN, POST_VAR, beta=beta, nu=0.0)
    assert float(at_mu) == pytest.approx(-0.0471539, abs=1e-7)
    assert float(no_bar) == pytest.approx(-0.0471524, abs=1e-7)


@pytest.fixture(scope="module")
def dataset():
    return hopper_random_dataset(episodes=8, seed=1)


@pytest.fixture(scope="module")
def iql(dataset):
    cfg = iql_config(dataset, critic_hidden=(32, 32), actor_hidden=(32, 32), expectile=0.7, batch_size=64,
                     steps=30)
    algo = make_iql(dataset, cfg, seed=0)
    train_iql(algo, dataset, 30, seed=0, progress=False)
    return algo


def test_a7_expectile_sign_ours_and_d3rlpys(dataset, iql) -> None:
    tau = 0.7
    v = torch.linspace(-0.5, 1.5, 2001, dtype=torch.float64)
    q = torch.tensor([0.0, 1.0], dtype=torch.float64)
    iql_sign = M.expectile_loss(q[None, :] - v[:, None], tau).mean(dim=1)
    literal = M.expectile_loss(v[:, None] - q[None, :], tau).mean(dim=1)
    assert float(v[iql_sign.argmin()]) == pytest.approx(0.7, abs=1e-3)
    assert float(v[literal.argmin()]) == pytest.approx(0.3, abs=1e-3)
    # d3rlpy's IQL value loss on a 2-sample batch (one state, two actions): as a function of V it is our
    # L_2^tau(Q - V), minimised at the tau-expectile tau q_hi + (1 - tau) q_lo of the two Q values
    from d3rlpy.dataset import TransitionMiniBatch
    from d3rlpy.torch_utility import TorchMiniBatch

    obs = np.repeat(dataset.transitions.observations[:1], 2, axis=0)
    acts = np.array([[-0.8, 0.5, 0.1], [0.9, -0.4, 0.6]], dtype=np.float32)
    one = np.ones((2, 1), np.float32)
    batch = TransitionMiniBatch(observations=obs, actions=acts, rewards=one, next_observations=obs,
                                next_actions=acts, terminals=0 * one, intervals=one, transitions=[])
    tb = TorchMiniBatch.from_batch(batch, gamma=0.99, compute_returns_to_go=False, device="cpu:0",
                                   observation_scaler=iql.observation_scaler)
    impl = iql.impl
    with torch.no_grad():
        q_t = impl._targ_q_func_forwarder.compute_expected_q(tb.observations, tb.actions, "min").reshape(-1)
    fc = impl._modules.value_func._fc
    saved = (fc.weight.detach().clone(), fc.bias.detach().clone())
    q_lo, q_hi = float(q_t.min()), float(q_t.max())
    grid = np.linspace(q_lo - 1, q_hi + 1, 801)
    losses = []
    try:
        with torch.no_grad():
            fc.weight.zero_()
            for value in grid:
                fc.bias.fill_(float(value))
                d3 = float(impl.compute_value_loss(tb))
                ours = float(M.expectile_loss(q_t.double() - value, tau).mean())
                assert d3 == pytest.approx(ours, rel=1e-4, abs=1e-6)
                losses.append(d3)
    finally:
        with torch.no_grad():
            fc.weight.copy_(saved[0])
            fc.bias.copy_(saved[1])
    assert q_hi - q_lo > 1e-4
    expectile = tau * q_hi + (1 - tau) * q_lo
    assert grid[int(np.argmin(losses))] == pytest.approx(expectile, abs=2 * (grid[1] - grid[0]))


def test_q_and_q_prime_through_d3rlpy(dataset, iql) -> None:
    s = torch.from_numpy(dataset.transitions.observations[:16])
    a = torch.from_numpy(dataset.transitions.actions[:16])
    mean = IQLCritic(iql, "mean")
    # with the observation scaler applied, the forwarder reproduces d3rlpy's own predict_value
    np.testing.assert_allclose(mean.q(s, a).detach().numpy(), mean.predict_value_numpy(s.numpy(), a.numpy()),
                               rtol=1e-5, atol=1e-5)
    crit = IQLCritic(iql, "min")
    assert (crit.q(s, a) <= mean.q(s, a) + 1e-6).all()
    q, g = crit.q_and_grad(s, a)
    assert g.shape == (16, 3) and not q.requires_grad and not g.requires_grad
    h = 1e-2
    for j in range(3):
        e = torch.zeros(3)
        e[j] = h
        fd = (crit.q(s, a + e) - crit.q(s, a - e)).detach() / (2 * h)
        torch.testing.assert_close(g[:, j], fd, atol=2e-2, rtol=2e-2)
    # the energy target is a constant: nothing reaches the critics' parameters
    for p in iql.impl.q_function.parameters():
        p.grad = None
    M.energy_target_from_q(crit.q, s, a, a, 0.1, beta=3.0, nu=1e-3)
    assert all(p.grad is None for p in iql.impl.q_function.parameters())
    with pytest.raises(UserInputError):
        IQLCritic(iql, "max")


@pytest.fixture(scope="module")
def planner(dataset):
    p = AEPOPlanner(AEPOConfig.for_profile("smoke"), progress=False)
    p.fit(dataset)
    return p


def test_a10_table_bounds_and_small_t_target(planner, dataset) -> None:
    models = planner.models
    table = models.table
    assert (table.values >= 0).all() and (table.values <= models.var_a0 + 1e-12).all()
    np.testing.assert_allclose(table.values, np.clip(table.raw, 0.0, models.var_a0))
    acts = dataset.transitions.actions
    var_a0 = float(((acts - acts.mean(0)) ** 2).sum(1).mean() / 3)
    assert models.var_a0 == pytest.approx(var_a0, rel=1e-5)
    # at the smallest t, sigma~^2 <= sigma_t^2/alpha_t^2 ~ 1e-4 and mu~ ~ a_0: the target is ~ beta Q(s, a_0)
    from augment.planners.aepo_train import energy_batch_targets

    n = 64
    s_raw = torch.from_numpy(dataset.transitions.observations[:n])
    a0 = torch.from_numpy(dataset.transitions.actions[:n])
    t = torch.full((n,), models.schedule.eps)
    noise = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    _, target = energy_batch_targets(models, s_raw, models.norm_obs(s_raw.numpy()), a0, t, noise, beta=3.0,
                                     nu=1e-3, clip_mu=True, baseline="none")
    q0, g0 = models.critic.q_and_grad(s_raw, a0)
    sigma = float(models.schedule.sigma(models.schedule.eps))
    assert sigma < 0.011
    # |target - beta Q| <= beta |Q'| (||mu~ - a_0|| + 2 nu) + beta^2 var |Q'|^2; ||mu~ - a_0|| is O(sigma_t)
    gap = (target - 3.0 * q0).abs()
    g_norm = g0.norm(dim=1)
    bound = 3.0 * g_norm * (8 * sigma * math.sqrt(3) + 2e-3) + 9.0 * float(table.values[0]) * g_norm ** 2
    assert (gap <= bound + 1e-5).all()
    assert float(gap.mean()) < 0.05 * float((3.0 * q0).abs().mean()) + 0.05


def test_planner_acts_in_one_batched_solve(planner, dataset) -> None:
    obs = dataset.transitions.observations[:7]
    planner.reset_stats()
    planner.seed_acting(5)
    a = planner.act(obs)
    assert a.shape == (7, 3) and a.dtype == np.float32 and (np.abs(a) <= 1.0).all()
    planner.act(obs[:1])
    stats = planner.acting_stats()
    nfe = planner.config.solver_nfe
    assert stats["network_calls_per_act_call"] == {"denoiser": nfe, "energy_grad": nfe}
    planner.seed_acting(5)
    np.testing.assert_array_equal(planner.act(obs), a)
    # a second planner with the same config loads the cache and acts identically
    again = AEPOPlanner(AEPOConfig.for_profile("smoke"), progress=False)
    again.fit(dataset)
    assert again.from_cache
    again.seed_acting(5)
    np.testing.assert_allclose(again.act(obs), a, atol=1e-6)
    # acting-only overrides reuse the trained networks and change the actions
    smoke = AEPOConfig.for_profile("smoke")
    unguided = AEPOPlanner(apply_overrides(smoke, [("unguided", None)]), progress=False)
    assert unguided.cache_key() == planner.cache_key()
    unguided.fit(dataset)
    unguided.seed_acting(5)
    assert unguided.from_cache
    unguided.act(obs)
    assert unguided.acting_stats()["network_calls_per_act_call"] == {"denoiser": nfe}
    # guidance moves the samples (compared before clipping: smoke networks saturate the action box)
    wide = dataclasses.replace(planner.models, low=np.full(3, -1e9, np.float32),
                               high=np.full(3, 1e9, np.float32))
    raw = [sample_actions(wide, obs, cfg, torch.Generator().manual_seed(1)) for cfg in (unguided.config,
                                                                                       planner.config)]
    assert np.isfinite(raw[0]).all() and not np.allclose(raw[0], raw[1])
    iql_actor = AEPOPlanner(apply_overrides(smoke, [("actor", "iql")]), progress=False)
    iql_actor.fit(dataset)
    np.testing.assert_allclose(iql_actor.act(obs), iql_actor.models.iql.predict(obs), atol=1e-6)
    np.testing.assert_allclose(planner.iql_policy().act(obs), iql_actor.act(obs), atol=1e-6)
    assert planner_class("aepo") is AEPOPlanner


def test_generator_rollouts_with_provenance(planner, dataset) -> None:
    cfg = apply_overrides(AEPOConfig.for_profile("smoke"), [("rollout_length", "3"), ("omega", "2.5")])
    gen = AEPOPlanner(cfg, progress=False)
    gen.fit(dataset)
    batch = gen.generate(6, None, np.random.default_rng(0))
    batch.validate()
    assert batch.generator == "aepo" and batch.actions.shape[1:] == (3, 3)
    assert batch.observations.shape[1:] == (4, dataset.observation_size)
    assert batch.lengths.min() >= 1 and batch.lengths.max() <= 3
    np.testing.assert_array_equal(batch.observations[:, 0],
                                  dataset.transitions.observations[batch.start_index])
    prov = gen.store_attrs()["generator_config"]["provenance"]
    assert prov["omega"] == 2.5 and prov["beta"] == 3.0 and prov["rescale"] is True
    assert prov["solver_nfe"] == 3 and prov["rollout_length"] == 3
    json.dumps(gen.store_attrs())


def test_bad_settings_raise_user_input_errors() -> None:
    base = AEPOConfig.for_profile("smoke")
    for key, value in (("posterior", "3"), ("solver_order", "4"), ("q_reduction", "max"), ("omega", "-1"),
                       ("solver_skip", "cosine"), ("actor", "td3")):
        with pytest.raises(UserInputError):
            apply_overrides(base, [(key, value)]).validate()
    with pytest.raises(UserInputError, match="did you mean 'omega'"):
        apply_overrides(base, [("omegaa", "1")])


@pytest.mark.slow
def test_augment_plan_aepo_smoke_end_to_end(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["plan", "aepo", "--dataset", "hopper-medium-replay", "--profile", "smoke",
                            "--generate", "4", "--out", str(out), "--quiet"], capsys)
    assert code == 0, stdout
    results = json.loads((out / "results.json").read_text())
    assert results["planner"] == "aepo" and math.isfinite(results["final_return"])
    assert results["network_calls_per_act_call"] == {"denoiser": 3.0, "energy_grad": 3.0}
    assert (out / "synthetic.zarr").exists() and results["num_synthetic"] >= 1
    config = json.loads((out / "config.json").read_text())
    assert any("differs from the paper settings" in line for line in config["scaled"])
    code, _, err = run_cli(["plan", "aepo", "--dataset", "hopper-medium-replay", "--profile", "smoke",
                         "--set", "posterior=3", "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and err.count("\n") == 1 and "posterior must be 1 or 2" in err


def test_guidance_probe_rows(planner, dataset) -> None:
    """benchmarks/probe_aepo_guidance.py: its Eq. 25 terms match a direct computation and stay in range."""
    from baselines_data import load_benchmark

    probe = load_benchmark("probe_aepo_guidance")
    models, cfg = planner.models, planner.config
    s = torch.from_numpy(dataset.transitions.observations[:64])
    a0 = torch.from_numpy(dataset.transitions.actions[:64])
    row = probe.probe(models, cfg, s, a0, 0.3, torch.Generator().manual_seed(0))
    q0, g0 = M.q_value_and_grad(models.critic.q, s, a0)
    with torch.no_grad():
        q_bar = models.critic.q(s, M.a_bar(a0, g0, cfg.nu)).reshape(-1)
    assert row["beta_q_mean"] == pytest.approx(float(cfg.beta * q_bar.mean()), rel=1e-5)
    assert row["grad_q_norm"] == pytest.approx(float(g0.norm(dim=-1).mean()), rel=1e-5)
    var = float(models.table(torch.tensor([0.3]))[0])
    assert row["sigma_tilde2"] == pytest.approx(var) and 0.0 <= var <= models.var_a0 + 1e-9
    expected_var_term = 0.5 * cfg.beta ** 2 * var * float((g0 ** 2).sum(-1).mean())
    assert row["variance_mean"] == pytest.approx(expected_var_term, rel=1e-4, abs=1e-6)
    assert -1.0 <= row["cos_gradE_gradQ_mean"] <= 1.0 and row["guidance_over_prior_median"] > 0.0


def test_energy_dose_probe_trains_a_copy_and_counts_its_steps(planner, dataset) -> None:
    """benchmarks/probe_aepo_energy_dose.py: rows count E_Theta's steps, the first row is the fitted
    model's, the Q of samples is the critic's mean on AEPO's actions, and --beta starts a fresh E_Theta at
    that beta."""
    import copy

    from baselines_data import load_benchmark

    dose = load_benchmark("probe_aepo_energy_dose")
    cfg = planner.config
    fitted = [t.detach().clone() for t in planner.models.energy_net.parameters()]
    p = copy.deepcopy(planner)
    used, rows = dose.dose_rows(p, cfg, dataset, chunks=[15, 0, 10], states=32, seed=3, progress=False)
    assert used == cfg and [r["energy_steps"] for r in rows] == [cfg.energy_steps, cfg.energy_steps + 15,
                                                                  cfg.energy_steps + 25]
    assert math.isnan(rows[0]["loss"]) and all(math.isfinite(r["loss"]) for r in rows[1:])
    assert all(len(r["cos"]) == len(dose.TIMES) and all(-1.0 <= c <= 1.0 for c in r["cos"]) for r in rows)
    assert all(0.0 <= r["saturated"] <= 1.0 for r in rows)
    trained = list(p.models.energy_net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(fitted, trained, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(fitted, planner.models.energy_net.parameters(), strict=True))
    idx = np.random.default_rng(3).integers(0, len(dataset.transitions.observations), size=32)
    s = dataset.transitions.observations[idx]
    acts = sample_actions(p.models, s, cfg, torch.Generator().manual_seed(3))
    with torch.no_grad():
        q = float(p.models.critic.q(torch.from_numpy(s), torch.from_numpy(acts)).mean())
    assert rows[-1]["q_of_samples"] == pytest.approx(q, rel=1e-5)

    fresh = copy.deepcopy(planner)
    used_b, rows_b = dose.dose_rows(fresh, cfg, dataset, chunks=[], states=16, seed=0, beta=cfg.beta / 2,
                                    omega=0.0, progress=False)
    assert used_b.beta == pytest.approx(cfg.beta / 2) and used_b.omega == 0.0
    assert len(rows_b) == 1 and rows_b[0]["energy_steps"] == cfg.energy_steps
    assert math.isfinite(rows_b[0]["loss"])
