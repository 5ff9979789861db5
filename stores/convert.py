"""Conversions between replay stores and other offline-RL formats, lossless both ways.

* :func:`dataset_to_store` / :func:`store_to_dataset`: :class:`~stores.schema.OfflineDataset` <-> store
  (trajectories = episodes; a store's trajectory ``e`` is episode ``e``).
* D4RL-layout HDF5 and npz: written with :mod:`stores.sources`' flat layout (``next_observations`` included,
  so no row is dropped) plus the store's per-row provenance (``augment/<column>`` datasets in HDF5,
  ``augment_<column>`` keys in npz) and its attributes as JSON; :func:`import_source` reads them back.
* Minari: :func:`stores.sources.write_minari`, with the store's attributes in the dataset metadata
  (Minari has no per-step slot for our provenance columns; transitions round-trip exactly).
* d3rlpy: :func:`to_d3rlpy` builds a ``ReplayBuffer`` of episodes whose transitions are exactly the store's
  rows (see :func:`d3rlpy_episode` for how terminals and timeouts map); :func:`write_d3rlpy` dumps it in
  d3rlpy's own file format plus an ``augment`` group holding each episode's final state and the provenance
  columns, so :func:`read_d3rlpy` restores the store exactly. d3rlpy's ``get_minari`` is not used: it
  misaligns observations from the second episode on.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.guards import sniff, staged_dir, staged_file
from stores.replay import DEFAULT_CHUNK_ROWS, PROVENANCE_ATTRS, RESERVED_ATTRS, ReplayStore
from stores.schema import Episode, OfflineDataset

EXPORT_FORMATS = ("npz", "hdf5", "minari", "d3rlpy")
# Per-row provenance that survives export (trajectory ids are implied by the episode order).
PROVENANCE_EXPORT = ("generator", "round", "learner_step", "filter_score", "start_index")
PROVENANCE_DTYPES = {"generator": np.int16, "round": np.int32, "learner_step": np.int64,
                     "filter_score": np.float32, "start_index": np.int64}
H5_GROUP = "augment"
NPZ_PREFIX = "augment_"


@dataclass(frozen=True)
class RowProvenance:
    """Per-row provenance of N transitions: generator codes (N,) int16 indexing ``generators``, round (N,),
    learner_step (N,), filter_score (N,) float32 (NaN = unfiltered), start_index (N,) (-1 = none), and the
    attributes of the store they came from (JSON-native)."""

    columns: dict[str, np.ndarray]
    generators: list[str]
    store_attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.columns["generator"].shape[0])


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rows", disable=not enabled, leave=False)


def _episode_ranges(lengths: np.ndarray, target_rows: int) -> Iterator[tuple[int, int]]:
    """Consecutive episode index ranges [i, j) of about ``target_rows`` rows each (at least one episode)."""
    i, count = 0, 0
    for j, length in enumerate(lengths.tolist()):
        count += length
        if count >= target_rows:
            yield i, j + 1
            i, count = j + 1, 0
    if i < len(lengths):
        yield i, len(lengths)


def _json_safe(value: Any) -> Any:
    """``value`` when JSON-native, else its JSON text with non-native leaves turned into strings."""
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------- OfflineDataset <-> store


def dataset_to_store(dataset: OfflineDataset, path: str | os.PathLike[str], *, overwrite: bool = False,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS, attrs: Mapping[str, Any] | None = None,
                     generator: str = "real", provenance: RowProvenance | None = None,
                     progress: bool = True) -> ReplayStore:
    """Write every episode of ``dataset`` as one trajectory of a new store; return it opened read-only.

    The store is built under a hidden temporary name beside ``path`` and renamed into place when complete
    (:func:`stores.guards.staged_dir`): a failure or a kill never leaves a partial store at ``path``, and
    ``overwrite`` replaces an existing replay store (nothing else) only then.

    Attributes: source_dataset (name), source_hash (content hash), env_id, normalization (dataset
    statistics), imported_from (the dataset's provenance), then ``attrs`` (overriding). Rows get generator
    ``generator``, round/learner_step -1, filter_score NaN and start_index = the row of their episode's first
    step, unless ``provenance`` (one entry per transition, e.g. read back from an exported file) is given.
    """
    dataset.validate()
    tr = dataset.transitions
    n = len(tr)
    if provenance is not None and len(provenance) != n:
        raise UserInputError(f"provenance has {len(provenance)} rows but the dataset has {n} transitions")
    base: dict[str, Any] = {
        "source_dataset": dataset.name, "source_hash": dataset.content_hash, "env_id": dataset.env_id,
        "normalization": dataset.stats.to_json(), "imported_from": _json_safe(dataset.provenance),
    }
    if provenance is not None:
        base.update({k: v for k, v in provenance.store_attrs.items() if k not in RESERVED_ATTRS})
    base.update(dict(attrs or {}))
    lengths = np.diff(tr.episode_starts)
    with staged_dir(path, overwrite=overwrite, allowed=("store",)) as tmp:
        store = ReplayStore.create(tmp, observation_size=dataset.observation_size,
                                   action_size=dataset.action_size, attrs=base, chunk_rows=chunk_rows,
                                   staged=False)
        _fill_from_dataset(store, dataset, lengths, chunk_rows, generator, provenance, progress)
    return ReplayStore.open(path)


def _fill_from_dataset(store: ReplayStore, dataset: OfflineDataset, lengths: np.ndarray, chunk_rows: int,
                       generator: str, provenance: RowProvenance | None, progress: bool) -> None:
    tr = dataset.transitions
    n = len(tr)
    with store, _progress(n, "import", progress) as bar:
        for i, j in _episode_ranges(lengths, chunk_rows):
            a, b = int(tr.episode_starts[i]), int(tr.episode_starts[j])
            cols = {"observations": tr.observations[a:b], "actions": tr.actions[a:b],
                    "rewards": tr.rewards[a:b], "next_observations": tr.next_observations[a:b],
                    "terminals": tr.terminals[a:b], "timeouts": tr.timeouts[a:b]}
            starts = tr.episode_starts[i:j] - a
            if provenance is None:
                cols["start_index"] = np.repeat(tr.episode_starts[i:j], lengths[i:j])
                store.append_transitions(cols, starts, generator=generator)
            else:
                for key in ("round", "learner_step", "filter_score", "start_index"):
                    cols[key] = provenance.columns[key][a:b]
                store.append_transitions(cols, starts, generator_codes=provenance.columns["generator"][a:b],
                                         generator_names=provenance.generators)
            bar.update(b - a)


def _as_store(source: ReplayStore | str | os.PathLike[str]) -> ReplayStore:
    return source if isinstance(source, ReplayStore) else ReplayStore.open(source)


def store_to_dataset(source: ReplayStore | str | os.PathLike[str], *, name: str | None = None,
                     env_id: str | None = None) -> OfflineDataset:
    """The committed trajectories of a store as an :class:`OfflineDataset` (one episode per trajectory).

    Episode observations are the trajectory's ``observations`` plus its last ``next_observations`` row.
    name / env_id default to the store's ``source_dataset``-derived name and its ``env_id`` attribute.
    """
    store = _as_store(source)
    if len(store) == 0:
        raise UserInputError(f"store '{store.path}' holds no committed transitions to convert")
    data = store.load(columns=("observations", "actions", "rewards", "next_observations", "terminals",
                               "timeouts"))
    starts = data["episode_starts"]
    obs, nxt = data["observations"], data["next_observations"]
    episodes = []
    for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
        episodes.append(Episode(observations=np.concatenate([obs[a:b], nxt[b - 1:b]]),
                                actions=data["actions"][a:b], rewards=data["rewards"][a:b],
                                terminated=data["terminals"][a:b], truncated=data["timeouts"][a:b]))
    attrs = store.attrs
    return OfflineDataset(name=name or store.path.name, episodes=tuple(episodes),
                          env_id=env_id or attrs.get("env_id"),
                          provenance={"source": "replay-store", "path": str(store.path), "attrs": attrs})


def store_provenance(source: ReplayStore | str | os.PathLike[str]) -> RowProvenance:
    """The per-row provenance columns and attributes of a store's committed rows."""
    store = _as_store(source)
    cols = store.load(columns=PROVENANCE_EXPORT)
    cols.pop("episode_starts")
    return RowProvenance(columns=cols, generators=store.generators, store_attrs=store.attrs)


# ---------------------------------------------------------------------------- HDF5 / npz / Minari


def _store_attrs_json(store: ReplayStore) -> str:
    return json.dumps(store.attrs, sort_keys=True)


def _write_provenance_group(f: Any, store: ReplayStore, prov: RowProvenance) -> Any:
    """Group ``augment/`` of an open h5py file: the provenance columns, generator names, store attributes."""
    group = f.create_group(H5_GROUP)
    for key, arr in prov.columns.items():
        group.create_dataset(key, data=arr, compression="gzip", compression_opts=4)
    group.attrs["generators"] = json.dumps(prov.generators)
    group.attrs["store_attrs"] = _store_attrs_json(store)
    return group


def write_hdf5(source: ReplayStore | str | os.PathLike[str], path: str | os.PathLike[str], *,
               env_id: str | None = None, overwrite: bool = False) -> Path:
    """Export to a D4RL-layout HDF5 file (readable by D4RL-style loaders) with provenance in ``augment/``.

    Written atomically (:func:`stores.guards.staged_file`); ``overwrite`` replaces only a file an earlier
    export wrote.
    """
    import h5py

    from stores.sources import write_d4rl_group

    store = _as_store(source)
    dataset = store_to_dataset(store, env_id=env_id)
    prov = store_provenance(store)
    out = Path(path).expanduser()
    with staged_file(out, overwrite=overwrite) as handle, h5py.File(handle, "w") as f:
        write_d4rl_group(f, dataset)
        _write_provenance_group(f, store, prov)
    return out


def write_npz(source: ReplayStore | str | os.PathLike[str], path: str | os.PathLike[str], *,
              env_id: str | None = None, compressed: bool = True, overwrite: bool = False) -> Path:
    """Export to an ``.npz`` with the D4RL keys (see :func:`stores.sources.write_npz`) plus provenance keys
    ``augment_<column>``, ``augment_generators`` and ``augment_store_attrs`` (JSON text)."""
    from stores.sources import flat_from_dataset

    store = _as_store(source)
    dataset = store_to_dataset(store, env_id=env_id)
    arrays: dict[str, np.ndarray] = dict(flat_from_dataset(dataset))
    if dataset.env_id:
        arrays["env_id"] = np.array(dataset.env_id)
    prov = store_provenance(store)
    arrays.update({NPZ_PREFIX + key: arr for key, arr in prov.columns.items()})
    arrays[NPZ_PREFIX + "generators"] = np.array(json.dumps(prov.generators))
    arrays[NPZ_PREFIX + "store_attrs"] = np.array(_store_attrs_json(store))
    out = Path(path).expanduser()
    with staged_file(out, overwrite=overwrite) as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)
    return out


