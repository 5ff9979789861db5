"""Sweeps on the local engine: the grid from YAML, warm-up, failures (recorded, retried, reported),
``sweep status``, and a sweep killed mid-way that resumes without rerunning finished cells."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from baselines_data import hopper_random_dataset
from click.testing import CliRunner

from augment.planners.run import planner_config
from baselines.compare import Arm, RunRequest, register_arm, train_request
from baselines.runs import read_json
from baselines.sweep import run_sweep, sweep_status
from baselines.sweep_engines import RAY_MISSING, import_ray
from baselines.sweep_grid import SweepSpec, build, expand, read_sweep_file, warmup_plan
from baselines.sweep_state import cell_status, held_lock, lock_path, manifest_cells, read_manifest, read_state
from stores.errors import UserInputError
from stores.sources import write_npz

TINY = {"steps": 8, "eval_every": 4, "eval_episodes": 1, "batch_size": 32, "checkpoint_every": 4}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(hopper_random_dataset(episodes=8, seed=4), tmp_path_factory.mktemp("d") / "hop.npz")


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_spec_from_yaml_expands_to_the_grid(tmp_path: Path, data_path: Path) -> None:
    f = _yaml(tmp_path / "sweep.yaml", f"""
root: {tmp_path / "root"}
datasets: [{data_path}, hopper-medium-replay]
arms: [base, "synthetic:{tmp_path / 'x.zarr'}"]
seeds: 0-1
profile: smoke
overrides: {json.dumps(TINY)}
retries: 2
resources: {{cpus: 1}}
engine: ray
address: auto
""")
    spec, engine = build(read_sweep_file(f))
    assert spec.seeds == (0, 1) and spec.retries == 2 and spec.overrides == TINY
    assert (engine.engine, engine.address, engine.jobs) == ("ray", "auto", 1)
    assert Path(spec.datasets[0]).is_absolute() and spec.learners == ("td3bc",)
    cells = expand(spec, {"base": "base", spec.arms[1]: "synthetic:x.zarr"})
    assert len(cells) == 8 and [c.seed for c in cells] == [0] * 4 + [1] * 4  # seed-major
    assert [(c.label, c.arm_name) for c in cells[:4]] == [("hop", "base"), ("hop", "synthetic:x.zarr"),
                                                          ("hopper-medium-replay", "base"),
                                                          ("hopper-medium-replay", "synthetic:x.zarr")]
    assert cells[1].run_dir(spec.root) == spec.root / "hop" / "td3bc" / "runs" / "synthetic_x.zarr" / "seed_0"
    assert cells[1].cell_id == "hop__td3bc__synthetic_x.zarr__seed0"
    base = {"root": str(tmp_path / "r"), "datasets": [str(data_path)], "profile": "smoke"}
    for bad, match in [({"sed": [0]}, "did you mean 'seeds'"), ({"seeds": "3-1"}, "seeds: give"),
                       ({"overrides": {"seed": 1}}, "the grid sets it"),
                       ({"overrides": {"stpes": 1}}, "did you mean 'steps'"),
                       ({"engine": "rai"}, "did you mean 'ray'"), ({"learners": ["sac"]}, "sac"),
                       ({"arms": ["base", "base"]}, "repeats")]:
        with pytest.raises(UserInputError, match=match):
            build({**base, **bad})
    with pytest.raises(UserInputError, match="needs datasets"):
        build({"root": str(tmp_path)})


def test_warmup_holds_seeds_of_model_arms_behind_their_first_cell(tmp_path: Path) -> None:
    spec, _ = build({"root": str(tmp_path), "datasets": ["hopper-medium-replay", "walker2d-medium-replay"],
                     "arms": ["base", "dydiff"], "seeds": [0, 1, 2], "profile": "smoke"})
    cells = expand(spec, {"base": "base", "dydiff": "dydiff"})
    plan = warmup_plan(cells, finished=set())
    dydiff_ready = [(c.label, c.seed) for c in plan.ready if c.arm == "dydiff"]
    assert dydiff_ready == [("hopper-medium-replay", 0), ("walker2d-medium-replay", 0)]
    assert sum(c.arm == "base" for c in plan.ready) == 6  # model-free arms never wait
    assert [c.seed for c in plan.held[("hopper-medium-replay", "dydiff")]] == [1, 2]
    assert len(plan.leaders) == 2
    warm = warmup_plan(cells, finished={("hopper-medium-replay", "dydiff")})  # cached: nothing waits there
    assert ("hopper-medium-replay", "dydiff") not in warm.held and len(warm.held) == 1
    assert len(warmup_plan(cells, finished=set(), enabled=False).ready) == len(cells)


def _flaky(request: RunRequest, *, marker: str) -> Path:
    """Fails the first time (leaving a marker), then trains like base: a transient failure."""
    if not Path(marker).exists():
        Path(marker).write_text("failed once")
        raise RuntimeError("transient failure")
    return train_request(request)


def _broken(request: RunRequest) -> Path:
    raise RuntimeError("this arm always fails")


def _peek(request: RunRequest, *, out: str) -> Path:
    """Runs a quiet "model fit" bar, then records what ``sweep status`` says of its own cell, then trains
    like base and records the learner bar's last report (all while the cell runs)."""
    from augment.progress import progress_bar, read_progress
    from baselines.sweep_state import progress_path

    root = request.run_dir.parents[4]  # ROOT/<dataset>/<learner>/runs/<arm>/seed_N
    cell = next(c for c in manifest_cells(read_manifest(root)) if c.run_dir(root) == request.run_dir)
    for _ in progress_bar(range(3), desc="peek fit", unit="step", disable=True):
        pass
    lines = [cell_status(root, cell).detail]
    path = train_request(request)
    lines.append(json.dumps(read_progress(progress_path(root, cell.cell_id))))
    Path(out).write_text("\n".join(lines))
    return path


