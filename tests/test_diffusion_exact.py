"""Algorithm 2 and the diffusion model's bookkeeping to the last digit (mutation run, issue 9).

A two-step Heun sample with churn is written out by hand from EDM Algorithm 2 (DyDiff Algorithm 2) with a
fixed "noise" and a linear denoiser; the churn window is checked at its edges; the training record and
the determinism of training; relative windows; the empty batch.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_trajectory_diffusion import linear_dataset

from augment.diffusion import edm
from augment.diffusion.trajectory import Normalizer, TrajectoryDiffusionConfig, fit_trajectory_diffusion
from augment.diffusion.windows import build_windows, to_absolute, to_relative, windows_per_episode


def test_churn_window_includes_both_edges() -> None:
    t = [60.0, 52.212, 10.0, 0.37, 0.369, 0.0]
    g = edm.churn_gammas(t, s_churn=1.0, s_tmin=0.37, s_tmax=52.212)
    assert g == [0.0, 0.2, 0.2, 0.2, 0.0]  # S_churn / N = 1/5, below the sqrt(2) - 1 cap


def test_two_heun_steps_by_hand() -> None:
    sd, s_noise = 0.5, 1.002
    t = [3.0, 0.6, 0.0]
    gammas = [0.25, 0.0]
    mask = torch.tensor([[True, False, False]])
    cond = torch.tensor([[0.7, 0.0, 0.0]], dtype=torch.float64)
    latents = torch.tensor([[0.1, -0.4, 0.9]], dtype=torch.float64)
    noise = torch.tensor([[0.3, -1.1, 0.5]], dtype=torch.float64)
    seen: list[tuple[torch.Tensor, float]] = []

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        seen.append((x.clone(), sigma))
        return x * sd ** 2 / (sigma ** 2 + sd ** 2) + 0.1

    out = edm.heun_sample(denoise, latents, t, gammas, s_noise, lambda x: torch.where(mask, cond, x),
                          lambda x: noise.clone(), replace_after_churn=True)

    def d_hand(x: np.ndarray, s: float) -> np.ndarray:
        return x * sd ** 2 / (s ** 2 + sd ** 2) + 0.1

    def rep(x: np.ndarray) -> np.ndarray:
        return np.array([0.7, x[1], x[2]])

    x = rep(latents.numpy()[0] * t[0])
    t_hat = t[0] * (1 + gammas[0])
    x_hat = rep(x + math.sqrt(t_hat ** 2 - t[0] ** 2) * s_noise * noise.numpy()[0])
    d = (x_hat - d_hand(x_hat, t_hat)) / t_hat
    x1 = rep(x_hat + (t[1] - t_hat) * d)
    d2 = (x1 - d_hand(x1, t[1])) / t[1]
    x1 = rep(x_hat + (t[1] - t_hat) * 0.5 * (d + d2))
    d = (x1 - d_hand(x1, t[1])) / t[1]  # second step: no churn, an Euler step to t_N = 0
    x2 = rep(x1 + (0.0 - t[1]) * d)
    np.testing.assert_allclose(out.numpy()[0], x2, rtol=1e-12)
    assert [s for _, s in seen] == pytest.approx([t_hat, t[1], t[1]])
    np.testing.assert_allclose(seen[0][0].numpy()[0], x_hat, rtol=1e-12)


def test_training_record_and_determinism() -> None:
    cfg = dataclasses.replace(TrajectoryDiffusionConfig.for_profile("smoke"), horizon=4, widths=(8,),
                              train_steps=14, batch_size=8, warmup_steps=1)
    data = linear_dataset(episodes=6, horizon=10)
    a = fit_trajectory_diffusion(data, cfg, progress=False, cache=False)
    b = fit_trajectory_diffusion(data, cfg, progress=False, cache=False)
    c = fit_trajectory_diffusion(data, dataclasses.replace(cfg, seed=1), progress=False, cache=False)
    sa, sb, sc = (m.network.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed: the same weights, bit for bit
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    meta = a.meta
    assert [step for step, _ in meta["loss_history"]] == [0, 13]  # every 50 steps and the last one
    assert meta["final_loss"] == pytest.approx(meta["loss_history"][-1][1]) and meta["final_loss"] > 0
    assert meta["parameters"] == sum(p.numel() for p in a.network.parameters())
    assert meta["windows"] == 6 * (10 - 4 + 1)  # Eq. 2: H - L + 1 windows per episode
    assert meta["config_hash"] == cfg.config_hash() and meta["dataset_hash"] == data.content_hash
    assert 0 < meta["train_seconds"] < 600
    norm = a.normalizer
    assert all(getattr(norm, k).dtype == np.float32 for k in ("obs_mean", "obs_std", "act_mean", "act_std"))
    empty = a.sample(np.zeros((0, 3), np.float32), np.zeros((0, 4, 2), np.float32), np.random.default_rng(0))
    assert empty.shape == (0, 5, 3) and empty.dtype == np.float32


def test_normalizer_gives_scaled_unit_spread() -> None:
    data = linear_dataset(episodes=8, horizon=12)
    norm = Normalizer.from_dataset(data, scale=0.5)
    obs = np.concatenate([ep.observations for ep in data.episodes]).astype(np.float64)
    acts = np.concatenate([ep.actions for ep in data.episodes]).astype(np.float64)
    np.testing.assert_allclose(norm.norm_obs(obs).std(axis=0), 0.5, rtol=1e-3)
    np.testing.assert_allclose(norm.norm_obs(obs).mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(norm.norm_act(acts).std(axis=0), 0.5, rtol=1e-3)
    np.testing.assert_allclose(norm.denorm_obs(norm.norm_obs(obs)), obs, rtol=1e-5, atol=1e-5)


def test_relative_windows_round_trip_and_padding() -> None:
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)  # obs = 2 channels, act = 1
    valid = np.array([[True, True, True, True], [True, True, False, False]])
    rel = to_relative(x, 2, valid)
    np.testing.assert_array_equal(rel[:, 0], x[:, 0])  # s_0 stays absolute
    np.testing.assert_array_equal(rel[0, 1:, :2], x[0, 1:, :2] - x[0, :1, :2])
    np.testing.assert_array_equal(rel[1, 2:, :2], 0.0)  # padded steps read as "equal to s_0"
    np.testing.assert_array_equal(rel[..., 2], x[..., 2])  # actions untouched
    np.testing.assert_array_equal(to_absolute(to_relative(x, 2), 2), x)
    assert rel.dtype == np.float32 and x[0, 1, 0] == 3.0  # the input was not modified


def test_window_counts_and_dtypes() -> None:
    counts = windows_per_episode(np.array([10, 4, 2]), 4)
    np.testing.assert_array_equal(counts, [7, 1, 1])
    assert counts.dtype == np.int64
    obs = [np.zeros((h + 1, 2), np.float32) for h in (10, 4, 2)]
    act = [np.zeros((h, 1), np.float32) for h in (10, 4, 2)]
    idx = build_windows(obs, act, 4)
    assert idx.window_episode.dtype == np.int64 and idx.window_start.dtype == np.int64
    np.testing.assert_array_equal(idx.window_episode, [0] * 7 + [1, 2])
    np.testing.assert_array_equal(idx.window_start, list(range(7)) + [0, 0])


def test_each_rng_state_seeds_its_own_noise() -> None:
    """sample() seeds torch from a full 63-bit draw of ``rng``: 40 different generators give 40 different
    samples (a seed range of ~100 values would repeat one with probability > 99%)."""
    cfg = dataclasses.replace(TrajectoryDiffusionConfig.for_profile("smoke"), horizon=4, widths=(8,),
                              train_steps=1, batch_size=8, warmup_steps=1)
    model = fit_trajectory_diffusion(linear_dataset(episodes=4, horizon=8), cfg, progress=False, cache=False)
    s0 = np.zeros((1, 3), np.float32)
    actions = np.zeros((1, 4, 2), np.float32)
    outs = {model.sample(s0, actions, np.random.default_rng(k), num_steps=1).tobytes() for k in range(40)}
    assert len(outs) == 40


def test_mask_padding_changes_training_only_when_windows_are_padded() -> None:
    """Eq. 4 over real states only (mask_padding) differs from the loss over padded ones too, exactly when
    some episodes are shorter than L; otherwise the two settings train the same weights."""
    base = dataclasses.replace(TrajectoryDiffusionConfig.for_profile("smoke"), horizon=4, widths=(8,),
                               train_steps=6, batch_size=8, warmup_steps=1)

    def weights(data, mask: bool) -> dict[str, torch.Tensor]:
        cfg = dataclasses.replace(base, mask_padding=mask)
        return fit_trajectory_diffusion(data, cfg, progress=False, cache=False).network.state_dict()

    padded = linear_dataset(episodes=6, horizon=10, short=3)  # three 2-step episodes: padded windows
    a, b = weights(padded, True), weights(padded, False)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    full = linear_dataset(episodes=6, horizon=10)
    a, b = weights(full, True), weights(full, False)
    assert all(torch.equal(a[k], b[k]) for k in a)
