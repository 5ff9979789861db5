"""Property-based tests (hypothesis) of the import and append paths of the replay store.

Random schemas, dtypes, shapes, NaN / inf / huge values, episode-end patterns and next_observations.
Every input ends in exactly one of two outcomes:

* a valid store that holds exactly what an independent reading of the input (written here, not taken from
  the code under test) says it must, or
* a ``UserInputError`` and nothing written (no store, no temporary, the store appended to unchanged).

Budget: ``AUGMENT_FUZZ_EXAMPLES`` examples per test (default 25, derandomized: the same inputs every CI
run); the reliability benchmark raises it and draws them from ``AUGMENT_FUZZ_SEED``. With
``AUGMENT_RELIABILITY_LOG`` set, each test appends its tallies (inputs, accepted, refused, silent wrong
results) to that JSON-lines file.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from stores.convert import dataset_to_store, import_source
from stores.errors import UserInputError
from stores.replay import ReplayStore
from stores.schema import TrajectoryBatch

EXAMPLES = int(os.environ.get("AUGMENT_FUZZ_EXAMPLES", "25"))
FUZZ_SEED = os.environ.get("AUGMENT_FUZZ_SEED")  # unset: the same examples every CI run (derandomized)
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=FUZZ_SEED is None,
                     suppress_health_check=list(HealthCheck))


def FUZZ(test: Any) -> Any:  # noqa: N802 - used as a decorator like hypothesis' own settings
    """The suite's hypothesis settings, and the benchmark's seed when AUGMENT_FUZZ_SEED is set."""
    test = _SETTINGS(test)
    return seed(int(FUZZ_SEED))(test) if FUZZ_SEED is not None else test
F32_MAX = float(np.finfo(np.float32).max)
TALLY: dict[str, dict[str, int]] = {}


def _chance(draw: st.DrawFn, p: float) -> bool:
    """True with probability ~p (hypothesis favours boundary values of numeric strategies, so a drawn
    float compared with p would be 0.0, i.e. True, far more often than p)."""
    k = max(1, round(1 / p))
    return bool(draw(st.sampled_from([False] * (k - 1) + [True])))


def _tally(test: str, outcome: str) -> None:
    counts = TALLY.setdefault(test, {"inputs": 0, "accepted": 0, "refused": 0})
    counts["inputs"] += 1
    counts[outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    log = os.environ.get("AUGMENT_RELIABILITY_LOG")
    if log:
        with open(log, "a") as f:
            for test, counts in TALLY.items():
                f.write(json.dumps({"suite": "property", "test": test, **counts, "silent_wrong": 0}) + "\n")


# ------------------------------------------------------------------------------------------ values

EDGE = st.sampled_from([0.0, -0.0, 1.0, 1e-30, 6e4, 3e38, -3e38])  # 3e38: fits float32, not float16
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 1e39, -1e300, 3.5e38])  # never storable as float32
FLOAT_DTYPES = st.sampled_from(["float32", "float32", "float64", "float64", "float16", "int32"])


@st.composite
def arrays_of(draw: st.DrawFn, shape: tuple[int, ...], dtype: str, special_p: float = 0.05) -> np.ndarray:
    """Normal values of a drawn scale, a few edge values, and with probability ``special_p`` one value no
    store may hold; cast to ``dtype`` (float16 turns 3e38 into inf: that input must then be refused)."""
    n = int(np.prod(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.standard_normal(n) * draw(st.sampled_from([1e-3, 1.0, 100.0]))
    for _ in range(draw(st.integers(0, 2)) if n else 0):
        values[draw(st.integers(0, n - 1))] = draw(EDGE) if draw(st.integers(0, 4)) else 3e38
    if n and special_p > 0 and _chance(draw, special_p):
        values[draw(st.integers(0, n - 1))] = draw(SPECIAL)
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype.startswith("int"):
            values = np.nan_to_num(np.clip(values, -1e6, 1e6))
        return values.astype(dtype).reshape(shape)


# ------------------------------------------------------------------------------------------ import


@st.composite
def d4rl_files(draw: st.DrawFn) -> dict[str, Any]:
    """Flat D4RL arrays with random sizes, dtypes, episode ends, special values and file format."""
    n = draw(st.integers(1, 24))
    obs, act = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    dtype = draw(FLOAT_DTYPES)
    arrays: dict[str, np.ndarray] = {
        "observations": draw(arrays_of((n, obs), dtype)),
        "actions": draw(arrays_of((n, act), draw(FLOAT_DTYPES))),
        "rewards": draw(arrays_of((n, 1) if draw(st.booleans()) else (n,), draw(FLOAT_DTYPES))),
    }
    for key in ("terminals", "timeouts"):
        flags = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        kind = draw(st.sampled_from(["bool"] * 4 + ["int8", "float32", "uint8"] * 2 + ["text", "two"]))
        if kind == "text":
            arrays[key] = flags.astype(int).astype(str)  # "0" / "1": must never be read as True / True
        elif kind == "two":
            arrays[key] = flags.astype(np.int64) * 2  # 0 / 2: not a flag
        else:
            arrays[key] = flags.astype(kind)
    mode = draw(st.sampled_from(["none", "consistent", "discontinuous", "special"]))
    if mode != "none":
        nxt = np.concatenate([arrays["observations"][1:], draw(arrays_of((1, obs), dtype, 0.0))])
        if mode == "discontinuous" and n > 1:
            rows = draw(st.lists(st.integers(0, n - 1), max_size=3))
            nxt[rows] = draw(arrays_of((len(rows), obs), dtype, 0.0))
        if mode == "special":
            nxt = draw(arrays_of((n, obs), dtype, 0.6))
        arrays["next_observations"] = nxt
    if _chance(draw, 0.08):  # a broken file: a key missing or one key shorter
        key = draw(st.sampled_from(sorted(arrays)))
        if draw(st.booleans()):
            del arrays[key]
        else:
            arrays[key] = arrays[key][:-1]
    return {"arrays": arrays, "format": draw(st.sampled_from(["npz", "hdf5"]))}


def _as_float(arr: np.ndarray) -> np.ndarray | None:
    """float32 copy of a numeric column, or None when the input must be refused (NaN/inf/out of range)."""
    with np.errstate(over="ignore", invalid="ignore"):
        wide = arr.astype(np.float64)
    if not np.isfinite(wide).all() or (np.abs(wide) > F32_MAX).any():
        return None
    return wide.astype(np.float32)


def _as_flag(arr: np.ndarray) -> np.ndarray | None:
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all():
        return arr != 0
    return None


def expected_import(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """What a store imported from these D4RL arrays must hold (docs/store.md, stores/sources.py rules),
    computed row by row; None when the input must be refused."""
    required = ("observations", "actions", "rewards", "terminals", "timeouts")
    if any(k not in arrays for k in required):
        return None
    cols = {k: np.asarray(v) for k, v in arrays.items()}
    for key in ("rewards", "terminals", "timeouts"):
        if cols[key].ndim == 2 and cols[key].shape[1] == 1:
            cols[key] = cols[key][:, 0]
    n = cols["observations"].shape[0]
    if any(v.shape[0] != n for v in cols.values()):
        return None
    obs = _as_float(cols["observations"])
    act, rew = _as_float(cols["actions"]), _as_float(cols["rewards"])
    term, tout = _as_flag(cols["terminals"]), _as_flag(cols["timeouts"])
    nxt = _as_float(cols["next_observations"]) if "next_observations" in cols else None
    if obs is None or act is None or rew is None or term is None or tout is None or (
            "next_observations" in cols and nxt is None):
        return None
    rows: list[tuple[int, np.ndarray, bool, bool]] = []  # (source row, next obs, terminal, timeout)
    starts: list[int] = []
    start = 0
    for i in range(n):
        if nxt is not None:
            jump = i + 1 < n and obs[i + 1].tobytes() != nxt[i].tobytes()
            end = bool(term[i] or tout[i] or jump or i == n - 1)
            if i == start:
                starts.append(len(rows))
            rows.append((i, nxt[i], bool(term[i]), end and not term[i]))
        else:
            end = bool(term[i] or tout[i] or i == n - 1)
            if not end:
                continue
            kept = range(start, i + 1) if term[i] else range(start, i)
            if len(kept):
                starts.append(len(rows))
                for j in kept:
                    last = j == kept[-1]
                    following = obs[j] if (term[i] and last) else obs[j + 1]
                    rows.append((j, following, bool(term[i] and last), bool(last and not term[i])))
        if end:
            start = i + 1
    if not rows:
        return None
    src = np.array([r[0] for r in rows])
    return {"observations": obs[src], "actions": act[src], "rewards": rew[src],
            "next_observations": np.stack([r[1] for r in rows]),
            "terminals": np.array([r[2] for r in rows]), "timeouts": np.array([r[3] for r in rows]),
            "episode_starts": np.array([*starts, len(rows)])}


def _write(path: Path, arrays: dict[str, np.ndarray], fmt: str) -> None:
    if fmt == "npz":
        np.savez(path, **arrays)
        return
    with h5py.File(path, "w") as f:
        for key, arr in arrays.items():
            f.create_dataset(key, data=arr.astype("S") if arr.dtype.kind == "U" else arr)


@FUZZ
@given(d4rl_files())
def test_import_round_trips_or_refuses_leaving_nothing(case: dict[str, Any]) -> None:
    arrays, fmt = case["arrays"], case["format"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"data-{uuid.uuid4().hex[:8]}.{'npz' if fmt == 'npz' else 'hdf5'}"
        _write(src, arrays, fmt)
        out = Path(tmp) / "out.zarr"
        expected = expected_import(arrays)
        try:
            dataset, provenance = import_source(str(src), progress=False)
            store = dataset_to_store(dataset, out, provenance=provenance, chunk_rows=8, progress=False)
        except UserInputError as exc:
            assert expected is None, f"refused a valid input: {exc}"
            assert "\n" not in str(exc)
            assert sorted(p.name for p in Path(tmp).iterdir()) == [src.name], "a refused import wrote files"
            _tally("import", "refused")
            return
        assert expected is not None, "accepted an input that must be refused"
        store.validate()
        data = store.load()
        for key, want in expected.items():
            np.testing.assert_array_equal(data[key], want, err_msg=key)
            if data[key].dtype.kind == "f":  # bit for bit (signs of zero included)
                assert data[key].tobytes() == np.ascontiguousarray(want).tobytes(), key
        assert sorted(p.name for p in Path(tmp).iterdir()) == sorted([src.name, "out.zarr"])
        _tally("import", "accepted")


# ------------------------------------------------------------------------------------------ append


@st.composite
def batches(draw: st.DrawFn, obs: int = 3, act: int = 2) -> dict[str, Any]:
    b, length = draw(st.integers(0, 4)), draw(st.integers(1, 5))
    lengths = np.array(draw(st.lists(st.integers(1, length), min_size=b, max_size=b)), dtype=np.int64)
    if b and _chance(draw, 0.05):
        lengths[0] = draw(st.sampled_from([0, length + 1]))
    terminals = np.zeros((b, length), dtype=bool)
    for row in range(b):
        choice = draw(st.sampled_from(["none", "last", "early", "padding"]))
        last = int(np.clip(lengths[row], 1, length)) - 1
        if choice == "last":
            terminals[row, last] = True
        elif choice == "early" and last > 0:
            terminals[row, draw(st.integers(0, last - 1))] = True
        elif choice == "padding" and last < length - 1:
            terminals[row, draw(st.integers(last + 1, length - 1))] = True
    ints = st.integers(-1, 1000)
    bad_int = st.sampled_from([-2, 2**31])
    prov = {name: np.array([draw(bad_int) if _chance(draw, 0.03) else draw(ints) for _ in range(b)],
                           dtype=np.int64) for name in ("round", "learner_step", "start_index")}
    score = np.array([draw(st.sampled_from([np.nan, 0.5, -2.0, np.inf])) if draw(st.booleans()) else 0.0
                      for _ in range(b)], dtype=np.float32)
    return {"batch": TrajectoryBatch(
        observations=draw(arrays_of((b, length + 1, obs), draw(FLOAT_DTYPES), 0.15)),
        actions=draw(arrays_of((b, length, act), draw(FLOAT_DTYPES), 0.1)),
        rewards=draw(arrays_of((b, length), draw(FLOAT_DTYPES), 0.1)),
        terminals=terminals if not _chance(draw, 0.05) else terminals.astype(np.int8),
        lengths=lengths, generator=draw(st.sampled_from(["gen-a", "gen-b"])), filter_score=score, **prov)}


def expected_append(batch: TrajectoryBatch) -> dict[str, np.ndarray] | None:
    """The rows appending this batch must add, step by step; None when it must be refused."""
    b, length = batch.actions.shape[:2]
    if any(a.dtype.kind != "f" for a in (batch.observations, batch.actions, batch.rewards)):
        return None
    if batch.terminals.dtype != np.bool_:
        return None
    if b and (batch.lengths.min() < 1 or batch.lengths.max() > length):
        return None
    for name, high in (("round", 2**31 - 1), ("learner_step", None), ("start_index", None)):
        arr = getattr(batch, name)
        if b and (arr.min() < -1 or (high is not None and arr.max() > high)):
            return None
    if np.isinf(batch.filter_score).any():
        return None
    rows: dict[str, list[Any]] = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                                                  "terminals", "timeouts", "round", "trajectory")}
    for row in range(b):
        n = int(batch.lengths[row])
        for t in range(n):
            if batch.terminals[row, t] and t < n - 1:
                return None
            values = {"observations": batch.observations[row, t], "next_observations":
                      batch.observations[row, t + 1], "actions": batch.actions[row, t],
                      "rewards": batch.rewards[row, t]}
            for key, value in values.items():
                f32 = _as_float(np.atleast_1d(np.asarray(value)))
                if f32 is None:
                    return None
                rows[key].append(f32 if key != "rewards" else f32[0])
            rows["terminals"].append(bool(batch.terminals[row, t]) and t == n - 1)
            rows["timeouts"].append(t == n - 1 and not batch.terminals[row, t])
            rows["round"].append(int(batch.round[row]))
            rows["trajectory"].append(row)
    return {k: np.array(v) for k, v in rows.items()}


@FUZZ
@given(batches())
def test_append_stores_exactly_the_valid_steps_or_refuses_unchanged(case: dict[str, Any]) -> None:
    batch: TrajectoryBatch = case["batch"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        store = ReplayStore.create(path, observation_size=3, action_size=2, chunk_rows=4)
        first = TrajectoryBatch(observations=np.ones((1, 3, 3), np.float32),
                                actions=np.ones((1, 2, 2), np.float32),
                                rewards=np.ones((1, 2), np.float32), terminals=np.zeros((1, 2), bool),
                                lengths=np.array([2]), generator="seed", round=np.array([0]),
                                learner_step=np.array([0]), filter_score=np.array([np.nan], np.float32),
                                start_index=np.array([0]))
        store.append(first)
        store.flush()
        before = store.load()
        expected = expected_append(batch)
        try:
            store.append(batch)
        except UserInputError as exc:
            assert expected is None, f"refused a valid batch: {exc}"
            assert store.pending_rows == 0
            store.close()
            after = ReplayStore.open(path).load()
            for key in before:
                np.testing.assert_array_equal(after[key], before[key], err_msg=key)
            _tally("append", "refused")
            return
        assert expected is not None, "accepted a batch that must be refused"
        store.close()
        reopened = ReplayStore.open(path)
        reopened.validate()
        data = reopened.load()
        for key, want in expected.items():
            got = data[key][2:]
            if key == "trajectory":
                want = want + 1
            np.testing.assert_array_equal(got, want.reshape(got.shape), err_msg=key)
        _tally("append", "accepted")
