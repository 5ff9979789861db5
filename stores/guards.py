"""The one place that decides what a command may write over, delete or leave behind.

Every command that writes (``store import/export/merge``, ``train``, ``dydiff``, the Python API behind them)
goes through these guards:

* :func:`check_replaceable` / :func:`remove_replaceable`: what ``--overwrite`` (``overwrite=True``) may
  delete. Only something the toolkit made - a replay store (``zarr.json`` whose ``format`` attribute is
  ``augment-replay-store``), a run directory (marker file :data:`RUN_MARKER`, or the ``config.json`` of a
  run written before the marker existed), a file exported by ``augment store export`` (it carries an
  ``augment`` group / ``augment_*`` keys) or a Minari dataset written by the toolkit - and never while a
  process holds its writer lock (:data:`STORE_LOCK` of a store, :data:`RUN_LOCK` of a run). Anything else
  is a :class:`UserInputError` naming the path.
* :func:`staged_dir` / :func:`staged_file`: build an output under a hidden temporary name beside the
  target and move it into place only when complete (an atomic rename, or an atomic exchange with the old
  version), so a failure or a kill never leaves a half-written output at the target. Files are written
  through an unnamed ``O_TMPFILE`` where the file system has it: a killed export leaves nothing at all.
  Directories (and files where ``O_TMPFILE`` is missing) are named ``.<target>.augment-tmp-<pid>-<hex>``;
  the next command writing to the same target removes those of dead processes (:func:`sweep_leftovers`).
* :func:`run_lock`: one ``augment train`` per run directory at a time.
* :func:`user_error_from_os`: an ``OSError`` of the disk (read-only 30, full 28, permission 13 / 1,
  quota 122, file size limit 27, ...) as one :class:`UserInputError` line with the path and a fix
  (:mod:`stores.guard_errors`, re-exported here with :func:`os_error_line`, :func:`disk_errors` and
  :data:`DISK_ERRNOS`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from stores.errors import UserInputError
from stores.guard_errors import _OS_HINTS as _OS_HINTS  # re-exported
from stores.guard_errors import DISK_ERRNOS, disk_errors, os_error_line, user_error_from_os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STORE_FORMAT = "augment-replay-store"  # == stores.replay.FORMAT_NAME (kept here so guards import nothing)
STORE_LOCK = ".writer.lock"            # == stores.replay.LOCK_NAME
RUN_MARKER = ".augment-run"            # empty file: "this directory is a run directory of augment"
RUN_LOCK = ".run.lock"                 # a running `augment train` holds an exclusive flock on it
MINARI_ALGORITHM = "diffusion-augment"  # algorithm_name of the Minari datasets the toolkit writes
TMP_TAG = "augment-tmp"
TRASH_TAG = "augment-trash"
_LEFTOVER = re.compile(rf"^\.(?P<name>.+)\.(?P<tag>{TMP_TAG}|{TRASH_TAG})-(?P<pid>\d+)-[0-9a-f]+(?:[.-].*)?$")

#: Kinds of things ``--overwrite`` may replace.
KINDS = ("store", "run", "export", "minari")

# --------------------------------------------------------------------------- recognising our outputs


def is_replay_store(path: Path) -> bool:
    """True when ``path`` is a directory whose ``zarr.json`` says it is a replay store."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and attrs.get("format") == STORE_FORMAT


