"""The dataset registry: resolve a name or a path to an :class:`~stores.schema.OfflineDataset`.

Sources, by what the user passes:

* a registered name or alias (``hopper-medium-replay``, ``hopper-mr``; see :mod:`stores.names`), resolved
  in this order:

  (a) a local D4RL HDF5 file ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets/<env>_<kind>-v2.hdf5``;
  (b) a Minari dataset already in the local Minari root (``mujoco/<env>/{medium,expert}-v0``; a
      medium-expert is medium + expert when both are local). With ``allow_download=True`` Minari may fetch
      them where a network exists; otherwise nothing ever touches the network;
  (c) the project's recipe (:mod:`stores.recipes`) for the profile, cached in the local Minari root as
      ``diffusion-augment/<profile>/<name>[-seed<S>]-v<RECIPE_VERSION>`` and built on demand when
      ``build=True``. When only a build of an older recipe version is cached (``...-v0``), that one is
      used, with a line on stderr saying so and how to build the current version;

  maze2d names (``maze2d-umaze`` ...) resolve to the recipe only: D4RL's maze2d files use another
  coordinate frame than gymnasium-robotics' PointMaze, and Minari's ``D4RL/pointmaze`` datasets keep
  dict observations with random goals (see docs/datasets.md);

* a path to a D4RL-layout ``.hdf5`` / ``.h5`` file or an ``.npz`` with the same keys;
* ``minari:<id>`` for any local Minari dataset (or a downloadable one with ``allow_download=True``).

``env_id`` supplies the env to evaluate in when a file does not say it (recipes and Minari datasets
know their env; D4RL names map to Hopper-v5 / HalfCheetah-v5 / Walker2d-v4).

Loaded datasets are memoised per process, keyed by the file and its modification time, so repeated
``load_dataset`` calls (tests, several learners) read the disk once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augment.profiles import resolve_profile
from stores.errors import UserInputError
from stores.names import NAMES, DatasetName, all_aliases, canonical_name, parse_name
from stores.paths import minari_root
from stores.recipes import RECIPE_VERSION, build_recipe, cached_recipe_id, recipe_dataset_id
from stores.schema import OfflineDataset
from stores.sources import (
    env_dims,
    minari_dataset_dir,
    minari_exists,
    read_d4rl_hdf5,
    read_minari,
    read_npz,
)

__all__ = ["NAMES", "ResolvedSource", "all_aliases", "canonical_name", "d4rl_dir", "load_dataset",
           "resolve_source", "sources_looked_for"]

_MEMO: dict[tuple[Any, ...], OfflineDataset] = {}
_MEMO_MAX = 8


def d4rl_dir() -> Path:
    """Where D4RL keeps its files: ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``."""
    return Path(os.environ.get("D4RL_DATASET_DIR", Path.home() / ".d4rl" / "datasets")).expanduser()


@dataclass(frozen=True)
class ResolvedSource:
    """Where a name would come from.

    kind: ``d4rl-hdf5`` | ``minari`` | ``recipe``; location: a file path or Minari id(s) (comma-joined for
    medium + expert); cached: True when the data is on disk now (a recipe not yet built is False);
    path: the file or the Minari dataset directory; recipe_version: for recipes, the version the location
    names (older than ``RECIPE_VERSION`` when only an old build is cached).
    """

    name: str
    kind: str
    location: str
    cached: bool
    path: Path
    recipe_version: int | None = None


def _local_minari_ids(parsed: DatasetName) -> list[str] | None:
    """Minari ids that hold this name's data, when all are local (medium-expert = medium + expert)."""
    if parsed.is_maze:
        return None
    if parsed.kind in ("medium", "expert"):
        ids = [f"mujoco/{parsed.family}/{parsed.kind}-v0"]
    elif parsed.kind == "medium-expert":
        ids = [f"mujoco/{parsed.family}/medium-v0", f"mujoco/{parsed.family}/expert-v0"]
    else:
        return None
    return ids


