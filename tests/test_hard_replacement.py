"""Hard replacement (DyDiff Eq. 3, Algorithm 2) samples the right *conditional* of a correlated Gaussian.

Trajectories x (C = obs + act channels, L + 1 steps) are drawn from a joint Gaussian N(mu, Sigma) with
strong correlations between every entry. The conditions c (s_0 and every action slot) are hard-replaced;
the free entries f (the states s_1..s_L) must then follow the Gaussian conditional

    f | c ~ N(m(c), S),  m(c) = mu_f + Sigma_fc Sigma_cc^-1 (c - mu_c),
                         S = Sigma_ff - Sigma_fc Sigma_cc^-1 Sigma_cf.

Training sees the conditions clean and the free entries noised (trajectory.py's ``train_denoiser``), so
the ideal denoiser is known in closed form: D(x; s)_f = m(c) + S (S + s^2 I)^-1 (x_f - m(c)), with c read
from x. With it, the sampler's states must have the conditional mean and covariance, and the residual
f - m(c) must be uncorrelated with c. Everything expected is linear algebra on (mu, Sigma) in this file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augment.diffusion import edm
from augment.diffusion.trajectory import Normalizer, TrajectoryDiffusion, TrajectoryDiffusionConfig
from augment.diffusion.windows import condition_mask

OBS, ACT, L = 2, 1, 2
C, T = OBS + ACT, L + 1
N_SAMPLES = 12_000


def joint_gaussian() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mu (C*T,), Sigma (C*T, C*T) over x flattened channels-first, and the condition mask (C*T,) bool."""
    rng = np.random.default_rng(0)
    d = C * T
    a = rng.normal(size=(d, d)) * 0.35
    sigma = a @ a.T + 0.05 * np.eye(d)
    mu = rng.normal(size=d) * 0.5
    cond = condition_mask(L, OBS, ACT).T.reshape(-1)  # (C, T) channels first, like the sampler
    return mu, sigma, cond


MU, SIGMA, COND = joint_gaussian()
FREE = ~COND
GAIN = SIGMA[np.ix_(FREE, COND)] @ np.linalg.inv(SIGMA[np.ix_(COND, COND)])
S_COND = SIGMA[np.ix_(FREE, FREE)] - GAIN @ SIGMA[np.ix_(COND, FREE)]


def conditional_mean(c: np.ndarray) -> np.ndarray:
    """m(c) for conditions c (n, #cond)."""
    return MU[FREE] + (c - MU[COND]) @ GAIN.T