def is_run_dir(path: Path) -> bool:
    """True for a run directory of ``augment train`` / ``augment dydiff``: it holds :data:`RUN_MARKER`, or
    (runs made before the marker existed) a ``config.json`` with the loop's ``learner``/``train``/``dataset``
    keys."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / RUN_MARKER).is_file():
        return True
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"learner", "train", "dataset"} <= set(config)


def is_export_file(path: Path) -> bool:
    """True for a file ``augment store export`` wrote: an npz with ``augment_store_attrs``, or an HDF5 file
    (D4RL layout or d3rlpy dump) with an ``augment`` group holding ``store_attrs``."""
    path = Path(path)
    if not path.is_file():
        return False
    kind = sniff(path)
    if kind == "zip":
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                return "augment_store_attrs.npy" in archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return False
    if kind == "hdf5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return "augment" in f and "store_attrs" in f["augment"].attrs
        except OSError:
            return False
    return False


def is_toolkit_minari(path: Path) -> bool:
    """True for a Minari dataset directory written by the toolkit (``algorithm_name`` diffusion-augment)."""
    try:
        meta = json.loads((Path(path) / "data" / "metadata.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("algorithm_name") == MINARI_ALGORITHM


def sniff(path: Path) -> str:
    """What a file is by its first bytes: ``zip`` (npz), ``npy``, ``hdf5``, ``pickle``, ``gzip``, ``text``,
    ``empty``, ``directory``, ``missing`` or ``binary``."""
    path = Path(path)
    if not path.exists():
        return "missing"
    if path.is_dir():
        return "directory"
    with open(path, "rb") as f:
        head = f.read(1024)
        if not head:
            return "empty"
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return "zip"
        if head.startswith(b"\x93NUMPY"):
            return "npy"
        hdf5 = b"\x89HDF\r\n\x1a\n"
        if head.startswith(hdf5):
            return "hdf5"
        for offset in (512, 1024, 2048, 4096):  # HDF5 allows a user block before the signature
            f.seek(offset)
            if f.read(8) == hdf5:
                return "hdf5"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return "text" if printable >= 0.95 * len(text) else "binary"


# --------------------------------------------------------------------------- locks


def _flock(handle: IO[Any]) -> bool:
    """Try an exclusive non-blocking flock; True when taken."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(handle: IO[Any] | None) -> None:
    if handle is None:
        return
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()


def lock_holder(lock_path: Path) -> bool:
    """True when another open file description holds an flock on ``lock_path`` (a live writer)."""
    if not Path(lock_path).is_file():
        return False
    try:
        handle = open(lock_path, "rb")  # noqa: SIM115 - released below
    except OSError:
        return False
    try:
        return not _flock(handle)
    finally:
        _unlock(handle)


@contextlib.contextmanager
def _holding(lock_paths: Iterable[Path], what: Path) -> Iterator[None]:
    """Hold the flocks of the existing ``lock_paths`` for the block; UserInputError if one is taken."""
    handles: list[IO[Any]] = []
    try:
        for lock in lock_paths:
            if not lock.is_file():
                continue
            try:
                handle = open(lock, "rb")  # noqa: SIM115 - released in finally
            except OSError as exc:
                raise user_error_from_os(exc, lock, "lock") from exc
            handles.append(handle)
            if not _flock(handle):
                raise UserInputError(
                    f"'{what}' is in use by another writer (in this or another process: it holds "
                    f"{lock.name}); wait for it to finish or stop it first - --overwrite never deletes what "
                    "is being written")
        yield
    finally:
        for handle in handles:
            _unlock(handle)


def _locks_of(path: Path, kind: str) -> list[Path]:
    if kind == "store":
        return [path / STORE_LOCK]
    if kind == "run":
        return [path / RUN_LOCK, *(p.parent / STORE_LOCK for p in path.glob("*/zarr.json"))]
    return []


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's :data:`RUN_LOCK` for the block (one ``augment train`` per directory).

    Raises UserInputError when another process holds it. The lock file holds the holder's pid.
    """
    run_dir = Path(run_dir)
    lock = run_dir / RUN_LOCK
    try:
        handle = open(lock, "a+")  # noqa: SIM115 - released in finally
    except OSError as exc:
        raise user_error_from_os(exc, lock, "lock") from exc
    if not _flock(handle):
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise UserInputError(
            f"'{run_dir}' is in use by another `augment train` (pid {pid}); wait for it to finish or choose "
            "another --out")
    try:
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        yield
    finally:
        _unlock(handle)


def mark_run_dir(run_dir: Path) -> None:
    """Create :data:`RUN_MARKER` in ``run_dir`` (so ``--overwrite`` may later replace it)."""
    marker = Path(run_dir) / RUN_MARKER
    if not marker.exists():
        with disk_errors(marker):
            marker.write_text("a run directory of diffusion-augment; `augment train --overwrite` may "
                              "replace it\n")


# --------------------------------------------------------------------------- what --overwrite may delete

_DESCRIBE = {
    "store": "a replay store",
    "run": "a run directory of augment train",
    "export": "a file written by augment store export",
    "minari": "a Minari dataset written by augment",
}


def _kind_of(path: Path) -> str | None:
    if path.is_dir():
        if is_replay_store(path):
            return "store"
        if is_run_dir(path):
            return "run"
        if is_toolkit_minari(path):
            return "minari"
        return None
    return "export" if is_export_file(path) else None


def check_replaceable(path: str | os.PathLike[str], allowed: Iterable[str], *, flag: str = "--overwrite"
                      ) -> str | None:
    """What ``path`` is, when ``--overwrite`` may replace it; None when nothing is there.

    allowed: the kinds this command may replace (:data:`KINDS`). Raises UserInputError naming the path for
    anything else (an unrelated directory or file, something of another kind) and while another process
    holds its writer lock.
    """
    path = Path(path)
    allowed = tuple(allowed)
    if not path.exists() and not path.is_symlink():
        return None
    kind = None if path.is_symlink() else _kind_of(path)
    wanted = " or ".join(_DESCRIBE[k] for k in allowed)
    if kind is None or kind not in allowed:
        what = "a directory" if path.is_dir() else "a file"
        made = f"{_DESCRIBE[kind]}" if kind is not None else f"{what} augment did not make"
        raise UserInputError(
            f"'{path}' is {made}; {flag} only replaces {wanted}. Delete it yourself or choose another path")
    for lock in _locks_of(path, kind):
        if lock_holder(lock):
            raise UserInputError(
                f"'{path}' is in use by another writer (in this or another process: it holds {lock.name}); "
                f"wait for it to finish or stop it first - {flag} never deletes what is being written")
    return kind


def _hidden_sibling(target: Path, tag: str, suffix: str = "") -> Path:
    return target.parent / f".{target.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"


def _remove_path(path: Path) -> None:
    """Best-effort removal of a file or directory tree (cleanup must not mask the error it cleans up)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()


