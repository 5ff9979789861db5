"""Recipes: the smoke SAC run, thresholds, determinism, metadata, atomic caching, kill-and-resume, the
announcement and older recipe versions (real MuJoCo, d3rlpy and Minari)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import minari
import numpy as np
import pytest

import stores.recipes as recipes
from stores.datasets import load_dataset
from stores.errors import UserInputError
from stores.names import parse_name
from stores.paths import minari_root
from stores.recipe_training import load_checkpoint
from stores.recipes import (
    RECIPE_VERSION,
    budget_for,
    build_recipe,
    cached_recipe_id,
    collect_rollouts,
    recipe_cached,
    recipe_dataset_id,
)
from stores.scores import normalized_score, return_for_score
from stores.sources import write_minari

REPO = Path(__file__).resolve().parents[1]


def test_dataset_ids_keep_profiles_seeds_and_versions_apart() -> None:
    assert RECIPE_VERSION == 1
    assert recipe_dataset_id("hopper-mr", profile="cpu") == "diffusion-augment/cpu/hopper-medium-replay-v1"
    assert recipe_dataset_id("hopper-medium-replay", profile="smoke", seed=2) == \
        "diffusion-augment/smoke/hopper-medium-replay-seed2-v1"
    assert recipe_dataset_id("hopper-mr", profile="cpu", version=0) == \
        "diffusion-augment/cpu/hopper-medium-replay-v0"
    assert recipe_dataset_id("umaze", profile="cpu") == "diffusion-augment/cpu/maze2d-umaze-v1"
    with pytest.raises(UserInputError, match="did you mean 'cpu'"):
        recipe_dataset_id("hopper-mr", profile="cpux")


def test_budgets_scale_with_profile() -> None:
    smoke, cpu, paper = (budget_for(p) for p in ("smoke", "cpu", "paper"))
    assert smoke.medium_max_steps <= 2000 and smoke.rollout_transitions <= 2000
    assert 100_000 <= cpu.medium_max_steps <= 300_000 and cpu.rollout_transitions == 100_000
    assert paper.rollout_transitions == 1_000_000 and paper.expert_steps == 1_000_000
    assert {b.agent for b in (smoke, cpu, paper)} == {"sac"}
    assert cpu.eval_episodes == paper.eval_episodes == 10


def test_smoke_medium_replay_is_cached_with_metadata() -> None:
    ds = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    budget = budget_for("smoke")
    assert ds.name == "hopper-medium-replay" and ds.env_id == "Hopper-v5"
    recipe = ds.provenance["recipe"]
    # The smoke budget cannot reach the medium threshold: snapshot at the cap, recorded as not reached.
    assert recipe["threshold_reached"] is False and recipe["stopped_by"] == "step cap"
    assert recipe["threshold_step"] is None and recipe["threshold"] == "medium"
    assert recipe["snapshot_step"] == budget.medium_max_steps == ds.num_transitions
    assert recipe["recipe_version"] == recipes.RECIPE_VERSION and recipe["seed"] == 0
    assert recipe["recipe"] == "d3rlpy-sac-online" and recipe["agent"] == "sac"
    assert recipe["threshold_return"] == pytest.approx(return_for_score(33.0, "hopper"))
    assert recipe["behaviour_eval_episodes"] == budget.eval_episodes
    assert recipe["eval_history"][-1] == [budget.medium_max_steps, recipe["behaviour_eval_return"],
                                          recipe["behaviour_eval_std"]]
    assert recipe["behaviour_eval_score"] == pytest.approx(normalized_score(recipe["behaviour_eval_return"],
                                                                            "hopper"))
    # The same run cached the medium rollouts too; both open with plain minari.load_dataset.
    assert recipe_cached("hopper-medium", profile="smoke")
    medium = load_dataset("hopper-md", profile="smoke", build=False)
    assert medium.num_transitions == budget.rollout_transitions
    m = minari.load_dataset(recipe_dataset_id("hopper-medium-replay", profile="smoke"))
    assert m.total_steps == ds.num_transitions
    # The replay buffer starts with uniform-random warm-up actions, later ones are SAC's samples.
    acts = ds.transitions.actions
    assert acts.min() >= -1.0 and acts.max() <= 1.0
    assert not any(p.name.startswith(".build-") for p in minari_root().iterdir())
    # Where it was built: the kernels torch dispatched to and the kernel variables, for telling two
    # builds of one recipe apart across machines.
    import torch

    machine = recipe["machine"]
    assert machine["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(machine["variables"]) == set(recipes.KERNEL_VARIABLES)


def test_machine_record_names_the_kernel_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    from stores.dataset_commands import recipe_lines

    monkeypatch.setenv("MKL_CBWR", "AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    record = recipes.machine_record()
    assert record["variables"]["MKL_CBWR"] == "AVX2" and record["variables"]["ATEN_CPU_CAPABILITY"] is None
    line = [x for x in recipe_lines({"recipe_version": 1, "machine": record}) if "built on" in x]
    assert len(line) == 1 and "MKL_CBWR=AVX2" in line[0] and "ATEN_CPU_CAPABILITY" not in line[0]
    for name in recipes.KERNEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    unpinned = recipe_lines({"recipe_version": 1, "machine": recipes.machine_record()})
    assert any("built on" in x and "no kernel pins" in x for x in unpinned)


def test_other_seed_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another seed gives other data (the same seed gives the same bytes: see the kill-and-resume test,
    which compares a resumed build in another process with the session's uninterrupted one)."""
    cached = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    other = build_recipe("hopper-mr", profile="smoke", seed=1, progress=False, announce=False)
    assert other.content_hash != cached.content_hash
    assert (tmp_path / "minari" / f"diffusion-augment/smoke/hopper-medium-replay-seed1-v{RECIPE_VERSION}"
            / "data").is_dir()


