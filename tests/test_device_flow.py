"""Where the planners and the world model train and act (augment/planners/devices.py, the planners'
``device`` field, ``fit_world_model(device=...)``).

On this CPU machine: ``auto`` resolves to the CPU and every network, the world model's report and AEPO's
d3rlpy IQL end up there; CUDA asked for is one clear line (construction, ``planner_config``, the world
model, the ``augment plan`` command) before any data is read or trained; the device stays out of the
cache keys (pinned to the keys the code had before planners had a device). With CUDA forced "available"
(torch here has none) each trainer's first move of its networks fails, which shows the resolved device
reaches them. On a CUDA machine one test fits tiny planners and checks they train and act on the GPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from augment.planners.base import planner_class
from augment.planners.devices import d3rlpy_device, normal_like, randint_on
from augment.planners.run import planner_config
from augment.world import WorldModelConfig, fit_world_model, train_world_model
from augment.world.model import cache_dir, checked_device
from stores.errors import UserInputError
from tests.baselines_data import planner_dataset
from tests.cli_helpers import run_cli

CUDA = torch.cuda.is_available()
no_cuda = pytest.mark.skipif(CUDA, reason="checks what happens on a machine without CUDA")
PLANNERS = ("dmemm", "td", "aepo")
#: Smoke configs shrunk further (a few units per layer, 2 training steps each).
TINY: dict[str, dict[str, Any]] = {
    "dmemm": {"widths": (4, 8), "batch_size": 4, "diffusion_steps": 3, "train_steps": 2},
    "td": {"gpt_embed": 4, "gpt_heads": 2, "unet_widths": (4, 8), "inverse_hidden": (8, 8),
           "critic_hidden": (8, 8), "batch_size": 4, "train_steps": 2},
    "aepo": {"eps_width": 8, "eps_blocks": 1, "eps_batch": 16, "eps_steps": 2, "iql_hidden": (8, 8),
             "iql_actor_hidden": (8, 8), "iql_batch": 16, "iql_steps": 2, "energy_hidden": (8, 8),
             "energy_batch": 16, "energy_steps": 2, "table_points": 4, "table_samples": 32},
}
TINY_WORLD = {"members": 3, "elites": 2, "hidden": (8, 8), "reward_hidden": (8, 8), "batch_size": 16,
              "reward_batch_size": 16, "max_epochs": 1, "steps_per_epoch": 2, "reward_max_epochs": 1,
              "reward_steps_per_epoch": 2}
#: cache_key() of each planner's paper / smoke config for hopper-medium-replay, computed by the code before
#: the planners had a device field: a changed key would retrain every cached planner.
KEYS_BEFORE_DEVICES = {
    ("dmemm", "paper"): "768ec44792a5", ("dmemm", "smoke"): "b61c9f495bb0",
    ("td", "paper"): "936232060aa1", ("td", "smoke"): "50f11010fed5",
    ("aepo", "paper"): "aa7fcb891efd", ("aepo", "smoke"): "2f7249c9d022",
}


@pytest.fixture(scope="module")
def dataset() -> Any:
    return planner_dataset()


def tiny_planner(name: str, device: str = "auto") -> Any:
    cls = planner_class(name)
    config = dataclasses.replace(cls.default_config("smoke", ""), **TINY[name], device=device)
    planner = cls(config, progress=False)
    planner.world_overrides = dict(TINY_WORLD)
    return planner


def networks(name: str, planner: Any) -> dict[str, torch.nn.Module]:
    if name == "dmemm":
        return {"unet": planner.network, "T-hat": planner.world_grad.dynamics,
                "R-hat": planner.world_grad.reward_model}
    if name == "td":
        return {k: getattr(planner, k) for k in ("gpt", "unet", "inverse_dynamics", "critic")}
    return {"eps_theta": planner.models.eps_net, "energy": planner.models.energy_net}


def devices_of(module: torch.nn.Module) -> set[str]:
    return {t.device.type for t in [*module.parameters(), *module.buffers()]}


# ------------------------------------------------------------------------------------ resolution

def test_auto_resolves_to_what_torch_sees() -> None:
    assert checked_device("auto") == torch.device("cuda" if CUDA else "cpu")
    assert checked_device("cpu") == torch.device("cpu")
    assert checked_device(torch.device("cpu")) == torch.device("cpu")
    for name in PLANNERS:
        cls = planner_class(name)
        assert cls.default_config("smoke", "").device == "auto"
        planner = cls(cls.default_config("smoke", ""), progress=False)
        assert planner.device == torch.device("cuda" if CUDA else "cpu")


@pytest.mark.skipif(CUDA, reason="auto is the CPU only without CUDA")
def test_world_model_report_names_the_resolved_device(dataset: Any) -> None:
    cfg = dataclasses.replace(WorldModelConfig.for_profile("smoke"), **TINY_WORLD)
    model = train_world_model(dataset, cfg, progress=False)  # device defaults to auto
    assert model.report["device"] == "cpu"
    assert devices_of(model.dynamics) == devices_of(model.reward) == {"cpu"}  # predicts on the CPU


def test_d3rlpy_device_names() -> None:
    assert d3rlpy_device(torch.device("cpu")) == "cpu:0"
    assert d3rlpy_device(torch.device("cuda")) == "cuda:0"
    assert d3rlpy_device(torch.device("cuda", 1)) == "cuda:1"


def test_noise_is_drawn_on_the_generator_and_moved() -> None:
    x = torch.zeros(3, 4, dtype=torch.float64)
    got = normal_like(x, torch.Generator().manual_seed(7))
    want = torch.randn(3, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert got.dtype == torch.float64 and got.device == x.device and torch.equal(got, want)
    ints = randint_on(1, 6, (50,), torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(ints, torch.randint(1, 6, (50,), generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name, message", [("gpu", "is not a torch device"),
                                           ("meta", "only cpu and cuda are supported")])
def test_a_name_that_is_not_a_training_device_is_one_line(name: str, message: str) -> None:
    with pytest.raises(UserInputError, match=message) as err:
        planner_config("td", "smoke", "", {"device": name})
    assert "\n" not in str(err.value) and str(err.value).startswith(f"td: device '{name}'")


# ------------------------------------------------------------------------------------ cuda without CUDA

@no_cuda
@pytest.mark.parametrize("name", PLANNERS)
def test_cuda_without_cuda_is_one_clear_line(name: str) -> None:
    cls = planner_class(name)
    config = dataclasses.replace(cls.default_config("smoke", ""), device="cuda")
    for make in (lambda: cls(config, progress=False),
                 lambda: planner_config(name, "smoke", "", [("device", "cuda")])):
        with pytest.raises(UserInputError) as err:
            make()
        text = str(err.value)
        assert "\n" not in text and text.startswith(f"{name}: device 'cuda': this machine has no CUDA")
        assert "use cpu or auto" in text


@no_cuda
def test_world_model_cuda_without_cuda_fails_before_training(dataset: Any) -> None:
    cfg = dataclasses.replace(WorldModelConfig.for_profile("smoke"), **TINY_WORLD)
    with pytest.raises(UserInputError, match="^world model device 'cuda:0': this machine has no CUDA"):
        fit_world_model(dataset, cfg, progress=False, cache=True, device="cuda:0")
    assert not cache_dir(dataset, cfg).exists()  # nothing trained, nothing written
    with pytest.raises(UserInputError, match="no CUDA device"):
        train_world_model(dataset, cfg, progress=False, device="cuda")


@no_cuda
def test_augment_plan_with_cuda_fails_before_reading_the_dataset(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    code, _, err = run_cli(["plan", "aepo", "--dataset", str(tmp_path / "missing.npz"), "--profile",
                            "smoke", "--set", "device=cuda", "--quiet"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("error: aepo: device 'cuda': this machine has no CUDA device")


@no_cuda
def test_the_resolved_device_reaches_every_trainer(monkeypatch: pytest.MonkeyPatch, dataset: Any) -> None:
    """torch here cannot place a tensor on CUDA: with CUDA reported available, ``auto`` resolves to it
    and each trainer's first move of its networks raises torch's own error."""
    from augment.planners.aepo_train import train_aepo

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    dmemm, td, aepo = (tiny_planner(n) for n in PLANNERS)
    assert {p.device for p in (dmemm, td, aepo)} == {torch.device("cuda")}
    for p in (dmemm, td, aepo):
        p._attach_dataset(dataset)
    cfg = dataclasses.replace(WorldModelConfig.for_profile("smoke"), **TINY_WORLD)
    attempts = {"DMEMM U-Net": dmemm._build_network, "TD networks": td.build_networks,
                "AEPO stages": lambda: train_aepo(dataset, aepo.config, progress=False, device=aepo.device),
                "world model (auto)": lambda: train_world_model(dataset, cfg, progress=False),
                "DMEMM world model": lambda: dmemm.fit_world(dataset)}
    for what, attempt in attempts.items():
        with pytest.raises((AssertionError, RuntimeError), match="CUDA|cuda"):
            attempt()
            pytest.fail(f"{what} did not try to use CUDA")


# ------------------------------------------------------------------------------------ the networks on CPU

@pytest.mark.skipif(CUDA, reason="auto is the CPU only without CUDA")
@pytest.mark.parametrize("name", PLANNERS)
def test_auto_trains_and_acts_on_the_cpu(name: str, dataset: Any, tmp_path: Path) -> None:
    planner = tiny_planner(name)
    planner.fit(dataset, cache=False)
    nets = networks(name, planner)
    for key, net in nets.items():
        assert devices_of(net) == {"cpu"}, key
    if name == "aepo":
        assert planner.models.device == torch.device("cpu") and planner.models.iql.impl.device == "cpu:0"
    if name == "dmemm":
        assert planner.world.report["device"] == "cpu"  # the resolved device, not "auto"
    obs = dataset.transitions.observations[:3]
    actions = planner.act(obs)
    assert actions.shape == (3, dataset.action_size) and np.isfinite(actions).all()
    # a saved planner loads with the loader's own device setting, not the saved one
    planner.save(tmp_path / name)
    other = tiny_planner(name, device="cpu")
    other.load(tmp_path / name)
    assert other.config.device == "cpu" and planner.config.device == "auto"
    loaded = {"unet": other.network} if name == "dmemm" else networks(name, other)  # no world before fit
    assert all(devices_of(net) == {"cpu"} for net in loaded.values())


# ------------------------------------------------------------------------------------ cache keys

@pytest.mark.parametrize("name", PLANNERS)
def test_the_device_is_not_in_the_cache_key(name: str) -> None:
    cls = planner_class(name)
    for profile in ("paper", "smoke"):
        base = cls.default_config(profile, "hopper-medium-replay")
        keys = {cls(dataclasses.replace(base, device=d), progress=False).cache_key() for d in ("auto", "cpu")}
        assert keys == {KEYS_BEFORE_DEVICES[(name, profile)]}, (name, profile)
        cuda = dataclasses.replace(base, device="cuda")
        assert "device" not in cuda.training_json() and cuda.config_hash() == base.config_hash()
        assert cuda.differences(base) == []  # not reported as a departure from the paper settings


# ------------------------------------------------------------------------------------ on a CUDA machine

@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", PLANNERS)
def test_auto_trains_and_acts_on_cuda(name: str, dataset: Any) -> None:
    planner = tiny_planner(name)
    planner.fit(dataset, cache=False)
    for key, net in networks(name, planner).items():
        assert devices_of(net) == {"cuda"}, key
    if name == "aepo":
        assert str(planner.models.iql.impl.device).startswith("cuda")
    if name == "dmemm":
        assert planner.world.report["device"].startswith("cuda")
    actions = planner.act(dataset.transitions.observations[:3])
    assert actions.shape == (3, dataset.action_size) and np.isfinite(actions).all()
    batch = planner.generate(4, rng=np.random.default_rng(0))
    assert batch.batch_size >= 1 and np.isfinite(batch.observations).all()