def write_minari(source: ReplayStore | str | os.PathLike[str], dataset_id: str, *,
                 root: str | os.PathLike[str] | None = None, env_id: str | None = None,
                 overwrite: bool = False) -> Path:
    """Export to a local Minari dataset ``dataset_id`` (``namespace/name-vN``); returns its directory.

    Needs the env id (the store's ``env_id`` attribute or ``env_id``). The store's attributes are kept in the
    dataset metadata; the per-row provenance columns are not (Minari has no per-step slot for them).
    Written under a hidden temporary root and moved into place when complete; ``overwrite`` replaces only
    a Minari dataset the toolkit wrote.
    """
    from stores.paths import minari_root
    from stores.sources import check_minari_id, ensure_minari_namespace
    from stores.sources import write_minari as _write_minari

    namespace = check_minari_id(dataset_id)
    store = _as_store(source)
    dataset = store_to_dataset(store, env_id=env_id)
    if dataset.env_id is None:
        raise UserInputError(f"store '{store.path}' has no env_id attribute; pass --env (e.g. Hopper-v5)")
    base = Path(root).expanduser() if root is not None else minari_root()
    target = base / dataset_id
    with staged_dir(target, overwrite=overwrite, allowed=("minari",), flag="--overwrite") as tmp:
        scratch = tmp.with_name(tmp.name + "-root")  # a whole Minari root: Minari writes <root>/<id>
        try:
            _write_minari(dataset, dataset_id, root=scratch, metadata={"replay_store": store.attrs})
            os.rename(scratch / dataset_id, tmp)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if namespace is not None:
            ensure_minari_namespace(base, namespace)
    return target


