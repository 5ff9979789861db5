"""DyDiff with the real pieces on the smoke profile: the smoke hopper-medium-replay recipe (built on demand),
the world models, the trajectory diffusion model, a d3rlpy TD3+BC policy, the Zarr replay store, the
training loop and the ``augment`` CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from augment.commands import dydiff_config, make_dydiff_generator
from baselines.learners import make_learner, rollout_policy
from cli import cli
from stores.datasets import load_dataset
from stores.replay import ReplayStore

DATASET = "hopper-medium-replay"


@pytest.fixture(scope="module")
def smoke_dataset():
    return load_dataset(DATASET, profile="smoke", progress=False)


def _store_rounds(dataset, path, seed: int) -> dict[str, np.ndarray]:
    """Two DyDiff rounds with a TD3+BC policy initialised from ``seed``, appended to a new store."""
    gen = make_dydiff_generator(dataset, dydiff_config(dataset.name, profile="smoke"), progress=False)
    policy = rollout_policy(make_learner("td3bc", dataset, seed=seed), "td3bc")
    rng = np.random.default_rng(seed)
    with ReplayStore.create(path, observation_size=dataset.observation_size,
                            action_size=dataset.action_size, attrs=gen.store_attrs()) as store:
        for k in range(2):
            store.append(gen.generate(gen.config.rollout_batch, policy, rng, round=k, learner_step=50 * k))
    with ReplayStore.open(path) as store:
        return store.load()


def test_same_seed_same_store(smoke_dataset, tmp_path) -> None:
    a = _store_rounds(smoke_dataset, tmp_path / "a.zarr", seed=3)
    b = _store_rounds(smoke_dataset, tmp_path / "b.zarr", seed=3)
    c = _store_rounds(smoke_dataset, tmp_path / "c.zarr", seed=4)
    assert a.keys() == b.keys() and len(a["rewards"]) > 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["start_index"], c["start_index"])


def test_rollouts_respect_the_hopper_termination_rule(smoke_dataset) -> None:
    from augment.world.termination import termination_fn

    gen = make_dydiff_generator(smoke_dataset, dydiff_config(smoke_dataset.name, profile="smoke"),
                                progress=False)
    policy = rollout_policy(make_learner("td3bc", smoke_dataset, seed=0), "td3bc")
    batch = gen.generate(16, policy, np.random.default_rng(0))
    assert batch.batch_size == int(0.8 * 16) and batch.generator == "dydiff"
    rule = termination_fn(smoke_dataset.env_id)
    for b in range(batch.batch_size):
        n = int(batch.lengths[b])
        flags = rule(batch.observations[b, 1: n + 1])
        assert not flags[:-1].any() and bool(flags[-1]) == bool(batch.terminals[b, n - 1])
    np.testing.assert_array_equal(batch.observations[:, 0],
                                  smoke_dataset.transitions.observations[batch.start_index])


@pytest.mark.slow
def test_augment_dydiff_smoke_end_to_end(tmp_path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["dydiff", "--policy", "td3bc", "--dataset", DATASET, "--profile",
                                      "smoke", "--steps", "100", "--out", str(out), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "run directory" in result.output
    for name in ("config.json", "metrics.csv", "results.json", "synthetic.zarr"):
        assert (out / name).exists(), name
    with ReplayStore.open(out / "synthetic.zarr") as store:
        data = store.load()
        attrs = store.attrs
        names = store.generators
        assert len(store) > 0
    assert set(data["generator"].tolist()) == {names.index("dydiff")}
    assert attrs["generator_name"] == "dydiff"
    assert attrs["generator_config"]["iterations"] == 2 and attrs["generator_config"]["filter"] == "softmax"
    assert attrs["generator_config"]["eta"] == 0.8 and attrs["source_dataset"] == DATASET
    # the real dataset's provenance and statistics, as any store of a run carries them
    assert attrs["env_id"] == "Hopper-v5" and len(attrs["source_hash"]) == 16
    assert len(attrs["normalization"]["obs_mean"]) == data["observations"].shape[1]
    assert (data["round"] >= 0).all() and np.isfinite(data["filter_score"]).all()
    assert (data["start_index"] >= 0).all()
    results = json.loads((out / "results.json").read_text())
    assert results["generator"] == "dydiff" and results["rounds"] == 2  # before update 0 and 50
    assert results["steps"] == 100  # --steps goes to TrainConfig, the one owner of the learner budget
    assert results["synthetic_pool"]["synthetic_added"] == results["synthetic_added"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["dydiff"]["iterations"] == 2


def test_cli_rejects_bad_options(tmp_path) -> None:
    runner = CliRunner()
    out = ["--out", str(tmp_path / "run")]
    bad_filter = runner.invoke(cli, ["dydiff", "--policy", "td3bc", "--dataset", DATASET, "--filter", "topk",
                                     *out])
    assert bad_filter.exit_code == 2 and isinstance(bad_filter.exception, SystemExit)  # a usage error
    assert "'topk'" in bad_filter.output and "softmax" in bad_filter.output and "hardmax" in bad_filter.output
    bad_policy = runner.invoke(cli, ["dydiff", "--policy", "sac", "--dataset", DATASET, *out])
    assert bad_policy.exit_code == 2 and isinstance(bad_policy.exception, SystemExit)
    assert "'sac'" in bad_policy.output and "--policy" in bad_policy.output
    assert all(name in bad_policy.output for name in ("td3bc", "cql", "iql"))  # says what is accepted
    assert "Traceback" not in bad_policy.output + bad_filter.output and not (tmp_path / "run").exists()


def test_augment_diagnose_dydiff_smoke(tmp_path) -> None:
    out = tmp_path / "diag"
    result = CliRunner().invoke(cli, ["diagnose", "dydiff", "--dataset", DATASET, "--profile", "smoke",
                                      "--starts", "3", "--policy-steps", "10", "--max-iterations", "2",
                                      "--out", str(out), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "diagnose.json").read_text())
    assert set(data["errors"]) == {"0", "1", "2"} and len(data["errors"]["0"]) == 8
    assert all(np.isfinite(data["cumulative"]["2"]))
    assert (out / "diagnose.png").stat().st_size > 1000


def test_dydiff_arm_options() -> None:
    from augment.arms import parse_arm_options
    from baselines.compare import resolve_arm
    from stores.errors import UserInputError

    assert parse_arm_options("M=1, filter=hardmax,L=8") == {"iterations": 1, "filter": "hardmax",
                                                           "rollout_length": 8}
    assert parse_arm_options(None) == {}
    with pytest.raises(UserInputError, match="KEY=VALUE"):
        parse_arm_options("temperature=1")
    with pytest.raises(UserInputError, match="int"):
        parse_arm_options("M=two")
    assert resolve_arm("dydiff").name == "dydiff"
    assert resolve_arm("dydiff:M=0").name == "dydiff:M=0"


@pytest.mark.slow
def test_compare_base_vs_dydiff_arm(tmp_path) -> None:
    from baselines.compare import compare

    result = compare(["base", "dydiff:filter=hardmax"], dataset=DATASET, learner="td3bc", seeds=[0],
                     profile="smoke", out_dir=tmp_path / "cmp", overrides={"steps": 60, "eval_every": 30},
                     progress=False)
    assert [s.arm for s in result.summaries] == ["base", "dydiff:filter=hardmax"]
    run = tmp_path / "cmp" / "runs" / "dydiff_filter_hardmax" / "seed_0"
    results = json.loads((run / "results.json").read_text())
    assert results["generator"] == "dydiff" and results["steps"] == 60 and results["rounds"] == 2
    with ReplayStore.open(run / "synthetic.zarr") as store:
        assert store.attrs["generator_config"]["filter"] == "hardmax" and len(store) > 0
