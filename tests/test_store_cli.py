"""``augment store`` commands end to end: import, info, validate, export (every format), merge, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from replay_data import ACT, OBS, make_batch

from cli import cli, main
from stores.replay import ReplayStore
from stores.schema import Episode, OfflineDataset
from stores.sources import write_npz

AUGMENT = str(Path(sys.executable).parent / "augment")


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _npz_source(path: Path) -> Path:
    rng = np.random.default_rng(1)
    episodes = []
    for t in (6, 4, 8):
        truncated = np.zeros(t, bool)
        truncated[-1] = True
        episodes.append(Episode(observations=rng.standard_normal((t + 1, OBS)).astype(np.float32),
                                actions=rng.uniform(-1, 1, (t, ACT)).astype(np.float32),
                                rewards=rng.standard_normal(t).astype(np.float32),
                                terminated=np.zeros(t, bool), truncated=truncated))
    return write_npz(OfflineDataset("src", tuple(episodes), "Hopper-v5"), path)


def test_import_info_validate_export_merge(tmp_path: Path) -> None:
    src = _npz_source(tmp_path / "src.npz")
    store = tmp_path / "s.zarr"
    out = _invoke("store", "import", str(src), "--out", str(store), "--quiet")
    assert re.search(r"transitions\s+18\n", out), out
    info = json.loads(_invoke("store", "info", str(store), "--json"))
    assert info["rows"] == 18 and info["trajectories"] == 3 and info["env_id"] == "Hopper-v5"
    assert "generators" in _invoke("store", "info", str(store))
    assert "ok:" in _invoke("store", "validate", str(store))
    for fmt, name in (("npz", "e.npz"), ("hdf5", "e.hdf5"), ("d3rlpy", "e.h5")):
        _invoke("store", "export", str(store), "--format", fmt, "--out", str(tmp_path / name))
        again = tmp_path / f"again-{fmt}.zarr"
        _invoke("store", "import", str(tmp_path / name), "--out", str(again), "--quiet")
        np.testing.assert_array_equal(ReplayStore.open(again).load()["observations"],
                                      ReplayStore.open(store).load()["observations"])
    _invoke("store", "export", str(store), "--format", "minari", "--out", "augment/cli-test-v0",
            "--minari-root", str(tmp_path / "minari"))
    assert (tmp_path / "minari" / "augment" / "cli-test-v0" / "data").is_dir()
    synth = tmp_path / "synth.zarr"
    with ReplayStore.create(synth, observation_size=OBS, action_size=ACT) as writer:
        writer.append(make_batch(0))
    out = _invoke("store", "merge", str(store), str(synth), "--out", str(tmp_path / "m.zarr"), "--quiet")
    assert "real, gen-b" in out
    assert len(ReplayStore.open(tmp_path / "m.zarr")) == 18 + int(make_batch(0).lengths.sum())


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ReplayStore.create(tmp_path / "s.zarr", observation_size=OBS, action_size=ACT) as writer:
        writer.append(make_batch(0))
    (tmp_path / "s.zarr" / "actions" / "c" / "0" / "0").write_bytes(b"not a blosc chunk")
    bad = str(tmp_path / "s.zarr")
    # the installed console script, in a fresh process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([AUGMENT, "store", "validate", bad], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    # (other libraries may print import-time notices, e.g. gym's deprecation banner via d3rlpy)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]), proc.stderr
    assert "Traceback" not in proc.stderr and "damaged" in errors[0]
    # the same entry point in-process for the other failures
    for args in (["store", "info", str(tmp_path / "missing.zarr")],
                 ["store", "export", bad, "--format", "npz", "--out", str(tmp_path / "x.npz")],
                 ["store", "import", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "n.zarr")]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err


@pytest.mark.slow
def test_import_registered_name_smoke_profile(tmp_path: Path) -> None:
    out = _invoke("store", "import", "hopper-mr", "--profile", "smoke", "--out", str(tmp_path / "h.zarr"),
                  "--quiet")
    assert "imported hopper-medium-replay" in out
    store = ReplayStore.open(tmp_path / "h.zarr")
    store.validate()
    attrs = store.attrs
    assert attrs["source_dataset"] == "hopper-medium-replay" and attrs["env_id"] == "Hopper-v5"
    assert attrs["normalization"] is not None and len(store) > 0
