"""Readers and writers for offline-RL data files: D4RL-layout HDF5, npz with the same keys, Minari.

D4RL layout (flat arrays of N rows): ``observations`` (N, obs), ``actions`` (N, act), ``rewards`` (N,),
``terminals`` (N,), ``timeouts`` (N,), optionally ``next_observations`` (N, obs). Episodes are split after
every row with ``terminals | timeouts``; a row's next observation is ``next_observations[i]`` when present,
otherwise the next row's observation. With ``next_observations``, a row whose ``next_observations[i]``
differs from ``observations[i+1]`` also ends its episode (marked truncated), so every row keeps the file's
own next observation. Rows after the last episode end form a final episode cut by the end of the data
(marked truncated). Without ``next_observations`` the last row of every episode has no next observation in
the file: the row is dropped (D4RL's own convention), except that a terminal row keeps its own observation
as the (unused) terminal state so terminal rewards are not lost.

Input checks (one :class:`UserInputError` line naming the file, the key and the first bad row): numeric
columns must be numbers (not text or objects), finite, and within float32's range (they are stored as
float32); ``terminals`` / ``timeouts`` must be booleans or 0/1 numbers (text such as ``"0"`` is refused,
never read as True). A file that is not what its name says (text, a pickle, a truncated archive) is named
as such.

Minari datasets are written with ``minari.create_dataset_from_buffers`` and ``EpisodeBuffer`` (no jax) and
read episode by episode; observations come back float32 whatever Minari stored (it keeps Hopper's
float64).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.guards import sniff, staged_file, user_error_from_os
from stores.paths import environ_set, minari_root
from stores.schema import Episode, OfflineDataset, check_finite

D4RL_REQUIRED: tuple[str, ...] = ("observations", "actions", "rewards", "terminals", "timeouts")
FLOAT32_MAX = float(np.finfo(np.float32).max)
_KIND_TEXT = {
    "text": "a text file", "pickle": "a Python pickle", "empty": "an empty file", "directory": "a directory",
    "hdf5": "an HDF5 file", "zip": "a zip (npz) archive", "npy": "a single .npy array", "gzip": "a gzip file",
    "binary": "a binary file of unknown type", "missing": "missing",
}


# --------------------------------------------------------------------------- reading files safely


def _not_a(p: Path, expected: str, kind: str, fix: str) -> UserInputError:
    return UserInputError(f"{p.name}: is {_KIND_TEXT.get(kind, kind)}, not {expected}; {fix}")


def load_npz_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read without unpickling; one UserInputError line naming the file
    (and key) for a missing, unreadable, truncated or damaged file, a text file, a pickle, a single ``.npy``,
    or a key holding Python objects."""
    import zipfile
    import zlib

    p = Path(path).expanduser()
    kind = sniff(p) if p.exists() else "missing"
    if kind == "missing":
        raise UserInputError(f"no such file: {p}")
    if kind != "zip":
        raise _not_a(p, "an npz archive", kind, "write one with numpy.savez(path, observations=..., ...)")
    where = f"{p.name}: "
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(p, allow_pickle=False) as data:
            for key in data.files:
                try:
                    out[key] = np.asarray(data[key])
                except ValueError as exc:
                    if "pickle" in str(exc) or "object" in str(exc):
                        raise UserInputError(
                            f"{where}key '{key}' holds Python objects (pickled, dtype object), which are not "
                            "loaded for safety; save it as a numeric array") from None
                    raise UserInputError(f"{where}key '{key}' cannot be read ({exc})") from None
                except (zipfile.BadZipFile, EOFError, zlib.error, KeyError, OSError) as exc:
                    raise UserInputError(
                        f"{where}key '{key}' is damaged or truncated ({type(exc).__name__}: {exc}); "
                        "re-create the file") from None
    except UserInputError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise UserInputError(f"{where}is a damaged or truncated npz archive ({exc}); re-create the file") \
            from None
    except PermissionError as exc:
        raise user_error_from_os(exc, p, "read") from None
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{where}not a readable npz file ({type(exc).__name__}: {exc})") from None
    return out


