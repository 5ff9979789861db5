"""Resumed training ends where an uninterrupted run ends: IQL split over two calls, and DyDiff + TD3+BC
after a real ``kill -9`` of the training process between two checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from baselines_data import hopper_random_dataset

from baselines.loop import TrainConfig, load_run, train
from baselines.runs import read_metrics
from stores.replay import ReplayStore

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CONFIG = {"steps": 24, "batch_size": 32, "eval_every": 12, "eval_episodes": 2, "checkpoint_every": 8,
          "rollout_interval": 8, "rollout_batch": 3, "max_synthetic": 40, "seed": 5, "real_ratio": 0.5}
LOSSES = {"iql": ("critic_loss", "v_loss", "actor_loss"), "td3bc": ("critic_loss", "actor_loss")}


def _config() -> TrainConfig:
    return TrainConfig.for_profile("smoke", **CONFIG)


def _same_runs(full: Path, resumed: Path, learner: str) -> None:
    a, b = read_metrics(full / "metrics.csv"), read_metrics(resumed / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [12, 24]
    for ra, rb in zip(a, b, strict=True):
        for key in LOSSES[learner] + ("eval_return_mean", "eval_normalized", "num_synthetic", "rounds"):
            assert ra[key] == rb[key], key
    ra_json, _ = load_run(full)
    rb_json, _ = load_run(resumed)
    assert ra_json["final"]["returns"] == rb_json["final"]["returns"]
    assert ra_json["steps"] == rb_json["steps"] == 24


@pytest.fixture(scope="module")
def dataset():
    return hopper_random_dataset(episodes=10, seed=2)


def test_iql_resumed_from_a_checkpoint_equals_the_uninterrupted_run(dataset, tmp_path: Path) -> None:
    full = train(dataset, "iql", _config(), tmp_path / "full", progress=False)
    part = train(dataset, "iql", _config(), tmp_path / "split", progress=False, stop_at=12)
    assert not part.completed and part.steps == 12
    assert not (tmp_path / "split" / "results.json").exists()
    resumed = train(dataset, "iql", _config(), tmp_path / "split", progress=False)
    assert resumed.completed and resumed.steps == 24
    np.testing.assert_array_equal(resumed.final.returns, full.final.returns)
    _same_runs(tmp_path / "full", tmp_path / "split", "iql")


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from baselines_data import hopper_random_dataset
from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator
from baselines.loop import TrainConfig, train
from baselines.sampler import MixedSampler

dataset = hopper_random_dataset(episodes=10, seed=2)
gen = DyDiffGenerator(DyDiffConfig(profile="smoke"), progress=False)
gen.load({models!r})
gen.set_start_states(dataset.transitions.observations)
calls = 0
draw = MixedSampler.sample

def dying(self):  # kill -9 ourselves as the learner asks for batch {kill_at}: no cleanup of any kind
    global calls
    calls += 1
    if calls == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return draw(self)

MixedSampler.sample = dying
config = TrainConfig.for_profile("smoke", **{config!r})
train(dataset, "td3bc", config, {run!r}, generator=gen, progress=False)
"""


def _loaded_generator(models: Path, dataset):
    from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator

    gen = DyDiffGenerator(DyDiffConfig(profile="smoke"), progress=False)
    gen.load(models)
    gen.set_start_states(dataset.transitions.observations)
    return gen


@pytest.mark.slow
def test_dydiff_run_killed_between_checkpoints_resumes_to_the_same_result(dataset, tmp_path: Path) -> None:
    from tiny_dydiff import tiny_models

    from augment.generators.dydiff import DyDiffConfig, DyDiffGenerator

    data, world, diffusion = tiny_models()
    assert data.content_hash == dataset.content_hash
    cfg = DyDiffConfig(iterations=2, rollout_batch=3, rollout_length=diffusion.horizon, filter="softmax",
                       eta=0.8, sample_batch=3, iteration_rule="replace", dynamics="sample", profile="smoke")
    writer = DyDiffGenerator(cfg, progress=False)
    writer.attach(dataset, world, diffusion)
    writer.save(tmp_path / "models")

    full = train(dataset, "td3bc", _config(), tmp_path / "full", generator=_loaded_generator(
        tmp_path / "models", dataset), progress=False)
    assert full.completed and full.rounds == 3

    run = tmp_path / "killed"
    script = KILLED_RUN.format(tests=str(TESTS), models=str(tmp_path / "models"), kill_at=13, config=CONFIG,
                               run=str(run))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (run / "checkpoints").is_dir() and not (run / "results.json").exists()
    rows_at_kill = read_metrics(run / "metrics.csv")
    assert [r["step"] for r in rows_at_kill] == [12]  # the row of step 12 was written, then the kill

    resumed = train(dataset, "td3bc", _config(), run, generator=_loaded_generator(tmp_path / "models",
                                                                                  dataset), progress=False)
    assert resumed.completed and resumed.steps == 24
    np.testing.assert_array_equal(resumed.final.returns, full.final.returns)
    _same_runs(tmp_path / "full", run, "td3bc")
    # the checkpoint of step 8 came before round 1 (generated at update 8): the resume cut the store back to
    # the checkpoint's rows and generated that round again, identically
    note = json.loads((run / "resume_note.json").read_text())
    assert note["checkpoint_step"] == 8 and note["store_rows_found"] > note["store_rows_at_checkpoint"]
    with ReplayStore.open(tmp_path / "full" / "synthetic.zarr") as s1, \
            ReplayStore.open(run / "synthetic.zarr") as s2:
        ref, got = s1.load(), s2.load()
        s2.validate()
    assert set(np.unique(got["round"]).tolist()) == {0, 1, 2} and ref.keys() == got.keys()
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