def test_expert_run_yields_all_trained_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))  # its checkpoints stay out of the session's
    produced = recipes._produce(parse_name("hopper-expert"), profile="smoke", seed=0, progress=False)
    by_kind = {ds.name.split("-", 1)[1]: (ds, md) for ds, md in produced.values()}
    assert set(by_kind) == {"medium-replay", "medium", "expert", "medium-expert"}
    # Same seed: the expert run passes through exactly the medium run's replay buffer.
    assert by_kind["medium-replay"][0].content_hash == cached.content_hash
    medium, expert, mixed = (by_kind[k][0] for k in ("medium", "expert", "medium-expert"))
    assert mixed.episodes == medium.episodes + expert.episodes
    assert by_kind["expert"][1]["env_steps"] == budget_for("smoke").expert_steps
    assert by_kind["expert"][1]["threshold"] == "expert"
    assert by_kind["expert"][1]["threshold_reached"] is False
    medium_snapshot = by_kind["medium-expert"][1]["medium_snapshot"]
    assert medium_snapshot["snapshot_step"] == budget_for("smoke").medium_max_steps
    assert expert.num_transitions == budget_for("smoke").rollout_transitions


def test_random_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = build_recipe("walker2d-random", profile="smoke", seed=0, progress=False)
    assert ds.env_id == "Walker2d-v4" and ds.observation_size == 17 and ds.action_size == 6
    assert ds.num_transitions == budget_for("smoke").rollout_transitions
    assert ds.provenance["recipe"]["env_steps"] == 0


def test_collect_rollouts_exact_size_and_deterministic() -> None:
    def policy(obs: np.ndarray) -> np.ndarray:
        return np.tanh(obs[:, :3])

    a = collect_rollouts(policy, "Hopper-v5", transitions=250, num_envs=3, seed=5, max_episode_steps=40,
                         progress=False)
    b = collect_rollouts(policy, "Hopper-v5", transitions=250, num_envs=3, seed=5, max_episode_steps=40,
                         progress=False)
    assert sum(len(e) for e in a) == 250
    assert all(len(e) <= 40 for e in a)
    assert all(e.terminated[-1] or e.truncated[-1] for e in a)
    for ea, eb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ea.observations, eb.observations)


