"""The iteration rule and the dynamics noise of DyDiff's refinement, with known answers.

A scalar linear Gaussian system: true dynamics s' = A s + B a, policy a = K s (so the closed-loop
reference is s_t = (A + B K)^t s_0). The single-step model adds N(0, sm^2) per step (it compounds); the
"diffusion model" is unbiased given the actions: it returns the true open-loop states under the
conditioning actions plus independent N(0, sd^2) per state. Everything is linear, so the error
d = states - reference after each iteration has an exact covariance:

    single-step:  d0_{t+1} = (A + B K) d0_t + eta_t            -> C_0
    a sample:     new - ref = H d_prev + eps,  H[t, j] = A^(t-1-j) B K for j < t (j = 0 has d = 0)
    replace:      d_k = H d_{k-1} + eps_k                      -> C_k = H C H^T + sd^2 I
    average:      d_k = (H + I)/2 d_{k-1} + eps_k / 2          -> C_k = F C F^T + sd^2/4 I

and E_L(M) = trace(C_M). The test computes these independently of the code and checks the code's
Monte Carlo errors against them, and that averaging lowers the error. Also: SDEdit starts, the
relative-state design and resumable denoiser training.
"""

from __future__ import annotations

import numpy as np
import pytest

from augment.generators.dydiff import (
    DyDiffConfig,
    iteration_update,
    refine,
    single_step_rollout,
)
from stores.errors import UserInputError

A, B, K = 1.0, 0.5, -0.4
SM, SD = 0.3, 0.3
L = 8


class LinearPolicy:
    def act(self, observations: np.ndarray) -> np.ndarray:
        return (K * observations).astype(np.float32)

    def reset(self, n: int) -> None:
        pass


class NoisyLinearModel:
    """Single-step model: the true dynamics plus N(0, SM^2); ``deterministic`` drops the noise."""

    def predict_next(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator, *,
                     deterministic: bool = False) -> np.ndarray:
        nxt = A * obs + B * act
        if not deterministic:
            nxt = nxt + SM * rng.standard_normal(obs.shape)
        return nxt.astype(np.float32)


class UnbiasedDiffusion:
    """True open-loop states under the conditioning actions plus N(0, SD^2) per state; s_0 exact."""

    horizon = L

    def __init__(self) -> None:
        self.kwargs: list[dict] = []

    def sample(self, s0: np.ndarray, actions: np.ndarray, rng: np.random.Generator, **kwargs) -> np.ndarray:
        self.kwargs.append(kwargs)
        states = [s0.astype(np.float64)]
        for t in range(actions.shape[1]):
            states.append(A * states[-1] + B * actions[:, t])
        out = np.stack(states, axis=1)
        out[:, 1:] += SD * rng.standard_normal(out[:, 1:].shape)
        return out.astype(np.float32)


def closed_form_errors(rule: str, iterations: int, *, mean_dynamics: bool = False) -> float:
    """trace(C_M): the expected sum over t = 1..L of the squared error against the closed-loop reference."""
    c = A + B * K
    # single-step rollout error d0 (t = 0..L, d0_0 = 0): d0_t = sum_{j<t} c^(t-1-j) eta_j
    g = np.zeros((L + 1, L))
    for t in range(1, L + 1):
        for j in range(t):
            g[t, j] = c ** (t - 1 - j)
    cov = np.zeros((L + 1, L + 1)) if mean_dynamics else SM ** 2 * g @ g.T
    h = np.zeros((L + 1, L + 1))  # new_t - ref_t = sum_{j<t} A^(t-1-j) B K d_j
    for t in range(1, L + 1):
        for j in range(t):
            h[t, j] = A ** (t - 1 - j) * B * K
    q = np.diag([0.0] + [SD ** 2] * L)
    for _ in range(iterations):
        if rule == "replace":
            cov = h @ cov @ h.T + q
        else:
            f = 0.5 * (h + np.eye(L + 1))
            cov = f @ cov @ f.T + q / 4.0
    return float(np.trace(cov))