register_arm("flaky", lambda arg: Arm("flaky", functools.partial(_flaky, marker=str(arg))))
register_arm("broken", lambda arg: Arm("broken", _broken))
register_arm("peek", lambda arg: Arm("peek", functools.partial(_peek, out=str(arg))))


def test_status_of_a_running_cell_shows_what_its_quiet_bars_report(tmp_path: Path, data_path: Path) -> None:

    out = tmp_path / "peek.txt"
    spec, engine = build({"root": str(tmp_path / "root"), "datasets": [str(data_path)], "profile": "smoke",
                          "arms": ["base", f"peek:{out}"], "seeds": [0], "overrides": TINY})
    assert run_sweep(spec, engine, progress=False).status.counts["done"] == 2
    status_line, learner = out.read_text().splitlines()
    assert status_line.startswith("on ") and "; now 'peek fit' 3/3 step, finished (reported" in status_line
    report = json.loads(learner)  # the learner loop's bar (baselines/loop.py) reported to the cell's file
    assert (report["desc"], report["n"], report["total"]) == ("td3bc hop.npz", TINY["steps"], TINY["steps"])
    assert report["closed"] is True
    assert not list((spec.root / "cells").glob("*.progress.json"))  # removed when the attempt ended


def test_failed_cells_are_recorded_retried_and_reported(tmp_path: Path, data_path: Path) -> None:
    junk = tmp_path / "junk.zarr"
    junk.mkdir()
    options = {"root": str(tmp_path / "root"), "datasets": [str(data_path)], "profile": "smoke",
               "arms": ["base", f"flaky:{tmp_path / 'marker'}", "broken", f"synthetic:{junk}"], "seeds": [0],
               "overrides": TINY, "retries": 1}
    spec, engine = build(options)
    lines: list[str] = []
    res = run_sweep(spec, engine, progress=False, log=lines.append)
    root = spec.root
    assert res.status.counts == {"done": 2, "running": 0, "failed": 2, "pending": 0}
    assert sorted(res.failed) == ["hop__td3bc__broken__seed0", "hop__td3bc__synthetic_junk.zarr__seed0"]
    flaky = read_state(root, "hop__td3bc__flaky__seed0")
    assert [a["outcome"] for a in flaky["attempts"]] == ["failed", "done"]
    first = flaky["attempts"][0]
    assert first["error"] == "transient failure" and "Traceback" in first["traceback"]
    broken = read_state(root, "hop__td3bc__broken__seed0")
    assert [a["outcome"] for a in broken["attempts"]] == ["failed", "failed"] and broken["status"] == "failed"
    junk_state = read_state(root, "hop__td3bc__synthetic_junk.zarr__seed0")  # UserInputError: not retried
    assert len(junk_state["attempts"]) == 1 and junk_state["attempts"][0]["error_type"] == "UserInputError"
    assert any(line.startswith("retry") and "flaky" in line for line in lines)
    assert any("FAILED" in line and "broken" in line for line in lines)
    # the tables say which cells are missing and why, and average only what finished
    md = (root / "hop" / "td3bc" / "compare.md").read_text()
    assert "| base | 1 |" in md and "| flaky | 1 |" in md and "Missing cells (2" in md
    assert "broken seed 0: failed (after 2 attempt(s): RuntimeError: this arm always fails)" in md
    assert "is not a replay store" in md
    js = read_json(root / "hop" / "td3bc" / "compare.json")
    assert [a["arm"] for a in js["arms"]] == ["base", "flaky"] and len(js["missing"]) == 2
    summary = (root / "summary.md").read_text()
    assert "## Missing cells (2" in summary and "| broken | 0 | 0 |" in summary
    # a second sweep (from YAML, on the command line) leaves failed cells alone and exits 1 listing them
    from cli import cli

    f = _yaml(tmp_path / "sweep.yaml", json.dumps(options))  # JSON is YAML
    again = CliRunner().invoke(cli, ["sweep", str(f), "--quiet"], catch_exceptions=False)
    assert again.exit_code == 1 and "## Missing cells (2" in again.output and "done 2" in again.output
    assert len(read_state(root, "hop__td3bc__broken__seed0")["attempts"]) == 2
    spec0, _ = build({**options, "retries": 0})
    run_sweep(spec0, engine, progress=False, retry_failed=True, log=lines.append)
    assert len(read_state(root, "hop__td3bc__broken__seed0")["attempts"]) == 3
    # status: a cell whose lock is held is running; the CLI lists failed cells with their error
    broken_cell = next(c for c in manifest_cells(read_manifest(root)) if c.arm == "broken")
    with held_lock(lock_path(root, broken_cell.cell_id)) as got:
        assert got and cell_status(root, broken_cell).status == "running"
    out = CliRunner().invoke(cli, ["sweep", "status", str(root)], catch_exceptions=False).output
    assert "4 cells: done 2, running 0, failed 2, pending 0" in out and "this arm always fails" in out