def _provenance_from_group(group: Any) -> RowProvenance | None:
    """Provenance columns and attributes from an h5py group written by our exporters (None if absent)."""
    if any(key not in group for key in PROVENANCE_EXPORT) or "generators" not in group.attrs:
        return None
    cols = {key: np.asarray(group[key]).astype(PROVENANCE_DTYPES[key]) for key in PROVENANCE_EXPORT}
    return RowProvenance(cols, list(json.loads(group.attrs["generators"])),
                         dict(json.loads(group.attrs.get("store_attrs", "{}"))))


def _read_hdf5_provenance(path: Path) -> RowProvenance | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return _provenance_from_group(f[H5_GROUP]) if H5_GROUP in f else None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserInputError(f"{path.name}: its provenance group '{H5_GROUP}/' is damaged "
                             f"({type(exc).__name__}: {exc}); re-export it") from None


def _read_npz_provenance(path: Path) -> RowProvenance | None:
    from stores.sources import load_npz_arrays

    data = load_npz_arrays(path)
    keys = [NPZ_PREFIX + key for key in PROVENANCE_EXPORT]
    if any(key not in data for key in keys) or NPZ_PREFIX + "generators" not in data:
        return None
    try:
        cols = {key: np.asarray(data[NPZ_PREFIX + key]).astype(PROVENANCE_DTYPES[key])
                for key in PROVENANCE_EXPORT}
        attrs_key = NPZ_PREFIX + "store_attrs"
        attrs = json.loads(str(data[attrs_key])) if attrs_key in data else {}
        return RowProvenance(cols, list(json.loads(str(data[NPZ_PREFIX + "generators"]))), dict(attrs))
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"{path.name}: its augment_* provenance keys are damaged ({exc}); re-export "
                             "it") from None