def monte_carlo_errors(rule: str, iterations: int, *, mean_dynamics: bool = False, rows: int = 6000,
                       seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    s0 = rng.uniform(-1, 1, (rows, 1)).astype(np.float32)
    policy = LinearPolicy()
    states, actions = single_step_rollout(s0, policy, NoisyLinearModel(), L, rng, mean=mean_dynamics)
    refined, _ = refine(s0, actions, policy, UnbiasedDiffusion(), iterations, rng, states=states, rule=rule)
    final = states if refined is None else refined
    reference = s0.astype(np.float64) * (A + B * K) ** np.arange(L + 1)[None, :]
    return float(((final[:, :, 0] - reference) ** 2)[:, 1:].sum(axis=1).mean())


def test_closed_form_says_averaging_reduces_the_error() -> None:
    for m in (1, 2, 3):
        assert closed_form_errors("average", m) < closed_form_errors("replace", m)
    # the fixed point of averaging is below one sample's own error (L * SD^2), replacing stays above it
    assert closed_form_errors("average", 12) < L * SD ** 2 < closed_form_errors("replace", 12)
    # mean dynamics: the single-step model is exact here, so M = 0 has no error at all
    assert closed_form_errors("replace", 0, mean_dynamics=True) == 0.0


@pytest.mark.parametrize(("rule", "m", "mean_dynamics"), [
    ("replace", 0, False), ("replace", 1, False), ("replace", 2, False), ("average", 1, False),
    ("average", 2, False), ("average", 2, True), ("replace", 1, True),
])
def test_refine_matches_the_closed_form(rule: str, m: int, mean_dynamics: bool) -> None:
    expected = closed_form_errors(rule, m, mean_dynamics=mean_dynamics)
    measured = monte_carlo_errors(rule, m, mean_dynamics=mean_dynamics)
    assert measured == pytest.approx(expected, rel=0.06, abs=1e-6)


def test_averaging_reduces_the_measured_error() -> None:
    for m in (1, 2):
        assert monte_carlo_errors("average", m, seed=1) < 0.8 * monte_carlo_errors("replace", m, seed=1)


def test_iteration_update_and_settings() -> None:
    new = np.array([[[0.0], [2.0], [4.0]]], np.float32)
    old = np.array([[[0.0], [0.0], [1.0]]], np.float32)
    np.testing.assert_array_equal(iteration_update(new, old, "replace"), new)
    np.testing.assert_array_equal(iteration_update(new, old, "average"), [[[0.0], [1.0], [2.5]]])
    with pytest.raises(UserInputError, match="iteration rule"):
        iteration_update(new, old, "blend")
    with pytest.raises(UserInputError, match="iteration-rule"):
        DyDiffConfig(iteration_rule="blend")
    with pytest.raises(UserInputError, match="dynamics"):
        DyDiffConfig(dynamics="median")
    with pytest.raises(UserInputError, match="sdedit"):
        DyDiffConfig(sdedit_sigma=0.0)
    paper = DyDiffConfig.for_profile("paper", "hopper-medium-replay")
    assert (paper.iteration_rule, paper.dynamics, paper.sdedit_sigma) == ("replace", "sample", None)
    with pytest.raises(UserInputError, match="single-step states"):
        refine(np.zeros((1, 1), np.float32), np.zeros((1, L, 1), np.float32), LinearPolicy(),
               UnbiasedDiffusion(), 1, np.random.default_rng(0), rule="average")
    with pytest.raises(UserInputError, match="iteration rule 'blend'"):  # also without states
        refine(np.zeros((1, 1), np.float32), np.zeros((1, L, 1), np.float32), LinearPolicy(),
               UnbiasedDiffusion(), 1, np.random.default_rng(0), rule="blend")


def test_sdedit_start_passes_the_previous_states() -> None:
    rng = np.random.default_rng(0)
    s0 = np.ones((3, 1), np.float32)
    states, actions = single_step_rollout(s0, LinearPolicy(), NoisyLinearModel(), L, rng)
    diffusion = UnbiasedDiffusion()
    seen: list[np.ndarray] = []
    refine(s0, actions, LinearPolicy(), diffusion, 2, rng, states=states, rule="replace", sdedit_sigma=0.5,
           on_iteration=lambda k, s, a: seen.append(s))
    assert [kw["start_sigma"] for kw in diffusion.kwargs] == [0.5, 0.5]
    np.testing.assert_array_equal(diffusion.kwargs[0]["init_states"], states)  # iteration 1: from tau_dyn
    np.testing.assert_array_equal(diffusion.kwargs[1]["init_states"], seen[0])  # iteration 2: states^(1)


def test_sdedit_schedule_is_the_tail_of_the_karras_schedule() -> None:
    from augment.diffusion import edm
    from augment.diffusion.trajectory import sdedit_schedule

    n, smin, smax, rho = 34, 0.002, 80.0, 7.0
    t = edm.time_steps(n, smin, smax, rho)
    gammas = edm.churn_gammas(t, 60.0, 0.37, 52.2)
    # independent: t_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho
    levels = [(smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
              for i in range(n)]
    i0 = min(i for i in range(n) if levels[i] <= 0.5)
    sub_t, sub_g = sdedit_schedule(t, gammas, 0.5)
    assert sub_t[0] == pytest.approx(levels[i0]) and sub_t[-1] == 0.0 and len(sub_t) == n - i0 + 1
    assert sub_g == gammas[i0:]
    assert edm.network_evaluations(len(sub_t) - 1) == 2 * (n - i0) - 1 < 67
    assert sdedit_schedule(t, gammas, 1e-9)[0] == [t[n - 1], 0.0]  # at least one step
    with pytest.raises(UserInputError):
        sdedit_schedule(t, gammas, 0.0)


def _toy_dataset():
    from stores.schema import Episode, OfflineDataset

    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(3):
        obs = np.cumsum(rng.standard_normal((21, 3)), axis=0).astype(np.float32)
        episodes.append(Episode(observations=obs, actions=rng.uniform(-1, 1, (20, 2)).astype(np.float32),
                                rewards=np.zeros(20, np.float32), terminated=np.zeros(20, bool),
                                truncated=np.eye(1, 20, 19, dtype=bool)[0]))
    return OfflineDataset(name="toy", episodes=tuple(episodes), env_id=None)


@pytest.mark.parametrize("relative", [False, True])
def test_resumed_training_equals_one_run_and_samples_keep_conditions(relative: bool) -> None:
    import dataclasses

    import torch

    from augment.diffusion.trajectory import TrajectoryDiffusionConfig, fit_trajectory_diffusion

    ds = _toy_dataset()
    cfg = dataclasses.replace(TrajectoryDiffusionConfig.for_profile("smoke"), horizon=6, train_steps=6,
                              relative_states=relative)
    fresh = fit_trajectory_diffusion(ds, cfg, progress=False, cache=False)
    fit_trajectory_diffusion(ds, dataclasses.replace(cfg, train_steps=3), progress=False, resumable=True)
    resumed = fit_trajectory_diffusion(ds, cfg, progress=False, resumable=True)
    assert resumed.meta["resumed_from_step"] == 3 and not resumed.from_cache
    for a, b in zip(fresh.network.state_dict().values(), resumed.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    s0 = ds.episodes[0].observations[:2]
    acts = np.stack([ds.episodes[0].actions[:6], ds.episodes[1].actions[:6]])
    full = resumed.sample(s0, acts, np.random.default_rng(0))
    edit = resumed.sample(s0, acts, np.random.default_rng(0), init_states=full, start_sigma=0.5)
    assert edit.shape == full.shape == (2, 7, 3) and (edit[:, 0] == s0).all() and np.isfinite(edit).all()
    assert resumed.network_evaluations_for(0.5) < resumed.network_evaluations_per_sample
    with pytest.raises(UserInputError, match="both"):
        resumed.sample(s0, acts, np.random.default_rng(0), init_states=full)
    if not relative:  # the new field leaves the hashes of existing models unchanged
        assert "relative_states" not in json_keys(cfg)


def json_keys(cfg) -> set[str]:
    import hashlib
    import json

    data = {k: v for k, v in cfg.to_json().items() if k not in ("device", "profile", "condition_after_churn",
                                                                   "relative_states")}
    assert hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12] == cfg.config_hash()
    return set(data)


def test_cpu_profile_takes_the_diagnose_winner_and_paper_keeps_the_text() -> None:
    from augment.commands import dydiff_config
    from augment.generators.dydiff import DyDiffConfig

    cpu = DyDiffConfig.for_profile("cpu", "hopper-medium-replay")
    assert (cpu.iteration_rule, cpu.dynamics, cpu.sdedit_sigma) == ("average", "mean", 0.5)
    assert any("SDEdit" in note for note in cpu.notes)
    for profile in ("paper", "smoke"):
        cfg = DyDiffConfig.for_profile(profile, "hopper-medium-replay")
        assert (cfg.iteration_rule, cfg.dynamics, cfg.sdedit_sigma) == ("replace", "sample", None)
    text = dydiff_config("hopper-medium-replay", profile="cpu", iteration_rule="replace", dynamics="sample",
                         sdedit_sigma=0.0)
    assert (text.iteration_rule, text.dynamics, text.sdedit_sigma) == ("replace", "sample", None)
