"""Checks on input paths, before any work, with the messages every command uses."""
from __future__ import annotations

import os
import stat
from typing import Union

from bigshuf.common.errors import InputError

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
