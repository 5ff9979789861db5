"""``augment datasets list | build | info`` through the real entry point (exit codes, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_sources import d4rl_arrays

from tests.cli_helpers import run_cli


def test_build_then_info_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["datasets", "build", "hopper-medium-replay", "--profile", "smoke", "--quiet"],
                           capsys)
    assert code == 0
    assert "hopper-medium-replay:" in out
    assert "minari id: diffusion-augment/smoke/hopper-medium-replay-v1" in out
    code, out, _ = run_cli(["datasets", "info", "hopper-medium-replay", "--profile", "smoke"], capsys)
    assert code == 0
    assert "episodes" in out and "transitions   1000" in out and "normalized" in out
    assert "threshold 33.0 not reached" in out
    code, out, _ = run_cli(["datasets", "info", "hopper-mr", "--profile", "smoke", "--json"], capsys)
    info = json.loads(out)
    assert info["transitions"] == 1000 and info["source"] == "minari"
    assert info["recipe"]["profile"] == "smoke" and info["normalized_score"] is not None


def test_list_shows_sources_and_cache_state(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty Minari root and a D4RL directory holding one file: exactly that name is on disk
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    (tmp_path / "d4rl").mkdir()
    (tmp_path / "d4rl" / "walker2d_expert-v2.hdf5").write_bytes(b"")
    code, out, _ = run_cli(["datasets", "list", "--profile", "smoke"], capsys)
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:16]}
    assert len(lines) == 15
    assert lines["hopper-medium-replay"][1:4] == ["hopper-mr", "recipe", "no"]
    assert lines["walker2d-expert"][2:4] == ["d4rl-hdf5", "yes"]
    assert lines["walker2d-expert"][4] == str(tmp_path / "d4rl" / "walker2d_expert-v2.hdf5")
    assert [name for name, row in lines.items() if row[3] == "yes"] == ["walker2d-expert"]


def test_info_of_a_file_with_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "d.npz", **d4rl_arrays(next_obs=True))
    code, out, _ = run_cli(["datasets", "info", str(tmp_path / "d.npz"), "--env", "Hopper-v5", "--json"],
                           capsys)
    assert code == 0
    info = json.loads(out)
    assert (info["episodes"], info["transitions"], info["env_id"]) == (4, 60, "Hopper-v5")


@pytest.mark.parametrize(("argv", "message"), [
    (["datasets", "info", "hoper-medium-replay"], "did you mean 'hopper-medium-replay'?"),
    (["datasets", "build", "hopper-mr", "--profile", "smok"], "did you mean 'smoke'?"),
    (["datasets", "info", "missing.hdf5"], "no such file"),
])
def test_errors_exit_2_with_one_line(argv: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_file_names_key_and_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = d4rl_arrays()
    arrays["actions"][7, 1] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    code, _, err = run_cli(["datasets", "info", str(tmp_path / "bad.npz")], capsys)
    assert code == 2 and "'actions' holds NaN or inf (first bad row 7)" in err
    code, _, err = run_cli(["--debug", "datasets", "info", str(tmp_path / "bad.npz")], capsys)
    assert code == 2 and "Traceback" in err
