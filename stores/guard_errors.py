"""Disk errors as one line: an ``OSError`` of the disk (read-only 30, full 28, permission 13 / 1, quota
122, file size limit 27, ...) becomes one :class:`UserInputError` line with the path and a fix.

Part of the guards of :mod:`stores.guards`, which re-exports every name here.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from stores.errors import UserInputError

#: errno -> what to tell the user.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free space or choose another location",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "permission denied; choose a location you can write to",
    errno.EPERM: "operation not permitted; choose a location you can write to",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another location",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f); raise the limit",
    errno.EISDIR: "it is a directory; name a file",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "it already exists",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "the disk reported an I/O error",
}
#: The errnos that mean "the disk refused the write"; every writer turns these into a UserInputError.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
                         errno.EIO})


def os_error_line(exc: OSError, path: str | os.PathLike[str] | None = None, action: str = "write") -> str:
    """One line for an OSError: ``cannot write '<path>': <strerror> (errno N); <hint>``."""
    where = exc.filename if path is None else path
    target = f" '{where}'" if where is not None else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = f" (errno {exc.errno})" if exc.errno else ""
    hint = _OS_HINTS.get(exc.errno or -1)
    return f"cannot {action}{target}: {reason}{code}" + (f"; {hint}" if hint else "")


def user_error_from_os(exc: OSError, path: str | os.PathLike[str] | None = None,
                       action: str = "write") -> UserInputError:
    """The :class:`UserInputError` for an OSError (see :func:`os_error_line`)."""
    return UserInputError(os_error_line(exc, path, action))


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike[str], action: str = "write") -> Iterator[None]:
    """Turn OSErrors of the disk (:data:`DISK_ERRNOS`) raised in the block into one UserInputError line."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise user_error_from_os(exc, path, action) from exc
        raise
