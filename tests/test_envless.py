"""Datasets with no simulator: a small linear-system ``.npz`` that names no env goes through
``augment generate`` and ``augment train --synthetic`` (and ``augment dydiff``), giving a saved policy and
a run directory that says no evaluation ran; termination comes from the data's terminals, recorded."""

from __future__ import annotations

import json

import d3rlpy
import numpy as np
import pytest

from augment.generators.data_termination import fit_terminal_classifier, termination_source
from stores.datasets import load_dataset
from stores.replay import ReplayStore
from tests import baselines_data
from tests.cli_helpers import run_cli

OBS, ACT = 4, 2


def linear_system_npz(path, episodes: int = 16, steps: int = 40, seed: int = 0):
    """s' = 0.95 s + B a + noise, r = -|s|^2; an episode terminates when |s'_0| > 1 (the system's own
    failure), else times out after ``steps``. No env id anywhere in the file."""
    b = np.array([[0.4, 0.3], [0.2, -0.3], [0.0, 0.5], [-0.3, 0.1]])
    return baselines_data.linear_system_npz(path, b, decay=0.95, episodes=episodes, steps=steps, seed=seed,
                                            fail_above=1.0)


@pytest.fixture(scope="module")
def lin_npz(tmp_path_factory):
    return linear_system_npz(tmp_path_factory.mktemp("envless") / "linear-system.npz")


def test_termination_is_learned_from_the_data(lin_npz) -> None:
    data = load_dataset(str(lin_npz))
    assert data.env_id is None and data.transitions.terminals.sum() > 3
    assert termination_source(data) == "data"
    clf = fit_terminal_classifier(data, seed=0)
    nxt = data.transitions.next_observations
    rule = np.abs(nxt[:, 0]) > 1.0  # the system's own failure rule, which the classifier never saw
    pred = clf(nxt)
    assert clf.train_recall >= 0.8 and (pred == rule).mean() > 0.9


@pytest.mark.slow
def test_generate_then_train_without_an_env(lin_npz, tmp_path, capsys) -> None:
    store, run = tmp_path / "syn.zarr", tmp_path / "run"
    code, out, err = run_cli(["generate", "rollout", "--dataset", str(lin_npz), "--n", "200", "--out",
                           str(store), "--profile", "smoke", "-o", "h=3"], capsys)
    assert code == 0, err
    assert "names no environment" in err
    with ReplayStore.open(store) as s:
        attrs = s.attrs
        assert len(s) == 200
    assert attrs["env_id"] is None and attrs["termination"]["source"] == "data"
    assert attrs["model_diagnostics"]["world_holdout_next_state_mse_raw"] >= 0.0
    code, out, err = run_cli(["train", "--policy", "td3bc", "--dataset", str(lin_npz), "--synthetic",
                              str(store), "--profile", "smoke", "--steps", "40", "--eval-every", "20",
                              "--out", str(run)], capsys)
    assert code == 0, err
    assert "online evaluation skipped" in err
    results = json.loads((run / "results.json").read_text())
    assert results["evaluation"].startswith("skipped") and results["final"] is None
    diag = results["offline_diagnostics"]
    assert set(diag["learner_losses"]) >= {"critic_loss", "actor_loss"} and diag["metrics_rows"] == 2
    assert diag["model"]["world_holdout_next_state_mse_raw"] >= 0.0
    assert json.loads((run / "config.json").read_text())["evaluation"].startswith("skipped")
    policy = d3rlpy.load_learnable(str(run / "model.d3"))
    assert policy.predict(np.zeros((1, OBS), np.float32)).shape == (1, ACT)


@pytest.mark.slow
def test_dydiff_without_an_env(lin_npz, tmp_path, capsys) -> None:
    run = tmp_path / "dy"
    code, out, err = run_cli(["dydiff", "--policy", "td3bc", "--dataset", str(lin_npz), "--profile", "smoke",
                           "--steps", "20", "--out", str(run)], capsys)
    assert code == 0, err
    assert "names no environment" in out + err
    results = json.loads((run / "results.json").read_text())
    assert results["evaluation"].startswith("skipped") and results["rounds"] >= 1
    assert "world_holdout_next_state_mse_raw" in results["offline_diagnostics"]["model"]
    config = json.loads((run / "config.json").read_text())
    assert config["extra"]["termination"]["source"] == "data"
    assert (run / "model.d3").exists()
    with ReplayStore.open(run / "synthetic.zarr") as s:
        assert len(s) > 0
