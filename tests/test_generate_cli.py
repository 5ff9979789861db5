"""``augment generate``: bad input gets one line and exit 2 with no store written; a smoke run writes
exactly N transitions and prints the end table. Also the trimming and option parsing it relies on."""

from __future__ import annotations

import numpy as np
import pytest

from augment.generators.offline import parse_options, trim_batch
from stores.errors import UserInputError
from stores.replay import ReplayStore
from stores.schema import TrajectoryBatch
from stores.sources import write_npz
from tests.baselines_data import hopper_random_dataset
from tests.cli_helpers import run_cli


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny-hopper.npz"
    write_npz(hopper_random_dataset(episodes=8, seed=5), path)
    return path


def _batch(lengths: list[int], terminal_rows: list[int]) -> TrajectoryBatch:
    b, length = len(lengths), max(lengths)
    terms = np.zeros((b, length), bool)
    for r in terminal_rows:
        terms[r, lengths[r] - 1] = True
    return TrajectoryBatch(
        observations=np.arange(b * (length + 1) * 2, dtype=np.float32).reshape(b, length + 1, 2),
        actions=np.ones((b, length, 1), np.float32), rewards=np.ones((b, length), np.float32),
        terminals=terms, lengths=np.asarray(lengths, np.int64), generator="t",
        round=np.zeros(b, np.int64), learner_step=np.zeros(b, np.int64),
        filter_score=np.full(b, np.nan, np.float32), start_index=np.arange(b, dtype=np.int64))


def test_trim_batch_keeps_exactly_the_requested_transitions() -> None:
    batch = _batch([3, 4, 2], terminal_rows=[1, 2])
    assert trim_batch(batch, 9) is batch
    cut = trim_batch(batch, 5)  # row 0 whole (3) + 2 steps of row 1, whose terminal is cut off
    assert cut.batch_size == 2 and cut.num_transitions == 5 and cut.lengths.tolist() == [3, 2]
    assert not cut.terminals.any()
    cut.validate()
    exact = trim_batch(batch, 7)  # rows 0 and 1 whole: row 1 keeps its terminal
    assert exact.lengths.tolist() == [3, 4] and exact.terminals[1, 3]
    assert trim_batch(batch, 0).batch_size == 0


def test_parse_options_aliases_and_types() -> None:
    assert parse_options("rollout", ["h=3", "lambda=1.5", "deterministic=true"]) == {
        "horizon": 3, "penalty": 1.5, "deterministic": True}
    assert parse_options("synther", ["terminals=model", "N=64"]) == {"terminals": "model", "num_steps": 64}
    with pytest.raises(UserInputError, match="KEY=VALUE"):
        parse_options("rollout", ["h3"])


def test_bad_inputs_fail_with_one_line_and_write_nothing(tiny_npz, tmp_path, capsys) -> None:
    out = tmp_path / "s.zarr"
    base = ["generate", "synther", "--dataset", str(tiny_npz), "--out", str(out), "--profile", "smoke",
            "--quiet"]
    code, _, err = run_cli(base[:6] + ["--n", "0"] + base[6:], capsys)
    assert code == 2 and "--n must be a positive" in err and err.count("\n") == 1
    code, _, err = run_cli(["generate", "synthr"] + base[2:] + ["--n", "10"], capsys)
    assert code == 2 and "did you mean 'synther'" in err
    not_a_model = tmp_path / "policy.d3"
    not_a_model.write_text("not a model")
    code, _, err = run_cli(["generate", "rollout", *base[2:], "--n", "10", "--policy", str(not_a_model)],
                        capsys)
    assert code == 2 and "not a d3rlpy model" in err
    assert not out.exists()


