"""D4RL HDF5 / npz / Minari readers and writers on small data written by the tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import minari
import numpy as np
import pytest

from stores.errors import UserInputError
from stores.schema import Episode, OfflineDataset
from stores.sources import (
    episodes_from_flat,
    read_d4rl_hdf5,
    read_minari,
    read_npz,
    write_d4rl_hdf5,
    write_minari,
    write_npz,
)


def d4rl_arrays(n: int = 60, obs: int = 11, act: int = 3, seed: int = 0,
                next_obs: bool = False) -> dict[str, np.ndarray]:
    """Hopper-sized flat arrays: episodes of 20, 15 (terminal), then a timeout at 40, then 20 open rows."""
    rng = np.random.default_rng(seed)
    arrays = {
        "observations": rng.standard_normal((n, obs)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, act)).astype(np.float32),
        "rewards": rng.standard_normal(n).astype(np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }
    arrays["timeouts"][19] = True
    arrays["terminals"][34] = True
    arrays["timeouts"][39] = True
    if next_obs:  # the next row's state inside an episode, a state of its own after each episode end
        nxt = np.concatenate([arrays["observations"][1:], rng.standard_normal((1, obs)).astype(np.float32)])
        ends = arrays["terminals"] | arrays["timeouts"]
        nxt[ends] = rng.standard_normal((int(ends.sum()), obs)).astype(np.float32)
        arrays["next_observations"] = nxt
    return arrays


def write_h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def assert_same(a: OfflineDataset, b: OfflineDataset) -> None:
    assert a.num_episodes == b.num_episodes and a.content_hash == b.content_hash
    for ea, eb in zip(a.episodes, b.episodes, strict=True):
        for f in ("observations", "actions", "rewards", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(ea, f), getattr(eb, f))


def test_hdf5_and_npz_with_the_same_arrays_load_identically(tmp_path: Path) -> None:
    arrays = d4rl_arrays()
    h5 = read_d4rl_hdf5(write_h5(tmp_path / "d.hdf5", arrays), env_id="Hopper-v5")
    np.savez(tmp_path / "d.npz", **arrays)
    nz = read_npz(tmp_path / "d.npz", env_id="Hopper-v5")
    assert_same(h5, nz)
    assert h5.env_id == nz.env_id == "Hopper-v5"
    assert h5.provenance["source"] == "d4rl-hdf5" and nz.provenance["source"] == "npz"


def test_episode_split_without_next_observations() -> None:
    arrays = d4rl_arrays()
    eps = episodes_from_flat(arrays)
    # timeout at row 19 -> its row has no successor and is dropped: 19 steps; terminal at 34 kept: 15 steps;
    # timeout at 39 -> 4 steps; rows 40..59 end the file -> last row dropped, 19 steps, truncated.
    assert [len(e) for e in eps] == [19, 15, 4, 19]
    assert [bool(e.terminated[-1]) for e in eps] == [False, True, False, False]
    assert all(e.truncated[-1] != e.terminated[-1] for e in eps)
    np.testing.assert_array_equal(eps[0].observations, arrays["observations"][:20])
    np.testing.assert_array_equal(eps[1].observations[1:-1], arrays["observations"][21:35])
    np.testing.assert_array_equal(eps[1].actions, arrays["actions"][20:35])


def test_episode_split_with_next_observations() -> None:
    arrays = d4rl_arrays(next_obs=True)
    eps = episodes_from_flat(arrays)
    assert [len(e) for e in eps] == [20, 15, 5, 20]
    assert eps[-1].truncated[-1] and not eps[-1].terminated.any()
    np.testing.assert_array_equal(eps[0].observations[-1], arrays["next_observations"][19])
    np.testing.assert_array_equal(eps[3].observations[-1], arrays["next_observations"][59])
    assert sum(len(e) for e in eps) == 60


def test_next_observations_of_the_file_are_kept_where_they_differ_from_the_next_row() -> None:
    arrays = d4rl_arrays(next_obs=True)
    arrays["next_observations"][7] += 0.5  # the file says row 7 did not lead to row 8's state
    eps = episodes_from_flat(arrays)
    assert [len(e) for e in eps] == [8, 12, 15, 5, 20]  # the episode is cut after row 7 (truncated)
    assert eps[0].truncated[-1] and not eps[0].terminated.any()
    flat = np.concatenate([e.observations[1:] for e in eps])
    np.testing.assert_array_equal(flat, arrays["next_observations"])  # every row's own next state


def test_writers_round_trip(tmp_path: Path) -> None:
    ds = read_d4rl_hdf5(write_h5(tmp_path / "d.hdf5", d4rl_arrays(next_obs=True)), env_id="Hopper-v5")
    back_h5 = read_d4rl_hdf5(write_d4rl_hdf5(ds, tmp_path / "out.hdf5"))
    back_npz = read_npz(write_npz(ds, tmp_path / "out.npz"))
    assert_same(ds, back_h5)
    assert_same(ds, back_npz)
    assert back_h5.env_id == back_npz.env_id == "Hopper-v5"  # the writers store the env id


def test_minari_round_trip_is_readable_by_minari(tmp_path: Path) -> None:
    ds = read_d4rl_hdf5(write_h5(tmp_path / "d.hdf5", d4rl_arrays(next_obs=True)), env_id="Hopper-v5")
    root = tmp_path / "minari"
    path = write_minari(ds, "test-ns/hopper-tiny-v0", root=root, metadata={"seed": 3})
    assert (path / "data").is_dir()
    back = read_minari("test-ns/hopper-tiny-v0", root=root)
    assert_same(ds, back)
    assert back.env_id == "Hopper-v5" and back.provenance["recipe"] == {"seed": 3}
    assert back.episodes[0].observations.dtype == np.float32
    import os

    old = os.environ["MINARI_DATASETS_PATH"]
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        m = minari.load_dataset("test-ns/hopper-tiny-v0")
        assert m.total_episodes == ds.num_episodes and m.total_steps == ds.num_transitions
    finally:
        os.environ["MINARI_DATASETS_PATH"] = old


def test_minari_missing_dataset_says_how(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not in the local root.*--allow-download"):
        read_minari("mujoco/hopper/medium-v0", root=tmp_path)


@pytest.mark.parametrize("suffix", [".hdf5", ".npz"])
def test_missing_key_names_it(tmp_path: Path, suffix: str) -> None:
    arrays = d4rl_arrays()
    del arrays["timeouts"]
    path = tmp_path / f"bad{suffix}"
    write_h5(path, arrays) if suffix == ".hdf5" else np.savez(path, **arrays)
    reader = read_d4rl_hdf5 if suffix == ".hdf5" else read_npz
    with pytest.raises(UserInputError, match="missing key 'timeouts'"):
        reader(path)


def test_mismatched_lengths_name_key_and_row(tmp_path: Path) -> None:
    arrays = d4rl_arrays()
    arrays["rewards"] = arrays["rewards"][:50]
    with pytest.raises(UserInputError, match=r"'rewards' has 50 rows.*first bad row 50"):
        read_d4rl_hdf5(write_h5(tmp_path / "bad.hdf5", arrays))


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "next_observations"])
def test_nan_or_inf_names_key_and_first_row(tmp_path: Path, key: str) -> None:
    arrays = d4rl_arrays(next_obs=True)
    arrays[key] = arrays[key].copy()
    arrays[key][23] = np.inf
    arrays[key][41] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserInputError, match=rf"'{key}' holds NaN or inf \(first bad row 23\)"):
        read_npz(tmp_path / "bad.npz")


def test_dimensions_must_fit_the_env(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", **d4rl_arrays(obs=17, act=6))
    with pytest.raises(UserInputError, match=r"'observations' has 17 columns but Hopper-v5 .* 11"):
        read_npz(tmp_path / "d.npz", env_id="Hopper-v5")
    np.savez(tmp_path / "a.npz", **d4rl_arrays(obs=11, act=6))
    with pytest.raises(UserInputError, match=r"'actions' has 6 columns but Hopper-v5 actions have 3"):
        read_npz(tmp_path / "a.npz", env_id="Hopper-v5")
    ok = read_npz(tmp_path / "d.npz", env_id="HalfCheetah-v5")
    assert ok.observation_size == 17


def test_not_a_file_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no such file"):
        read_d4rl_hdf5(tmp_path / "nope.hdf5")
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(UserInputError, match="junk.hdf5: is a text file, not an HDF5 file"):
        read_d4rl_hdf5(tmp_path / "junk.hdf5")
    with pytest.raises(UserInputError, match="unknown Gymnasium environment 'Hoppr-v5'"):
        np.savez(tmp_path / "d.npz", **d4rl_arrays())
        read_npz(tmp_path / "d.npz", env_id="Hoppr-v5")


def test_dataset_validation_of_episode_records() -> None:
    ep = Episode(observations=np.zeros((3, 2), np.float32), actions=np.zeros((3, 1), np.float32),
                 rewards=np.zeros(3, np.float32), terminated=np.zeros(3, bool), truncated=np.ones(3, bool))
    with pytest.raises(UserInputError, match="'observations' has 3 rows"):
        OfflineDataset(name="x", episodes=(ep,), env_id=None).validate()
