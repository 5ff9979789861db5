"""``augment datasets list | build | info`` through the real entry point (exit codes, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_sources import d4rl_arrays

from cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_build_then_info_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["datasets", "build", "hopper-medium-replay", "--profile", "smoke", "--quiet"], capsys)
    assert code == 0
    assert "hopper-medium-replay:" in out
    assert "minari id: diffusion-augment/smoke/hopper-medium-replay-v0" in out
    code, out, _ = run(["datasets", "info", "hopper-medium-replay", "--profile", "smoke"], capsys)
    assert code == 0
    assert "episodes" in out and "transitions   1000" in out and "normalized" in out
    assert "threshold 33.0 not reached" in out
    code, out, _ = run(["datasets", "info", "hopper-mr", "--profile", "smoke", "--json"], capsys)
    info = json.loads(out)
    assert info["transitions"] == 1000 and info["source"] == "minari"
    assert info["recipe"]["profile"] == "smoke" and info["normalized_score"] is not None


def test_list_shows_sources_and_cache_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["datasets", "list", "--profile", "smoke"], capsys)
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:16]}
    assert len(lines) == 15
    assert lines["hopper-medium-replay"][1:3] == ["hopper-mr", "recipe"]
    assert lines["walker2d-expert"][3] in ("yes", "no")


def test_info_of_a_file_with_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "d.npz", **d4rl_arrays(next_obs=True))
    code, out, _ = run(["datasets", "info", str(tmp_path / "d.npz"), "--env", "Hopper-v5", "--json"], capsys)
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
    code, out, err = run(argv, capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_file_names_key_and_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = d4rl_arrays()
    arrays["actions"][7, 1] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    code, _, err = run(["datasets", "info", str(tmp_path / "bad.npz")], capsys)
    assert code == 2 and "'actions' holds NaN or inf (first bad row 7)" in err
    code, _, err = run(["--debug", "datasets", "info", str(tmp_path / "bad.npz")], capsys)
    assert code == 2 and "Traceback" in err