def ideal_denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x | noisy free entries, clean conditions] for x (B, C, T); the conditions pass through."""
    flat = x.reshape(x.shape[0], -1).double()
    c, f = flat[:, torch.as_tensor(COND)], flat[:, torch.as_tensor(FREE)]
    s = torch.as_tensor(S_COND)
    m = torch.as_tensor(MU[FREE]) + (c - torch.as_tensor(MU[COND])) @ torch.as_tensor(GAIN).T
    shrink = s @ torch.linalg.inv(s + sigma ** 2 * torch.eye(s.shape[0], dtype=s.dtype))
    out = flat.clone()
    out[:, torch.as_tensor(FREE)] = m + (f - m) @ shrink.T
    return out.reshape(x.shape).to(x.dtype)


def draw_conditions(n: int, seed: int) -> np.ndarray:
    """c ~ the marginal N(mu_c, Sigma_cc), (n, #cond)."""
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal(MU[COND], SIGMA[np.ix_(COND, COND)], size=n)


def check_conditional(c: np.ndarray, f: np.ndarray, *, rel_slack: float) -> None:
    """f (n, #free) against N(m(c), S): mean, covariance, and no correlation of the residual with c.

    The covariance may differ from S by 5 standard errors plus ``rel_slack * |S|`` per entry (the
    sampler's discretisation error); the mean and the cross-covariance get no slack.
    """
    n = f.shape[0]
    resid = f - conditional_mean(c)
    sd = np.sqrt(np.diag(S_COND))
    assert np.all(np.abs(resid.mean(axis=0)) < 5 * sd / np.sqrt(n)), resid.mean(axis=0)
    cov = np.cov(resid, rowvar=False)
    se = np.sqrt((np.outer(np.diag(S_COND), np.diag(S_COND)) + S_COND ** 2) / n)
    assert np.all(np.abs(cov - S_COND) < 5 * se + rel_slack * np.abs(S_COND)), (cov, S_COND)
    cross = (resid - resid.mean(0)).T @ (c - c.mean(0)) / n
    cross_se = np.sqrt(np.outer(np.diag(S_COND), np.diag(SIGMA[np.ix_(COND, COND)])) / n)
    assert np.all(np.abs(cross) < 5 * cross_se), cross


def _sample_edm(c: np.ndarray, *, num_steps: int, s_churn: float, after_churn: bool) -> np.ndarray:
    p = edm.EDMParams()
    t = edm.time_steps(num_steps, p.sigma_min, p.sigma_max, p.rho)
    gammas = edm.churn_gammas(t, s_churn, p.s_tmin, p.s_tmax)
    cond_full = np.zeros((c.shape[0], C * T))
    cond_full[:, COND] = c
    cond_t = torch.as_tensor(cond_full.reshape(-1, C, T))
    mask = torch.as_tensor(COND.reshape(1, C, T))
    gen = torch.Generator().manual_seed(3)
    out = edm.heun_sample(ideal_denoiser, torch.randn(cond_t.shape, generator=gen, dtype=torch.float64), t,
                          gammas, p.s_noise if s_churn else 1.0, lambda x: torch.where(mask, cond_t, x),
                          lambda x: torch.randn(x.shape, generator=gen, dtype=x.dtype),
                          replace_after_churn=after_churn)
    flat = out.reshape(c.shape[0], -1).numpy()
    np.testing.assert_array_equal(flat[:, COND], c)  # the conditions are exact
    return flat[:, FREE]


def test_the_closed_form_is_a_real_conditional() -> None:
    """Sanity of the expected values: the residual of exact joint draws has mean 0 and covariance S."""
    x = np.random.default_rng(1).multivariate_normal(MU, SIGMA, size=N_SAMPLES)
    check_conditional(x[:, COND], x[:, FREE], rel_slack=0.0)
    assert np.abs(GAIN).max() > 0.3 and np.linalg.eigvalsh(S_COND).min() > 0.0  # conditioning matters


def test_heun_with_hard_replacement_samples_the_conditional_ode() -> None:
    c = draw_conditions(N_SAMPLES, seed=2)
    check_conditional(c, _sample_edm(c, num_steps=64, s_churn=0.0, after_churn=True), rel_slack=0.02)


def test_heun_with_churn_and_clean_conditions_samples_the_conditional() -> None:
    """The paper's Table 3 sampler (N = 34, S_churn = 60) with the conditions re-applied after the churn.

    Its churn steps inflate the variance by a discretisation error that shrinks with N (measured here:
    +10-12% at N = 34, +4-6% at N = 100, 1-3% for the N = 64 ODE above), hence the larger slack on
    the covariance; the conditional mean and the independence from c are held as tightly as above.
    """
    c = draw_conditions(N_SAMPLES, seed=4)
    check_conditional(c, _sample_edm(c, num_steps=34, s_churn=60.0, after_churn=True), rel_slack=0.16)


class IdealNetwork(torch.nn.Module):
    """The network F whose EDM-preconditioned output D = c_skip x + c_out F(c_in x, c_noise) is the ideal
    denoiser above: it inverts the preconditioning of EDM Table 1 by hand."""

    def __init__(self, sigma_data: float) -> None:
        super().__init__()
        self.sd = sigma_data

    def forward(self, x_in: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        sigma = float(torch.exp(4.0 * noise[0]))  # c_noise = ln(sigma) / 4; one level per call
        x = x_in * (sigma ** 2 + self.sd ** 2) ** 0.5  # c_in = 1 / sqrt(sigma^2 + sd^2)
        d = ideal_denoiser(x, sigma)
        skip = self.sd ** 2 / (sigma ** 2 + self.sd ** 2)
        out = sigma * self.sd / (sigma ** 2 + self.sd ** 2) ** 0.5
        return (d - skip * x) / out


@pytest.mark.parametrize("num_steps", [34])
def test_trajectory_sampler_conditions_in_normalised_space(num_steps: int) -> None:
    """TrajectoryDiffusion.sample end to end: raw s0 and actions are normalised, laid out channels-first,
    hard-replaced; the raw states it returns, normalised by hand, follow the conditional."""
    normalizer = Normalizer(obs_mean=np.array([1.5, -2.0], np.float32),
                            obs_std=np.array([0.5, 3.0], np.float32), act_mean=np.array([0.25], np.float32),
                            act_std=np.array([2.0], np.float32), scale=0.5)
    config = TrajectoryDiffusionConfig(horizon=L, device="cpu", condition_after_churn=True)
    model = TrajectoryDiffusion(config, IdealNetwork(config.edm.sigma_data), normalizer, OBS, ACT)
    c = draw_conditions(N_SAMPLES, seed=6)
    grid = np.zeros((N_SAMPLES, C * T))
    grid[:, COND] = c
    grid = grid.reshape(N_SAMPLES, C, T)
    # the padded action slot of the last step is always zero in the sampler: condition on that value
    grid[:, OBS:, L] = 0.0
    c = grid.reshape(N_SAMPLES, -1)[:, COND]
    s0_raw = grid[:, :OBS, 0] * normalizer.obs_std + normalizer.obs_mean
    actions_raw = grid[:, OBS:, :L].transpose(0, 2, 1) * normalizer.act_std + normalizer.act_mean
    states = model.sample(s0_raw.astype(np.float32), actions_raw.astype(np.float32), np.random.default_rng(0),
                          num_steps=num_steps)
    assert states.shape == (N_SAMPLES, T, OBS)
    np.testing.assert_array_equal(states[:, 0], s0_raw.astype(np.float32))
    norm = (states.astype(np.float64) - normalizer.obs_mean) / normalizer.obs_std  # (n, T, OBS)
    free = norm.transpose(0, 2, 1).reshape(N_SAMPLES, OBS, T)[:, :, 1:]  # channels first, t >= 1
    order = np.zeros((C, T), bool)
    order[:OBS, 1:] = True
    assert np.array_equal(order.reshape(-1), FREE)
    check_conditional(c, free.reshape(N_SAMPLES, -1), rel_slack=0.16)
