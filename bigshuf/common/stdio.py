"""Standard input and output as the commands use them: a descriptor when there is one.

The engine reads and writes descriptors directly (no Python buffering in the way); callers
that replaced ``sys.stdin``/``sys.stdout`` with in-memory streams (tests, notebooks) get those
streams instead. A closed stream (``<&-``, ``>&-``) is a one-line usage error, not a crash.
"""
from __future__ import annotations

import io
import os
import sys
from typing import IO, Any, Optional, Tuple

from bigshuf.common.errors import UsageError


def _resolve(stream: Any, what: str) -> Tuple[Optional[int], Optional[IO[bytes]]]:
    if stream is None:
        raise UsageError(f"standard {what} is closed")
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None, getattr(stream, "buffer", stream)
    try:
        os.fstat(fd)
    except OSError:
        raise UsageError(f"standard {what} is closed") from None
    return fd, None


def stdin() -> Tuple[Optional[int], Optional[IO[bytes]]]:
    """``(fd, None)`` for a real standard input, ``(None, binary stream)`` for a replaced one."""
    return _resolve(sys.stdin, "input")


def stdout() -> Tuple[Optional[int], Optional[IO[bytes]]]:
    """``(fd, None)`` for a real standard output, ``(None, binary stream)`` for a replaced one."""
    return _resolve(sys.stdout, "output")