def test_policy_that_does_not_fit_and_existing_store(tiny_npz, tmp_path, capsys) -> None:
    from baselines.learners import make_learner
    from stores.schema import Episode, OfflineDataset

    rng = np.random.default_rng(0)
    ep = Episode(observations=rng.normal(size=(6, 2)).astype(np.float32),
                 actions=rng.uniform(-1, 1, size=(5, 2)).astype(np.float32), rewards=np.ones(5, np.float32),
                 terminated=np.zeros(5, bool), truncated=np.arange(5) == 4)
    other = tmp_path / "other.d3"
    small = OfflineDataset(name="small", episodes=(ep,), env_id=None)
    make_learner("td3bc", small, seed=0).save(str(other))  # 2-dim observations, 2-dim actions
    out = tmp_path / "r.zarr"
    code, _, err = run_cli(["generate", "rollout", "--dataset", str(tiny_npz), "--n", "10", "--out", str(out),
                         "--policy", str(other), "--profile", "smoke", "--quiet"], capsys)
    assert code == 2 and "2-dim observations" in err and "11/3" in err
    assert not out.exists()
    out.mkdir()
    code, _, err = run_cli(["generate", "synther", "--dataset", str(tiny_npz), "--n", "10", "--out", str(out),
                         "--profile", "smoke", "--quiet"], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err


def test_generate_writes_n_transitions_and_prints_the_table(tiny_npz, tmp_path, capsys) -> None:
    out = tmp_path / "syn.zarr"
    code, stdout, _ = run_cli(["generate", "synther", "--dataset", str(tiny_npz), "--n", "123", "--out",
                            str(out), "--profile", "smoke", "-o", "N=4", "--quiet"], capsys)
    assert code == 0, stdout
    for word in ("rows", "trajectories", "wall s", "transitions/s", "transitions/CPU-s"):
        assert word in stdout
    with ReplayStore.open(out) as store:
        assert len(store) == 123 and store.num_trajectories == 123
        assert store.attrs["generator_config"]["num_steps"] == 4
        assert store.attrs["generation"]["rows"] == 123
    # --overwrite replaces it
    code, _, _ = run_cli(["generate", "synther", "--dataset", str(tiny_npz), "--n", "7", "--out", str(out),
                       "--profile", "smoke", "--overwrite", "--quiet"], capsys)
    assert code == 0
    with ReplayStore.open(out) as store:
        assert len(store) == 7


def test_arm_options_parse_and_name_the_arm() -> None:
    from augment.generators.arms import ROLLOUT_OPTIONS
    from augment.generators.arms import parse_options as arm_options
    from baselines.compare import resolve_arm

    assert arm_options("rollout", "h=3,lambda=1", ROLLOUT_OPTIONS) == {"horizon": 3, "penalty": 1.0}
    assert resolve_arm("rollout:h=5").name == "rollout:h=5" and resolve_arm("synther").name == "synther"
    with pytest.raises(UserInputError, match="KEY=VALUE"):
        resolve_arm("rollout:depth=3")
    with pytest.raises(UserInputError, match="needs a int"):
        resolve_arm("synther:n=lots")


@pytest.mark.slow
def test_compare_runs_the_synther_and_rollout_arms(tiny_npz, tmp_path) -> None:
    import json

    from baselines.compare import compare

    result = compare(["synther:n=300", "rollout:h=2"], dataset=str(tiny_npz), learner="td3bc", seeds=[0],
                     profile="smoke", out_dir=tmp_path / "cmp", progress=False,
                     overrides={"steps": 20, "eval_every": 10, "eval_episodes": 1})
    assert [s.arm for s in result.summaries] == ["synther:n=300", "rollout:h=2"]
    syn = json.loads((result.runs["synther:n=300"][0] / "config.json").read_text())
    assert syn["fixed_synthetic_transitions"] == 300 and syn["extra"]["generation"]["rows"] == 300
    assert syn["train"]["real_ratio"] == 0.6
    roll = result.runs["rollout:h=2"][0]
    with ReplayStore.open(roll / "synthetic.zarr") as store:
        assert len(store) > 0 and store.attrs["generator_config"]["horizon"] == 2
    assert json.loads((roll / "results.json").read_text())["rounds"] == 1  # before update 0 (interval 50)
