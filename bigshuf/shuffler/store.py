"""Where scattered runs live between the two phases: RAM for inputs that fit the budget, else one
temporary file.

Layout: each scattered block becomes one *run*, written contiguously: its records grouped by
bucket (bucket 0 first), then their 8-byte keys in the same order. The :class:`RunIndex` keeps,
per run and bucket, the bytes and records of that piece, so bucket k of run r starts at
``run_offset[r] + sum(bytes[r, :k])`` and its keys at ``run_offset[r] + sum(bytes[r, :]) +
8 * sum(records[r, :k])``.
One descriptor, one file, any number of buckets (terashuf keeps a descriptor per run and fails past
``ulimit -n``). The file is unlinked right after it is created: it disappears with the process,
even on SIGKILL, and a vanished temp directory cannot hurt a running shuffle.
"""
from __future__ import annotations

import mmap
import os
import sys
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.container import IN_MEMORY_FS, filesystem_type, memory_view, temp_growth_watch
from bigshuf.common.errors import BigshufError, describe_os_error
from bigshuf.common.output import TIGHT_WRITE_PIECE, libc_function, pwrite_all, start_writeback
from bigshuf.common.space import free_bytes
from bigshuf.common.tempdir import temp_directory, temp_write_error, unlinked_temp_fd

IOV_MAX = 512  # stay well below the kernel's 1024 per preadv/pwritev call


class Store:
    """Random-access byte storage for runs."""

    kind = "abstract"

    def write(self, offset: int, data: np.ndarray) -> None:
        raise NotImplementedError

    def read_into(self, offset: int, views: Sequence[np.ndarray]) -> None:
        """Fill ``views`` in order from the bytes starting at ``offset``."""
        raise NotImplementedError

    def discard(self, offset: int, length: int) -> None:
        """Bytes that will not be read again (a hint; storage may free them)."""

    def prefetch(self, ranges: Sequence[Tuple[int, int]]) -> None:
        """(offset, length) ranges that will be read soon (a hint; storage may start reading)."""

    def cache_is_tight(self) -> bool:
        """Can the page cache not hold this store's file and as much output (see
        :meth:`_TempFile.cache_is_tight`)? Never for runs in RAM."""
        return False

    def close(self) -> None:
        pass


#: mmap flag: reserve address space without committing memory (pages come as they are touched).
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)


