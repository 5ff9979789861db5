"""Comparisons: statistics as pure functions; arms x seeds end to end; collecting runs; the CLI."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from baselines_data import hopper_random_dataset
from click.testing import CliRunner
from scipy import stats as sps

from baselines.compare import (
    Arm,
    bootstrap_ci,
    compare,
    difference_ci,
    iqm,
    register_arm,
    registered_arms,
    report,
    resolve_arm,
    summarise,
    train_request,
    welch_p,
)
from stores.errors import UserInputError
from stores.replay import ReplayStore
from stores.schema import TrajectoryBatch
from stores.sources import write_npz

TINY = {"steps": 8, "eval_every": 4, "eval_episodes": 1, "batch_size": 32, "checkpoint_every": 8}


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 4.0, 5.0])) == pytest.approx(2.5)
    assert iqm(np.array([3.0, 5.0])) == 4.0


def test_bootstrap_and_welch() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(10, 1, size=30)
    y = rng.normal(8, 1, size=30)
    lo, hi = bootstrap_ci(x, np.mean)
    assert lo < x.mean() < hi and hi - lo < 1.5
    dlo, dhi = difference_ci(x, y)
    assert 0 < dlo < x.mean() - y.mean() < dhi
    assert welch_p(x, y) == pytest.approx(sps.ttest_ind(x, y, equal_var=False).pvalue)
    assert np.isnan(welch_p(x[:1], y))
    s = summarise("a", [0, 1, 2], np.array([1.0, 2.0, 3.0]), reference=np.array([0.0, 1.0, 2.0]))
    assert s.mean == 2.0 and s.std == 1.0 and s.diff == 1.0


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(hopper_random_dataset(episodes=8, seed=4), tmp_path_factory.mktemp("d") / "hop.npz")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic store holding the dataset's own episodes cut to windows of 5 steps (real physics)."""
    ds = hopper_random_dataset(episodes=6, seed=9)
    L = 5  # noqa: N806
    eps = [ep for ep in ds.episodes if len(ep) >= L]
    n = len(eps)
    batch = TrajectoryBatch(
        observations=np.stack([ep.observations[:L + 1] for ep in eps]),
        actions=np.stack([ep.actions[:L] for ep in eps]), rewards=np.stack([ep.rewards[:L] for ep in eps]),
        terminals=np.zeros((n, L), bool), lengths=np.full(n, L, np.int64), generator="windows",
        round=np.zeros(n, np.int64), learner_step=np.zeros(n, np.int64),
        filter_score=np.full(n, np.nan, np.float32), start_index=np.full(n, -1, np.int64))
    path = tmp_path_factory.mktemp("s") / "syn.zarr"
    with ReplayStore.create(path, observation_size=11, action_size=3) as store:
        store.append(batch)
    return path


def test_two_arms_two_seeds_write_tables_and_plots(data_path: Path, store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = compare(["base", f"synthetic:{store_path}"], dataset=str(data_path), learner="td3bc",
                  seeds=[0, 1], profile="smoke", out_dir=out, overrides=dict(TINY), progress=False)
    for key in ("markdown", "csv", "json", "curves", "finals"):
        assert res.files[key].exists() and res.files[key].stat().st_size > 0, key
    assert res.files["curves"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = res.files["markdown"].read_text()
    assert "| base | 2 |" in md and "| synthetic:syn.zarr | 2 |" in md and "Welch p" in md
    js = json.loads(res.files["json"].read_text())
    assert [a["arm"] for a in js["arms"]] == ["base", "synthetic:syn.zarr"]
    syn = js["arms"][1]
    base_scores, syn_scores = np.array(js["arms"][0]["scores"]), np.array(syn["scores"])
    assert syn["diff_vs_reference"] == pytest.approx(syn_scores.mean() - base_scores.mean())
    cfg = json.loads((out / "runs" / "synthetic_syn.zarr" / "seed_1" / "config.json").read_text())
    assert cfg["fixed_synthetic_transitions"] > 0 and cfg["train"]["seed"] == 1
    # a second call reuses the finished runs (no retraining: results.json untouched)
    stamp = (out / "runs" / "base" / "seed_0" / "results.json").stat().st_mtime_ns
    again = compare(["base", f"synthetic:{store_path}"], dataset=str(data_path), learner="td3bc",
                    seeds=[0, 1], profile="smoke", out_dir=out, overrides=dict(TINY), progress=False)
    assert (out / "runs" / "base" / "seed_0" / "results.json").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.summaries[1].scores, res.summaries[1].scores)
    # collected runs alone
    runs = {"base": {s: out / "runs" / "base" / f"seed_{s}" for s in (0, 1)}}
    only = report(runs, tmp_path / "collected", metric="final")
    assert only.summaries[0].arm == "base" and only.files["finals"].exists()


def test_registered_arm_plugs_in(data_path: Path, tmp_path: Path) -> None:
    register_arm("allreal", lambda arg: Arm("allreal", functools.partial(train_request)))
    assert "allreal" in registered_arms()
    assert resolve_arm("allreal").name == "allreal"
    res = compare(["allreal"], dataset=str(data_path), learner="td3bc", seeds=[3], profile="smoke",
                  out_dir=tmp_path / "c", overrides=dict(TINY), progress=False)
    assert res.runs["allreal"][3].joinpath("results.json").exists()
    with pytest.raises(UserInputError, match="did you mean 'synthetic'"):
        resolve_arm("synthetc:x")
    with pytest.raises(UserInputError, match="needs a store"):
        resolve_arm("synthetic")


@pytest.mark.slow
def test_cli_compare_parallel_jobs(data_path: Path, tmp_path: Path) -> None:
    from cli import cli

    out = tmp_path / "cli"
    args = ["compare", "--policy", "td3bc", "--dataset", str(data_path), "--arm", "base", "--seeds", "0,1",
            "--profile", "smoke", "--steps", "6", "--eval-every", "3", "--eval-episodes", "1", "--jobs", "2",
            "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| base | 2 |" in result.output
    assert (out / "curves.png").exists() and (out / "finals.png").exists()