# ---------------------------------------------------------------------------- d3rlpy


def d3rlpy_episode(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: bool
                   ) -> Any:
    """One trajectory (T rows) as a d3rlpy ``Episode`` whose transitions are exactly those T rows.

    observations: (T+1, obs) (states s_0..s_T), actions (T, act), rewards (T,).
    d3rlpy counts ``T`` transitions in a terminated episode of T steps (the last one's next state is
    zeros, its terminal flag 1) but ``size - 1`` in any other. So a terminated trajectory becomes
    (s_0..s_{T-1}, a_0..a_{T-1}, r_0..r_{T-1}, terminated=True), and a timed-out one keeps s_T as an extra
    step with a copy of the last action and reward 0 (never a transition of its own):
    (s_0..s_T, a_0..a_{T-1}, a_{T-1}, r_0..r_{T-1}, 0, terminated=False).
    """
    from d3rlpy.dataset import Episode as D3Episode

    t = actions.shape[0]
    if terminated:
        return D3Episode(observations=np.ascontiguousarray(observations[:t], dtype=np.float32),
                         actions=np.ascontiguousarray(actions, dtype=np.float32),
                         rewards=np.ascontiguousarray(rewards, dtype=np.float32).reshape(t, 1),
                         terminated=True)
    return D3Episode(observations=np.ascontiguousarray(observations, dtype=np.float32),
                     actions=np.concatenate([actions, actions[-1:]]).astype(np.float32),
                     rewards=np.concatenate([rewards, [0.0]]).astype(np.float32).reshape(t + 1, 1),
                     terminated=False)


