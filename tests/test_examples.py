"""The three scripts in examples/ run at smoke size (each script's ``main(argv)``, in this process)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from stores.sources import write_npz
from tests.baselines_data import hopper_random_dataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("examples") / "tiny-hopper.npz"
    write_npz(hopper_random_dataset(episodes=10, seed=4), path)
    return str(path)


def _main(name: str):
    return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"]


@pytest.mark.slow
def test_d3rlpy_fit_with_online_dydiff(tiny_npz, capsys) -> None:
    summary = _main("d3rlpy_online_dydiff.py")(["--dataset", tiny_npz, "--profile", "smoke", "--steps", "40",
                                                "--every", "20", "--rollout-batch", "8"])
    assert summary["updates"] == 40 and summary["rounds"] == 3  # before training, at 20 and 40
    assert summary["synthetic_transitions"] > 0
    assert "synthetic_transitions" in capsys.readouterr().out


@pytest.mark.slow
def test_corl_style_td3bc_on_exported_hdf5(tiny_npz, tmp_path, capsys) -> None:
    hdf5 = tmp_path / "real_plus_synthetic.hdf5"
    result = _main("corl_td3bc.py")(["--make-data", "--dataset", tiny_npz, "--profile", "smoke", "--n", "300",
                                     "--hdf5", str(hdf5), "--steps", "30", "--eval-episodes", "1"])
    import h5py

    with h5py.File(hdf5, "r") as f:
        real = int(len(f["rewards"])) - 300
    assert real > 0 and result["transitions"] == real + 300
    assert "return" in result
    out = capsys.readouterr().out
    assert "rollout 300" in out and f"real {real:,}" in out


@pytest.mark.slow
def test_minari_export_then_load(tiny_npz, capsys) -> None:
    summary = _main("minari_export.py")(["--dataset", tiny_npz, "--profile", "smoke", "--n", "120",
                                         "--dataset-id", "augment/test-rollout-v0", "--overwrite"])
    assert summary["steps"] == summary["steps_iterated"] == 120
    assert summary["episodes"] >= 120 / 5  # rollouts of h = 5 steps at most
    assert "Hopper-v5" in capsys.readouterr().out
