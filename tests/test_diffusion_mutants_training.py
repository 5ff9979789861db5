"""Shared diffusion training pieces, the model directory and the window layout, pinned by hand.

Covers augment/diffusion/training.py (one optimiser step, the EMA, the EDM training loss with its noise
stream, the step loop and its record), model_dir.py (the JSON layout, tensors-only weights) and the
refusals and dtypes of windows.py; written against the survivors of the augment/diffusion mutation run
(benchmarks/RESULTS.md). Expected values are closed forms written here (EDM Table 1 preconditioning,
lambda(s) of DyDiff Table 3, SGD and EMA updates by hand).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from augment.diffusion import edm, training
from augment.diffusion.model_dir import WEIGHTS, load_weights, read_config, read_meta, write_model_dir
from augment.diffusion.windows import build_windows, pack, to_absolute
from stores.errors import UserInputError


def test_optimizer_step_sets_the_rate_and_clips() -> None:
    p = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    training.optimizer_step(opt, [p], (p ** 2).sum(), 0.1, None)  # grad 2p: p - 0.1 * 2p = 0.8 p
    assert opt.param_groups[0]["lr"] == 0.1
    torch.testing.assert_close(p.detach(), torch.tensor([0.8, 1.6], dtype=torch.float64))
    training.optimizer_step(opt, [p], (p ** 2).sum(), 0.5, 1.0)  # grad (1.6, 3.2) clipped to norm 1
    g = torch.tensor([1.6, 3.2], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), torch.tensor([0.8, 1.6], dtype=torch.float64) - 0.5 * g / g.norm())


def _bn_net(weight: float, mean: float) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for q in net.parameters():
            q.fill_(weight)
        net[1].running_mean.fill_(mean)
    return net


def test_update_ema_moves_parameters_and_copies_buffers_only_when_asked() -> None:
    ema, net = _bn_net(1.0, 0.0), _bn_net(3.0, 5.0)
    training.update_ema(ema, net, 0, 0.999)  # decay at step 0: min(0.999, 1/10) = 0.1
    for q in ema.parameters():
        torch.testing.assert_close(q.detach(), torch.full_like(q, 1.0 + 0.9 * (3.0 - 1.0)))
    assert torch.equal(ema[1].running_mean, torch.zeros(2))  # buffers left alone by default
    training.update_ema(ema, net, 1000, 0.5, copy_buffers=True)  # decay min(0.5, 1001/1010) = 0.5
    for q in ema.parameters():
        torch.testing.assert_close(q.detach(), torch.full_like(q, 2.8 + 0.5 * (3.0 - 2.8)))
    assert torch.equal(ema[1].running_mean, torch.full((2,), 5.0))
    odd = _bn_net(1.0, 0.0)
    odd[1].register_buffer("extra", torch.zeros(1))  # a fourth buffer after the three of BatchNorm
    with pytest.raises(ValueError):
        training.update_ema(odd, net, 0, 0.999, copy_buffers=True)  # buffers must match one to one
    assert training.ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert training.ema_decay_at(10_000, 0.999) == 0.999


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert training.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training.resolve_device("auto") == torch.device("cuda")


def _toy_network(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """F(x_in, c_noise) = 0.5 x_in + c_noise (broadcast over channels and time)."""
    return 0.5 * x + noise[:, None, None]


def test_edm_training_loss_by_hand() -> None:
    """ln s = P_mean + P_std z, n = s * randn, drawn from the generator in that order; the conditions keep
    their clean value; D = c_skip x + c_out F(c_in x, ln(s)/4); mean of lambda(s) (D - y)^2 over covered."""
    params = edm.EDMParams()
    sd = params.sigma_data
    g = torch.Generator().manual_seed(7)
    y = torch.randn(3, 2, 4, generator=g)
    covered = torch.zeros(1, 2, 4, dtype=torch.bool)
    covered[:, 0, 1:] = True
    cond = torch.zeros(1, 2, 4, dtype=torch.bool)
    cond[:, 1] = True
    cond[:, 0, 0] = True
    got = training.edm_training_loss(_toy_network, y, params, torch.Generator().manual_seed(11), covered,
                                     cond)

    ref = torch.Generator().manual_seed(11)
    z = torch.randn(3, generator=ref).double()
    noise = torch.randn(3, 2, 4, generator=ref).double()
    total, count = 0.0, 0
    for b in range(3):
        s = math.exp(params.p_mean + params.p_std * float(z[b]))
        for c in range(2):
            for t in range(4):
                clean = float(y[b, c, t])
                x = clean if bool(cond[0, c, t]) else clean + s * float(noise[b, c, t])
                x_in = x / math.sqrt(s * s + sd * sd)
                f = 0.5 * x_in + math.log(s) / 4.0
                d = sd * sd / (s * s + sd * sd) * x + s * sd / math.sqrt(s * s + sd * sd) * f
                if bool(covered[0, c, t]):
                    total += (s * s + sd * sd) / (s * sd) ** 2 * (d - clean) ** 2
                    count += 1
    assert float(got) == pytest.approx(total / count, rel=1e-5)


class _Scale(nn.Module):
    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.w * x


def test_fit_edm_passes_each_step_and_shows_no_bar_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    net, ema = _Scale(0.2), _Scale(0.2)
    seen: list[int] = []
    y = torch.ones(2, 1, 3)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, None]:
        seen.append(step)
        return y, torch.ones(1, 1, 3, dtype=torch.bool), None

    history, running = training.fit_edm(net, ema, torch.optim.SGD(net.parameters(), lr=0.01), batch,
                                        edm.EDMParams(), torch.Generator().manual_seed(0), first_step=2,
                                        train_steps=5, lr_at=lambda step: 0.01, grad_clip=None, ema_decay=0.9,
                                        progress=False)
    assert seen == [2, 3, 4]
    assert [s for s, _ in history] == [4] and history[0][1] == running and math.isfinite(running)
    assert float(ema.w.detach()) != 0.2  # the EMA followed the steps
    err = capsys.readouterr().err
    assert err == ""
    training.fit_edm(net, ema, torch.optim.SGD(net.parameters(), lr=0.01), batch, edm.EDMParams(),
                     torch.Generator().manual_seed(0), first_step=0, train_steps=2, lr_at=lambda step: 0.01,
                     grad_clip=None, ema_decay=0.9, desc="toy EDM", progress=True)
    assert "toy EDM" in capsys.readouterr().err


def test_fit_steps_smooths_and_records_every_fifty_steps() -> None:
    p = nn.Parameter(torch.zeros(1))
    rates: list[int] = []
    history, running = training.fit_steps(
        nn.ParameterList([p]), torch.optim.SGD([p], lr=0.1), lambda step: p.sum() * 0.0 + float(step),
        first_step=0, train_steps=101, lr_at=lambda step: rates.append(step) or 0.1, grad_clip=None,
        rate=0.02, every=50, progress=False)
    expected, recorded = math.nan, []
    for k in range(101):
        expected = float(k) if k == 0 else 0.98 * expected + 0.02 * k
        if k in (0, 50, 100):
            recorded.append((k, expected))
    assert rates == list(range(101))
    assert [s for s, _ in history] == [0, 50, 100]
    for (_, got), (_, want) in zip(history, recorded, strict=True):
        assert got == pytest.approx(want, rel=1e-12)
    assert running == pytest.approx(recorded[-1][1], rel=1e-12)


def test_model_dir_layout(tmp_path) -> None:
    net = nn.Linear(2, 1)
    d = write_model_dir(tmp_path / "m", {"a": 1, "b": [1, 2]}, {"n": "x"}, net)
    assert d == tmp_path / "m"
    assert (d / "config.json").read_text() == '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}'
    assert (d / "meta.json").read_text() == '{\n  "n": "x"\n}'
    assert read_config(d) == {"a": 1, "b": [1, 2]} and read_meta(d) == {"n": "x"}
    other = load_weights(nn.Linear(2, 1), d)
    assert torch.equal(other.weight, net.weight) and torch.equal(other.bias, net.bias)


CALLS: list[str] = []


def _side_effect(tag: str) -> torch.Tensor:
    CALLS.append(tag)
    return torch.zeros(1, 2)


class _Payload:
    """Unpickles by calling :func:`_side_effect`: code that a tensors-only load must not run."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_side_effect, ("ran",))