def load_hdf5_arrays(path: str | os.PathLike[str], keys: tuple[str, ...]) -> tuple[dict[str, np.ndarray],
                                                                                  str | None]:
    """The datasets ``keys`` (those present) of an HDF5 file and its ``env_id`` attribute; one
    UserInputError line naming the file (and key) for a missing, non-HDF5, truncated or damaged file."""
    import h5py

    p = Path(path).expanduser()
    kind = sniff(p) if p.exists() else "missing"
    if kind == "missing":
        raise UserInputError(f"no such file: {p}")
    if kind != "hdf5":
        hint = "rename it to .npz" if kind == "zip" else "write a D4RL-layout file with h5py"
        raise _not_a(p, "an HDF5 file", kind, hint)
    where = f"{p.name}: "
    try:
        f = h5py.File(p, "r")
    except PermissionError as exc:
        raise user_error_from_os(exc, p, "read") from None
    except OSError as exc:
        raise UserInputError(f"{where}is a damaged or truncated HDF5 file ({exc}); re-create the file") \
            from None
    arrays: dict[str, np.ndarray] = {}
    with f:
        for key in keys:
            if key not in f:
                continue
            if not isinstance(f[key], h5py.Dataset):
                raise UserInputError(f"{where}'{key}' is an HDF5 group, expected a dataset (an array)")
            try:
                arrays[key] = np.asarray(f[key])
            except (OSError, ValueError, TypeError) as exc:
                raise UserInputError(
                    f"{where}'{key}' cannot be read ({type(exc).__name__}: {exc}); the file is damaged or "
                    "truncated") from None
        stored_env = _h5_env_id(f)
    return arrays, stored_env