def test_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    with pytest.raises(UserInputError, match=r"\[distributed\]") as err:
        import_ray()
    assert str(err.value) == RAY_MISSING


_DRIVER = """
import sys
from baselines.sweep import run_sweep
from baselines.sweep_grid import build, read_sweep_file
spec, engine = build(read_sweep_file(sys.argv[1]))
run_sweep(spec, engine, progress=False)
"""


@pytest.mark.slow
def test_killed_sweep_resumes_without_rerunning_finished_cells(tmp_path: Path, data_path: Path) -> None:
    budget = {"steps": 60, "eval_every": 30, "eval_episodes": 1, "batch_size": 32, "checkpoint_every": 10}
    f = _yaml(tmp_path / "sweep.yaml", f"root: {tmp_path / 'root'}\ndatasets: [{data_path}]\narms: [base]\n"
                                      f"seeds: 0-2\nprofile: smoke\noverrides: {json.dumps(budget)}\n")
    spec, engine = build(read_sweep_file(f))
    runs = spec.root / "hop" / "td3bc" / "runs" / "base"
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(f)], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [d for d in runs.glob("seed_*") if (d / "results.json").exists()]
            last = f"step_{budget['steps']:08d}"
            partial = [d for d in runs.glob("seed_*")  # a checkpoint before the last step: mid-run
                       if (d / "checkpoints" / "latest").exists() and not (d / "results.json").exists()
                       and (d / "checkpoints" / "latest").read_text().strip() != last]
            if done and partial:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    status = sweep_status(spec.root)
    finished = [s.cell for s in status.cells if s.status == "done"]
    interrupted = [s for s in status.cells if s.detail.startswith("interrupted")]
    assert finished and len(interrupted) == 1 and status.counts["running"] == 0
    cut = interrupted[0].cell
    stamps = {c.cell_id: (c.run_dir(spec.root) / "results.json").stat().st_mtime_ns for c in finished}
    step = int(re.search(r"resumes from step (\d+)", interrupted[0].detail).group(1))
    assert step > 0
    assert "; last report 'td3bc hop.npz' " in interrupted[0].detail  # what its learner bar said last
    from cli import cli

    out = CliRunner().invoke(cli, ["sweep", str(f), "--quiet"], catch_exceptions=False)
    assert out.exit_code == 0 and "3 cells: done 3" in out.output, out.output
    assert f"ran {3 - len(finished)} in" in out.output
    for c in finished:  # finished cells were not run again
        assert (c.run_dir(spec.root) / "results.json").stat().st_mtime_ns == stamps[c.cell_id]
        assert len(read_state(spec.root, c.cell_id)["attempts"]) == 1
    *killed, last = read_state(spec.root, cut.cell_id)["attempts"]
    assert last["resumed_from_step"] == step and last["outcome"] == "done"
    assert [a["outcome"] for a in killed] == ["interrupted"] and killed[0]["ended"] is None
    # and the resumed run ends with the numbers of a run that never stopped
    fresh = train_request(RunRequest(dataset=cut.dataset, learner="td3bc", seed=cut.seed, profile="smoke",
                                     run_dir=tmp_path / "fresh", overrides=budget))
    resumed = read_json(cut.run_dir(spec.root) / "results.json")["evaluations"]
    uninterrupted = read_json(fresh / "results.json")["evaluations"]
    assert [e["return_mean"] for e in resumed] == [e["return_mean"] for e in uninterrupted]


