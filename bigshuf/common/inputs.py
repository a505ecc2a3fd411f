"""Checks on input paths, before any work, with the messages every command uses."""
from __future__ import annotations

import os
import stat
from typing import Optional, Sequence, Tuple, Union

from bigshuf.common.errors import InputError, UsageError

PathLike = Union[str, "os.PathLike[str]"]


def check_readable(path: PathLike) -> None:
    """Fail early (exit 2, naming the file) for a missing, directory or unreadable input.
    ``-`` (stdin) passes: it is checked when it is opened."""
    if str(path) == "-":
        return
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("no such file", p) from None
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), p) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory", p)
    if not os.access(p, os.R_OK):
        raise InputError("permission denied", p)


def is_read_once(path: PathLike) -> bool:
    """Can this input be read only once? Everything but a regular file (links followed):
    stdin (``-``), pipes, FIFOs, ``/dev/stdin``, ``/proc/self/fd/N``, ``<(cmd)``."""
    p = os.fspath(path)
    if p == "-":
        return True
    try:
        return not stat.S_ISREG(os.stat(p).st_mode)
    except OSError:
        return False


def check_read_once_given_once(paths: Sequence[object]) -> None:
    """An input that can be read only once (stdin, a FIFO, /dev/stdin, /proc/self/fd/N,
    ``<(cmd)``) named twice would be read empty the second time: refused (exit 2)."""
    seen = set()
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            continue
        key = _read_once_identity(os.fspath(path))
        if key is None:
            continue
        if key in seen:
            raise UsageError(f"{os.fspath(path)}: an input that can be read only once (stdin, a pipe) "
                             "is given more than once")
        seen.add(key)


def _read_once_identity(p: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of a path that is not a regular file, or None."""
    try:
        st = os.fstat(0) if p == "-" else os.stat(p)
    except OSError:
        return None if p != "-" else (-1, -1)
    if stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)