def as_float32(key: str, arr: np.ndarray, *, where: str = "") -> np.ndarray:
    """``arr`` as float32 after checking it is numeric, finite and within float32's range (|x| <= 3.4e38);
    UserInputError naming the key, the first bad row and the value otherwise (and no NumPy warnings)."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiub":
        what = "text" if arr.dtype.kind in "SU" else "Python objects" if arr.dtype.kind == "O" else \
            f"dtype {arr.dtype}"
        raise UserInputError(f"{where}'{key}' holds {what} (dtype {arr.dtype}); expected numbers")
    check_finite(key, arr, where=where)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and arr.size:
        too_big = np.abs(arr.reshape(arr.shape[0], -1)) > FLOAT32_MAX
        rows = np.flatnonzero(too_big.any(axis=1))
        if rows.size:
            row = int(rows[0])
            value = arr.reshape(arr.shape[0], -1)[row][too_big[row]][0]
            raise UserInputError(
                f"{where}'{key}' holds {float(value):.6g} at row {row}, beyond the float32 range "
                f"(|x| <= {FLOAT32_MAX:.3g}) the toolkit stores; rescale the data")
    return arr.astype(np.float32, copy=False)


def as_flags(key: str, arr: np.ndarray, *, where: str = "") -> np.ndarray:
    """``arr`` as bool, accepting booleans and 0/1 numbers only (text such as ``"0"`` is refused rather
    than read as True); UserInputError naming the key and the first bad row otherwise."""
    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iuf":
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero((arr != 0) & (arr != 1))
        if bad.size:
            raise UserInputError(
                f"{where}'{key}' holds {arr[bad[0]].item()!r} at row {int(bad[0])}; expected booleans or 0/1")
        return arr.astype(bool)
    what = "text" if arr.dtype.kind in "SU" else "Python objects" if arr.dtype.kind == "O" else \
        f"dtype {arr.dtype}"
    first = arr.reshape(-1)[0] if arr.size else None
    sample = f" such as {first.item() if isinstance(first, np.generic) else first!r}" if arr.size else ""
    raise UserInputError(f"{where}'{key}' holds {what}{sample} (dtype {arr.dtype}); store it as booleans "
                         "or 0/1 numbers")


# --------------------------------------------------------------------------- flat arrays <-> episodes


def _check_flat(arrays: dict[str, np.ndarray], where: str) -> int:
    """Validate D4RL flat arrays (keys, lengths, ranks, finiteness); return N. Raises UserInputError."""
    missing = [k for k in D4RL_REQUIRED if k not in arrays]
    if missing:
        raise UserInputError(f"{where}missing key '{missing[0]}' (a D4RL-layout file needs "
                             f"{', '.join(D4RL_REQUIRED)}; next_observations is optional)")
    n = int(arrays["observations"].shape[0]) if arrays["observations"].ndim else 0
    ranks = {"observations": 2, "actions": 2, "rewards": 1, "terminals": 1, "timeouts": 1,
             "next_observations": 2}
    for key, rank in ranks.items():
        if key not in arrays:
            continue
        arr = arrays[key]
        if key in ("rewards", "terminals", "timeouts") and arr.ndim == 2 and arr.shape[1] == 1:
            arrays[key] = arr = arr[:, 0]
        if arr.ndim != rank:
            raise UserInputError(f"{where}'{key}' has shape {arr.shape}; expected {rank} dimension(s)")
        if arr.shape[0] != n:
            raise UserInputError(
                f"{where}'{key}' has {arr.shape[0]} rows but 'observations' has {n} (first bad row "
                f"{min(arr.shape[0], n)})")
    if n == 0:
        raise UserInputError(f"{where}the file holds no rows")
    nxt = arrays.get("next_observations")
    if nxt is not None and nxt.shape[1] != arrays["observations"].shape[1]:
        raise UserInputError(f"{where}'next_observations' has {arrays['next_observations'].shape[1]} columns "
                             f"but 'observations' has {arrays['observations'].shape[1]}")
    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in arrays:
            arrays[key] = as_float32(key, arrays[key], where=where)
    for key in ("terminals", "timeouts"):
        arrays[key] = as_flags(key, arrays[key], where=where)
    return n


def episodes_from_flat(arrays: dict[str, np.ndarray], *, where: str = "") -> list[Episode]:
    """Split D4RL flat arrays into episodes (see the module docstring for the rules).

    arrays: ``observations`` (N, obs), ``actions`` (N, act), ``rewards`` (N,), ``terminals`` (N,),
    ``timeouts`` (N,), optional ``next_observations`` (N, obs). Returns episodes with float32 arrays.
    """
    arrays = dict(arrays)
    n = _check_flat(arrays, where)
    obs = arrays["observations"]
    act = arrays["actions"]
    rew = arrays["rewards"]
    term = arrays["terminals"]
    tout = arrays["timeouts"] & ~term
    nxt = arrays.get("next_observations")
    cut = np.zeros(n, dtype=bool)
    if nxt is not None and n > 1:
        # The file's own next state differs from the next row's state: the episode ends there, so the
        # row keeps its next_observations instead of having them replaced by observations[i+1].
        same = np.ascontiguousarray(nxt[:-1]).view(np.uint32) == np.ascontiguousarray(obs[1:]).view(np.uint32)
        cut[:-1] = ~same.all(axis=1) & ~(term[:-1] | tout[:-1])
    ends = np.flatnonzero(term | tout | cut)
    if ends.size == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    episodes: list[Episode] = []
    start = 0
    for end in ends.tolist():
        stop = end + 1  # rows start..end inclusive
        if nxt is not None:
            observations = np.concatenate([obs[start:stop], nxt[end:end + 1]])
            t_end = stop
        elif term[end]:
            # No next state in the file; a terminal state's observation is never used to bootstrap.
            observations = np.concatenate([obs[start:stop], obs[end:end + 1]])
            t_end = stop
        else:
            # Timeout or end of data without next_observations: the last row has no successor; drop it.
            observations = obs[start:stop]
            t_end = end
        if t_end - start >= 1:
            length = t_end - start
            terminated = np.zeros(length, dtype=bool)
            truncated = np.zeros(length, dtype=bool)
            if term[end] and t_end == stop:
                terminated[-1] = True
            else:
                truncated[-1] = True
            episodes.append(Episode(observations=observations, actions=act[start:t_end],
                                    rewards=rew[start:t_end], terminated=terminated, truncated=truncated))
        start = stop
    if not episodes:
        raise UserInputError(f"{where}no complete transition in the file (every episode has one row and no "
                             "next_observations)")
    return episodes


def flat_from_dataset(dataset: OfflineDataset) -> dict[str, np.ndarray]:
    """D4RL flat arrays (with ``next_observations``) of a dataset; read back they give the same episodes."""
    tr = dataset.transitions
    return {"observations": tr.observations, "actions": tr.actions, "rewards": tr.rewards,
            "next_observations": tr.next_observations, "terminals": tr.terminals, "timeouts": tr.timeouts}


def _check_env_fit(episodes: list[Episode], env_id: str | None, where: str) -> None:
    """Fail naming the key when observation/action sizes do not fit the env's spaces."""
    if env_id is None:
        return
    obs_dim, act_dim = env_dims(env_id)
    got_obs, got_act = episodes[0].observations.shape[1], episodes[0].actions.shape[1]
    if got_obs != obs_dim:
        raise UserInputError(f"{where}'observations' has {got_obs} columns but {env_id} observations have "
                             f"{obs_dim} (row 0); pass the right --env")
    if got_act != act_dim:
        raise UserInputError(f"{where}'actions' has {got_act} columns but {env_id} actions have {act_dim} "
                             f"(row 0); pass the right --env")


