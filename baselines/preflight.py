"""Checks a training run makes before it writes anything, and the guard around the run directory.

:func:`check_train_inputs` fails with one :class:`~stores.errors.UserInputError` line, before any file is
written or any update is made, when a run cannot succeed:

* ``--device`` is not a torch device, or names CUDA on a machine without it (or an index it lacks);
* the env to evaluate in (``--env`` or the dataset's) is unknown, or its observation / action sizes differ
  from the dataset's (d3rlpy would only fail at the first evaluation, inside its scaler);
* the real (or fixed synthetic) data holds values the learners cannot train on in float32:
  |x| > :data:`MAX_MAGNITUDE` in observations, actions, rewards or next observations (squared TD errors
  of such values overflow float32: rewards of 1e30 train to NaN losses);
* ``--out`` names a file, or a directory augment did not make.

:func:`check_finite_losses` is the run-time counterpart: the loop calls it after every update, and a NaN or
inf loss stops the run with one line naming the loss, the update and the data's largest magnitudes.

:func:`guarded_run_dir` holds the run directory's lock (:func:`stores.guards.run_lock`: one
``augment train`` per directory) around a run and removes what a failed run leaves when it never reached
its first checkpoint (so a failed command creates nothing).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stores.errors import UserInputError
from stores.guards import (
    RUN_LOCK,
    RUN_MARKER,
    check_replaceable,
    disk_errors,
    is_replay_store,
    is_run_dir,
    mark_run_dir,
    remove_replaceable,
    run_lock,
    sweep_leftovers,
    user_error_from_os,
)
from stores.schema import OfflineDataset

#: Largest |value| accepted in the data a learner trains on. Q-values reach r / (1 - gamma) ~ 100 r and the
#: critics square TD errors, so values past ~1e17 overflow float32 (3.4e38); 1e8 leaves a wide margin and is
#: far beyond any real offline-RL data (MuJoCo observations and rewards are below ~1e3).
MAX_MAGNITUDE = 1e8
#: What a run directory may hold before its first checkpoint (a failed run of it is deleted).
_FRESH_RUN_ENTRIES = frozenset({"config.json", "metrics.csv", "resume_note.json", "checkpoints",
                                "synthetic.zarr", RUN_MARKER, RUN_LOCK})


def check_device(device: str, *, setting: str = "--device", use: str = "cpu:0 or cuda:0",
                 fallback: str = "--device cpu:0") -> None:
    """UserInputError unless ``device`` is a torch device this machine has (``cpu:0``, ``cuda:0``, ...).

    One line naming ``setting`` (the option or config field), with ``use`` (the valid spellings) and
    ``fallback`` (what to use without CUDA) in its advice. Shared by the learners' ``--device`` and every
    model's ``device`` field (:func:`augment.world.model.checked_device`).
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserInputError(f"{setting} '{device}' is not a torch device; use {use}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"{setting} '{device}': this machine has no CUDA device (torch "
                                 f"{torch.__version__} sees none); use {fallback}")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserInputError(f"{setting} '{device}': this machine has {count} CUDA device(s) "
                                 f"(cuda:0..cuda:{count - 1})")
    elif dev.type != "cpu":
        raise UserInputError(f"{setting} '{device}': only cpu and cuda are supported; use {use}")


def check_env_fit(dataset: OfflineDataset, env_id: str | None) -> None:
    """UserInputError when ``env_id`` is unknown or its observation/action sizes differ from the data's."""
    if env_id is None:
        return
    from stores.sources import env_dims

    obs, act = env_dims(env_id)
    if (obs, act) != (dataset.observation_size, dataset.action_size):
        said = f" (the dataset names {dataset.env_id})" if dataset.env_id and dataset.env_id != env_id else ""
        raise UserInputError(
            f"{env_id} has observations of size {obs} and actions of size {act}, but dataset "
            f"'{dataset.name}' has {dataset.observation_size} and {dataset.action_size}; evaluate in the env "
            f"the data comes from{said}")


def largest_magnitudes(columns: Mapping[str, np.ndarray]) -> dict[str, tuple[float, int]]:
    """For each float column: (max |x|, first row holding it)."""
    out: dict[str, tuple[float, int]] = {}
    for key in ("observations", "actions", "rewards", "next_observations"):
        arr = columns.get(key)
        if arr is None or len(arr) == 0:
            continue
        per_row = np.abs(np.asarray(arr, dtype=np.float64).reshape(len(arr), -1)).max(axis=1)
        row = int(np.argmax(per_row))
        out[key] = (float(per_row[row]), row)
    return out


def check_magnitudes(columns: Mapping[str, np.ndarray], what: str) -> None:
    """UserInputError naming the column, row and value when |x| > :data:`MAX_MAGNITUDE` anywhere."""
    for key, (value, row) in largest_magnitudes(columns).items():
        if value > MAX_MAGNITUDE:
            raise UserInputError(
                f"{what}: '{key}' reaches {value:.3g} at row {row}; learners train in float32 and diverge to "
                f"NaN on values beyond {MAX_MAGNITUDE:.0e} - rescale the data (e.g. divide rewards by a "
                "constant)")


def _adoptable(run_dir: Path) -> bool:
    """A directory a run may be written into: a run directory, an empty one, or one holding only a
    replay store named synthetic.zarr (``augment dydiff`` creates it before the loop starts)."""
    if is_run_dir(run_dir):
        return True
    entries = {p.name for p in run_dir.iterdir()}
    return entries <= {"synthetic.zarr", RUN_MARKER, RUN_LOCK} and (
        "synthetic.zarr" not in entries or is_replay_store(run_dir / "synthetic.zarr"))


def check_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """UserInputError when ``run_dir`` is a file, a directory augment did not make, or (with
    ``overwrite``) something the guard may not delete (:func:`stores.guards.check_replaceable`)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserInputError(f"--out '{run_dir}' is a file; name a directory for the run (it is created)")
    if overwrite:
        check_replaceable(run_dir, ("run",))
    elif not _adoptable(run_dir):
        raise UserInputError(f"--out '{run_dir}' is a directory augment did not make (no {RUN_MARKER}); "
                             "choose a new or empty directory for the run")


def check_train_inputs(dataset: OfflineDataset, config: Any, run_dir: Path, *, overwrite: bool = False,
                       synthetic: Mapping[str, np.ndarray] | None = None) -> None:
    """``config.validate()`` and every check of the module docstring, in order of cost; nothing is
    written. When a check fails and ``run_dir`` holds only what a caller prepared for the run (an empty
    synthetic store, as ``augment dydiff`` makes before the loop), that directory is removed too."""
    try:
        config.validate()
        check_run_dir(run_dir, overwrite=overwrite)
        check_device(str(config.device))
        tr = dataset.transitions
        check_magnitudes({"observations": tr.observations, "actions": tr.actions, "rewards": tr.rewards,
                          "next_observations": tr.next_observations}, f"dataset '{dataset.name}'")
        if synthetic is not None:
            check_magnitudes(synthetic, "the synthetic store")
        check_env_fit(dataset, config.eval_env or dataset.env_id)
    except UserInputError:
        run_dir = Path(run_dir)
        with contextlib.suppress(OSError):
            if run_dir.is_dir() and not is_run_dir(run_dir) and _fresh_run(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
        raise


def check_finite_losses(losses: Mapping[str, float], step: int, learner: str = "learner") -> None:
    """UserInputError when a loss is NaN or inf (the run diverged at update ``step``)."""
    for name, value in losses.items():
        if not math.isfinite(float(value)):
            raise UserInputError(
                f"training diverged: {learner} {name} = {value} at update {step}; the data's scale (check "
                "rewards and observations) or the learning rate is too large - nothing after the last "
                "checkpoint is kept")


def _probe_write(folder: Path) -> OSError | None:
    """The OSError writing 1 MiB into ``folder`` raises now (None when it succeeds); leaves no file."""
    probe = folder / f".augment-probe-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * (1 << 20))
    except OSError as exc:
        return exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


@contextlib.contextmanager
def checkpoint_write_errors(folder: Path) -> Iterator[None]:
    """torch.save reports a full or read-only disk as a RuntimeError ("unexpected pos ..."): when writing
    a checkpoint into ``folder`` fails so, find the disk's own OSError by a probe write and raise it as one
    UserInputError line; the incomplete checkpoint folder is removed (it was never marked latest)."""
    try:
        yield
    except RuntimeError as exc:
        folder = Path(folder)
        cause = _probe_write(folder if folder.is_dir() else folder.parent)
        shutil.rmtree(folder, ignore_errors=True)
        if cause is not None:
            raise user_error_from_os(cause, folder, "write checkpoint") from exc
        raise
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _fresh_run(run_dir: Path) -> bool:
    """True when ``run_dir`` holds only what a run writes before its first checkpoint."""
    from baselines.runs import latest_checkpoint

    if latest_checkpoint(run_dir) is not None or (run_dir / "results.json").exists():
        return False
    entries = {p.name for p in run_dir.iterdir()}
    if not entries <= _FRESH_RUN_ENTRIES:
        return False
    ckpts = run_dir / "checkpoints"
    if ckpts.is_dir() and any(p.name.startswith("step_") for p in ckpts.iterdir()):
        return False
    store = run_dir / "synthetic.zarr"
    if store.exists():
        from stores.replay import ReplayStore

        try:
            return len(ReplayStore.open(store)) == 0
        except UserInputError:
            return False
    return True


@contextlib.contextmanager
def guarded_run_dir(run_dir: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Prepare ``run_dir`` (delete it first when ``overwrite``; create and mark it) and hold its run lock
    for the block. When the block fails before the run's first checkpoint, the directory is removed if this
    call created it or it holds nothing but that run's own files (an empty synthetic store included)."""
    run_dir = Path(run_dir)
    sweep_leftovers(run_dir)  # e.g. the trash of a `train --overwrite` killed while deleting the old run
    check_run_dir(run_dir, overwrite=overwrite)
    if overwrite and run_dir.exists():
        remove_replaceable(run_dir, ("run",))
    created = not run_dir.exists()
    with disk_errors(run_dir, "create"):
        run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            mark_run_dir(run_dir)
            held.enter_context(run_lock(run_dir))
        except BaseException:  # another run holds it: its directory is not ours to clean
            if created:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        try:
            yield run_dir
        except BaseException:
            with contextlib.suppress(OSError):
                if run_dir.is_dir() and (created or _fresh_run(run_dir)):
                    shutil.rmtree(run_dir, ignore_errors=True)
            raise