def remove_replaceable(path: str | os.PathLike[str], allowed: Iterable[str], *, flag: str = "--overwrite"
                       ) -> str | None:
    """Delete ``path`` after :func:`check_replaceable` allowed it (holding its writer locks meanwhile).

    The directory is first renamed to a hidden trash name (atomic), so it is never seen half-deleted.
    Returns the kind removed, or None when nothing was there.
    """
    path = Path(path)
    kind = check_replaceable(path, allowed, flag=flag)
    if kind is None:
        return None
    trash = _hidden_sibling(path, TRASH_TAG)
    with _holding(_locks_of(path, kind), path), disk_errors(path, "delete"):
        os.rename(path, trash)
    _remove_path(trash)
    return kind


# --------------------------------------------------------------------------- staged outputs


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden temporaries that killed processes left beside ``target``; return what was removed.

    A trash copy (the old version a killed process was replacing) is moved back when the target is
    missing, so an interrupted replacement leaves the old version rather than nothing.
    """
    target = Path(target)
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if m is None or m.group("name") != target.name or _pid_alive(int(m.group("pid"))):
            continue
        if m.group("tag") == TRASH_TAG and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(entry, target)
                continue
        _remove_path(entry)
        removed.append(entry)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _prepare_target(target: Path, overwrite: bool, allowed: tuple[str, ...], flag: str) -> None:
    sweep_leftovers(target)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise UserInputError(
                f"'{target}' already exists; pass {flag} to replace it or choose another path")
        check_replaceable(target, allowed, flag=flag)
    with disk_errors(target.parent, "create"):
        target.parent.mkdir(parents=True, exist_ok=True)


def _publish(tmp: Path, target: Path, overwrite: bool, allowed: tuple[str, ...], flag: str) -> None:
    """Move the complete ``tmp`` to ``target``, replacing what is there only as the guard allows."""
    with disk_errors(target, "write"):
        if not (target.exists() or target.is_symlink()):
            if tmp.is_dir():
                with contextlib.suppress(OSError):  # an empty directory appeared: rename would replace it
                    target.rmdir()
            os.rename(tmp, target)
            return
        if not overwrite:
            raise UserInputError(f"'{target}' appeared while this command ran; pass {flag} to replace it")
        kind = check_replaceable(target, allowed, flag=flag)
        assert kind is not None
        with _holding(_locks_of(target, kind), target):
            if tmp.is_dir() or target.is_dir():
                if _exchange(tmp, target):
                    _remove_path(tmp)  # now holds the old version
                    return
                trash = _hidden_sibling(target, TRASH_TAG)
                os.rename(target, trash)
                os.rename(tmp, target)
                _remove_path(trash)
            else:
                os.replace(tmp, target)


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike[str], *, overwrite: bool = False,
               allowed: Iterable[str] = ("store",), flag: str = "--overwrite") -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target`` to build a directory in; move it to ``target`` when
    the block succeeds (replacing an existing ``target`` only when ``overwrite`` and the guard allow it);
    delete it when the block fails. Refuses an existing ``target`` up front unless ``overwrite``."""
    target = Path(os.path.normpath(target))  # "a/../b" names b, whether or not a exists
    allowed = tuple(allowed)
    _prepare_target(target, overwrite, allowed, flag)
    tmp = _hidden_sibling(target, TMP_TAG)
    try:
        yield tmp
        _publish(tmp, target, overwrite, allowed, flag)
    except BaseException as exc:
        _remove_path(tmp)
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if isinstance(cause, OSError) and cause.errno in DISK_ERRNOS:
            kept = "the existing one is unchanged" if target.exists() else "nothing was written there"
            raise UserInputError(f"{os_error_line(cause, target)}; {kept}") from cause
        raise