def env_dims(env_id: str) -> tuple[int, int]:
    """(observation size, action size) of a Gymnasium env (flat Box spaces); UserInputError if unknown."""
    import gymnasium as gym

    try:
        spec = gym.spec(env_id)
    except Exception as exc:  # gymnasium raises several error types for unknown ids
        raise UserInputError(f"unknown Gymnasium environment '{env_id}' ({exc.__class__.__name__}); "
                             "use e.g. Hopper-v5, HalfCheetah-v5 or Walker2d-v4") from exc
    with quiet_mujoco():
        env = gym.make(spec)
    try:
        obs_shape = env.observation_space.shape
        act_shape = env.action_space.shape
    finally:
        env.close()
    if obs_shape is None or act_shape is None or len(obs_shape) != 1 or len(act_shape) != 1:
        raise UserInputError(f"environment '{env_id}' does not have flat observation/action vectors")
    return int(obs_shape[0]), int(act_shape[0])


def _log_mujoco_warning(message: str) -> None:
    logging.getLogger("mujoco").info("MuJoCo: %s", message.strip())


def install_mujoco_warning_handler() -> None:
    """Route MuJoCo's C-level warnings (by default printed to the terminal and appended to
    ``MUJOCO_LOG.TXT`` in the working directory, e.g. HalfCheetah's "settotalmass is deprecated" at
    ``gym.make``) to the ``mujoco`` logger at INFO, process-wide. Every place that makes an env calls it
    first (:func:`env_dims`, the recipes' and the evaluation's ``make_env``, the diagnostics, the mazes);
    a handler installed by the caller is kept."""
    try:
        import mujoco

        if mujoco.get_mju_user_warning() is None:
            mujoco.set_mju_user_warning(_log_mujoco_warning)
    except (ImportError, AttributeError):  # pragma: no cover - mujoco comes with gymnasium[mujoco]
        pass


@contextlib.contextmanager
def quiet_mujoco() -> Iterator[None]:
    """:func:`install_mujoco_warning_handler`, and silence Python warnings (Gymnasium's deprecation
    notices) inside the block."""
    install_mujoco_warning_handler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _dataset(episodes: list[Episode], *, name: str, env_id: str | None, provenance: dict[str, Any],
             where: str) -> OfflineDataset:
    _check_env_fit(episodes, env_id, where)
    ds = OfflineDataset(name=name, episodes=tuple(episodes), env_id=env_id, provenance=provenance)
    ds.validate()
    return ds


# --------------------------------------------------------------------------- D4RL HDF5 and npz


def _h5_env_id(f: Any) -> str | None:
    """An env id stored by :func:`write_d4rl_hdf5` (attribute ``env_id``), if any."""
    value = f.attrs.get("env_id")
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def read_d4rl_hdf5(path: str | os.PathLike[str], *, env_id: str | None = None,
                   name: str | None = None) -> OfflineDataset:
    """Read a D4RL-layout HDF5 file into an :class:`OfflineDataset`.

    env_id: the env to evaluate in when the file does not say (an ``env_id`` attribute written by
    :func:`write_d4rl_hdf5` is used otherwise). Fails with :class:`UserInputError` naming the key and the
    first bad row on missing keys, mismatched lengths, NaN/inf, or sizes that do not fit ``env_id``.
    """
    p = Path(path).expanduser()
    where = f"{p.name}: "
    arrays, stored_env = load_hdf5_arrays(p, (*D4RL_REQUIRED, "next_observations"))
    env = env_id or stored_env
    episodes = episodes_from_flat(arrays, where=where)
    return _dataset(episodes, name=name or p.name, env_id=env,
                    provenance={"source": "d4rl-hdf5", "path": str(p)}, where=where)