def test_load_weights_refuses_pickled_code(tmp_path) -> None:
    tmp_path.mkdir(exist_ok=True)
    torch.save({"weight": _Payload(), "bias": torch.zeros(1)}, tmp_path / WEIGHTS)
    CALLS.clear()
    with pytest.raises(pickle.UnpicklingError):
        load_weights(nn.Linear(2, 1), tmp_path)
    assert CALLS == []


def test_window_refusals_and_dtypes() -> None:
    empty = "^cannot build diffusion training windows from an empty dataset$"
    with pytest.raises(UserInputError, match=empty):
        build_windows([], [], 4)
    with pytest.raises(UserInputError, match="^the diffusion horizon L must be >= 1, got 0$"):
        build_windows([np.zeros((3, 2), np.float32)], [np.zeros((2, 1), np.float32)], 0)
    with pytest.raises(UserInputError, match=r"^actions have shape \(2, 3, 1\), expected \(2, 2, act\)"):
        pack(np.zeros((2, 3, 2)), np.zeros((2, 3, 1)))
    x = np.arange(2 * 3 * 3, dtype=np.float64).reshape(2, 3, 3)
    out = to_absolute(x, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], x[:, 0])
    np.testing.assert_array_equal(out[:, 1:, :2], x[:, 1:, :2] + x[:, :1, :2])
    np.testing.assert_array_equal(out[..., 2], x[..., 2])
    packed = pack(np.ones((1, 3, 2), np.float64), np.full((1, 2, 1), 2.0))
    assert packed.dtype == np.float32 and packed[0, :, 2].tolist() == [2.0, 2.0, 0.0]
    assert packed.tolist() == [[[1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [1.0, 1.0, 0.0]]]
