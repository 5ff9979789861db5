"""Sweeps on a real local Ray head (2 CPUs): a 2 datasets x 2 arms x 2 seeds smoke sweep gives the same
per-run results as the local engine (in-process and process pool), and a failing cell is recorded and
reported."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from baselines_data import hopper_random_dataset

from baselines.runs import read_json, read_metrics
from baselines.sweep import run_sweep
from baselines.sweep_grid import EngineOptions, build
from baselines.sweep_state import read_state
from stores.replay import ReplayStore
from stores.schema import TrajectoryBatch
from stores.sources import write_npz

TINY = {"steps": 8, "eval_every": 4, "eval_episodes": 1, "batch_size": 32, "checkpoint_every": 4}
#: Environment of the test head: no auth token written to the home directory, no usage report.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> Iterator[None]:
    """A real local Ray head with 2 CPUs, bound to the loopback address, without dashboard."""
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", object_store_memory=80 * 1024 * 1024)
    try:
        yield
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small npz dataset and a synthetic store of real Hopper windows (5 steps)."""
    d = tmp_path_factory.mktemp("rd")
    path = write_npz(hopper_random_dataset(episodes=8, seed=4), d / "hop.npz")
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
    with ReplayStore.create(d / "syn.zarr", observation_size=11, action_size=3) as store:
        store.append(batch)
    return path, d / "syn.zarr"


def test_ray_and_local_engines_give_identical_runs(ray_head: None, data: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    path, store = data
    grid = {"datasets": ["hopper-medium-replay", str(path)], "arms": ["base", f"synthetic:{store}"],
            "seeds": [0, 1], "profile": "smoke", "overrides": TINY}
    local, _ = build({**grid, "root": str(tmp_path / "local")})
    on_ray, _ = build({**grid, "root": str(tmp_path / "ray")})
    res_local = run_sweep(local, EngineOptions("local"), progress=False)
    res_ray = run_sweep(on_ray, EngineOptions("ray"), progress=False)
    # the local process pool on the npz dataset's cells: the same numbers from a third kind of process
    pooled, _ = build({**grid, "datasets": [str(path)], "root": str(tmp_path / "pool")})
    res_pool = run_sweep(pooled, EngineOptions("local", jobs=2), progress=False)
    assert res_local.status.counts["done"] == res_ray.status.counts["done"] == 8
    assert res_pool.status.counts["done"] == 4
    keys = ("final_return", "last5_return", "final_normalized", "last5_normalized", "evaluations", "final")

    def same(cell, root_a: Path, root_b: Path) -> None:
        ra, rb = (read_json(cell.run_dir(r) / "results.json") for r in (root_a, root_b))
        assert {k: ra[k] for k in keys} == {k: rb[k] for k in keys}, cell.describe()
        ma, mb = (read_metrics(cell.run_dir(r) / "metrics.csv") for r in (root_a, root_b))
        assert [r["critic_loss"] for r in ma] == [r["critic_loss"] for r in mb]

    for a, b in zip(res_local.status.cells, res_ray.status.cells, strict=True):
        assert a.cell == b.cell
        same(a.cell, local.root, on_ray.root)
        attempt = read_state(on_ray.root, b.cell.cell_id)["attempts"][-1]
        assert attempt["engine"] == "ray" and attempt["pid"] != os.getpid()  # ran in a Ray worker
    for p in res_pool.status.cells:
        same(p.cell, local.root, pooled.root)
        assert read_state(pooled.root, p.cell.cell_id)["attempts"][-1]["pid"] != os.getpid()
    # the same tables from both engines (per task and over tasks)
    for name in ("summary.json", "hop/td3bc/compare.json", "hopper-medium-replay/td3bc/compare.json"):
        ja, jb = read_json(local.root / name), read_json(on_ray.root / name)
        assert ja["arms"] == jb["arms"], name
    summary = read_json(on_ray.root / "summary.json")
    assert summary["tasks"] == ["hopper-medium-replay", "hop"] and summary["normalized"]
    syn = summary["arms"][1]
    lo, hi = syn["poi_ci95"]
    assert syn["poi_tasks"] == 2 and 0.0 <= lo <= syn["poi_vs_reference"] <= hi <= 1.0


def test_a_failing_cell_on_ray_is_recorded_and_reported(ray_head: None, data: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    path, _ = data
    missing = tmp_path / "nowhere.zarr"
    spec, _ = build({"root": str(tmp_path / "root"), "datasets": [str(path)], "seeds": [0],
                     "profile": "smoke", "arms": ["base", f"synthetic:{missing}"], "overrides": TINY})
    res = run_sweep(spec, EngineOptions("ray"), progress=False)
    assert res.failed == ["hop__td3bc__synthetic_nowhere.zarr__seed0"]
    state = read_state(spec.root, res.failed[0])
    assert state["status"] == "failed" and state["attempts"][0]["engine"] == "ray"
    assert "does not exist" in state["attempts"][0]["error"]
    md = (spec.root / "hop" / "td3bc" / "compare.md").read_text()
    assert "synthetic:nowhere.zarr seed 0: failed" in md and "| base | 1 |" in md
    assert res.report.missing and "does not exist" in res.report.missing[0]