def to_d3rlpy(source: ReplayStore | OfflineDataset | str | os.PathLike[str]) -> Any:
    """A d3rlpy ``ReplayBuffer`` (``InfiniteBuffer``) with one episode per trajectory; its transitions are
    the store's rows in order (terminals where the store has terminals; timeouts end episodes without one)."""
    from d3rlpy.dataset import InfiniteBuffer, ReplayBuffer

    dataset = source if isinstance(source, OfflineDataset) else store_to_dataset(_as_store(source))
    episodes = [d3rlpy_episode(ep.observations, ep.actions, ep.rewards, bool(ep.terminated[-1]))
                for ep in dataset.episodes]
    return ReplayBuffer(InfiniteBuffer(), episodes=episodes)


def d3rlpy_to_dataset(buffer_or_episodes: Any, *, name: str = "d3rlpy", env_id: str | None = None,
                      final_observations: np.ndarray | None = None) -> OfflineDataset:
    """The transitions d3rlpy would train on, as an :class:`OfflineDataset` (inverse of :func:`to_d3rlpy`).

    For each episode, transition i < ``transition_count`` is (s_i, a_i, r_i, s_{i+1}); the last one of a
    terminated episode is terminal and its next state is ``final_observations[e]`` when given (d3rlpy
    itself uses zeros), otherwise the episode's last transition is a timeout. Episodes without any
    transition are skipped. final_observations: (E, obs), one row per episode of the buffer.
    """
    episodes_in = list(getattr(buffer_or_episodes, "episodes", buffer_or_episodes))
    episodes: list[Episode] = []
    for e, ep in enumerate(episodes_in):
        n = int(ep.transition_count)
        if n == 0:
            continue
        obs = np.asarray(ep.observations, dtype=np.float32)
        if obs.ndim != 2:
            raise UserInputError(f"d3rlpy episode {e} has observations of shape {obs.shape}; "
                                 "only flat vector observations are supported")
        if ep.terminated:
            last = (np.zeros_like(obs[:1]) if final_observations is None
                    else np.asarray(final_observations[e:e + 1], dtype=np.float32))
            states = np.concatenate([obs[:n], last])
        else:
            states = obs[:n + 1]
        flags = np.zeros(n, dtype=bool)
        flags[-1] = True
        episodes.append(Episode(observations=states,
                                actions=np.asarray(ep.actions[:n], dtype=np.float32).reshape(n, -1),
                                rewards=np.asarray(ep.rewards[:n], dtype=np.float32).reshape(n),
                                terminated=flags if ep.terminated else np.zeros(n, dtype=bool),
                                truncated=np.zeros(n, dtype=bool) if ep.terminated else flags))
    if not episodes:
        raise UserInputError("the d3rlpy buffer holds no transitions")
    dataset = OfflineDataset(name=name, episodes=tuple(episodes), env_id=env_id,
                             provenance={"source": "d3rlpy"})
    dataset.validate()
    return dataset


def write_d3rlpy(source: ReplayStore | str | os.PathLike[str], path: str | os.PathLike[str], *,
                 overwrite: bool = False) -> Path:
    """Dump :func:`to_d3rlpy` in d3rlpy's file format (``ReplayBuffer.load(f, InfiniteBuffer())`` reads it),
    adding group ``augment``: final_observations (E, obs), the provenance columns (N,), and attributes
    ``generators`` / ``store_attrs`` (JSON) so :func:`read_d3rlpy` restores the store exactly."""
    import h5py

    store = _as_store(source)
    dataset = store_to_dataset(store)
    buffer = to_d3rlpy(dataset)
    prov = store_provenance(store)
    out = Path(path).expanduser()
    with staged_file(out, overwrite=overwrite) as handle:
        buffer.dump(handle)
        handle.seek(0)
        with h5py.File(handle, "r+") as f:
            group = _write_provenance_group(f, store, prov)
            group.create_dataset("final_observations",
                                 data=np.stack([ep.observations[-1] for ep in dataset.episodes]))
    return out