def _link_unnamed(fd: int, dest: Path) -> None:
    """Give the ``O_TMPFILE`` file ``fd`` the name ``dest`` (``linkat`` through /proc/self/fd)."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, at_symlink_follow = -100, 0x400
    if libc.linkat(at_fdcwd, f"/proc/self/fd/{fd}".encode(), at_fdcwd, os.fsencode(dest),
                   at_symlink_follow) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(dest))


def _unnamed_file(directory: Path) -> IO[bytes] | None:
    """An unnamed file in ``directory`` (``O_TMPFILE``), or None where the system lacks it."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not Path("/proc/self/fd").is_dir():
        return None
    try:
        fd = os.open(directory, flag | os.O_RDWR, 0o644)
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise
        return None
    return os.fdopen(fd, "w+b")


@contextlib.contextmanager
def staged_file(target: str | os.PathLike[str], *, overwrite: bool = False,
                allowed: Iterable[str] = ("export",), flag: str = "--overwrite", guard: bool = True
                ) -> Iterator[IO[bytes]]:
    """Yield a binary file (read/write, seekable) that becomes ``target`` when the block succeeds.

    The file is unnamed (``O_TMPFILE``) while written where the file system allows it, else a hidden
    temporary beside ``target``; either way a failure leaves nothing and ``target`` is replaced atomically.
    guard: False replaces any existing file at ``target`` (for writers without an overwrite option);
    True applies ``overwrite`` / ``allowed`` as :func:`staged_dir` does.
    """
    target = Path(os.path.normpath(target))  # "a/../b" names b, whether or not a exists
    allowed = tuple(allowed)
    if target.is_dir():
        raise UserInputError(f"'{target}' is a directory; name a file to write (e.g. {target / 'data'})")
    if guard:
        _prepare_target(target, overwrite, allowed, flag)
    else:
        sweep_leftovers(target)
        with disk_errors(target.parent, "create"):
            target.parent.mkdir(parents=True, exist_ok=True)
    with disk_errors(target, "write"):
        handle = _unnamed_file(target.parent)
    named: Path | None = None
    if handle is None:
        named = _hidden_sibling(target, TMP_TAG, "".join(target.suffixes[-1:]))
        with disk_errors(named, "write"):
            handle = open(named, "w+b")  # noqa: SIM115 - closed below
    linked: Path | None = named
    try:
        with disk_errors(target, "write"):
            yield handle
            handle.flush()
            if named is None:
                linked = _hidden_sibling(target, TMP_TAG, "".join(target.suffixes[-1:]))
                _link_unnamed(handle.fileno(), linked)
            handle.close()
        assert linked is not None
        if guard:
            _publish(linked, target, overwrite, allowed, flag)
        else:
            with disk_errors(target, "write"):
                os.replace(linked, target)
    except BaseException:
        handle.close()
        if linked is not None:
            _remove_path(linked)
        raise


def write_file_atomically(target: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically, leaving no temporary behind on failure (for the
    toolkit's own bookkeeping files inside directories it made, e.g. a run's ``config.json``; no
    overwrite check)."""
    target = Path(target)
    tmp = _hidden_sibling(target, TMP_TAG)
    try:
        with disk_errors(target, "write"):
            handle = _unnamed_file(target.parent)
            if handle is None:
                tmp.write_bytes(data)
            else:
                with handle:
                    handle.write(data)
                    handle.flush()
                    _link_unnamed(handle.fileno(), tmp)
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