def test_a_narrower_sweep_adds_its_cells_to_the_root_and_a_dry_run_writes_nothing(tmp_path: Path,
                                                                                   data_path: Path) -> None:
    """A second invocation with one arm and one seed runs only that cell, keeps the first's cells in the
    manifest, status and tables, and exits on its own cells only; --dry-run says what would run."""
    from cli import cli

    root = tmp_path / "root"
    common = {"root": str(root), "datasets": [str(data_path)], "profile": "smoke", "overrides": TINY}
    first, engine = build({**common, "arms": ["base"], "seeds": [0, 1]})
    assert run_sweep(first, engine, progress=False).status.counts["done"] == 2
    narrow, _ = build({**common, "arms": ["broken"], "seeds": [0], "retries": 0})
    res = run_sweep(narrow, engine, progress=False)
    assert res.failed == ["hop__td3bc__broken__seed0"] and res.missing == ["hop td3bc broken seed 0"]
    assert res.status.counts == {"done": 2, "running": 0, "failed": 1, "pending": 0}
    manifest = read_manifest(root)
    assert [(c.arm, c.seed) for c in manifest_cells(manifest)] == [("base", 0), ("base", 1), ("broken", 0)]
    assert [h["asked"]["arms"] for h in manifest["invocations"]] == [["base"], ["broken"]]
    # the spec names the whole grid (the union of the invocations' axes); retries is the latest one's
    assert (manifest["spec"]["arms"], manifest["spec"]["seeds"], manifest["spec"]["retries"]) == (
        ["base", "broken"], [0, 1], 0)
    summary = read_json(root / "summary.json")
    assert [a["arm"] for a in summary["arms"]][0] == "base"  # the first arm the root met stays the reference
    assert "| base | 2 |" in (root / "hop" / "td3bc" / "compare.md").read_text()
    assert "3 cells: done 2" in CliRunner().invoke(cli, ["sweep", "status", str(root)]).output
    # a dry run of a wider grid: what it would skip and run, and nothing written
    f = _yaml(tmp_path / "wide.yaml", json.dumps({**common, "arms": ["base", "broken"], "seeds": "0-2"}))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = CliRunner().invoke(cli, ["sweep", "run", str(f), "--dry-run"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert any(ln.split()[:2] == ["skip", "done"] and "base seed 0" in ln for ln in lines)
    assert any(ln.split()[:2] == ["skip", "failed"] and "broken seed 0" in ln for ln in lines)
    assert any(ln.split()[:2] == ["run", "pending"] and "base seed 2" in ln for ln in lines)
    assert "6 cells, 3 would run; nothing was run or written" in out.output
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert len(manifest_cells(read_manifest(root))) == 3
    fresh = tmp_path / "fresh.yaml"
    _yaml(fresh, json.dumps({**common, "root": str(tmp_path / "new"), "arms": ["base"], "seeds": [0]}))
    out = CliRunner().invoke(cli, ["sweep", str(fresh), "--dry-run"], catch_exceptions=False)
    assert out.exit_code == 0 and "1 would run" in out.output and not (tmp_path / "new").exists()


def test_acceptance_sweep_root_holds_only_matching_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/sweep_cpu_acceptance.yaml builds from the repository root, and every finished run under its
    committed root (some copied in from earlier `augment compare` runs) has the sweep's profile, arm, seed
    and learner budget, and one recipe hash per dataset, so the tables compare like with like."""
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    spec, _ = build(read_sweep_file(repo / "examples" / "sweep_cpu_acceptance.yaml"))
    assert spec.root == repo / "benchmarks" / "sweeps" / "cpu-acceptance-v2" and spec.profile == "cpu"
    assert spec.arms[0] == "base" and len(spec.seeds) >= 5 and len(spec.datasets) >= 2
    # v1, the same grid on another hopper build, is kept as it fell and held to the same rules
    for root in (spec.root, spec.root.with_name("cpu-acceptance-v1")):
        _check_acceptance_root(root, spec)


def _check_acceptance_root(root: Path, spec: SweepSpec) -> None:
    hashes: dict[str, set[str]] = {}
    for results in sorted(root.glob("*/*/runs/*/seed_*/results.json")):
        run = results.parent
        res, cfg = read_json(results), read_json(run / "config.json")
        dataset, learner = run.parents[3].name, run.parents[2].name  # ROOT/<dataset>/<learner>/runs/<arm>/
        hashes.setdefault(dataset, set()).add(cfg["dataset"]["content_hash"])
        if "planner" in res:  # a planner arm: the planner is the policy, trained at the profile's config
            name = res["planner"]
            assert run.parent.name == name == cfg["planner"], run
            assert res["profile"] == cfg["profile"] == spec.profile, run
            seed = res["seed"]
            assert run.name == f"seed_{seed}" and cfg["seed"] == seed == cfg["config"]["seed"], run
            want = planner_config(name, spec.profile, cfg["dataset"]["name"], seed=seed).to_json()
            assert json.loads(json.dumps(want)) == cfg["config"], run
            continue
        assert res["profile"] == spec.profile and res["learner"] == learner == cfg["learner"], run
        assert run.name == f"seed_{res['seed']}" and cfg["train"]["seed"] == res["seed"], run
        assert res["steps"] == cfg["train"]["steps"] == 50000, run
        arm = run.parent.name  # safe arm name, e.g. base, dydiff, dydiff_rclip_data_box_0
        online, fixed = cfg["generator"], cfg["fixed_synthetic_transitions"]  # dydiff, rollout / synther
        assert (online is None and not fixed) == (arm == "base"), run
        if online is not None:
            assert arm.startswith(online) and not fixed, run
        elif fixed:  # a fixed store made for this arm (synther-stores/<recipe hash>-...)
            store = cfg["extra"]["synthetic_store"]
            assert f"{arm.split('_')[0]}-stores" in store and cfg["dataset"]["content_hash"] in store, run
    assert all(len(h) == 1 for h in hashes.values()), hashes


def test_add_only_puts_cells_in_the_grid_and_runs_none(tmp_path: Path, data_path: Path) -> None:
    """--add-only: the cells join the manifest (status: pending; tables: missing) with nothing run; a run
    already in the root (e.g. copied from augment compare) is counted at once; a running driver refuses."""
    from baselines.sweep import add_to_grid, report_sweep
    from cli import cli

    root = tmp_path / "root"
    options = {"root": str(root), "datasets": [str(data_path)], "profile": "smoke", "overrides": TINY}
    spec, engine = build({**options, "arms": ["base"], "seeds": [0]})
    assert run_sweep(spec, engine, progress=False).status.counts["done"] == 1
    f = _yaml(tmp_path / "grid.yaml", json.dumps({**options, "arms": ["base", "broken"], "seeds": [0, 1]}))
    out = CliRunner().invoke(cli, ["sweep", str(f), "--add-only"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "added 4 cells" in out.output and "done 1, running 0, failed 0, pending 3" in out.output
    assert not (root / "hop" / "td3bc" / "runs" / "broken").exists()  # nothing ran
    assert not list((root / "cells").glob("*broken*"))
    status, rep = report_sweep(root)
    assert status.counts == {"done": 1, "running": 0, "failed": 0, "pending": 3}
    summary = rep.files["markdown"].read_text()
    assert "## Missing cells (3" in summary and "hop td3bc broken seed 1: pending" in summary
    assert read_manifest(root)["invocations"][-1]["engine"] == "none (--add-only)"
    both = CliRunner().invoke(cli, ["sweep", str(f), "--add-only", "--dry-run"])
    assert both.exit_code == 2 and "give one" in both.output
    with held_lock(root / "sweep.lock") as got:  # a driver is running on the root
        assert got
        with pytest.raises(UserInputError, match="another `augment sweep` is running"):
            add_to_grid(build({**options, "arms": ["base"], "seeds": [2]})[0])
    assert len(manifest_cells(read_manifest(root))) == 4


def test_a_root_refuses_another_dataset_under_a_task_it_has_runs_of(tmp_path: Path) -> None:
    """A task's runs in one root share one dataset: the same path with other content (a recipe rebuilt
    elsewhere, an edited file) is refused before anything runs, naming both hashes; the old data passes."""
    from stores.datasets import load_dataset

    path = write_npz(hopper_random_dataset(episodes=8, seed=4), tmp_path / "hop.npz")
    first = load_dataset(str(path)).content_hash
    options = {"root": str(tmp_path / "root"), "datasets": [str(path)], "profile": "smoke", "overrides": TINY}
    spec, engine = build({**options, "arms": ["base"], "seeds": [0]})
    assert run_sweep(spec, engine, progress=False).status.counts["done"] == 1
    manifest = (tmp_path / "root" / "sweep.json").read_text()
    write_npz(hopper_random_dataset(episodes=8, seed=5), path)  # same name, other transitions
    second = load_dataset(str(path)).content_hash
    assert second != first
    spec, engine = build({**options, "arms": ["base"], "seeds": [0, 1]})
    with pytest.raises(UserInputError, match=f"dataset {first} \\(1 run\\).*content hash {second}"):
        run_sweep(spec, engine, progress=False)
    assert not (tmp_path / "root" / "hop" / "td3bc" / "runs" / "base" / "seed_1").exists()
    assert (tmp_path / "root" / "sweep.json").read_text() == manifest  # nothing written
    write_npz(hopper_random_dataset(episodes=8, seed=4), path)  # the data the root's runs used
    assert run_sweep(spec, engine, progress=False).status.counts["done"] == 2
