"""The temporary directory (``--temp-dir``): where it is, and what its errors say, in one place.

Every temporary file of a run is created here unlinked at once (nothing to clean up, even after
SIGKILL); the engine's runs, a spilled reservoir and ``-r``'s copy of stdin all go through it, so
a missing directory, a failed creation and a full disk read the same in every mode.
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional

from bigshuf.common.errors import BigshufError, UsageError, describe_os_error


def temp_directory(temp_dir: Optional[str]) -> str:
    """``--temp-dir`` or the default ($TMPDIR or /tmp); a missing one is a usage error."""
    directory = temp_dir or tempfile.gettempdir()
    if not os.path.isdir(directory):
        raise UsageError(f"temporary directory does not exist: {directory}")
    return directory


def unlinked_temp_fd(directory: str) -> int:
    """A read-write descriptor to a new private file in ``directory``, already unlinked."""
    try:
        fd, path = tempfile.mkstemp(prefix=".bigshuf-", suffix=".runs", dir=directory)
    except OSError as exc:
        raise describe_os_error(exc, f"cannot create a temporary file in {directory}") from None
    try:
        os.unlink(path)
    except OSError:
        os.close(fd)
        raise
    return fd


def temp_write_error(exc: OSError, directory: str) -> BigshufError:
    """The one-line error for a failed write of temporary data (ENOSPC, EFBIG, EDQUOT, EIO)."""
    return describe_os_error(exc, f"writing temporary data in {directory}")