def resolve_source(name: str, *, profile: str | None = None, seed: int = 0) -> ResolvedSource:
    """Which source a registered name resolves to now (D4RL file -> local Minari -> recipe)."""
    parsed = parse_name(name)
    d4rl_path = d4rl_dir() / parsed.d4rl_filename
    if d4rl_path.exists() and not parsed.is_maze:
        return ResolvedSource(parsed.name, "d4rl-hdf5", str(d4rl_path), True, d4rl_path)
    ids = _local_minari_ids(parsed)
    if ids and all(minari_exists(i) for i in ids):
        return ResolvedSource(parsed.name, "minari", ",".join(ids), True, minari_dataset_dir(ids[0]))
    profile = resolve_profile(profile)
    cached = cached_recipe_id(parsed.name, profile=profile, seed=seed)
    if cached is not None:
        rid, version = cached
        return ResolvedSource(parsed.name, "recipe", rid, True, minari_dataset_dir(rid), version)
    rid = recipe_dataset_id(parsed.name, profile=profile, seed=seed)
    return ResolvedSource(parsed.name, "recipe", rid, False, minari_dataset_dir(rid), RECIPE_VERSION)


def sources_looked_for(parsed: DatasetName) -> str:
    """One sentence saying which published sources of ``parsed`` were looked for and not used."""
    d4rl_path = d4rl_dir() / parsed.d4rl_filename
    if parsed.is_maze:
        return (f"maze2d names are built by the project's recipe (D4RL's {parsed.d4rl_filename} uses another "
                f"coordinate frame; Minari's {parsed.minari_id} keeps dict observations), so no D4RL file or "
                "Minari dataset is used.")
    d4rl = (f"a D4RL file exists at {d4rl_path}, but a build was asked for" if d4rl_path.exists()
            else f"no D4RL file at {d4rl_path}")
    ids = _local_minari_ids(parsed)
    if ids is None:
        minari_txt = f"no Minari dataset (Minari has no {parsed.kind})"
    elif all(minari_exists(i) for i in ids):
        minari_txt = f"Minari's {' + '.join(ids)} are local, but a build was asked for"
    else:
        minari_txt = f"no Minari dataset {' + '.join(ids)} in {minari_root()}"
    return f"{d4rl} and {minari_txt}."


def _mtime(path: Path) -> tuple[int, int, int]:
    """(mtime ns, size, inode) of a file (or a Minari dataset's metadata): the memo key part that changes
    when the file is rewritten, even within one tick of the file system's clock (an atomic rewrite gets a
    new inode)."""
    target = path / "data" / "metadata.json" if path.is_dir() else path
    try:
        st = target.stat()
    except FileNotFoundError:
        return (-1, -1, -1)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _memo(key: tuple[Any, ...], load: Any) -> OfflineDataset:
    hit = _MEMO.get(key)
    if hit is not None:
        return hit
    ds = load()
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = ds
    return ds


def _with_env(ds: OfflineDataset, env_id: str | None, extra: dict[str, Any] | None = None,
              name: str | None = None) -> OfflineDataset:
    """``ds`` with its name, env id (an explicit ``env_id`` wins; checked against the data's sizes) and
    provenance updated; the same object when nothing changes."""
    provenance = dict(ds.provenance)
    if extra:
        provenance.update(extra)
    new_env = env_id or ds.env_id
    if new_env == ds.env_id and provenance == ds.provenance and (name is None or name == ds.name):
        return ds
    if env_id is not None and env_id != ds.env_id:
        obs_dim, act_dim = env_dims(env_id)
        if (ds.observation_size, ds.action_size) != (obs_dim, act_dim):
            raise UserInputError(
                f"{ds.name}: 'observations'/'actions' have {ds.observation_size}/{ds.action_size} columns "
                f"but {env_id} needs {obs_dim}/{act_dim} (row 0); pass the right --env")
    return OfflineDataset(name=name or ds.name, episodes=ds.episodes, env_id=new_env, provenance=provenance)


def _load_file(path: Path, env_id: str | None, *, name: str | None = None,
               extra: dict[str, Any] | None = None) -> OfflineDataset:
    suffix = path.suffix.lower()
    if not path.exists():
        raise UserInputError(f"no such file: {path}")
    key = ("file", str(path.resolve()), _mtime(path), env_id, name)
    if suffix in (".hdf5", ".h5"):
        reader = read_d4rl_hdf5
    elif suffix == ".npz":
        reader = read_npz
    else:
        raise UserInputError(f"cannot read '{path.name}': use a D4RL-layout .hdf5, an .npz with the same "
                             "keys, minari:<id>, or a registered name (see `augment datasets list`)")
    return _memo(key, lambda: _with_env(reader(path, env_id=env_id, name=name), None, extra))


