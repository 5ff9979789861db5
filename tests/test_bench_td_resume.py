"""benchmarks/bench_td.py keeps each finished seed in ``seed_N.json`` and reuses it only for the same
settings, so the cpu acceptance can be run one seed per session."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from baselines_data import load_benchmark


def _load() -> ModuleType:
    return load_benchmark("bench_td")


def test_seed_rows_reuses_same_settings_and_reruns_others(tmp_path: Path) -> None:
    bench = _load()
    calls: list[int] = []

    def run() -> list[dict[str, Any]]:
        calls.append(1)
        return [{"setting": "TD (1 x RTG)", "seed": 0, "score": 12.5 + len(calls)}]

    key = {"dataset": "d", "dataset_hash": "abc", "profile": "cpu", "episodes": 10, "envs": 10,
           "max_steps": None, "overrides": ""}
    path = tmp_path / "seed_0.json"
    first = bench.seed_rows(path, key, run)
    assert calls == [1] and first[0]["score"] == 13.5
    assert json.loads(path.read_text())["key"] == key
    assert [f.name for f in tmp_path.iterdir()] == ["seed_0.json"]  # no temporary file left beside it

    again = bench.seed_rows(path, dict(key), run)  # same settings: read back, not rerun
    assert calls == [1] and again == first

    other = bench.seed_rows(path, {**key, "episodes": 2}, run)  # other settings: rerun and overwrite
    assert calls == [1, 1] and other[0]["score"] == 14.5
    assert json.loads(path.read_text())["key"]["episodes"] == 2


def test_seed_rows_leaves_no_file_when_the_seed_fails(tmp_path: Path) -> None:
    bench = _load()
    path = tmp_path / "seed_3.json"

    def boom() -> list[dict[str, Any]]:
        raise RuntimeError("killed mid-seed")

    with pytest.raises(RuntimeError, match="killed"):
        bench.seed_rows(path, {"k": 1}, boom)
    assert not path.exists()


def test_summary_checks_each_seed_and_pairs_the_refinement_gain() -> None:
    bench = _load()
    scores = {  # seed -> (TD, TD(-), 0.5 x RTG, 0 x RTG); seed 1 is not monotone and loses to TD(-)
        0: (30.0, 10.0, 20.0, 1.0),
        1: (12.0, 14.0, 15.0, 2.0),
        2: (24.0, 12.0, 18.0, 0.0),
    }
    rows = [{"setting": label, "seed": seed, "score": s[i], "seconds_per_action": 0.01}
            for seed, s in scores.items() for i, label in enumerate(bench.SETTINGS)]
    text = bench.summary(rows)
    assert "refinement gain TD - TD(-) per seed: +20.0, -2.0, +12.0; mean +10.00" in text
    assert "positive in 2 of 3 seeds" in text
    assert "monotone in 2 of 3 seeds" in text
    assert "22.00 / 17.67 / 1.00 (monotone)" in text
    assert "| TD (1 x RTG) | 22.00 +- 5.29 | 22.0 [" in text  # trim_mean(0.25) of 3 runs trims none


RECORDS = Path(__file__).resolve().parents[1] / "benchmarks" / "planners" / "run_records" / "dmemm-hmr-cpu-v1"


def test_against_reads_committed_dmemm_records_and_refuses_other_protocols() -> None:
    bench = _load()
    rows = bench.against_rows("dmemm", RECORDS / "dmemm", [0, 1, 2], profile="cpu", episodes=10)
    assert [round(r["score"], 2) for r in rows] == [2.64, 1.78, 5.70]
    assert all(0.05 < r["seconds_per_action"] < 0.1 for r in rows)
    with pytest.raises(SystemExit, match="episodes"):
        bench.against_rows("dmemm", RECORDS / "dmemm", [0], profile="cpu", episodes=5)
    with pytest.raises(SystemExit, match="no run record"):
        bench.against_rows("dmemm", RECORDS / "dmemm", [7], profile="cpu", episodes=10)

    td = [{"setting": "TD (1 x RTG)", "seed": s, "score": v, "seconds_per_action": 0.0146}
          for s, v in enumerate([30.0, 20.0, 25.0])]
    table = bench.against_table(td, rows)
    line = next(ln for ln in table.splitlines() if ln.startswith("| dmemm |"))
    assert "| 3 | 2.6, 1.8, 5.7 |" in line
    assert "| +21.6 [" in line  # 25.0 - mean(2.64, 1.78, 5.70)
    assert line.endswith("| 5.1x |")  # 0.0745 / 0.0146


def test_against_labels_may_hold_equals_signs() -> None:
    bench = _load()
    assert bench.parse_against("dmemm:x0_clip=5=runs/a") == ("dmemm:x0_clip=5", Path("runs/a"))
    assert bench.parse_against("dmemm=runs/b") == ("dmemm", Path("runs/b"))
    for bad in ("dmemm", "=runs/c", "dmemm="):
        with pytest.raises(ValueError, match="LABEL=DIR"):
            bench.parse_against(bad)
