"""Exceptions that carry an exit status, so the CLI can report them as one line.

Exit statuses follow Unix habit: 2 for bad usage or bad input (the user must change something),
1 for a failure at run time (disk full, write error), 128+N when stopped by signal N.
"""
from __future__ import annotations

import errno
import sys
from typing import Optional


class BigshufError(Exception):
    """Base class: a failure reported to the user as a single line, exit status 1."""

    exit_code = 1


def changed(name: str, detail: str = "") -> str:
    """The one wording for an input that changed between two readings of it (a runtime
    failure, exit 1: nothing is published)."""
    return f"{name}: input changed while it was being shuffled{detail}"


class UsageError(BigshufError):
    """Options that cannot work together or have bad values (exit 2)."""

    exit_code = 2


class InputError(BigshufError):
    """Bad input data; names the file and, when known, the line (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None):
        self.path = path
        self.line = line
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class Interrupted(BigshufError):
    """The run was stopped by a signal; everything written so far has been removed."""

    def __init__(self, signum: int, name: str, partial: bool = False):
        self.signum = signum
        self.exit_code = 128 + signum
        done = ("the output written to a stream so far is incomplete" if partial
                else "no output written")
        super().__init__(f"interrupted by {name}; {done}, temporary files removed")


def one_line(message: str) -> str:
    """A message as one line: line breaks (e.g. inside a file name) shown as \\n."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def warn_stderr(message: str) -> None:
    """The default warning printer: one line on stderr, in the CLI's format."""
    print(f"bigshuf: warning: {message}", file=sys.stderr)


def describe_os_error(exc: OSError, what: str) -> BigshufError:
    """A one-line runtime error for a failed write/read on temporary or output storage."""
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno == errno.EFBIG:
        reason = "file too large (file-size limit reached)"
    elif exc.errno == errno.EDQUOT:
        reason = "disk quota exceeded"
    else:
        reason = exc.strerror or str(exc)
    return BigshufError(f"{what}: {reason}")
