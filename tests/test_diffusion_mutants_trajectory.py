"""DyDiff's trajectory diffusion model (augment/diffusion/trajectory.py): training resume, SDEdit starts,
the network builder, the profiles of docs/diffusion.md and the user-facing text.

Written against the survivors of the augment/diffusion mutation run (benchmarks/RESULTS.md) and the
features it found untested: ``_load_resume`` / ``resume_path`` and ``sample(init_states=, start_sigma=)``.
The SDEdit test recomputes a one-step start by hand from the EDM formulas (Table 1 preconditioning) with
the model's own network F and normaliser arrays; the resume tests compare with an uninterrupted run.
Models are tiny (horizon 4, one U-Net level of width 8, a few steps), so each trains in well under 1 s.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from augment.diffusion import edm
from augment.diffusion.trajectory import (
    Normalizer,
    TrajectoryDiffusionConfig,
    _load_resume,
    build_network,
    dataset_windows,
    fit_trajectory_diffusion,
    resume_path,
    train_denoiser,
)
from augment.nn.unet import TemporalUNet, count_parameters
from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset

OBS, ACT, L = 3, 2, 4


def _dataset() -> OfflineDataset:
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(3):
        obs = np.cumsum(rng.standard_normal((13, OBS)), axis=0).astype(np.float32)
        episodes.append(Episode(observations=obs, actions=rng.uniform(-1, 1, (12, ACT)).astype(np.float32),
                                rewards=np.zeros(12, np.float32), terminated=np.zeros(12, bool),
                                truncated=np.eye(1, 12, 11, dtype=bool)[0]))
    return OfflineDataset(name="toy-walk", episodes=tuple(episodes), env_id=None)


def _config(**kw: object) -> TrajectoryDiffusionConfig:
    base = dataclasses.replace(TrajectoryDiffusionConfig.for_profile("smoke"), horizon=L, widths=(8,),
                               train_steps=4, batch_size=8, warmup_steps=1, device="cpu")
    return dataclasses.replace(base, **kw)


def _equal_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------------------- resume

def test_load_resume_reads_only_usable_states(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    assert _load_resume(path, 10) is None  # no file
    path.write_bytes(b"not a torch file")
    assert _load_resume(path, 10) is None  # torn or foreign: train from scratch
    torch.save({"step": 5, "network": {"w": torch.ones(2)}}, path)
    state = _load_resume(path, 5)
    assert state is not None and state["step"] == 5 and torch.equal(state["network"]["w"], torch.ones(2))
    assert _load_resume(path, 9) is not None
    assert _load_resume(path, 4) is None  # trained longer than asked: not a prefix of this run


def test_resume_path_is_shared_by_budgets_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path))
    ds = _dataset()
    cfg = _config()
    family = dataclasses.replace(cfg, train_steps=0).config_hash()
    assert resume_path(ds, cfg) == tmp_path / "diffusion-resume" / f"{ds.content_hash}-{family}.pt"
    assert resume_path(ds, dataclasses.replace(cfg, train_steps=99)) == resume_path(ds, cfg)
    assert resume_path(ds, dataclasses.replace(cfg, lr=3e-3)) != resume_path(ds, cfg)


def test_a_longer_saved_run_is_not_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state of 6 steps cannot continue to 3: the 3-step run trains from scratch, equals a fresh run and
    replaces the saved state with its own (atomically: no temporary file is left)."""
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path))
    ds = _dataset()
    fit_trajectory_diffusion(ds, _config(train_steps=6), progress=False, resumable=True)
    path = resume_path(ds, _config())
    assert int(torch.load(path, weights_only=False)["step"]) == 6
    short = fit_trajectory_diffusion(ds, _config(train_steps=3), progress=False, resumable=True)
    assert short.meta["resumed_from_step"] == 0 and not short.from_cache
    fresh = fit_trajectory_diffusion(ds, _config(train_steps=3), progress=False, cache=False)
    assert _equal_weights(short.network, fresh.network)
    assert int(torch.load(path, weights_only=False)["step"]) == 3
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_train_denoiser_resumed_at_its_own_step_changes_nothing() -> None:
    ds = _dataset()
    cfg = _config(train_steps=3)
    normalizer = Normalizer.from_dataset(ds, cfg.edm.sigma_data)
    windows = dataset_windows(ds, normalizer, cfg.horizon)
    ema, record, state = train_denoiser(build_network(cfg, OBS + ACT), windows, cfg, progress=False)
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())
    assert state["step"] == 3 and record["resumed_from_step"] == 0
    again, record2, state2 = train_denoiser(build_network(cfg, OBS + ACT), windows, cfg, progress=False,
                                            resume=state)
    assert record2["resumed_from_step"] == 3 and record2["loss_history"] == record["loss_history"]
    assert _equal_weights(again, ema) and state2["step"] == 3
    assert not any(p.requires_grad for p in again.parameters())
    with pytest.raises(UserInputError, match="^cannot resume a denoiser trained 4 steps to 3 steps$"):
        train_denoiser(build_network(cfg, OBS + ACT), windows, cfg, progress=False,
                       resume=dict(state, step=4))


