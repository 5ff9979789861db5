"""Recipes: the smoke TD3 run, determinism, metadata, atomic caching (real MuJoCo, d3rlpy and Minari)."""

from __future__ import annotations

import os
from pathlib import Path

import minari
import numpy as np
import pytest

import stores.recipes as recipes
from stores.datasets import load_dataset
from stores.errors import UserInputError
from stores.names import parse_name
from stores.paths import minari_root
from stores.recipes import (
    budget_for,
    build_recipe,
    collect_rollouts,
    recipe_cached,
    recipe_dataset_id,
)
from stores.scores import return_for_score


def test_dataset_ids_keep_profiles_and_seeds_apart() -> None:
    assert recipe_dataset_id("hopper-mr", profile="cpu") == "diffusion-augment/cpu/hopper-medium-replay-v0"
    assert recipe_dataset_id("hopper-medium-replay", profile="smoke", seed=2) == \
        "diffusion-augment/smoke/hopper-medium-replay-seed2-v0"
    with pytest.raises(UserInputError, match="did you mean 'cpu'"):
        recipe_dataset_id("hopper-mr", profile="cpux")


def test_budgets_scale_with_profile() -> None:
    smoke, cpu, paper = (budget_for(p) for p in ("smoke", "cpu", "paper"))
    assert smoke.medium_max_steps <= 2000 and smoke.rollout_transitions <= 2000
    assert 100_000 <= cpu.medium_max_steps <= 200_000 and cpu.rollout_transitions == 100_000
    assert paper.rollout_transitions == 1_000_000 and paper.expert_steps == 1_000_000


def test_smoke_medium_replay_is_cached_with_metadata() -> None:
    ds = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    budget = budget_for("smoke")
    assert ds.name == "hopper-medium-replay" and ds.env_id == "Hopper-v5"
    recipe = ds.provenance["recipe"]
    # The smoke budget cannot reach the medium threshold: snapshot at the end of the budget, recorded.
    assert recipe["threshold_reached"] is False
    assert recipe["snapshot_step"] == budget.medium_max_steps == ds.num_transitions
    assert recipe["recipe_version"] == recipes.RECIPE_VERSION and recipe["seed"] == 0
    assert recipe["medium_threshold_return"] == pytest.approx(return_for_score(33.0, "hopper"))
    assert np.isfinite(recipe["behaviour_eval_return"])
    assert recipe["eval_history"][-1] == [budget.medium_max_steps, recipe["behaviour_eval_return"]]
    # The same run cached the medium rollouts too; both open with plain minari.load_dataset.
    assert recipe_cached("hopper-medium", profile="smoke")
    medium = load_dataset("hopper-md", profile="smoke", build=False)
    assert medium.num_transitions == budget.rollout_transitions
    m = minari.load_dataset(recipe_dataset_id("hopper-medium-replay", profile="smoke"))
    assert m.total_steps == ds.num_transitions
    # The replay buffer starts with uniform-random warm-up actions, later ones are TD3's (noisy) actions.
    acts = ds.transitions.actions
    assert acts.min() >= -1.0 and acts.max() <= 1.0
    assert not any(p.name.startswith(".build-") for p in minari_root().iterdir())


def test_same_seed_same_hash_other_seed_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    again = build_recipe("hopper-mr", profile="smoke", seed=0, progress=False)
    assert again.content_hash == cached.content_hash
    other = build_recipe("hopper-mr", profile="smoke", seed=1, progress=False)
    assert other.content_hash != cached.content_hash
    assert (tmp_path / "minari" / "diffusion-augment/smoke/hopper-medium-replay-seed1-v0" / "data").is_dir()


def test_expert_run_yields_all_trained_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    produced = recipes._produce(parse_name("hopper-expert"), profile="smoke", seed=0, progress=False)
    by_kind = {ds.name.split("-", 1)[1]: (ds, md) for ds, md in produced.values()}
    assert set(by_kind) == {"medium-replay", "medium", "expert", "medium-expert"}
    # Same seed: the expert run passes through exactly the medium run's replay buffer.
    assert by_kind["medium-replay"][0].content_hash == cached.content_hash
    medium, expert, mixed = (by_kind[k][0] for k in ("medium", "expert", "medium-expert"))
    assert mixed.episodes == medium.episodes + expert.episodes
    assert by_kind["expert"][1]["env_steps"] == budget_for("smoke").expert_steps
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