def _load_minari_ids(ids: list[str], name: str | None, env_id: str | None, *, download: bool,
                     extra: dict[str, Any] | None = None) -> OfflineDataset:
    """Read one Minari dataset, or several concatenated (medium + expert), memoised."""
    key = ("minari", str(minari_root()), tuple(ids), tuple(_mtime(minari_dataset_dir(i)) for i in ids),
           name, env_id)

    def load() -> OfflineDataset:
        parts = [read_minari(i, download=download, name=name) for i in ids]
        if len(parts) == 1:
            return _with_env(parts[0], env_id, extra)
        provenance = {"source": "minari", "dataset_id": ",".join(ids),
                      "path": str(minari_dataset_dir(ids[0]))}
        provenance.update(extra or {})
        ds = OfflineDataset(name=name or ",".join(ids),
                            episodes=tuple(ep for p in parts for ep in p.episodes),
                            env_id=parts[0].env_id, provenance=provenance)
        return _with_env(ds, env_id)

    return _memo(key, load)


def load_dataset(source: str, *, profile: str | None = None, env_id: str | None = None,
                 allow_download: bool = False, build: bool = True, seed: int = 0,
                 progress: bool = True) -> OfflineDataset:
    """Resolve ``source`` (a name, alias, ``.hdf5`` / ``.npz`` path, or ``minari:<id>``) to a dataset.

    profile: recipe budget when a name falls through to the recipe (default: ``cpu`` without CUDA).
    env_id: the env to evaluate in (wins over what the source says; must fit the data's sizes).
    allow_download: let Minari download. build: build a missing recipe (False: fail with a hint instead).
    seed: the recipe's seed. Raises :class:`UserInputError` with one clear line for anything the user can
    fix. Repeated calls return the same (memoised) object while the files are unchanged.
    """
    if env_id is not None:
        env_dims(env_id)  # unknown ids fail early with a clear line
    text = str(source).strip()
    if text.startswith("minari:"):
        dataset_id = text[len("minari:"):]
        if not dataset_id:
            raise UserInputError("minari: needs an id, e.g. minari:mujoco/hopper/medium-v0")
        return _load_minari_ids([dataset_id], None, env_id, download=allow_download)
    path = Path(text).expanduser()
    if os.sep in text or path.suffix.lower() in (".hdf5", ".h5", ".npz") or path.exists():
        return _load_file(path, env_id)

    parsed = parse_name(text)
    resolved = resolve_source(parsed.name, profile=profile, seed=seed)
    if resolved.kind == "d4rl-hdf5":
        return _load_file(resolved.path, env_id or parsed.env_id, name=parsed.name,
                          extra={"resolved": "d4rl-hdf5"})
    if resolved.kind == "minari":
        return _load_minari_ids(resolved.location.split(","), parsed.name, env_id, download=False,
                                extra={"resolved": "minari"})
    ids = _local_minari_ids(parsed)
    if allow_download and ids:
        return _load_minari_ids(ids, parsed.name, env_id, download=True, extra={"resolved": "minari"})
    if not resolved.cached:
        if not build:
            where = ("" if parsed.is_maze else f"no D4RL file at {d4rl_dir() / parsed.d4rl_filename}, "
                     "no local Minari copy, ")
            raise UserInputError(
                f"'{parsed.name}' is not on this machine ({where}recipe not built); build it "
                f"with `augment datasets build {parsed.name} --profile {resolve_profile(profile)}`")
        build_recipe(parsed.name, profile=resolve_profile(profile), seed=seed, progress=progress)
    elif resolved.recipe_version is not None and resolved.recipe_version < RECIPE_VERSION:
        _note_old_version(parsed, resolved, resolve_profile(profile), seed)
    return _load_minari_ids([resolved.location], parsed.name, env_id, download=False,
                            extra={"resolved": "recipe", "recipe_version": resolved.recipe_version})


_NOTED: set[str] = set()


def _note_old_version(parsed: DatasetName, resolved: ResolvedSource, profile: str, seed: int) -> None:
    """Say once per process that an older recipe version's build is used."""
    if resolved.location in _NOTED:
        return
    _NOTED.add(resolved.location)
    seed_opt = f" --seed {seed}" if seed else ""
    print(f"note: using {resolved.location} (recipe v{resolved.recipe_version}; the current recipe is "
          f"v{RECIPE_VERSION}, not built yet: `augment datasets build {parsed.name} --profile {profile}"
          f"{seed_opt}`)", file=sys.stderr, flush=True)