# ----------------------------------------------------------------------------------------- SDEdit start

def _edm_denoise(network: nn.Module, x: torch.Tensor, s: float, sd: float) -> torch.Tensor:
    """EDM Eq. 7 by hand: c_skip x + c_out F(c_in x; ln(s)/4)."""
    noise = torch.full((x.shape[0],), math.log(s) / 4.0, dtype=x.dtype)
    f = network(x / math.sqrt(s * s + sd * sd), noise)
    return sd * sd / (s * s + sd * sd) * x + s * sd / math.sqrt(s * s + sd * sd) * f


@pytest.mark.parametrize("relative", [False, True])
def test_sdedit_start_by_hand(relative: bool) -> None:
    """start_sigma below t_{N-1} = sigma_min: the run is one Euler step from t_{N-1} to 0, started at
    init + t_{N-1} eps with the conditions replaced, so the result is D(x; sigma_min) with the conditions."""
    ds = _dataset()
    cfg = _config(train_steps=3, relative_states=relative,
                  edm=dataclasses.replace(edm.EDMParams(), num_steps=3))
    model = fit_trajectory_diffusion(ds, cfg, progress=False, cache=False)
    ep = ds.episodes
    s0 = np.stack([ep[0].observations[2], ep[1].observations[0]])
    actions = np.stack([ep[0].actions[2:2 + L], ep[1].actions[:L]])
    init = np.stack([ep[2].observations[:L + 1], ep[1].observations[3:4 + L]]) + 0.1
    calls: list[int] = []
    hook = model.network.register_forward_hook(lambda m, i, o: calls.append(int(o.shape[0])))
    out = model.sample(s0, actions, np.random.default_rng(5), init_states=init, start_sigma=0.01)
    hook.remove()
    assert calls == [2] and model.network_evaluations_for(0.01) == 1

    norm = model.normalizer
    sd, t_last = cfg.edm.sigma_data, cfg.edm.sigma_min
    x0 = np.zeros((2, OBS + ACT, L + 1), np.float32)
    states = (init - norm.obs_mean) / norm.obs_std
    if relative:
        states[:, 1:] -= states[:, :1]
    x0[:, :OBS] = states.transpose(0, 2, 1)
    x0[:, OBS:, :L] = ((actions - norm.act_mean) / norm.act_std).transpose(0, 2, 1)
    mask = np.zeros_like(x0, dtype=bool)
    mask[:, :OBS, 0] = True
    mask[:, OBS:] = True
    cond = np.zeros_like(x0)
    cond[:, :OBS, 0] = (s0 - norm.obs_mean) / norm.obs_std
    cond[:, OBS:] = x0[:, OBS:]
    seed = int(np.random.default_rng(5).integers(0, 2 ** 63 - 1))
    z = torch.randn((2, OBS + ACT, L + 1), generator=torch.Generator().manual_seed(seed))
    x = np.where(mask, cond, x0 + t_last * z.numpy())
    with torch.no_grad():
        d = _edm_denoise(model.network, torch.as_tensor(x), t_last, sd).numpy()
    d = np.where(mask, cond, d)[:, :OBS].transpose(0, 2, 1)
    if relative:
        d[:, 1:] += d[:, :1]
    want = d * norm.obs_std + norm.obs_mean
    want[:, 0] = s0
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    assert out.dtype == np.float32 and np.array_equal(out[:, 0], s0)


