"""Replay store input checks and flattening: a :class:`~stores.schema.TrajectoryBatch` or flat transition
columns are validated against the store's schema (a refused batch leaves the store untouched) and turned
into row columns plus local trajectory starts."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stores.errors import UserInputError
from stores.replay_schema import TRANSITION_COLUMNS
from stores.schema import TrajectoryBatch


def _int_field(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise UserInputError(f"TrajectoryBatch field '{name}' has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "iu":
        raise UserInputError(f"TrajectoryBatch field '{name}' has dtype {arr.dtype}, expected integers")


def _validate_batch(batch: TrajectoryBatch, obs_size: int, act_size: int) -> None:
    """Check a batch against the store's schema; raise :class:`UserInputError` naming the field."""
    if not isinstance(batch, TrajectoryBatch):
        raise UserInputError(f"append() takes a stores.schema.TrajectoryBatch, got {type(batch).__name__}")
    if not isinstance(batch.generator, str) or not batch.generator:
        raise UserInputError("TrajectoryBatch field 'generator' must be a non-empty name")
    arrays = {name: getattr(batch, name) for name in (
        "observations", "actions", "rewards", "terminals", "lengths", "round", "learner_step",
        "filter_score", "start_index")}
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray):
            raise UserInputError(
                f"TrajectoryBatch field '{name}' must be a NumPy array, got {type(arr).__name__}")
    act = batch.actions
    if act.ndim != 3 or act.shape[2] != act_size:
        raise UserInputError(
            f"TrajectoryBatch field 'actions' has shape {act.shape}, expected (B, L, {act_size})")
    b, length = act.shape[:2]
    expected = {"observations": (b, length + 1, obs_size), "rewards": (b, length), "terminals": (b, length)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise UserInputError(
                f"TrajectoryBatch field '{name}' has shape {arrays[name].shape}, expected {shape}")
    for name in ("observations", "actions", "rewards", "filter_score"):
        if arrays[name].dtype.kind != "f":
            raise UserInputError(
                f"TrajectoryBatch field '{name}' has dtype {arrays[name].dtype}, expected float")
    if batch.terminals.dtype != np.bool_:
        raise UserInputError(
            f"TrajectoryBatch field 'terminals' has dtype {batch.terminals.dtype}, expected bool")
    for name in ("lengths", "round", "learner_step", "start_index"):
        _int_field(name, arrays[name], (b,))
    if batch.filter_score.shape != (b,):
        raise UserInputError(
            f"TrajectoryBatch field 'filter_score' has shape {batch.filter_score.shape}, expected ({b},)")
    if b == 0:
        return
    lengths = batch.lengths
    if lengths.min() < 1 or lengths.max() > length:
        raise UserInputError(f"TrajectoryBatch field 'lengths' must lie in [1, {length}]")
    for name, low, high in (("round", -1, np.iinfo(np.int32).max), ("learner_step", -1, None),
                            ("start_index", -1, None)):
        arr = arrays[name]
        if arr.min() < low or (high is not None and arr.max() > high):
            raise UserInputError(f"TrajectoryBatch field '{name}' must be >= {low}" +
                                 (f" and <= {high}" if high is not None else "") + " (-1 = unknown)")
    if np.isinf(batch.filter_score).any():
        raise UserInputError("TrajectoryBatch field 'filter_score' holds inf (use NaN for 'unfiltered')")
    full = bool((lengths == length).all())
    valid = None if full else np.arange(length)[None, :] < lengths[:, None]
    for name in ("observations", "actions", "rewards"):
        arr = arrays[name]
        ok = np.isfinite(arr) if arr.ndim == 2 else np.isfinite(arr).all(axis=-1)
        if np.dtype(arr.dtype).itemsize > 4:  # values beyond float32 range become inf when stored
            with np.errstate(over="ignore"):
                ok32 = np.isfinite(arr.astype(np.float32))
            ok &= ok32 if arr.ndim == 2 else ok32.all(axis=-1)
        if valid is not None:
            mask = np.concatenate([np.ones((b, 1), bool), valid], axis=1) if name == "observations" else valid
            ok = ok | ~mask
        if not ok.all():
            row, step = np.argwhere(~ok)[0]
            raise UserInputError(
                f"TrajectoryBatch field '{name}' holds NaN or inf (trajectory {row}, step {step}), "
                "or a value too large for float32")
    last = np.arange(length)[None, :] == (lengths[:, None] - 1)
    early = batch.terminals & ~last
    if valid is not None:
        early &= valid
    if early.any():
        row, step = np.argwhere(early)[0]
        raise UserInputError(
            f"TrajectoryBatch field 'terminals' is True at trajectory {row}, step {step}, before its last "
            f"valid step {lengths[row] - 1}; end the trajectory there (set lengths)")


def _batch_columns(batch: TrajectoryBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flatten a validated batch to row columns (trajectory-major) and its local trajectory starts (B,)."""
    b, length, act = batch.actions.shape
    obs = batch.observations.shape[2]
    lengths = batch.lengths.astype(np.int64)
    if (lengths == length).all():
        cols = {
            "observations": batch.observations[:, :-1].reshape(b * length, obs),
            "next_observations": batch.observations[:, 1:].reshape(b * length, obs),
            "actions": batch.actions.reshape(b * length, act),
            "rewards": batch.rewards.reshape(b * length),
            "terminals": batch.terminals.reshape(b * length),
        }
        last = np.zeros((b, length), dtype=bool)
        last[:, -1] = True
        last = last.reshape(-1)
    else:
        rows, steps = np.nonzero(np.arange(length)[None, :] < lengths[:, None])
        cols = {
            "observations": batch.observations[rows, steps],
            "next_observations": batch.observations[rows, steps + 1],
            "actions": batch.actions[rows, steps],
            "rewards": batch.rewards[rows, steps],
            "terminals": batch.terminals[rows, steps],
        }
        last = steps == (lengths[rows] - 1)
    cols["timeouts"] = last & ~cols["terminals"]
    cols["round"] = np.repeat(batch.round, lengths)
    cols["learner_step"] = np.repeat(batch.learner_step, lengths)
    cols["filter_score"] = np.repeat(batch.filter_score, lengths)
    cols["start_index"] = np.repeat(batch.start_index, lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return cols, starts


def _validate_flat(columns: Mapping[str, np.ndarray], episode_starts: np.ndarray, obs_size: int,
                   act_size: int) -> tuple[int, dict[str, np.ndarray], np.ndarray]:
    """Check flat transition columns; return (n, columns with provenance defaults, local starts (e,))."""
    missing = [name for name in TRANSITION_COLUMNS if name not in columns]
    if missing:
        raise UserInputError(f"transitions are missing field(s) {missing}")
    n = int(np.asarray(columns["rewards"]).shape[0])
    out: dict[str, np.ndarray] = {}
    for name, (dtype, kind) in TRANSITION_COLUMNS.items():
        arr = np.asarray(columns[name])
        width = {"obs": obs_size, "act": act_size, None: None}[kind]
        shape = (n,) if width is None else (n, width)
        if arr.shape != shape:
            raise UserInputError(f"transition field '{name}' has shape {arr.shape}, expected {shape}")
        if dtype == "bool" and arr.dtype != np.bool_:
            raise UserInputError(f"transition field '{name}' has dtype {arr.dtype}, expected bool")
        if dtype == "float32":
            if arr.dtype.kind != "f":
                raise UserInputError(f"transition field '{name}' has dtype {arr.dtype}, expected float")
            with np.errstate(over="ignore"):
                arr = arr.astype(np.float32, copy=False)
            finite = np.isfinite(arr.reshape(n, -1)).all(axis=1)
            if not finite.all():
                row = int(np.argmin(finite))
                raw = np.asarray(columns[name]).reshape(n, -1)[row]
                what = "NaN or inf" if not np.isfinite(raw).all() else "a value beyond float32's range"
                raise UserInputError(f"transition field '{name}' holds {what} (first bad row {row})")
        out[name] = arr
    starts = np.asarray(episode_starts)
    if starts.dtype.kind not in "iu" or starts.ndim != 1:
        raise UserInputError("'episode_starts' must be a 1-D integer array of trajectory offsets")
    starts = starts.astype(np.int64)
    if starts.size and starts[-1] == n and n > 0:
        starts = starts[:-1]
    if n and (starts.size == 0 or starts[0] != 0 or (np.diff(np.append(starts, n)) <= 0).any()):
        raise UserInputError(
            "'episode_starts' must start at 0 and increase strictly, each below the row count")
    if n:
        is_last = np.zeros(n, dtype=bool)
        is_last[np.append(starts[1:], n) - 1] = True
        for name in ("terminals", "timeouts"):
            inner = np.flatnonzero(out[name] & ~is_last)
            if inner.size:
                raise UserInputError(
                    f"transition field '{name}' is True at row {inner[0]} inside a trajectory; "
                    "split the trajectory there (episode_starts)")
    lengths = np.diff(np.append(starts, n))
    defaults = {"round": (-1, "int32"), "learner_step": (-1, "int64"), "filter_score": (np.nan, "float32")}
    for name, (default, dtype) in defaults.items():
        if name in columns:
            arr = np.asarray(columns[name])
            kind_ok = arr.dtype.kind == "f" if dtype == "float32" else arr.dtype.kind in "iu"
            if arr.shape != (n,) or not kind_ok:
                raise UserInputError(
                    f"transition field '{name}' must be ({n},) {dtype}, got {arr.shape} {arr.dtype}")
            out[name] = arr.astype(dtype)
        else:
            out[name] = np.full(n, default, dtype=dtype)
    if "start_index" in columns:
        arr = np.asarray(columns["start_index"])
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise UserInputError(f"transition field 'start_index' must be ({n},) integers")
        out["start_index"] = arr.astype(np.int64)
    else:
        out["start_index"] = np.repeat(starts, lengths)
    return n, out, starts
