"""Writing the shuffled stream: stdout, one file, or shards; plain or compressed by extension.

Every file is written under a temporary name beside its destination and renamed over it only
when the whole run has succeeded, so a destination is never half-written: a failure or a signal
leaves the old file (or none) in place. A SIGKILL can leave the temporary name
(``.NAME.bigshuf-PID-XXXXXX.tmp``); the next run writing NAME removes those of dead processes.
Shuffling a file onto itself works for the same reason.
"""
from __future__ import annotations

import glob
import os
import re
import secrets
import sys
import threading
from typing import List, Optional

import numpy as np

from bigshuf.common.codecs import compression_of, compressor_for  # noqa: F401 - re-exported
from bigshuf.common.errors import UsageError
from bigshuf.shuffler.records import find_record_ends
from bigshuf.shuffler.store import describe_os_error, pwrite_all

_TEMP_RE = re.compile(r"\.bigshuf-(\d+)-[0-9a-f]+\.tmp$")


def _temp_name(dest: str) -> str:
    d, base = os.path.split(os.path.abspath(dest))
    return os.path.join(d, f".{base}.bigshuf-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def clean_stale_temps(dest: str) -> List[str]:
    """Remove temporary files left beside ``dest`` by bigshuf runs that were killed."""
    d, base = os.path.split(os.path.abspath(dest))
    removed = []
    for path in glob.glob(os.path.join(glob.escape(d), f".{glob.escape(base)}.bigshuf-*.tmp")):
        m = _TEMP_RE.search(path)
        if not m:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and not _alive(pid):
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _FdWriter:
    """Minimal file object over a descriptor, so compressors can write through it."""

    def __init__(self, fd: int, what: str):
        self.fd = fd
        self.what = what

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        try:
            while len(view):
                n = os.write(self.fd, view)
                view = view[n:]
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise describe_os_error(exc, f"writing {self.what}") from None
        return total

    def flush(self) -> None:
        pass


class OutputFile:
    """One destination: stdout or a file written atomically (temp name, then rename)."""

    def __init__(self, path):
        self._write_lock = threading.Lock()
        self.temp: Optional[str] = None
        self.compressor = None
        self.bytes_written = 0
        if hasattr(path, "write"):  # a caller's binary stream: written in order, not closed
            self.path = None
            self.fd = -1
            self.raw = path
            self.stream = path
            return
        self.path = path if path not in (None, "-") else None
        if self.path is None:
            self.fd = sys.stdout.fileno()
            self.raw = _FdWriter(self.fd, "standard output")
            self.stream = self.raw
            return
        d = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(d):
            raise UsageError(f"output directory does not exist: {d}")
        if os.path.isdir(self.path):
            raise UsageError(f"output is a directory: {self.path}")
        clean_stale_temps(self.path)
        self.temp = _temp_name(self.path)
        try:
            self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise describe_os_error(exc, f"cannot create output in {d}") from None
        self.raw = _FdWriter(self.fd, self.path)
        self.compressor = compressor_for(self.path, self.raw)
        self.stream = self.compressor if self.compressor is not None else self.raw

    @property
    def positional(self) -> bool:
        """True if bytes can be written at any offset (plain regular file)."""
        return self.temp is not None and self.compressor is None

    def write(self, data: np.ndarray) -> None:
        try:
            self.stream.write(memoryview(data))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise describe_os_error(exc, f"writing {self.path or 'standard output'}") from None
        self.bytes_written += len(data)

    def write_at(self, offset: int, data: np.ndarray) -> None:
        try:
            with self._write_lock:  # see FileStore.write: one writer at a time is faster
                pwrite_all(self.fd, data, offset)
        except OSError as exc:
            raise describe_os_error(exc, f"writing {self.path}") from None
        self.bytes_written += len(data)

    def finish(self) -> None:
        """Flush compressors; the file still has its temporary name."""
        if self.compressor is not None:
            try:
                self.compressor.close()
            except OSError as exc:
                raise describe_os_error(exc, f"writing {self.path}") from None
            self.compressor = None

    def commit(self, durable: bool = False) -> None:
        """Give the finished file its real name (replacing any old file atomically). With
        ``durable``, the data is fsynced first and the directory after, so the new name survives
        a power loss with its full contents (not needed for a process crash: the rename is)."""
        if self.temp is None:
            return
        try:
            if durable:
                os.fsync(self.fd)
            if os.path.exists(self.path):
                try:
                    os.chmod(self.temp, os.stat(self.path).st_mode & 0o7777)
                except OSError:
                    pass
            os.close(self.fd)
            self.fd = -1
            os.replace(self.temp, self.path)
            if durable:
                dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise describe_os_error(exc, f"renaming output to {self.path}") from None
        self.temp = None

    def abort(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        if self.temp is None:
            return
        try:
            if self.fd >= 0:
                os.close(self.fd)
        except OSError:
            pass
        self.fd = -1
        try:
            os.unlink(self.temp)
        except OSError:
            pass
        self.temp = None


def shard_paths(pattern: str, count: int) -> List[str]:
    """File names of ``count`` shards.

    A pattern containing ``{index}`` (and optionally ``{count}``) is formatted, e.g.
    ``out-{index:03d}.txt``; otherwise ``-NNNNN-of-MMMMM`` goes before the extension
    (compression suffix included): ``out.jsonl.gz`` -> ``out-00000-of-00064.jsonl.gz``.
    """
    if "{" in pattern:
        try:
            names = [pattern.format(index=i, count=count) for i in range(count)]
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"bad shard pattern {pattern!r}: {exc}") from None
        if len(set(names)) != count:
            raise UsageError(f"shard pattern {pattern!r} does not give distinct names (use {{index}})")
        return names
    d, base = os.path.split(pattern)
    suffix = ""
    comp = compression_of(base)
    if comp:
        base, suffix = base[: -len(comp)], comp
    stem, ext = os.path.splitext(base)
    if not stem:
        stem, ext = base, ""
    width = max(5, len(str(count)))
    return [os.path.join(d, f"{stem}-{i:0{width}d}-of-{count:0{width}d}{ext}{suffix}") for i in range(count)]


class Sink:
    """Receives the shuffled stream and routes it to the outputs.

    ``limit`` keeps only the first records (sampling); shards split the stream by record counts.
    Sequential writes must come in stream order (the caller serialises them); a single plain
    file also accepts positional writes, so gather workers need not wait for each other.
    """

    def __init__(self, output: Optional[str], sep: int, total_records: int,
                 shards: Optional[int] = None, lines_per_shard: Optional[int] = None,
                 limit: Optional[int] = None, header: Optional[bytes] = None,
                 durable: bool = False):
        self.sep = sep
        self.durable = durable
        self.limit = limit
        n = total_records if limit is None else min(limit, total_records)
        self.records_out = n
        self.header = header or b""
        if shards or lines_per_shard:
            if output in (None, "-") or hasattr(output, "write"):
                raise UsageError("sharded output needs -o/--output (the shard name pattern)")
            if lines_per_shard:
                count = max(1, -(-n // lines_per_shard))
                per = [lines_per_shard] * count
                per[-1] = n - lines_per_shard * (count - 1)
            else:
                count = shards
                q, r = divmod(n, count)
                per = [q + (1 if i < r else 0) for i in range(count)]
            self.paths: List[Optional[str]] = list(shard_paths(output, count))
            self.quota = per
            if len({os.path.abspath(p) for p in self.paths}) < len(self.paths):
                raise UsageError("shard names are not distinct")
        else:
            self.paths = [output]
            self.quota = [n]
        self.files: List[OutputFile] = []
        self.current = 0
        self.left_in_current = 0
        self.done = 0                 # records written
        self.lock = threading.Lock()
        self.positional = False

    def open(self) -> None:
        try:
            for p in self.paths:
                self.files.append(OutputFile(p))
        except BaseException:
            self.abort()
            raise
        self.positional = len(self.files) == 1 and self.files[0].positional and self.limit is None
        self._start_file(0)

    def _start_file(self, i: int) -> None:
        self.current = i
        self.left_in_current = self.quota[i]
        if self.header:
            self.files[i].write(np.frombuffer(self.header, dtype=np.uint8))

    @property
    def full(self) -> bool:
        return self.done >= self.records_out

    def write_at(self, offset: int, data: np.ndarray, records: int) -> None:
        """Positional write of whole records (single plain file); ``offset`` is in the shuffled
        stream, the header is accounted for here."""
        self.files[0].write_at(len(self.header) + offset, data)
        with self.lock:
            self.done += records

    def write(self, data: np.ndarray, records: int) -> None:
        """Append the next ``records`` whole records of the stream, in order."""
        if self.full or records == 0:
            return
        if len(self.files) == 1 and self.done + records <= self.records_out:
            self.files[0].write(data)
            self.done += records
            return
        ends = find_record_ends(data, self.sep)
        pos = 0
        i = 0
        while i < len(ends) and not self.full:
            take = min(self.left_in_current, len(ends) - i, self.records_out - self.done)
            if take:
                end = int(ends[i + take - 1])
                self.files[self.current].write(data[pos:end])
                pos = end
                i += take
                self.done += take
                self.left_in_current -= take
            if self.left_in_current == 0 and self.current + 1 < len(self.files):
                self._start_file(self.current + 1)

    def finish(self) -> None:
        """Flush every output and give each its final name."""
        for f in self.files:
            f.finish()
        for f in self.files:
            f.commit(self.durable)

    def abort(self) -> None:
        for f in self.files:
            f.abort()