def read_npz(path: str | os.PathLike[str], *, env_id: str | None = None,
             name: str | None = None) -> OfflineDataset:
    """Read an ``.npz`` holding the D4RL keys (same rules as :func:`read_d4rl_hdf5`).

    An optional string entry ``env_id`` names the env when ``env_id`` is not given.
    """
    p = Path(path).expanduser()
    where = f"{p.name}: "
    arrays = load_npz_arrays(p)
    stored = arrays.pop("env_id", None)
    stored_env = str(stored) if stored is not None and stored.dtype.kind in "SU" and stored.ndim == 0 \
        else None
    env = env_id or stored_env
    episodes = episodes_from_flat(arrays, where=where)
    return _dataset(episodes, name=name or p.name, env_id=env,
                    provenance={"source": "npz", "path": str(p)}, where=where)


def write_d4rl_hdf5(dataset: OfflineDataset, path: str | os.PathLike[str]) -> Path:
    """Write a dataset as a D4RL-layout HDF5 file (with ``next_observations`` and an ``env_id`` attribute)."""
    import h5py

    p = Path(path).expanduser()
    with staged_file(p, guard=False) as handle, h5py.File(handle, "w") as f:
        write_d4rl_group(f, dataset)
    return p


def write_d4rl_group(f: Any, dataset: OfflineDataset) -> None:
    """Write a dataset's D4RL flat arrays (and ``env_id`` attribute) into an open h5py file or group."""
    for key, arr in flat_from_dataset(dataset).items():
        f.create_dataset(key, data=arr)
    if dataset.env_id:
        f.attrs["env_id"] = dataset.env_id


def write_npz(dataset: OfflineDataset, path: str | os.PathLike[str]) -> Path:
    """Write a dataset as an ``.npz`` with the D4RL keys (plus ``next_observations`` and ``env_id``)."""
    p = Path(path).expanduser()
    arrays = flat_from_dataset(dataset)
    if dataset.env_id:
        arrays["env_id"] = np.array(dataset.env_id)
    with staged_file(p, guard=False) as handle:
        np.savez(handle, **arrays)
    return p


# --------------------------------------------------------------------------- Minari


@contextlib.contextmanager
def minari_root_env(root: str | os.PathLike[str] | None) -> Iterator[Path]:
    """Point ``MINARI_DATASETS_PATH`` at ``root`` (default: the current root) for the block."""
    path = Path(root).expanduser() if root is not None else minari_root()
    with environ_set("MINARI_DATASETS_PATH", str(path)):
        yield path


