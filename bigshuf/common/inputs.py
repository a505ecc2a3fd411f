"""What an input is, learnt once (:func:`describe_input`), and the checks on input paths with
the messages every command uses."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Sequence, Tuple, Union

from bigshuf.common.codecs import compression_of
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


class InputKind(Enum):
    """How an input can be read."""

    FILE = "file"              # a regular file, plain: its size is its records' bytes
    COMPRESSED = "compressed"  # a regular file, decompressed by extension as it is read
    STREAM = "stream"          # read once: stdin, pipes, FIFOs, devices, /dev/fd/N, /proc/...


@dataclass(frozen=True)
class InputInfo:
    """One input path as the readers, planners and checks need it."""

    path: str
    kind: InputKind
    codec: Optional[str]        # ".gz", ".zst", ... by extension (a stream may have one too)
    disk_bytes: Optional[int]   # a regular file's size on disk

    @property
    def rereadable(self) -> bool:
        return self.kind is not InputKind.STREAM

    @property
    def size(self) -> Optional[int]:
        """Bytes of record data, if known before reading (a plain regular file)."""
        return self.disk_bytes if self.kind is InputKind.FILE else None


def describe_input(path: PathLike) -> InputInfo:
    """What ``path`` is (links followed). Anything but a regular file is a stream, and so are
    names of descriptors (/dev/stdin, /dev/fd/N, /proc/self/fd/N), whatever they point to: a
    second opening is not a second reading of the same bytes. A path that cannot be stat'ed is
    described as a file (opening it reports the error)."""
    p = os.fspath(path)
    codec = None if p == "-" else compression_of(p)
    if p == "-" or p.startswith(("/dev/", "/proc/")) or \
            os.path.realpath(p).startswith(("/dev/", "/proc/")):
        return InputInfo(p, InputKind.STREAM, codec, None)
    try:
        st = os.stat(p)
    except OSError:
        return InputInfo(p, InputKind.COMPRESSED if codec else InputKind.FILE, codec, None)
    if not stat.S_ISREG(st.st_mode):
        return InputInfo(p, InputKind.STREAM, codec, None)
    return InputInfo(p, InputKind.COMPRESSED if codec else InputKind.FILE, codec, st.st_size)


def is_read_once(path: PathLike) -> bool:
    """Can this input be read only once? See :func:`describe_input`."""
    return not describe_input(path).rereadable


def check_read_once_given_once(paths: Sequence[object]) -> None:
    """An input that can be read only once (stdin, a FIFO, /dev/stdin, /proc/self/fd/N,
    ``<(cmd)``) named twice, or one Python stream given twice, would be read empty the second
    time: refused (exit 2)."""
    seen: set = set()
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            if id(path) in seen:
                raise UsageError(f"{getattr(path, 'name', '<stream>')}: a stream (read only "
                                 "once) is given more than once")
            seen.add(id(path))
            continue
        key = _read_once_identity(os.fspath(path))
        if key is None:
            continue
        if key in seen:
            raise UsageError(f"{os.fspath(path)}: an input that can be read only once (stdin, a pipe) "
                             "is given more than once")
        seen.add(key)


def _read_once_identity(p: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of a path that is not a regular file, or None. ``-`` is one stream
    whatever stdin is: a redirected regular file too, since both readers would share its
    offset (while /dev/stdin on a regular file is a second, independent opening)."""
    try:
        st = os.fstat(0) if p == "-" else os.stat(p)
    except OSError:
        return None if p != "-" else (-1, -1)
    if stat.S_ISREG(st.st_mode):
        return (-1, -1) if p == "-" else None
    return (st.st_dev, st.st_ino)
