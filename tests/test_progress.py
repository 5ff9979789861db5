"""augment.progress: bars that report to $AUGMENT_PROGRESS_FILE whether shown or not, throttled, and the
status line made from a report."""

from __future__ import annotations

from pathlib import Path

import pytest

import augment.progress as P


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cells" / "c.progress.json"
    monkeypatch.setenv(P.PROGRESS_FILE_ENV, str(path))
    return path


@pytest.mark.parametrize("shown", [False, True])
def test_an_iterated_bar_reports_its_count_from_initial_and_its_close(report: Path, shown: bool) -> None:
    bar = P.progress_bar(range(40, 100), desc="dmemm (Eq. 12)", unit="step", disable=not shown,
                         initial=40, total=100, leave=False)
    first = P.read_progress(report)  # written when the bar starts: nothing done yet, no rate
    assert first is not None
    assert (first["n"], first["total"], first["rate"], first["closed"]) == (40, 100, None, False)
    assert sum(1 for _ in bar) == 60
    last = P.read_progress(report)
    assert last is not None and (last["desc"], last["n"], last["unit"], last["closed"]) == (
        "dmemm (Eq. 12)", 100, "step", True)
    assert last["rate"] > 0


@pytest.mark.parametrize("shown", [False, True])
def test_updates_are_counted_and_written_at_most_every_few_seconds(report: Path, shown: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bar = P.progress_bar(total=50, desc="td3bc hop", unit="upd", disable=not shown)
    bar.update(7)  # within PROGRESS_FILE_SECONDS of the start: not written
    assert P.read_progress(report)["n"] == 0
    monkeypatch.setattr(P, "PROGRESS_FILE_SECONDS", 0.0)
    bar.update(5)
    assert P.read_progress(report)["n"] == 12
    bar.close()
    bar.close()  # a second close writes nothing new and does not fail
    assert P.read_progress(report)["closed"] is True


def test_without_the_variable_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(P.PROGRESS_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    for _ in P.progress_bar(range(3), disable=True):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_report_that_cannot_be_written_does_not_stop_the_run(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(P.PROGRESS_FILE_ENV, str(blocker / "c.progress.json"))
    assert sum(1 for _ in P.progress_bar(range(4), disable=True)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_status_line_names_the_bar_its_count_eta_and_age() -> None:
    state = {"desc": "td (GPT + diffusion + f_phi)", "n": 2000, "total": 20000, "unit": "step", "rate": 6.0,
             "updated": 1000.0, "closed": False}
    assert P.describe_progress(state, now=1012.0) == (
        "'td (GPT + diffusion + f_phi)' 2,000/20,000 step, ETA 50:00 (reported 00:12 ago)")
    assert P.describe_progress(state, now=1012.0, eta=False) == (
        "'td (GPT + diffusion + f_phi)' 2,000/20,000 step (reported 00:12 ago)")
    assert P.describe_progress({**state, "rate": None, "total": None}, now=1000.0) == (
        "'td (GPT + diffusion + f_phi)' 2,000 step (reported 00:00 ago)")
    assert P.describe_progress({**state, "closed": True}, now=1000.0 + 7200) == (
        "'td (GPT + diffusion + f_phi)' 2,000/20,000 step, finished (reported 2:00:00 ago)")


def test_read_progress_ignores_missing_and_foreign_files(tmp_path: Path) -> None:
    assert P.read_progress(tmp_path / "none.json") is None
    (tmp_path / "other.json").write_text('{"step": 3}')
    (tmp_path / "torn.json").write_text('{"desc": ')
    assert P.read_progress(tmp_path / "other.json") is None
    assert P.read_progress(tmp_path / "torn.json") is None


def test_a_labelled_evaluation_reports_its_act_calls_and_an_unlabelled_one_nothing(report: Path) -> None:
    import numpy as np

    from augment.integrations import as_policy
    from baselines.evaluate import evaluate
    from stores.maze_env import maze_env_id

    still = as_policy(lambda obs: np.zeros((len(obs), 2), np.float32))  # the point mass never moves
    env = maze_env_id("umaze")  # never terminates: every episode runs to max_steps
    evaluate(still, env, episodes=3, seed=0, num_envs=2, max_steps=7)  # a learner's evaluation: no bar
    assert not report.exists()
    evaluate(still, env, episodes=3, seed=0, num_envs=2, max_steps=7, bar="dmemm: evaluate")
    last = P.read_progress(report)  # 2 waves (2 envs, then 1) x 7 steps, one act call per step
    assert last is not None and (last["desc"], last["n"], last["total"], last["unit"], last["closed"]) == (
        "dmemm: evaluate", 14, 14, "act", True)