def test_failed_build_leaves_nothing_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    ids = [recipe_dataset_id(n, profile="smoke") for n in ("hopper-medium-replay", "hopper-medium")]
    fake_run = {i: (cached, {"profile": "smoke", "seed": 0}) for i in ids}
    monkeypatch.setattr(recipes, "_produce", lambda *a, **k: fake_run)
    real_write = recipes.write_minari
    calls = []

    def write_then_die(*args: object, **kwargs: object) -> Path:
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted half-way through writing the run's datasets
        return real_write(*args, **kwargs)

    monkeypatch.setattr(recipes, "write_minari", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_recipe("hopper-medium-replay", profile="smoke", progress=False)
    assert len(calls) == 2
    leftovers = [p for p in root.rglob("*") if p.name == "data" or p.name.startswith(".build-")]
    assert leftovers == []
    assert not recipe_cached("hopper-medium-replay", profile="smoke")
    monkeypatch.setattr(recipes, "write_minari", real_write)
    built = build_recipe("hopper-medium-replay", profile="smoke", progress=False)
    assert built.content_hash == cached.content_hash
    assert os.path.isdir(root / ids[1] / "data")


def test_threshold_reached_stops_at_the_first_evaluation(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUGMENT_HOME", str(tmp_path / "home"))
    smoke = budget_for("smoke")
    easy = dataclasses.replace(smoke, medium_score=-50.0)  # any policy scores above -50
    produced = recipes._produce(parse_name("hopper-medium-replay"), profile="smoke", seed=0, progress=False,
                                budget=easy)
    by_kind = {ds.name.split("-", 1)[1]: (ds, md) for ds, md in produced.values()}
    mr, md = by_kind["medium-replay"]
    first_eval = smoke.eval_every  # the first evaluation after the 300 warm-up steps
    assert md["threshold_reached"] is True and md["stopped_by"] == "threshold"
    assert md["threshold_step"] == md["snapshot_step"] == first_eval == mr.num_transitions
    assert [e[0] for e in md["eval_history"]] == [first_eval]
    assert md["threshold_return"] == pytest.approx(return_for_score(-50, "hopper"))
    assert md["behaviour_eval_return"] >= md["threshold_return"]
    assert by_kind["medium"][0].num_transitions == smoke.rollout_transitions


@pytest.mark.slow
def test_killed_build_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """kill -9 a smoke build after its first checkpoint, rerun: it resumes and the data are bit-identical
    to an uninterrupted build."""
    uninterrupted = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    env = dict(os.environ, AUGMENT_HOME=str(tmp_path / "home"), MINARI_DATASETS_PATH=str(tmp_path / "minari"),
               OMP_NUM_THREADS="1")
    ckpt = tmp_path / "home" / "recipe-checkpoints" / f"hopper-smoke-seed0-v{RECIPE_VERSION}.npz"
    cmd = [sys.executable, "-m", "cli", "datasets", "build", "hopper-medium-replay", "--profile", "smoke",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        loaded = load_checkpoint(ckpt)
        if loaded is not None and loaded[0]["t"] < budget_for("smoke").medium_max_steps:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = int(loaded[0]["t"])
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the build finished before a kill"
    assert not (tmp_path / "minari" / recipe_dataset_id("hopper-mr", profile="smoke")).exists()
    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming from the checkpoint at env step {killed_at:,}" in again.stderr
    resumed = recipes.read_minari(recipe_dataset_id("hopper-mr", profile="smoke"), root=tmp_path / "minari")
    assert resumed.provenance["recipe"]["resumed_from"] == [killed_at]
    assert resumed.num_transitions == uninterrupted.num_transitions == budget_for("smoke").medium_max_steps
    assert resumed.content_hash == uninterrupted.content_hash  # bit-identical
    assert not ckpt.exists()  # a finished build removes its checkpoint


def test_every_build_says_what_it_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    load_dataset("walker2d-random", profile="smoke", progress=False)
    err = capsys.readouterr().err.splitlines()
    d4rl = tmp_path / "home" / ".d4rl" / "datasets" / "walker2d_random-v2.hdf5"
    assert err[0] == f"walker2d-random: no D4RL file at {d4rl} and no Minari dataset (Minari has no random)."
    assert err[1].startswith("building the project's recipe instead: 1,000 steps of a uniform random policy")
    assert err[2].startswith("estimated time: ~") and "env steps/s measured just now" in err[2]
    rid = recipe_dataset_id("walker2d-random", profile="smoke")
    assert err[3] == f"cached at: {tmp_path / 'minari' / rid} (Minari id {rid})"
    lines = recipes.announcement("hopper-medium-expert", profile="cpu")
    assert "no Minari dataset mujoco/hopper/medium-v0 + mujoco/hopper/expert-v0" in lines[0]
    assert "SAC trained online in Hopper-v5 until its evaluation over 10 episodes reaches the expert " \
           "threshold (normalized 90), at most 600,000 env steps" in lines[1]
    assert lines[2].startswith("estimated time: up to ") and lines[3].startswith("cached at: ")


def test_estimate_adds_training_evaluations_and_rollouts() -> None:
    b = dataclasses.replace(budget_for("smoke"), warmup_steps=100, medium_max_steps=1100, eval_every=500,
                            eval_episodes=2, max_episode_steps=200, rollout_transitions=1000, rollout_envs=4)
    costs = {"env_s": 1e-4, "act_s": 1e-3, "update_s": 1e-2}
    # 100 warm-up steps (env only) + 1000 trained steps + 2 evaluations of 2 x 200 steps + 1000 rollout steps
    expected = (100 * 1e-4 + 1000 * (1e-4 + 1e-3 + 1e-2) + 2 * (2 * 200 * 1e-4 + 200 * 1e-3)
                + 1000 * (1e-4 + 1e-3 / 4))
    assert recipes.estimate_locomotion_seconds(b, costs, until_expert=False) == pytest.approx(expected)
    resumed = recipes.estimate_locomotion_seconds(b, costs, until_expert=False, start_step=600)
    assert resumed == pytest.approx(500 * (1e-4 + 1e-3 + 1e-2) + 1 * (2 * 200 * 1e-4 + 200 * 1e-3)
                                    + 1000 * (1e-4 + 1e-3 / 4))


def test_an_older_recipe_version_stays_loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from stores.datasets import resolve_source

    cached = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    old_id = recipe_dataset_id("hopper-mr", profile="smoke", version=0)
    write_minari(cached, old_id, metadata={"recipe": "d3rlpy-td3-online", "recipe_version": 0,
                                           "threshold_reached": False, "medium_threshold_score": 33.0})
    assert cached_recipe_id("hopper-mr", profile="smoke") == (old_id, 0)
    src = resolve_source("hopper-mr", profile="smoke")
    assert (src.kind, src.location, src.cached, src.recipe_version) == ("recipe", old_id, True, 0)
    ds = load_dataset("hopper-mr", profile="smoke", build=False)
    assert ds.content_hash == cached.content_hash and ds.provenance["recipe"]["recipe_version"] == 0
    err = capsys.readouterr().err
    assert f"note: using {old_id} (recipe v0; the current recipe is v{RECIPE_VERSION}" in err
    assert "augment datasets build hopper-medium-replay --profile smoke" in err