def is_d3rlpy_file(path: Path) -> bool:
    """True for an HDF5 file in d3rlpy's ``ReplayBuffer.dump`` layout."""
    import h5py

    if not path.is_file() or sniff(path) != "hdf5":
        return False
    try:
        with h5py.File(path, "r") as f:
            return {"columns", "num_episodes", "version"} <= set(f.keys())
    except OSError:
        return False


def read_d3rlpy(path: str | os.PathLike[str], *, env_id: str | None = None
                ) -> tuple[OfflineDataset, RowProvenance | None]:
    """Read a d3rlpy dump (ours or anyone's) as an :class:`OfflineDataset` plus our provenance if present."""
    import h5py
    from d3rlpy.dataset import InfiniteBuffer, ReplayBuffer

    p = Path(path).expanduser()
    if not is_d3rlpy_file(p):
        raise UserInputError(f"'{p}' is not a d3rlpy ReplayBuffer dump (HDF5 with columns/num_episodes)")
    try:
        with open(p, "rb") as f:
            buffer = ReplayBuffer.load(f, InfiniteBuffer())
        final, prov = None, None
        with h5py.File(p, "r") as f:
            if H5_GROUP in f:
                group = f[H5_GROUP]
                final = np.asarray(group["final_observations"]) if "final_observations" in group else None
                prov = _provenance_from_group(group)
    except Exception as exc:  # d3rlpy / h5py raise many kinds on a damaged dump; the user needs one line
        first = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise UserInputError(f"cannot read d3rlpy dump '{p}' ({type(exc).__name__}: {first}); the file is "
                             "damaged or not written by ReplayBuffer.dump") from None
    attrs_env = prov.store_attrs.get("env_id") if prov is not None else None
    dataset = d3rlpy_to_dataset(buffer, name=p.name, env_id=env_id or attrs_env, final_observations=final)
    return dataset, prov


# ---------------------------------------------------------------------------- import / export / merge


def import_source(source: str, *, profile: str | None = None, env_id: str | None = None,
                  progress: bool = True) -> tuple[OfflineDataset, RowProvenance | None]:
    """Load anything ``augment store import`` accepts: a d3rlpy dump (``.h5`` from :func:`write_d3rlpy` or
    d3rlpy), or any name / ``.hdf5`` / ``.npz`` / ``minari:<id>`` the dataset registry accepts. Files we
    exported bring their per-row provenance back."""
    from stores.datasets import load_dataset

    path = Path(source).expanduser()
    if path.suffix in (".h5", ".hdf5") and is_d3rlpy_file(path):
        return read_d3rlpy(path, env_id=env_id)
    dataset = load_dataset(source, profile=profile, env_id=env_id, progress=progress)
    prov = None
    if path.is_file() and path.suffix in (".h5", ".hdf5"):
        prov = _read_hdf5_provenance(path)
    elif path.is_file() and path.suffix == ".npz":
        prov = _read_npz_provenance(path)
    if prov is not None and len(prov) != dataset.num_transitions:
        prov = None  # rows were dropped or split differently; keep the data, not a misaligned provenance
    return dataset, prov


