"""The registry: names and aliases, each resolution path, explicit sources, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_sources import d4rl_arrays, write_h5

import stores.datasets as datasets
from stores.datasets import canonical_name, load_dataset, resolve_source
from stores.errors import UserInputError
from stores.names import NAMES, all_aliases
from stores.sources import read_npz, write_d4rl_hdf5, write_minari


@pytest.fixture
def tiny_hopper(tmp_path: Path):
    np.savez(tmp_path / "tiny.npz", **d4rl_arrays(next_obs=True))
    return read_npz(tmp_path / "tiny.npz", env_id="Hopper-v5")


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME (so ~/.d4rl is empty) and an empty Minari root."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


def test_names_and_aliases() -> None:
    assert len(NAMES) == 18 and NAMES[-3:] == ("maze2d-umaze", "maze2d-medium", "maze2d-large")
    assert canonical_name("hopper-mr") == "hopper-medium-replay"
    assert canonical_name("hopper-me") == "hopper-medium-expert"
    assert canonical_name("hopper-md") == canonical_name("hopper-m") == "hopper-medium"
    assert canonical_name("hopper-r") == "hopper-random"
    assert canonical_name("hopper-e") == "hopper-expert"
    assert canonical_name("walker2d-mr") == "walker2d-medium-replay"
    assert canonical_name("halfcheetah_medium_replay-v2") == "halfcheetah-medium-replay"
    assert all(canonical_name(a) == c for a, c in all_aliases().items())
    assert canonical_name("maze2d-umaze-v1") == canonical_name("maze2d_u") == "maze2d-umaze"
    assert canonical_name("pointmaze-large") == "maze2d-large"


@pytest.mark.parametrize(("typo", "suggestion"), [("hoper-medium-replay", "hopper-medium-replay"),
                                                    ("walker-medum", "walker2d-medium"),
                                                    ("halfcheeta-expert", "halfcheetah-expert")])
def test_unknown_name_suggests(typo: str, suggestion: str) -> None:
    with pytest.raises(UserInputError, match=f"did you mean '{suggestion}'"):
        load_dataset(typo)


def test_resolution_a_d4rl_file_in_home(isolated: Path, tiny_hopper) -> None:
    d4rl = isolated / "home" / ".d4rl" / "datasets"
    d4rl.mkdir(parents=True)
    write_h5(d4rl / "hopper_medium_replay-v2.hdf5", d4rl_arrays(next_obs=True))  # no env id inside
    src = resolve_source("hopper-mr")
    assert (src.kind, src.cached, src.path) == ("d4rl-hdf5", True, d4rl / "hopper_medium_replay-v2.hdf5")
    ds = load_dataset("hopper-mr")
    assert ds.name == "hopper-medium-replay" and ds.env_id == "Hopper-v5"
    assert ds.provenance["resolved"] == "d4rl-hdf5"
    assert ds.content_hash == tiny_hopper.content_hash
    # D4RL_DATASET_DIR moves the folder, as in D4RL.
    assert datasets.d4rl_dir() == d4rl


def test_resolution_b_local_minari(isolated: Path, tiny_hopper) -> None:
    write_minari(tiny_hopper, "mujoco/hopper/medium-v0")
    src = resolve_source("hopper-medium", profile="smoke")
    assert (src.kind, src.location, src.cached) == ("minari", "mujoco/hopper/medium-v0", True)
    ds = load_dataset("hopper-medium", profile="smoke", build=False)
    assert ds.provenance["resolved"] == "minari" and ds.content_hash == tiny_hopper.content_hash
    # medium-expert = medium + expert when both are local.
    assert resolve_source("hopper-medium-expert", profile="smoke").kind == "recipe"
    write_minari(tiny_hopper, "mujoco/hopper/expert-v0")
    me = load_dataset("hopper-me", profile="smoke", build=False)
    assert me.num_episodes == 2 * tiny_hopper.num_episodes and me.name == "hopper-medium-expert"
    # There is no medium-replay on Minari: that name falls through to the recipe.
    assert resolve_source("hopper-medium-replay", profile="smoke").kind == "recipe"


def test_resolution_c_recipe_built_on_demand_once() -> None:
    src = resolve_source("hopper-medium-replay", profile="smoke")
    assert src.kind == "recipe"
    ds = load_dataset("hopper-medium-replay", profile="smoke", progress=False)
    assert ds.provenance["resolved"] == "recipe" and ds.provenance["recipe"]["profile"] == "smoke"
    assert resolve_source("hopper-medium-replay", profile="smoke").cached
    assert load_dataset("hopper-mr", profile="smoke") is ds  # memoised while the files are unchanged


def test_missing_recipe_without_build_says_how(isolated: Path) -> None:
    with pytest.raises(UserInputError, match="augment datasets build hopper-random --profile smoke"):
        load_dataset("hopper-random", profile="smoke", build=False)
    with pytest.raises(UserInputError, match="augment datasets build maze2d-large --profile cpu"):
        load_dataset("maze2d-l", profile="cpu", build=False)


def test_maze2d_resolves_to_the_recipe_only(isolated: Path) -> None:
    d4rl = isolated / "home" / ".d4rl" / "datasets"
    d4rl.mkdir(parents=True)
    write_h5(d4rl / "maze2d-umaze-sparse-v1.hdf5", d4rl_arrays(next_obs=True))  # D4RL's frame: not used
    src = resolve_source("maze2d-umaze", profile="smoke")
    assert (src.kind, src.cached) == ("recipe", False)
    assert src.location == "diffusion-augment/smoke/maze2d-umaze-v1"


def test_explicit_paths_and_minari_ids(isolated: Path, tiny_hopper) -> None:
    h5 = write_d4rl_hdf5(tiny_hopper, isolated / "x.hdf5")
    assert load_dataset(str(h5)).content_hash == tiny_hopper.content_hash
    write_h5(isolated / "noenv.h5", d4rl_arrays())
    assert load_dataset(str(isolated / "noenv.h5")).env_id is None
    assert load_dataset(str(isolated / "noenv.h5"), env_id="Hopper-v5").env_id == "Hopper-v5"
    write_minari(tiny_hopper, "mine/tiny-v1")
    ds = load_dataset("minari:mine/tiny-v1")
    assert ds.content_hash == tiny_hopper.content_hash and ds.env_id == "Hopper-v5"
    with pytest.raises(UserInputError, match=r"'observations'/'actions' have 11/3 columns but HalfCheetah"):
        load_dataset("minari:mine/tiny-v1", env_id="HalfCheetah-v5")


def test_explicit_source_errors(isolated: Path) -> None:
    with pytest.raises(UserInputError, match="no such file"):
        load_dataset(str(isolated / "missing.hdf5"))
    (isolated / "data.csv").write_text("1,2")
    with pytest.raises(UserInputError, match="cannot read 'data.csv'"):
        load_dataset(str(isolated / "data.csv"))
    with pytest.raises(UserInputError, match="not in the local root"):
        load_dataset("minari:mujoco/hopper/medium-v0")
    with pytest.raises(UserInputError, match="unknown Gymnasium environment"):
        load_dataset("hopper-mr", env_id="Hoper-v5")