def physical_memory() -> int:
    """Bytes of RAM on this machine (a large number where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


def reserve(nbytes: int) -> np.ndarray:
    """A zero-filled byte array whose memory is taken only as it is written: a budget of 100G
    for five lines on stdin costs five lines, not a refused 100 GB allocation."""
    if nbytes < (1 << 20) or not MAP_NORESERVE:
        return np.empty(nbytes, dtype=np.uint8)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=flags), dtype=np.uint8)


class MemoryStore(Store):
    """Runs kept in one preallocated buffer: no temporary files for inputs that fit."""

    kind = "memory"

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.buf = reserve(capacity)

    def write(self, offset: int, data: np.ndarray) -> None:
        self.buf[offset:offset + len(data)] = data

    def view(self, offset: int, nbytes: int) -> np.ndarray:
        """Writable bytes of the buffer, so a block can be partitioned straight into place."""
        return self.buf[offset:offset + nbytes]

    def read_into(self, offset: int, views: Sequence[np.ndarray]) -> None:
        for v in views:
            n = len(v)
            v[:] = self.buf[offset:offset + n]
            offset += n

    def close(self) -> None:
        self.buf = np.empty(0, dtype=np.uint8)


def _libc_fallocate():
    """fallocate(2) through ctypes (os has no hole punching); None where unavailable."""
    import ctypes
    return libc_function("fallocate", [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                                       ctypes.c_int64], ctypes.c_int)


_fallocate = _libc_fallocate() if os.name == "posix" else None
_KEEP_SIZE, _PUNCH_HOLE = 0x01, 0x02
_PAGE = 4096  # punch granularity: the page (and ext4 block) size
#: Bytes discarded between two looks at the temp file system's free space.
LOOK_EVERY = 64 << 20
#: Free space kept beyond the temp file's blocks (the output may share the disk) before
#: discarded data is punched rather than only dropped from the page cache.
PUNCH_SLACK = 1 << 30
#: Page cache kept beyond twice the temp file (its pages and the output's) before consumed
#: temp pages are dropped from the cache rather than left to the kernel.
CACHE_SLACK = 256 << 20


class _TempFile:
    """One unlinked temporary file: positional writes (one writer at a time) and reads."""

    def __init__(self, directory: str):
        self.directory = directory
        self.fd = unlinked_temp_fd(directory)
        self.lock = threading.Lock()
        self.watch = temp_growth_watch(directory)  # a tmpfs file inside a memory cgroup
        self.in_ram = filesystem_type(directory) in IN_MEMORY_FS

    def write(self, offset: int, data: np.ndarray, piece: int = 0) -> None:
        # One writer at a time: the kernel serialises buffered writes to a file anyway, and a
        # second writer would spin on the inode lock, burning CPU another worker could use
        # (9% of all CPU in a profile of two concurrent writers).
        with self.lock:
            if self.watch is not None:
                self.watch.guard(len(data))
            pwrite_all(self.fd, data, offset, piece)

    def readv(self, offset: int, mvs: List[memoryview]) -> None:
        for i in range(0, len(mvs), IOV_MAX):
            batch = mvs[i:i + IOV_MAX]
            want = sum(len(m) for m in batch)
            got = os.preadv(self.fd, batch, offset)
            if got != want:  # short read: finish piece by piece
                self._read_slow(batch, offset, got)
            offset += want

    def _read_slow(self, batch: List[memoryview], offset: int, done: int) -> None:
        pos = offset
        for m in batch:
            n = len(m)
            if done >= n:
                done -= n
                pos += n
                continue
            m = m[done:]
            pos += done
            done = 0
            while len(m):
                k = os.preadv(self.fd, [m], pos)
                if k <= 0:
                    raise BigshufError(f"temporary file in {self.directory} was truncated")
                m = m[k:]
                pos += k

    def truncate(self, size: int) -> None:
        with self.lock:
            try:
                os.ftruncate(self.fd, size)
            except OSError:
                pass  # only an optimisation: the space is reused by the next level anyway

    def punch(self, offset: int, length: int) -> None:
        """Free the pages (page cache and disk) of a range that will not be read again."""
        if _fallocate is not None and length > 0:
            _fallocate(self.fd, _PUNCH_HOLE | _KEEP_SIZE, offset, length)

    def start_writeback(self, offset: int, length: int) -> None:
        """Start writing a range to the disk now (see common.output.start_writeback)."""
        start_writeback(self.fd, offset, length)

    def will_need(self, offset: int, length: int) -> None:
        """Start reading a range into the page cache, without waiting for it."""
        if hasattr(os, "posix_fadvise") and length > 0:
            os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_WILLNEED)

    def drop(self, offset: int, length: int) -> None:
        """Drop the (clean) cached pages of a range not read again; the disk keeps its blocks."""
        if hasattr(os, "posix_fadvise") and length > 0:
            os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)

    def disk_is_short(self) -> bool:
        """True if the file's blocks should go back as it is consumed: its file system is in
        RAM (tmpfs: only a punch frees the pages) or has less free space than the file holds."""
        if self.in_ram:
            return True
        try:
            return free_bytes(self.directory) < os.fstat(self.fd).st_blocks * 512 + PUNCH_SLACK
        except OSError:
            return True

    def cache_is_tight(self) -> bool:
        """True if the page cache this run may fill (a memory cgroup's room, or the host's
        MemAvailable) cannot hold the temp file and as much output: then consumed temp pages
        are dropped at once, so the kernel does not reclaim them under pressure. With room to
        spare they are left alone: dropping 1 GB of clean pages costs ~0.5 s of gather."""
        try:
            size = os.fstat(self.fd).st_blocks * 512
        except OSError:
            return True
        return memory_view().cacheable < 2 * size + CACHE_SLACK

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FileStore(Store):
    """Runs in one unlinked temporary file.

    (Striping runs over one file per worker, so that buffered writes — serialised per file by
    the kernel — run in parallel, was tried: no measurable gain on the 1 GB benchmarks, so the
    simpler layout stays.)
    """

    kind = "file"

    def __init__(self, directory: Optional[str]):
        directory = temp_directory(directory)
        self.directory = directory
        self.file = _TempFile(directory)
        self._tails: Dict[int, int] = {}
        self._tails_lock = threading.Lock()
        self._punch = self.file.disk_is_short()
        self._drop: Optional[bool] = None  # decided when the gather first discards
        self._prefetch: Optional[bool] = None  # decided when the gather first prefetches
        self._since_look = 0
        self._behind = False  # written runs go to the disk at once (a tight page cache)
        self._since_behind = 0

    @property
    def fd(self) -> int:
        return self.file.fd

    def write(self, offset: int, data: np.ndarray) -> None:
        try:
            # big writes once the page cache is tight (see TIGHT_WRITE_PIECE)
            self.file.write(offset, data, TIGHT_WRITE_PIECE if self._behind else 0)
        except OSError as exc:
            raise temp_write_error(exc, self.directory) from None
        self._write_behind(offset, len(data))

    def _write_behind(self, offset: int, length: int) -> None:
        """Once the page cache cannot hold the file (looked at every LOOK_EVERY bytes until
        then), each written range is handed to the disk at once, and so is everything before
        it the first time: a memory cgroup's reclaim then finds clean pages or pages on their
        way, not dirty ones it must wait for."""
        if not self._behind:
            self._since_behind += length
            if self._since_behind < LOOK_EVERY:
                return
            self._since_behind = 0
            if not self.file.cache_is_tight():
                return
            self._behind = True
            length, offset = offset + length, 0
        self.file.start_writeback(offset, length)

    def read_into(self, offset: int, views: Sequence[np.ndarray]) -> None:
        try:
            self.file.readv(offset, [memoryview(v) for v in views if len(v)])
        except OSError as exc:
            raise describe_os_error(exc, f"reading temporary data in {self.directory}") from None

    def discard(self, offset: int, length: int) -> None:
        """Data read for the last time: its pages go back at once (punched out of the file), so
        the temp file shrinks as the gather proceeds and the output reuses the page cache.
        Punched only while the disk is short of room (or the file is in RAM): a punch makes
        ext4 write the range's dirty pages first and costs ~0.8 s per GB in a 256M cgroup;
        with room to spare the range's cached pages are dropped instead (``fadvise``), and
        only when the page cache is tight (:meth:`_TempFile.cache_is_tight`).

        Only whole pages are punched: punching a partial page makes the filesystem zero it
        (a dirty page, written back, and a one-block extent left in the file) -- with ~16,000
        unaligned punches per GB, ext4 then took 3-50 s in the last ``ftruncate`` in a tight
        memory cgroup. The unaligned tail of a range is punched with the range that follows
        it (a run's buckets are discarded in order), so ``_tails`` maps the end of each
        discarded range to its first byte not yet punched: one entry per run and stream."""
        end = offset + length
        with self._tails_lock:  # gather workers discard concurrently
            start = self._tails.pop(offset, offset)
            self._tails[end] = max(start, end // _PAGE * _PAGE)
        first = -(-start // _PAGE) * _PAGE
        last = end // _PAGE * _PAGE
        if last <= first:
            return
        self._since_look += last - first
        if self._drop is None or self._since_look >= LOOK_EVERY:
            self._since_look = 0
            self._punch = self.file.disk_is_short()
            self._drop = self._punch or self.file.cache_is_tight()
        if self._punch:
            self.file.punch(first, last - first)
        elif self._drop:
            self.file.drop(first, last - first)

    def prefetch(self, ranges: Sequence[Tuple[int, int]]) -> None:
        """Ask the kernel to read the ranges (a gather unit's pieces) ahead, when the page cache
        cannot hold the temp file (:meth:`_TempFile.cache_is_tight`, decided once): the reads
        then run while other units are sorted, and a unit's ~2 pieces per run are fetched at
        once rather than one synchronous read after another. With the file cached they would
        only cost the page lookups."""
        if self._prefetch is None:
            self._prefetch = self.file.cache_is_tight()
        if self._prefetch:
            try:
                for offset, length in ranges:
                    self.file.will_need(offset, length)
            except OSError:
                self._prefetch = False  # only a hint

    def cache_is_tight(self) -> bool:
        return self.file.cache_is_tight()

    def truncate(self, size: int) -> None:
        """Give back the disk space past ``size`` (a finished nested level)."""
        with self._tails_lock:
            self._tails = {e: s for e, s in self._tails.items() if e <= size}
        self.file.truncate(size)

    def close(self) -> None:
        self.file.close()


class FileRegion(Store):
    """The part of the run's one temporary file that belongs to one level, from ``base`` on.

    Levels nest like a stack (a bucket is re-scattered while its parent level is kept), so a
    level's region starts where its parent's runs end, and closing it truncates the file back
    to its base: every level lives in the same, already open and unlinked, file.
    """

    kind = "file"

    def __init__(self, file: FileStore, base: int, on_close=None):
        self.file = file
        self.base = base
        self.on_close = on_close
        self.closed = False

    def write(self, offset: int, data: np.ndarray) -> None:
        self.file.write(self.base + offset, data)

    def read_into(self, offset: int, views: Sequence[np.ndarray]) -> None:
        self.file.read_into(self.base + offset, views)

    def discard(self, offset: int, length: int) -> None:
        self.file.discard(self.base + offset, length)

    def prefetch(self, ranges: Sequence[Tuple[int, int]]) -> None:
        self.file.prefetch([(self.base + o, n) for o, n in ranges])

    def cache_is_tight(self) -> bool:
        return self.file.cache_is_tight()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.file.fd >= 0:
                self.file.truncate(self.base)
            if self.on_close is not None:
                self.on_close(self)


class RunIndex:
    """Bytes and records of each (run, bucket) piece.

    Every run is laid out with the level's initial bucket count K0. The index may halve the
    number of buckets while scattering (adjacent buckets merged: they are adjacent in every run)
    so it stays within its memory share however long an input of unknown size turns out to be.
    Buckets are intervals of keys, so merging buckets 2j and 2j+1 gives the interval of twice
    the width (:meth:`KeyRange.merged`): the buckets stay in key order whatever the count.
    """

    def __init__(self, buckets: int, max_entries: int, fixed: bool = False):
        self.buckets = buckets
        self.max_entries = max(max_entries, 1)
        self.fixed = fixed
        self.offsets: List[int] = []
        self.bytes: List[Optional[np.ndarray]] = []
        self.counts: List[Optional[np.ndarray]] = []
        self.end = 0  # bytes allocated in the store
        self._lock = threading.Lock()  # workers record while the reader allocates

    def allocate(self, nbytes: int) -> Tuple[int, int]:
        """Reserve a run of ``nbytes``; returns (run number, store offset)."""
        with self._lock:
            run = len(self.offsets)
            before = self.buckets
            if not self.fixed:
                while self.buckets > 2 and (run + 1) * self.buckets > self.max_entries:
                    self.buckets = (self.buckets + 1) // 2
            if self.buckets != before:  # only then: refitting every run each time is quadratic
                for r in range(run):
                    row_bytes, row_counts = self.bytes[r], self.counts[r]
                    if row_bytes is not None and row_counts is not None:
                        self.bytes[r] = self._fit(row_bytes)
                        self.counts[r] = self._fit(row_counts)
            self.offsets.append(self.end)
            self.bytes.append(None)
            self.counts.append(None)
            self.end += nbytes
            return run, self.offsets[-1]

    def _fit(self, row: np.ndarray) -> np.ndarray:
        return fit_row(row, self.buckets)

    def record(self, run: int, nbytes: np.ndarray, counts: np.ndarray) -> None:
        """Store the piece sizes of a finished run (drawn with possibly more buckets)."""
        with self._lock:
            self.bytes[run] = self._fit(nbytes)
            self.counts[run] = self._fit(counts)

    def matrices(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(run offsets [R], bytes [R, K], records [R, K]) once every run is recorded."""
        k = self.buckets
        rows_b = [x for x in self.bytes if x is not None]
        rows_c = [x for x in self.counts if x is not None]
        if len(rows_b) != len(self.offsets) or len(rows_c) != len(self.offsets):
            raise BigshufError("internal error: a run was never recorded")
        b = np.array([self._fit(x) for x in rows_b], dtype=np.int64).reshape(-1, k)
        c = np.array([self._fit(x) for x in rows_c], dtype=np.int64).reshape(-1, k)
        return np.array(self.offsets, dtype=np.int64), b, c


def final_buckets(initial: int, runs: int, max_entries: int) -> int:
    """The bucket count a level ends with after ``runs`` runs (what RunIndex's halving gives)."""
    k = initial
    while k > 2 and runs * k > max_entries:
        k = (k + 1) // 2
    return k


def halvings(initial: int, final: int) -> int:
    """How many times RunIndex halved ``initial`` buckets to get ``final``."""
    times = 0
    while initial > final:
        initial = (initial + 1) // 2
        times += 1
    return times


def fit_row(row: np.ndarray, buckets: int) -> np.ndarray:
    """Merge adjacent pairs until ``row`` has ``buckets`` entries."""
    while len(row) > buckets:
        row = _merge_pairs(row, (len(row) + 1) // 2)
    return row


def _merge_pairs(a: np.ndarray, half: int) -> np.ndarray:
    if len(a) % 2:
        a = np.append(a, 0)
    return a.reshape(half, 2).sum(axis=1)


class TempSpace:
    """The run's one temporary file, handed out as regions stacked like the levels using them.

    Created on first use and shared by all levels (one descriptor, already unlinked, so a
    vanished temp directory cannot stop a multi-level run). A level's region starts where the
    open levels' data ends; closing it truncates the file back (see :class:`FileRegion`).
    """

    def __init__(self, directory: Optional[str]):
        self.directory = directory
        self.file: Optional[FileStore] = None
        self.top = 0  # end of the data of the open levels

    def region(self) -> "FileRegion":
        if self.file is None:
            self.file = FileStore(self.directory)
            self.top = 0
        return FileRegion(self.file, self.top, on_close=self._closed)

    def filled(self, region: "FileRegion", used: int) -> None:
        """``region`` holds ``used`` bytes: nested levels go after them."""
        self.top = region.base + used

    def _closed(self, region: "FileRegion") -> None:
        self.top = min(self.top, region.base)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