def export_store(source: ReplayStore | str | os.PathLike[str], fmt: str, out: str | os.PathLike[str], *,
                 env_id: str | None = None, minari_root: str | os.PathLike[str] | None = None,
                 overwrite: bool = False) -> Path:
    """Export a store: fmt ``npz`` | ``hdf5`` | ``d3rlpy`` to the file ``out``; ``minari`` to the dataset id
    ``out`` under ``minari_root`` (default ``MINARI_DATASETS_PATH``).

    Every format is written atomically (complete or not at all; a kill leaves no temporary file behind
    for the file formats, and hidden temporaries the next export removes for Minari). An existing ``out``
    is refused unless ``overwrite``, which replaces only an earlier export of the toolkit (never a
    directory, a replay store or a file from elsewhere).
    """
    if fmt not in EXPORT_FORMATS:
        raise UserInputError(f"unknown export format '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt != "minari" and Path(out).expanduser().is_dir():
        raise UserInputError(f"'{out}' is a directory; --out names the {fmt} file to write, e.g. "
                             f"{Path(out) / ('data.' + {'npz': 'npz', 'hdf5': 'hdf5', 'd3rlpy': 'h5'}[fmt])}")
    store = _as_store(source)
    if fmt == "npz":
        return write_npz(store, out, env_id=env_id, overwrite=overwrite)
    if fmt == "hdf5":
        return write_hdf5(store, out, env_id=env_id, overwrite=overwrite)
    if fmt == "d3rlpy":
        return write_d3rlpy(store, out, overwrite=overwrite)
    return write_minari(store, str(out), root=minari_root, env_id=env_id, overwrite=overwrite)


def _merged_attrs(stores: Sequence[ReplayStore]) -> dict[str, Any]:
    """Provenance attributes the inputs agree on (None where they differ) and ``merged_from``."""
    attrs = [s.attrs for s in stores]
    merged: dict[str, Any] = {}
    for key in PROVENANCE_ATTRS:
        values = [a.get(key) for a in attrs]
        merged[key] = values[0] if all(v == values[0] for v in values) else None
    merged["merged_from"] = [{"path": str(s.path), "rows": len(s), "attrs": a}
                             for s, a in zip(stores, attrs, strict=True)]
    return merged


def merge_stores(inputs: Sequence[ReplayStore | str | os.PathLike[str]], out: str | os.PathLike[str], *,
                 overwrite: bool = False, progress: bool = True) -> ReplayStore:
    """Concatenate stores (rows of the first, then the second, ...) into a new store, keeping every row's
    provenance (generator names are re-coded, trajectory ids renumbered); returns it opened read-only.

    Atomic: the merged store is built under a hidden temporary name and renamed into place when complete,
    so a damaged input (found before or while copying) or a kill leaves no half-merged store at ``out``;
    ``overwrite`` replaces an existing replay store (nothing else) only then."""
    stores = [_as_store(s) for s in inputs]
    if len(stores) < 2:
        raise UserInputError("merge needs at least two stores")
    sizes = {(s.observation_size, s.action_size) for s in stores}
    if len(sizes) != 1:
        raise UserInputError(f"cannot merge stores of different observation/action sizes {sorted(sizes)}")
    out_path = Path(out)
    if any(out_path.resolve() == s.path.resolve() for s in stores):
        raise UserInputError("the merged store must be a new path, not one of the inputs")
    chunk = max(s.schema.chunk_rows for s in stores)
    for store in stores:  # every committed chunk of every input is there before anything is written
        store.load(columns=("rewards",))
    with staged_dir(out_path, overwrite=overwrite, allowed=("store",)) as tmp:
        target = ReplayStore.create(tmp, observation_size=stores[0].observation_size,
                                    action_size=stores[0].action_size, attrs=_merged_attrs(stores),
                                    chunk_rows=chunk, staged=False)
        _merge_into(target, stores, chunk, progress)
    return ReplayStore.open(out_path)


def _merge_into(target: ReplayStore, stores: Sequence[ReplayStore], chunk: int, progress: bool) -> None:
    total = sum(len(s) for s in stores)
    with target, _progress(total, "merge", progress) as bar:
        for store in stores:
            starts = store.episode_starts()
            lengths = np.diff(starts)
            names = store.generators
            for i, j in _episode_ranges(lengths, chunk):
                a, b = int(starts[i]), int(starts[j])
                cols = store.read_rows(a, b, ("observations", "actions", "rewards", "next_observations",
                                              "terminals", "timeouts", "round", "learner_step",
                                              "filter_score", "start_index", "generator"))
                codes = cols.pop("generator")
                target.append_transitions(cols, starts[i:j] - a, generator_codes=codes, generator_names=names)
                bar.update(b - a)
