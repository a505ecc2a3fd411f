"""Inputs for the modes that read them more than once (``-u``, ``-r``, ``--epochs``).

Every input is read the same way each time, from what the first reading opened:

* a stream (:func:`bigshuf.common.inputs.describe_input` says ``InputKind.STREAM``: stdin,
  FIFOs, ``<(cmd)``, /dev/stdin, /proc/self/fd/N; or a caller's open stream) is copied once to
  an unlinked file in --temp-dir (a second opening would read nothing, or wait forever for a
  FIFO's writer);
* an unread reading of an earlier spool or held file (what --epochs gives each epoch) is read
  again from the same descriptor: ``-u`` or ``--mix`` in an epoch does not copy it again;
* a regular file (plain or compressed) is opened once and held open: each reading reads that
  same inode with ``pread`` (its own position), so a file replaced by ``mv`` in between is not
  read in its successor's place. A file rewritten in place is caught by the caller comparing
  the digests of the readings (``UniqueReader``), or by :func:`check_unchanged` (its size,
  mtime and ctime) where a reading stops early (``-r``'s rounds).
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from bigshuf.common.codecs import open_decompressed
from bigshuf.common.container import TempGrowthWatch, temp_growth_watch
from bigshuf.common.errors import BigshufError, InputError, changed
from bigshuf.common.inputs import InputKind, check_readable, describe_input, is_read_once
from bigshuf.common.tempdir import temp_directory, temp_write_error, unlinked_temp_fd
from bigshuf.shuffler.options import STDIO, ShuffleOptions
from bigshuf.shuffler.records import ReadintoAdapter, Source, display_name, open_input, read_fully

#: Bytes of the buffer that copies a stream to the spool (freed before any pass reads).
COPY_BYTES = 256 << 10


class Held:
    """The inputs of one run, held for every reading: :meth:`items` gives fresh readers'
    inputs (Sources over the held files and the spool); :meth:`close` lets them go."""

    def __init__(self) -> None:
        self.parts: List[Any] = []
        self.fds: List[int] = []
        self.spool: Any = None

    def items(self) -> List[Any]:
        return [p.open() if hasattr(p, "open") else p for p in self.parts]

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def read_once(opts: ShuffleOptions) -> bool:
    """Is any input readable only once (stdin, a pipe, a caller's stream), so that a mode that
    reads the inputs more than once must copy it first?"""
    return not opts.generated and any(not isinstance(p, str) or p == STDIO or is_read_once(p)
                                      for p in opts.inputs)


def rereadable_inputs(opts: ShuffleOptions) -> Tuple[List[Any], Any]:
    """The inputs of ``opts`` as parts each reading opens afresh (``part.open()`` is a new
    :class:`Source`), and what to ``close()`` when every reading is done."""
    held = Held()
    directory: Optional[str] = None
    try:
        for item in opts.inputs:
            if isinstance(item, Source) and isinstance(item.stream, _Window) \
                    and item.stream.pos == item.stream.start:
                # A reading of an earlier spool (an epoch's, for -u): read that again
                held.fds.append(os.dup(item.stream.fd))
                held.parts.append(WindowPart(held.fds[-1], item.stream, item))
                item.close()
                continue
            info = describe_input(item) if isinstance(item, (str, os.PathLike)) else None
            if info is not None and info.kind is not InputKind.STREAM:
                check_readable(item)
                try:
                    fd = os.open(info.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError as exc:
                    raise InputError(exc.strerror or str(exc), info.path) from None
                held.fds.append(fd)
                held.parts.append(HeldFile(fd, info.path, info.codec, info.size, info.disk_bytes))
                continue
            if held.spool is None:
                directory = temp_directory(opts.temp_dir)
                held.spool = os.fdopen(unlinked_temp_fd(directory), "w+b", buffering=0)
            start = held.spool.tell()
            name = _copy_into(held.spool, item, temp_growth_watch(directory or ""))
            held.parts.append(SpoolPart(held.spool, start, held.spool.tell(), name))
    except OSError as exc:
        held.close()
        raise temp_write_error(exc, directory or "") from None
    except BaseException:
        held.close()
        raise
    return held.parts, held


def _copy_into(spool: Any, item: Any, watch: Optional[TempGrowthWatch] = None) -> str:
    """Append a stream path ('-', a FIFO, ...) or a caller's binary stream to ``spool``
    (``watch``: a spool in RAM inside a memory cgroup); returns its display name."""
    src: Optional[Source] = open_input(item) if isinstance(item, (str, os.PathLike)) else \
        item if isinstance(item, Source) else None  # a Source: an epoch's reading of a spool
    stream: Any = src.stream if src is not None else item
    name = src.name if src is not None else \
        (item.name if isinstance(getattr(item, "name", None), str) else "<stream>")
    if not hasattr(stream, "readinto"):
        stream = ReadintoAdapter(stream)  # read errors (a text stream) named as the reader does
    buf = memoryview(bytearray(COPY_BYTES))
    try:
        while True:
            got = read_fully(stream, buf, name)
            if not got:
                return name
            view = buf[:got]
            if watch is not None:
                watch.guard(got)
            while len(view):
                view = view[spool.write(view):]
    finally:
        if src is not None:
            src.close()


class HeldFile:
    """A regular file opened once: ``open()`` reads it from the start (decompressed by its
    extension), on the held descriptor, whatever happened to its name since."""

    def __init__(self, fd: int, path: str, codec: Optional[str], size: Optional[int],
                 disk_bytes: Optional[int]):
        self.fd, self.path, self.codec = fd, path, codec
        self.size, self.disk_bytes = size, disk_bytes
        self.identity = self._identity()

    def _identity(self) -> Tuple[int, int, int]:
        st = os.fstat(self.fd)
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def check(self) -> None:
        """A runtime error (exit 1) if the file was written since it was opened (its size,
        mtime or ctime moved: a rewrite in place, which the held descriptor still reads)."""
        if self._identity() != self.identity:
            raise BigshufError(changed(display_name(self.path)))

    def open(self) -> Source:
        stream = _Window(os.dup(self.fd), 0, None)
        name = display_name(self.path)
        if self.codec is None:
            return Source(name, stream, self.size, False, self.disk_bytes)  # type: ignore[arg-type]
        return Source(name, open_decompressed(stream, self.codec, self.path),  # type: ignore[arg-type]
                      None, True, self.disk_bytes)


def check_unchanged(parts: List[Any]) -> None:
    """Each held file of ``parts`` as it was opened (:meth:`HeldFile.check`); a spooled stream
    is a private copy, unchanged by definition."""
    for part in parts:
        if isinstance(part, HeldFile):
            part.check()


class SpoolPart:
    """One spooled input inside the spool file: ``open()`` gives a fresh Source over it."""

    def __init__(self, spool: Any, start: int, end: int, name: str):
        self.spool, self.start, self.end, self.name = spool, start, end, name

    def open(self) -> Source:
        return _window_source(os.dup(self.spool.fileno()), self.start, self.end, self.name,
                              self.end - self.start)


class WindowPart:
    """An unread reading of an earlier spool (a :class:`SpoolPart`'s Source, handed on by
    --epochs): read again from the same bytes, not copied a second time."""

    def __init__(self, fd: int, window: "_Window", source: Source):
        self.fd, self.start, self.end = fd, window.start, window.end
        self.name, self.size, self.disk_bytes = source.name, source.size, source.file_size

    def open(self) -> Source:
        return _window_source(os.dup(self.fd), self.start, self.end, self.name, self.size,
                              self.disk_bytes)


def _window_source(fd: int, start: int, end: Optional[int], name: str, size: Optional[int],
                   disk_bytes: Optional[int] = None) -> Source:
    return Source(name, _Window(fd, start, end), size, False, disk_bytes)  # type: ignore[arg-type]


class _Window:
    """Reads bytes [start, end) of a descriptor (to its end if ``end`` is None) with pread:
    its own position, whoever else reads the descriptor."""

    def __init__(self, fd: int, start: int, end: Optional[int]):
        self.fd, self.pos, self.start, self.end = fd, start, start, end

    def readinto(self, view: Any) -> int:
        view = memoryview(view).cast("B")
        want = len(view) if self.end is None else min(len(view), self.end - self.pos)
        if want <= 0:
            return 0
        data = os.pread(self.fd, want, self.pos)
        view[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        buf = bytearray(size)
        got = self.readinto(buf)
        return bytes(buf[:got])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