def test_sdedit_start_costs_and_refusals() -> None:
    """N = 3: t = (80, t_1, 0.002, 0) with t_1 = (80^(1/7) + (0.002^(1/7) - 80^(1/7)) / 2)^7 = 2.5..;
    a start at sigma 3 runs the last two levels: 2 (3 - 1) - 1 = 3 denoiser calls (full run: 5)."""
    cfg = _config(train_steps=1, edm=dataclasses.replace(edm.EDMParams(), num_steps=3))
    model = fit_trajectory_diffusion(_dataset(), cfg, progress=False, cache=False)
    t1 = (80 ** (1 / 7) + (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 2) ** 7
    assert 0.5 < t1 < 3.0
    assert model.network_evaluations_for(3.0) == 3 and model.network_evaluations_for(None) == 5
    assert model.network_evaluations_for(100.0) == 5
    s0 = np.zeros((1, OBS), np.float32)
    actions = np.zeros((1, L, ACT), np.float32)
    init = np.ones((1, L + 1, OBS), np.float32)
    calls: list[int] = []
    hook = model.network.register_forward_hook(lambda m, i, o: calls.append(1))
    model.sample(s0, actions, np.random.default_rng(0), init_states=init, start_sigma=3.0)
    assert len(calls) == 3
    calls.clear()
    model.sample(s0, actions, np.random.default_rng(0))
    assert len(calls) == 5
    hook.remove()
    with pytest.raises(UserInputError, match=r"^init_states have shape \(1, 4, 3\), expected \(1, 5, 3\)$"):
        model.sample(s0, actions, np.random.default_rng(0), init_states=init[:, :L], start_sigma=1.0)
    both = r"^an SDEdit start needs both init_states and start_sigma \(or neither\)$"
    with pytest.raises(UserInputError, match=both):
        model.sample(s0, actions, np.random.default_rng(0), start_sigma=1.0)
    with pytest.raises(UserInputError, match=r"^the SDEdit start sigma must be > 0 \(got 0.0\)$"):
        model.sample(s0, actions, np.random.default_rng(0), init_states=init, start_sigma=0.0)


# ----------------------------------------------------------------------------------------- network, config

def test_build_network_uses_the_config_widths_activation_and_seed() -> None:
    cfg = _config(widths=(8, 16), activation="silu", kernel=3, seed=3)
    before = torch.get_rng_state()
    net = build_network(cfg, OBS + ACT)
    assert torch.equal(before, torch.get_rng_state())  # the global RNG is untouched
    kinds = {type(m) for m in net.modules()}
    assert nn.SiLU in kinds and nn.Mish not in kinds
    torch.manual_seed(3)
    direct = TemporalUNet(OBS + ACT, (8, 16), kernel=3, act="silu")
    assert _equal_weights(net, direct) and net.levels == 2
    assert count_parameters(net) == sum(p.numel() for p in direct.parameters())


def test_profiles_match_the_documented_table() -> None:
    """docs/diffusion.md, "Profiles": L, U-Net widths (parameters at obs 11 + act 3), N, steps x batch, lr."""
    smoke = TrajectoryDiffusionConfig.for_profile("smoke")
    cpu = TrajectoryDiffusionConfig.for_profile("cpu")
    paper = TrajectoryDiffusionConfig.for_profile("paper")
    assert (smoke.horizon, smoke.widths, smoke.edm.num_steps) == (8, (16, 32), 6)
    assert (smoke.train_steps, smoke.batch_size, smoke.lr) == (40, 32, 1e-3)
    assert (cpu.horizon, cpu.widths, cpu.edm) == (32, (32, 64, 128), edm.EDMParams())
    assert (cpu.train_steps, cpu.batch_size, cpu.lr) == (3000, 256, 5e-4)
    assert (paper.horizon, paper.widths, paper.train_steps, paper.batch_size, paper.lr) == (
        100, (128, 256, 512, 1024), 400_000, 256, 2e-4)
    assert count_parameters(build_network(cpu, 14)) == pytest.approx(1.1e6, rel=0.05)
    assert count_parameters(build_network(smoke, 14)) == pytest.approx(77e3, rel=0.05)


def test_scaling_note_and_validation_messages() -> None:
    cpu = TrajectoryDiffusionConfig.for_profile("cpu")
    assert cpu.scaling_note() == (
        "diffusion model (profile 'cpu'): L 100->32, U-Net widths (128, 256, 512, 1024)->(32, 64, 128), "
        "train steps 400000->3000; scaled down so training and sampling fit a CPU (use --profile paper "
        "on a GPU).")
    bad = {"^diffusion horizon L must be >= 1, got 0$": {"horizon": 0},
           r"^U-Net widths must be positive, got \(\)$": {"widths": ()},
           "^train_steps must be >= 0 and batch_size >= 1$": {"batch_size": 0},
           "^the number of Heun steps N must be >= 1, got 0$": {"edm": dataclasses.replace(edm.EDMParams(),
                                                                                          num_steps=0)}}
    for message, change in bad.items():
        with pytest.raises(UserInputError, match=message):
            dataclasses.replace(cpu, **change).validate()


def test_normalised_actions_are_float32() -> None:
    norm = Normalizer(obs_mean=np.zeros(1, np.float32), obs_std=np.ones(1, np.float32),
                      act_mean=np.array([0.5, -1.0], np.float32), act_std=np.array([2.0, 0.25], np.float32))
    out = norm.norm_act(np.array([[1.5, -0.5]], dtype=np.float64))
    assert out.dtype == np.float32 and out.tolist() == [[0.5, 2.0]]


def test_training_prints_the_note_and_a_bar_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    ds = _dataset()
    cfg = _config(train_steps=2)
    fit_trajectory_diffusion(ds, cfg, cache=False)
    captured = capsys.readouterr()
    assert captured.out.strip() == cfg.scaling_note()
    assert "diffusion (Eq. 4)" in captured.err
    fit_trajectory_diffusion(ds, cfg, progress=False, cache=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
