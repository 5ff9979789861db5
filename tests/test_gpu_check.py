"""benchmarks/gpu_check.py on the CPU at tiny sizes: every method runs the project's own networks, the JSON
holds positive rates, the paper's step counts and a projection that follows from the recorded numbers;
one failing method does not stop the others, and an exhausted budget skips what is left."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from baselines_data import load_benchmark

METHODS = ("dydiff", "synther", "world", "dmemm", "td", "aepo", "td3bc")

#: The paper run's step counts and work, from the papers and REFERENCE.md (not from the script's configs):
#: DyDiff 400k denoiser steps (Table 3 setting of this project), 1M learner updates, a round every 500
#: updates of B_r = 2048; SynthER 100k steps and 5M transitions; DMEMM 1M, TD 2M steps; AEPO 1M eps /
#: 1M IQL / 500k energy steps; evaluation 10 episodes of 1000 steps (every 5k updates for TD3+BC).
PAPER_STEPS = {
    "dydiff": {"trajectory U-Net (Eq. 4)": 400_000, "TD3+BC updates (d3rlpy)": 1_000_000},
    "synther": {"residual MLP denoiser (EDM loss)": 100_000},
    "dmemm": {"DMEMM U-Net (Eq. 12)": 1_000_000},
    "td": {"GPT + U-Net + f_phi + critic (one step trains all four)": 2_000_000},
    "aepo": {"eps_theta (Eq. 7)": 1_000_000, "IQL critics (d3rlpy, Eq. 27)": 1_000_000,
             "energy E_Theta (Eq. 26)": 500_000},
    "td3bc": {"TD3+BC updates (d3rlpy)": 1_000_000},
}
PAPER_SAMPLES = {"dydiff": (1_000_000 // 500) * 2048, "synther": 5_000_000, "dmemm": 10 * 1000,
                 "td": 10 * 1000, "aepo": 10 * 1000, "td3bc": (1_000_000 // 5000) * 10 * 1000}


def load_script() -> ModuleType:
    return load_benchmark("gpu_check")


def expected_hours(m: dict[str, Any]) -> float:
    """The projection recomputed from the raw counts and seconds (not the recorded rates)."""
    train = sum(c["paper_steps"] * c["seconds"] / c["steps"] for c in m["train"])
    g = m["generate"]
    return (train + g["paper_samples"] * g["seconds"] / g["samples"]) / 3600.0


def test_tiny_cpu_run_of_every_method(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    returned = load_script().main(["--out", str(out), "--device", "cpu", "--size", "tiny",
                                   "--methods", ",".join(METHODS)])
    data = json.loads(out.read_text())
    assert data["methods"].keys() == set(METHODS) and data["wall_s"] == pytest.approx(returned["wall_s"])
    header = (data["schema"], data["device"], data["size"], data["max_steps"])
    assert header == ("gpu_check/1", "cpu", "tiny", 4)
    assert data["data"]["obs_dim"] == 11 and data["data"]["act_dim"] == 3
    assert data["data"]["transitions"] == 4 * 24
    for name, m in data["methods"].items():
        assert m["status"] == "ok", f"{name}: {m.get('error')}\n{m.get('traceback')}"
        assert "error" not in m and m["peak_gpu_mib"] is None and m["ran_on"].startswith("cpu")
        assert m["steps_per_s"] > 0 and m["samples_per_s"] > 0, name
        assert sum(m["parameters"].values()) > 0 and m["wall_s"] > 0
        for c in m["train"]:
            assert 1 <= c["steps"] <= 4 and c["seconds"] > 0 and c["paper_steps"] >= 1, (name, c)
            assert c["steps_per_s"] == pytest.approx(c["steps"] / c["seconds"])
            assert isinstance(c["paper_steps_source"], str) and c["paper_steps_source"]
        g = m["generate"]
        assert g["samples"] >= 1 and g["seconds"] > 0 and g["samples_per_s"] == pytest.approx(
            g["samples"] / g["seconds"])
        assert g["paper_samples"] == PAPER_SAMPLES.get(name, g["paper_samples"]), name
        assert m["projected_hours"] == pytest.approx(expected_hours(m), rel=1e-9)
        assert m["projected_hours"] > 0 and math.isfinite(m["projected_hours"])
        steps = {c["component"]: c["paper_steps"] for c in m["train"]}
        for component, paper in PAPER_STEPS.get(name, {}).items():
            assert steps[component] == paper, (name, component)
    # the main network's timed steps reach --steps at tiny size (no budget pressure)
    assert all(m["train"][0]["steps"] == 4 for m in data["methods"].values())
    # the world model's projection: 200 assumed epochs of ceil((402,000 - 5,000) / 256) steps
    world = {c["component"]: c for c in data["methods"]["world"]["train"]}
    assert world["world dynamics (Eq. 5)"]["paper_steps"] == 200 * math.ceil(397_000 / 256)
    assert data["methods"]["dydiff"]["train"][1]["measured_in"] == "world"
    # planners time act at batch 1 and the evaluation batch 10, with network calls counted
    for name in ("dmemm", "td", "aepo"):
        act = data["methods"][name]["act"]
        assert set(act) == {"1", "10"} and all(a["seconds_per_act_call"] > 0 for a in act.values())
        assert sum(act["10"]["network_calls_per_act_call"].values()) >= 1
        assert data["methods"][name]["generate"]["samples"] == 10


def test_failing_method_is_recorded_and_budget_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script()

    def broken(ck: Any) -> dict[str, Any]:
        raise RuntimeError("deliberate failure")

    monkeypatch.setitem(script.BENCHES, "synther", broken)
    out = tmp_path / "partial.json"
    script.main(["--out", str(out), "--device", "cpu", "--size", "tiny", "--methods", "synther,td3bc"])
    methods = json.loads(out.read_text())["methods"]
    assert methods["synther"]["status"] == "error"
    assert methods["synther"]["error"] == "RuntimeError: deliberate failure"
    assert methods["td3bc"]["status"] == "ok" and methods["td3bc"]["steps_per_s"] > 0

    out = tmp_path / "skipped.json"
    script.main(["--out", str(out), "--device", "cpu", "--methods", "dydiff,world", "--budget-s", "0"])
    data = json.loads(out.read_text())
    assert data["size"] == "tiny"  # the default on a machine without CUDA
    skipped = {"status": "skipped: budget"}
    assert data["methods"] == {"dydiff": skipped, "world": skipped}


def test_a_method_running_past_the_budget_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script()

    def slow(ck: Any) -> dict[str, Any]:
        time.sleep(5)
        return {}

    monkeypatch.setitem(script.BENCHES, "world", slow)
    ck = script.Check(device="cpu", size="tiny", max_steps=1, warmup=1, dataset=None)
    t0 = time.perf_counter()
    out = script.run_method("world", ck, 0.2)
    assert time.perf_counter() - t0 < 2.0
    assert out["status"] == "error" and out["error"].startswith("BudgetExceeded: stopped after")
    time.sleep(0.3)  # the alarm was cancelled: nothing fires after the method