def minari_dataset_dir(dataset_id: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    """Directory of a Minari dataset in a local root (it holds ``data/``)."""
    base = Path(root).expanduser() if root is not None else minari_root()
    return base / dataset_id


def check_minari_id(dataset_id: str) -> str | None:
    """Check a Minari dataset id (``(namespace/)name-vN``); return its namespace (None if it has none)."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        namespace, _, _ = parse_dataset_id(dataset_id)
    except (ValueError, TypeError, AttributeError):
        raise UserInputError(f"'{dataset_id}' is not a Minari dataset id; ids look like namespace/name-vN, "
                             "e.g. augment/hopper-dydiff-v0") from None
    return namespace


def ensure_minari_namespace(root: str | os.PathLike[str], namespace: str, *,
                            description: str = "datasets written by diffusion-augment") -> None:
    """Create Minari namespace metadata for ``namespace`` (and its parents) in ``root`` when missing."""
    from minari.namespace import create_namespace, list_local_namespaces

    with minari_root_env(root):
        existing = set(list_local_namespaces())
        parts = namespace.split("/")
        for i in range(1, len(parts) + 1):
            ns = "/".join(parts[:i])
            if ns not in existing:
                with contextlib.suppress(ValueError):
                    create_namespace(ns, description=description)


def minari_exists(dataset_id: str, *, root: str | os.PathLike[str] | None = None) -> bool:
    """True when a complete Minari dataset with this id is in the local root."""
    data = minari_dataset_dir(dataset_id, root=root) / "data"
    return (data / "metadata.json").exists()


def read_minari(dataset_id: str, *, root: str | os.PathLike[str] | None = None,
                download: bool = False, name: str | None = None) -> OfflineDataset:
    """Read a local Minari dataset into an :class:`OfflineDataset` (observations cast to float32).

    download: let Minari fetch the dataset when it is not local (needs a network); off by default.
    Provenance carries the dataset id, its path and, for the project's recipes, the recipe metadata.
    """
    import minari

    with minari_root_env(root) as base:
        try:
            ds = minari.load_dataset(dataset_id, download=download)
        except FileNotFoundError as exc:
            raise UserInputError(
                f"Minari dataset '{dataset_id}' is not in the local root {base}" + ("" if download else
                f"; copy it there, or fetch it with `augment datasets info minari:{dataset_id} "
                "--allow-download` where a network exists")) from exc
        except (ValueError, TypeError) as exc:
            raise UserInputError(f"cannot open Minari dataset '{dataset_id}': {exc} "
                                 "(ids look like namespace/name-vN)") from exc
        except Exception as exc:  # network / hosting errors while downloading, a damaged local copy
            if download:
                raise UserInputError(f"could not download Minari dataset '{dataset_id}': "
                                     f"{exc.__class__.__name__}: {exc}") from exc
            first = str(exc).splitlines()[0] if str(exc) else "no detail"
            raise UserInputError(f"cannot read Minari dataset '{dataset_id}' in {base}: "
                                 f"{exc.__class__.__name__}: {first}; rebuild or re-download it") from exc
        metadata = dict(ds.storage.metadata)
        env_spec = ds.spec.env_spec
        env_id = env_spec.id if env_spec is not None else None
        episodes: list[Episode] = []
        where = f"minari:{dataset_id}: "
        # One pass over the storage (iterate_episodes re-opens the file for every episode).
        for i, ep in enumerate(ds.storage.get_episodes(ds.episode_indices)):
            obs, act = ep["observations"], ep["actions"]
            if not isinstance(obs, np.ndarray) or not isinstance(act, np.ndarray):
                raise UserInputError(f"{where}episode {i} has structured observations or actions; only flat "
                                     "vectors are supported")
            terminated = as_flags("terminations", np.asarray(ep["terminations"]).reshape(-1),
                                  where=f"{where}episode {i}: ")
            truncated = as_flags("truncations", np.asarray(ep["truncations"]).reshape(-1),
                                 where=f"{where}episode {i}: ")
            if len(terminated) and not (terminated[-1] or truncated[-1]):
                truncated = truncated.copy()
                truncated[-1] = True
            here = f"{where}episode {i}: "
            episodes.append(Episode(
                observations=as_float32("observations", np.asarray(obs).reshape(len(obs), -1), where=here),
                actions=as_float32("actions", np.asarray(act).reshape(len(act), -1), where=here),
                rewards=as_float32("rewards", np.asarray(ep["rewards"]).reshape(-1), where=here),
                terminated=terminated, truncated=truncated))
    provenance: dict[str, Any] = {"source": "minari", "dataset_id": dataset_id,
                                  "path": str(minari_dataset_dir(dataset_id, root=root))}
    recipe = metadata.get("augment_recipe")
    if isinstance(recipe, str):
        provenance["recipe"] = json.loads(recipe)
    dataset = OfflineDataset(name=name or dataset_id, episodes=tuple(episodes), env_id=env_id,
                             provenance=provenance)
    dataset.validate()
    return dataset


def write_minari(dataset: OfflineDataset, dataset_id: str, *, root: str | os.PathLike[str] | None = None,
                 metadata: dict[str, Any] | None = None, description: str | None = None) -> Path:
    """Write a dataset as a Minari dataset ``dataset_id`` (``namespace/name-vN``) under ``root``.

    Uses ``minari.create_dataset_from_buffers`` with ``EpisodeBuffer`` (no jax). ``metadata`` (JSON-native)
    is stored as the JSON string ``augment_recipe`` in Minari's metadata. Needs ``dataset.env_id``.
    Returns the dataset's directory.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    if dataset.env_id is None:
        raise UserInputError(f"dataset '{dataset.name}' has no env id; pass --env to write it to Minari")
    buffers = [
        EpisodeBuffer(id=i, observations=ep.observations.astype(np.float32),
                      actions=ep.actions.astype(np.float32), rewards=ep.rewards.astype(np.float64),
                      terminations=ep.terminated.astype(bool), truncations=ep.truncated.astype(bool),
                      infos={})
        for i, ep in enumerate(dataset.episodes)
    ]
    with minari_root_env(root) as base, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = minari.create_dataset_from_buffers(
            dataset_id, buffers, env=dataset.env_id, algorithm_name="diffusion-augment",
            description=description or f"{dataset.name} written by diffusion-augment")
        if metadata is not None:
            ds.storage.update_metadata({"augment_recipe": json.dumps(metadata, sort_keys=True)})
    return base / dataset_id
