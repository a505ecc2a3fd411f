"""The input method: shuffle files the page cache holds without writing a temporary copy, by
reading them again for each window of the output.

Why it is the same shuffle, byte for byte: pass 0 reads the inputs in the engine's blocks and
keeps each record's length and the bucket of its key (the engine's buckets: intervals of keys).
The final bucket count and the units (:func:`plan_units`) then say which records make each
window of the output, and sorting a window's records by key gives each its place (the keys are
a function of the record's index: nothing needs keeping). Each later pass fills one window: it
reads the inputs again and copies the records that belong there straight to their places, so
the data is copied once instead of being partitioned, written to a temporary file, read back,
scanned and sorted.

When: every input an uncompressed regular file, together too big for RAM runs but readable again
from a cache (:func:`cache_holds`: the page cache this process may use, a container's memory
cgroup included, or a read probe that finds the input cached elsewhere) and need at most
MAX_PASSES windows, with records long enough that
their metadata fits an eighth of the budget (the 1 GB JSONL benchmark at --memory 256M: pass 0
and 5 windows). Reading a cached file is a plain copy (~23 GB/s on the 2-core dev machine), far
less than what the temporary file costs. Short lines, compressed or read-once inputs, or an input that
changes between passes go the engine way (the last one from the start: see InputChanged).
"""
from __future__ import annotations

import gc
import os
import resource
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import xxhash

from bigshuf.common.container import INTERPRETER_BYTES, MemoryView, memory_view
from bigshuf.common.errors import BigshufError, changed
from bigshuf.common.output import is_write_through
from bigshuf.common.progress import Progress
from bigshuf.common.randomness import Streams
from bigshuf.common.sizes import format_size
from bigshuf.shuffler.buffers import BufferPool
from bigshuf.shuffler.cuts import Moved, plan_cuts
from bigshuf.shuffler.engine import Engine
from bigshuf.shuffler.gather import Unit, key_order, plan_units
from bigshuf.shuffler.methods.base import Job, MethodName
from bigshuf.shuffler.methods.two_phase import TwoPhase, scatter_level
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.records import RecordReader, Source, find_record_ends, first_unbalanced_quote
from bigshuf.shuffler.scatter import KeyRange
from bigshuf.shuffler.segments import STEP_BYTES, place_records
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.store import final_buckets
from bigshuf.shuffler.writing import Sink

#: Reading the input more often than this costs more than the temporary file saves.
MAX_PASSES = 8
#: Inputs kept open between passes (one descriptor each).
MAX_INPUTS = 64
#: Bytes kept per record between passes: its length (int32) and bucket (uint16).
META_BYTES = 6
#: Peak bytes per record of a window while its places are computed (ids, keys, the sort's
#: packed keys and order, lengths, destinations and their scatter).
PLACE_BYTES = 56
#: Bytes per record of *all* records while a window's records are picked out (two masks, one
#: result).
PICK_BYTES = 3
#: Bytes a window pass reads at a time (the blocks are cut into parts of about this size, at
#: record ends): the worker's buffer stays in the CPU's last-level cache, and the window gets
#: the rest of a block's room (measured: 4-8 MB as fast as 16 MB, 1 MB 1.7x slower).
PART_BYTES = 4 << 20


class InputChanged(BigshufError):
    """An input changed between two readings (only outputs under temporary names are written
    meanwhile: the run can start over); ``sources``: the inputs to read again, from the
    descriptors held since pass 0."""

    sources: Optional[List[Source]] = None


@dataclass(frozen=True)
class Span:
    """Records ``first..first+count-1``, a part of one of pass 0's blocks: where they are in
    their input."""

    source: int
    offset: int
    nbytes: int
    first: int
    count: int


class _Input:
    """One input, kept open from pass 0 on; any change to it ends the method."""

    def __init__(self, path: str, number: int, sep: int):
        self.name = path
        self.number = number  # the reader's input number (it keys the randomness)
        self.sep = sep
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self.identity = self._identity()

    def _identity(self) -> Tuple[int, int, int, int, int]:
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    @property
    def size(self) -> int:
        return self.identity[2]

    def check(self) -> None:
        try:
            same = self._identity() == self.identity and os.stat(self.name).st_ino == self.identity[1]
        except OSError:
            same = False
        if not same:
            raise InputChanged(changed(self.name))

    def read(self, offset: int, out: np.ndarray) -> None:
        """Fill ``out`` from ``offset``; the one byte past the end is the terminator the reader
        gave a last line without one."""
        view = memoryview(out)  # type: ignore[arg-type]
        done = 0
        while done < len(out):
            got = os.preadv(self.fd, [view[done:]], offset + done)
            if got <= 0:
                break
            done += got
        if done == len(out) - 1 and offset + done == self.size:
            out[done] = self.sep
        elif done != len(out):
            raise InputChanged(changed(self.name))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


#: Memory pressure (PSI ``some avg10``, %) above which the page cache is not relied on: tasks
#: already wait for memory, and the cached input would be evicted between passes.
MAX_PRESSURE = 10.0
#: Output pages share the cgroup's page cache with the input's: they are written once and
#: dropped first, but some are dirty at any time. Room asked for the input: this much its size.
CACHE_FACTOR = 1.25


#: Bytes/s of the probe's reads *per reading beyond the first* that the input method asks for
#: when the cgroup cannot keep the input cached: each extra reading must cost less than its share
#: of the temporary copy it saves (written and read again: ~1 s/GB in a 1G cgroup on the dev
#: VM). An input resident outside this cgroup's share (another cgroup's pages, the guest's own
#: page cache) reads at 20-30 GB/s; the "cold" virtio disk of the dev VM, itself the host's
#: cache, at 1.3-1.6 GB/s -- where 8 readings of 2.7 GB took 10.6 s against the engine's 8.6 s
#: -- and a real disk slower still.
FAST_READ = 1 << 30
#: The probe: this many reads of PROBE_BYTES spread over the largest input (readahead of one
#: read does not reach the next: they are hundreds of MB apart on the inputs that need it).
#: 64 MB: 60 ms from a cache, 0.3 s from a disk throttled to 200 MB/s.
PROBE_READS = 8
PROBE_BYTES = 8 << 20


def cache_holds(size: int, budget: int, view: MemoryView,
                read_rate: Callable[[], float] = lambda: 0.0,
                extra_reads: int = 1) -> Tuple[Optional[str], str]:
    """(Why the input cannot be read ``extra_reads`` more times from a cache, None if it can;
    what was seen.)

    Under a memory cgroup (a container) the page cache is charged to its limit: the tightest
    level's room must hold the input, the budget and the interpreter. If it cannot, the input
    may still be resident elsewhere: ``read_rate()`` (a probe, bytes/s) must be cache-fast,
    ``FAST_READ`` for every extra reading. On
    the host, MemAvailable must be twice the input (as before), and memory pressure rules the
    cache out."""
    if view.pressure > MAX_PRESSURE:
        return f"memory pressure ({view.pressure:.0f}% of the last 10 s waiting for memory)", ""
    if 2 * size > view.host:
        return f"the page cache cannot hold it ({format_size(view.host)} available)", ""
    cg = view.cgroup
    if cg is None or CACHE_FACTOR * size + budget + INTERPRETER_BYTES <= cg.room:
        return None, f"the page cache can hold it ({format_size(size)}; {view.describe()})"
    rate = read_rate()
    full = f"cgroup limit {format_size(cg.limit)}, {format_size(cg.room)} free"
    if rate >= FAST_READ * max(1, extra_reads):
        return None, (f"the input is cached outside this cgroup ({full}; it reads at "
                      f"{format_size(rate)}/s)")
    return (f"the page cache cannot hold it ({full}) and it reads from disk "
            f"({format_size(rate)}/s)"), ""


def probe_read_rate(paths: List[str]) -> float:
    """Bytes/s of PROBE_READS reads spread evenly over all of ``paths`` taken end to end (so
    each input is sampled by its share of the bytes: an input cached beside others on a disk
    must not make them all look cached), 0 if one is unreadable. Timed without the time this
    thread waited for a CPU (``schedstat``'s run delay): on a busy machine a cached input must
    not look like a disk. Enough bytes that a throttle's burst allowance (blkio lets ~100 ms
    worth through at once) does not make a disk look cached."""
    fds: List[Tuple[int, int]] = []  # (fd, size)
    try:
        for path in paths:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            fds.append((fd, -1))  # closed in finally even if fstat fails
            fds[-1] = (fd, os.fstat(fd).st_size)
        total = sum(size for _, size in fds)
        if not fds or total <= 0:
            return 0.0
        buf = bytearray(min(PROBE_BYTES, max(1, max(size for _, size in fds))))
        waited, start, got = _run_delay(), time.perf_counter(), 0
        for i in range(PROBE_READS):
            at = total * (2 * i + 1) // (2 * PROBE_READS)  # the i-th sample of all the bytes
            for fd, size in fds:
                if at < size:
                    got += os.preadv(fd, [buf], max(0, min(at, size - len(buf))) & ~4095)
                    break
                at -= size
        spent = time.perf_counter() - start - (_run_delay() - waited)
        return got / max(spent, 1e-6)
    except (OSError, ValueError):
        return 0.0
    finally:
        for fd, _ in fds:
            os.close(fd)


def _run_delay() -> float:
    """Seconds this thread has waited for a CPU (0 where the kernel does not say)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def window_budget(geo: Geometry, workers: int, records: Optional[int] = None,
                  part_bytes: Optional[int] = None) -> int:
    """Bytes for one output window and its places: the budget less the record metadata (its
    most, an eighth, before pass 0 has counted the records), a read buffer per worker (a
    block, or the largest part once pass 0 has cut them) and the output's compressor."""
    meta = geo.index_share if records is None else records * (META_BYTES + PICK_BYTES)
    # Per worker: its read buffer, and the items place_records gathers at a time.
    part = part_bytes or geo.block_bytes
    return geo.memory - geo.reserved - meta - workers * (part + min(part, STEP_BYTES))


def suitable(reader: RecordReader, geo: Geometry, size: Optional[int], workers: int,
             output: Any = None, view: Optional[MemoryView] = None,
             declined: Optional[List[str]] = None) -> Optional[str]:
    """Why this run can (and should) use the input method, or None (and then, if the page
    cache is what rules it out, why in ``declined``). See the module docstring. ``output`` is
    the run's -o (None: stdout); ``view`` the memory seen (default: read now)."""
    def decline(why: str) -> Optional[str]:
        """Not the input method: say why (-v)."""
        if declined is not None:
            declined.append(why)
        return None

    if size is None:
        return None  # -v says the size is unknown (a stream or compressed)
    if not 0 < len(reader.inputs) <= MAX_INPUTS or not reader.plain_files():
        return decline(f"not read again: only 1 to {MAX_INPUTS} plain (uncompressed, seekable) "
                       "files are")
    if size <= geo.memory_store_capacity(workers):
        return None  # the engine keeps the runs in RAM: no temporary file to save
    window = window_budget(geo, workers)
    passes = -(-size // window)
    if window <= geo.block_bytes or passes > MAX_PASSES:
        return decline(f"not read again: --memory {format_size(geo.memory)} leaves "
                       f"{format_size(max(window, 0))} per output window, {passes} windows "
                       f"(at most {MAX_PASSES}, each over a {format_size(geo.block_bytes)} block)")
    view = view or memory_view()
    why_not, seen = cache_holds(size, geo.memory, view, lambda: probe_read_rate(
        [os.fspath(p) for p in reader.inputs if isinstance(p, (str, os.PathLike))]), passes)
    if why_not is not None:
        if declined is not None:
            declined.append(f"not read {passes + 1} times: {why_not}")
        return None
    if reader.estimated_records() > geo.index_share // META_BYTES:
        return decline(f"not read {passes + 1} times: the records' metadata would not fit "
                       f"--memory {format_size(geo.memory)}")  # short lines
    # Output written in place (stdout, a device, an inherited descriptor) could not be taken back
    # if an input changed after a window went out, and might even be an input (`f >> f`): only
    # outputs under temporary names, which a restart simply rewrites.
    if output is None or output == "-" or hasattr(output, "write") \
            or is_write_through(os.fspath(output)):
        return decline(f"not read {passes + 1} times: the output is written in place (stdout "
                       "or a device), which a changed input could not take back")
    return f"input read about {passes + 1} times: {seen}, no temporary copy"


class Index:
    """Pass 0's result: where every record is, its length and its key's bucket.

    Buckets are kept as the engine's level cuts them (out of k0): its index merges bucket pairs
    as runs accumulate, so the final bucket is ``drawn >> shift``."""

    def __init__(self, inputs: List[_Input], blocks: List["_Pass0"], k0: int, k: int, sep: int,
                 streams: Streams):
        self.inputs = inputs
        counts = [len(b.lengths) for b in blocks]
        firsts = np.cumsum([0] + counts[:-1]).tolist()
        self.runs = len(blocks)  # the engine's runs: one a block
        self.run_first = np.array(firsts, dtype=np.int64)
        self.spans: List[Span] = []
        self.digests: List[int] = []  # xxh3 of each span's bytes in pass 0
        for b, first in zip(blocks, firsts):
            offset = b.offset
            for count, nbytes, digest in b.parts:
                self.spans.append(Span(b.source, offset, nbytes, first, count))
                self.digests.append(digest)
                offset, first = offset + nbytes, first + count
        self.part_bytes = max((sp.nbytes for sp in self.spans), default=1)
        self.span_first = np.array([sp.first for sp in self.spans], dtype=np.int64)
        self.lengths = np.concatenate([b.lengths for b in blocks] or [np.empty(0, np.int32)])
        self.drawn = _buckets(streams, len(self.lengths), k0)
        self.k = k
        self.sep = sep
        self.shift = 0
        width = k0
        while width > k:  # what store.fit_row does to a run's row, as a shift of bucket numbers
            width = (width + 1) // 2
            self.shift += 1
        final = self.drawn >> self.shift if self.shift else self.drawn
        self.bucket_records = np.bincount(final, minlength=k).astype(np.int64)
        self.bucket_bytes = np.bincount(final, weights=self.lengths, minlength=k).astype(np.int64)

    def check(self) -> None:
        for f in self.inputs:
            f.check()

    def sources(self) -> List[Source]:
        return _sources(self.inputs)

    @property
    def closed(self) -> bool:
        return all(f.fd < 0 for f in self.inputs)

    def close(self) -> None:
        _close_all(self.inputs)


def _buckets(streams: Streams, records: int, k0: int) -> np.ndarray:
    """The top level's bucket (out of ``k0``) of every record's key, as the engine cuts it; in
    slices, so the keys never take more than a few MB (the records are few: milliseconds)."""
    cut = KeyRange.cut(0, 1 << 64, k0)
    step = 1 << 20
    parts = [cut.bucket_of(streams.keys.range(a, min(step, records - a)))
             for a in range(0, records, step)]
    return np.concatenate(parts) if parts else np.empty(0, np.uint16)


def _sources(inputs: List[_Input]) -> List[Source]:
    """The inputs to read once more, from the descriptors held since pass 0: an input removed,
    or replaced by another file (even a FIFO), is still the file being shuffled."""
    out = []
    for f in inputs:
        size = os.fstat(f.fd).st_size
        out.append(Source(f.name, os.fdopen(os.dup(f.fd), "rb", buffering=0), size, False, size))
    return out


def _close_all(inputs: List[_Input]) -> None:
    for f in inputs:
        f.close()


def build_index(engine: Engine, reader: RecordReader, streams: Streams, buckets: Optional[int],
                on_progress: Callable[[int], None]) -> Optional[Index]:
    """Pass 0: the engine's blocks and draws, keeping lengths and buckets. The cuts are found
    reading around them only (shuffler/cuts), the blocks read and scanned by the workers. None
    (nothing kept) if the records turn out too many for the metadata share of the budget, or
    the blocks could differ from the reader's."""
    inputs = _open_all(reader)
    if inputs is None:
        return None
    geo = engine.geo
    k0 = buckets or geo.initial_buckets()
    pending: List[Future] = []
    try:
        cuts = _plan_all(reader, inputs, geo.block_bytes)
        if cuts is None:
            _close_all(inputs)
            return None
        blocks = [_Pass0(*cut) for cut in cuts]
        limit = _Limit(geo.index_share // META_BYTES, geo.block_records,
                       quotes=reader.watch_quotes())
        read = 0
        for block in blocks:
            pending = engine.wait_some(pending, 2 * engine.workers)
            pending.append(engine.submit(_index_block, engine, inputs, block, limit))
            read += block.nbytes
            on_progress(read)
        engine.wait_some(pending, 1)
    except BaseException as exc:
        wait(pending)  # no worker may read a descriptor closed (and reused) under it
        if isinstance(exc, InputChanged):
            exc.sources = _sources(inputs)
        _close_all(inputs)
        if isinstance(exc, (_NotSame, Moved)):
            return None
        raise
    if sum(len(b.lengths) for b in blocks) > limit.total:  # the workers' count is approximate
        _close_all(inputs)
        return None
    bad = next((b for b in blocks if b.unbalanced is not None), None)
    if bad is not None and bad.unbalanced is not None:
        before = sum(len(b.lengths) for b in blocks if b.source == bad.source and b.number < bad.number)
        reader.report_quote(inputs[bad.source].name, str(before + bad.unbalanced + 1 + reader.want_header))
    index = Index(inputs, blocks, k0, buckets or final_buckets(k0, len(blocks), geo.index_entries),
                  reader.sep, streams)
    reader.records, reader.payload = len(index.lengths), sum(b.nbytes for b in blocks)
    reader.bytes_read = sum(f.size for f in inputs)
    return index


class _NotSame(Exception):
    """Pass 0 cannot stand for the reader's blocks (a block at its record limit) or holds too
    many records: the engine takes over, reading the inputs once."""


@dataclass
class _Limit:
    """Records pass 0 may keep in all, and per block (the reader's max_records)."""

    total: int
    per_block: int
    seen: int = 0
    quotes: bool = False  # look for open quotes (RecordReader.watch_quotes)


class _Pass0:
    """One block of pass 0: where it is, then what the worker found in it."""

    def __init__(self, source: int, number: int, offset: int, nbytes: int):
        self.source, self.number, self.offset, self.nbytes = source, number, offset, nbytes
        self.lengths = np.empty(0, np.int32)
        self.parts: List[Tuple[int, int, int]] = []  # (records, bytes, xxh3) of each part
        self.unbalanced: Optional[int] = None  # first record with an open quote (CSV watch)


def _index_block(engine: Engine, inputs: List[_Input], block: _Pass0, limit: _Limit) -> None:
    """Read one block and find its records."""
    engine.check()
    buf = engine.pool.get()
    try:
        data = buf[:block.nbytes]
        source = inputs[block.source]
        source.read(block.offset, data)
        ends = find_record_ends(data, source.sep)
        if not len(ends) or ends[-1] != len(data):  # no longer ends where its cut was found
            raise InputChanged(changed(source.name))
        limit.seen += len(ends)  # under the GIL; an approximate running total is enough
        if len(ends) >= limit.per_block or limit.seen > limit.total:
            raise _NotSame()
        block.parts = _parts(data, ends)
        if limit.quotes:
            block.unbalanced = first_unbalanced_quote(data, source.sep)
        block.lengths = np.diff(ends, prepend=0).astype(np.int32 if len(data) < 1 << 31 else np.int64)
    finally:
        engine.pool.release(buf)


def _parts(data: np.ndarray, ends: np.ndarray) -> List[Tuple[int, int, int]]:
    """The block cut at record ends into parts of about PART_BYTES (a longer record is a part
    of its own): (records, bytes, xxh3) of each."""
    cuts = np.unique(np.searchsorted(ends, np.arange(PART_BYTES, len(data), PART_BYTES),
                                     side="right"))
    cuts = cuts[(cuts > 0) & (cuts < len(ends))].tolist()
    parts = []
    first, start = 0, 0
    for last in cuts + [len(ends)]:
        end = int(ends[last - 1])
        parts.append((last - first, end - start, xxhash.xxh3_64_intdigest(data[start:end])))
        first, start = last, end
    return parts


def _plan_all(reader: RecordReader, inputs: List[_Input], capacity: int
              ) -> Optional[List[Tuple[int, int, int, int]]]:
    """(input, block number, offset, bytes) of every block the reader would give."""
    out: List[Tuple[int, int, int, int]] = []
    for i, f in enumerate(inputs):
        planned = plan_cuts(f.fd, f.size, capacity, reader.sep, reader.want_header)
        if planned is None:
            return None
        blocks, header = planned
        if header is not None:
            reader.take_header(header, f.name)
        out.extend((i, n, offset, nbytes) for n, (offset, nbytes) in enumerate(blocks))
    return out


def _open_all(reader: RecordReader) -> Optional[List[_Input]]:
    """A descriptor for every input, kept for the passes; None if that is not possible now
    (``ulimit -n``, an input gone or unreadable): the engine, reading once, takes over and
    reports any real problem its usual way."""
    if not _descriptors_to_spare(len(reader.inputs)):
        return None
    inputs: List[_Input] = []
    try:
        for i, p in enumerate(reader.inputs, reader.first_source):
            inputs.append(_Input(os.fspath(p), i, reader.sep))  # type: ignore[arg-type]
    except OSError:
        _close_all(inputs)
        return None
    return inputs


#: Descriptors left free besides the held inputs: the reader's, the output's, its directory
#: lock's, the temporary file's if the engine takes over, a codec's...
SPARE_DESCRIPTORS = 16


def _descriptors_to_spare(count: int) -> bool:
    """Can ``count`` more descriptors stay open without starving the rest of the run?"""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        used = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 16
    except (ImportError, OSError, ValueError):
        return True
    return soft == resource.RLIM_INFINITY or used + count + SPARE_DESCRIPTORS <= soft


def prepare(engine: Engine, reader: RecordReader, streams: Streams, buckets: Optional[int],
            on_progress: Callable[[int], None]) -> Optional[Tuple[Index, List[List[Unit]]]]:
    """Pass 0 and the plan of the windows; None if the method does not fit after all (too many
    records, a bucket the engine would re-scatter, too many windows): nothing is kept then."""
    index = build_index(engine, reader, streams, buckets, on_progress)
    if index is None:
        return None
    geo = engine.geo
    units = plan_units(index.bucket_bytes, index.bucket_records, geo.unit_bytes, geo.unit_records)
    # Pass 0's buffers (one more than the passes use) go back; the window gets their room.
    engine.pool.clear()
    windows = plan_windows(units, window_budget(geo, engine.workers, len(index.lengths),
                                                index.part_bytes))
    if windows is None:
        index.close()
        return None
    return index, windows


def plan_windows(units: List[Unit], budget: int) -> Optional[List[List[Unit]]]:
    """Consecutive units grouped into output windows, so that the largest window's bytes and
    the places of any window (computed while the one before is still in the buffer) fit in
    ``budget``; None if a unit must be re-scattered or there would be too many windows."""
    if any(u.oversized for u in units):
        return None
    share = budget
    while True:
        windows = _group(units, share)
        peak = max(sum(u.nbytes for u in w) for w in windows) \
            + PLACE_BYTES * max(sum(u.records for u in w) for w in windows)
        if peak <= budget or share <= 0:
            break
        share -= max(peak - budget, share // 16)  # uneven windows: shrink them, try again
    return windows if len(windows) <= MAX_PASSES and peak <= budget else None


def _group(units: List[Unit], budget: int) -> List[List[Unit]]:
    """Consecutive units in windows of at most ``budget`` bytes and places each (a unit that
    does not fit alone gets a window of its own)."""
    windows: List[List[Unit]] = [[]]
    used = 0
    for u in units:
        cost = u.nbytes + PLACE_BYTES * u.records
        if windows[-1] and used + cost > budget:
            windows.append([])
            used = 0
        windows[-1].append(u)
        used += cost
    return windows


def places(index: Index, units: List[Unit], streams: Streams) -> Tuple[np.ndarray, np.ndarray]:
    """(record numbers ascending, their byte offsets in the window) for a window of units: the
    window's records in key order, as the engine writes them."""
    h = index.shift
    lo, hi = units[0].first << h, units[-1].last << h
    ids = np.flatnonzero((index.drawn >= lo) & (index.drawn < hi))
    rank = key_order(streams.keys.of(ids))
    lengths = index.lengths[ids[rank]].astype(np.int64)
    dests = np.cumsum(lengths)
    dests -= lengths
    del lengths
    out = np.empty_like(dests)
    out[rank] = dests  # back to ascending record numbers: a scatter, no sort
    return ids, out


def write_windows(engine: Engine, index: Index, windows: List[List[Unit]], sink: Sink,
                  streams: Streams, progress: Progress) -> None:
    """Passes 1..P: fill each window from the inputs, check it, hand its units to ``sink``.
    The next window's places are computed on a worker while this one is written (the write
    holds one core, and the workers would wait)."""
    buffer = np.empty(max(sum(u.nbytes for u in w) for w in windows), dtype=np.uint8)
    placed = engine.submit(places, index, windows[0], streams)
    pool = BufferPool(index.part_bytes)  # one read buffer per worker, kept for every pass
    for i, units in enumerate(windows):
        if sink.full:
            break
        base = units[0].out_offset
        window = buffer[:sum(u.nbytes for u in units)]
        _fill_window(engine, index, engine.wait_for(placed), window, pool)
        if i + 1 < len(windows):
            placed = engine.submit(places, index, windows[i + 1], streams)
        for u in units:
            if sink.full:
                break
            data = window[u.out_offset - base:u.out_offset - base + u.nbytes]
            if sink.positional:
                sink.write_at(u.out_offset, data, u.records)
            else:
                sink.write(data, u.records)
            progress.gathered(u.nbytes)


def _fill_window(engine: Engine, index: Index, placed: Tuple[np.ndarray, np.ndarray],
                 window: np.ndarray, pool: BufferPool) -> None:
    """Read the inputs again, part by part on the workers, copying each record of the window
    to its place (``placed``: see :func:`places`); then check that what was read is what pass
    0 saw."""
    ids, dests = placed
    bounds = np.searchsorted(ids, index.span_first).tolist() + [len(ids)]
    engine.wait_some([engine.submit(_fill, engine, index, pool, j, ids[a:z], dests[a:z], window)
                      for j, (a, z) in enumerate(zip(bounds, bounds[1:])) if a < z], 1)
    index.check()


def _fill(engine: Engine, index: Index, pool: BufferPool, j: int, ids: np.ndarray,
          dests: np.ndarray, out: np.ndarray) -> None:
    """Read span ``j`` of the inputs again and copy its records of the window to their places;
    its bytes must be the ones pass 0 read (xxh3, ~50 GB/s: a change that leaves the file's
    size and times alone, such as a write through a shared mapping on tmpfs, is caught too)."""
    engine.check()
    span = index.spans[j]
    buf = pool.get()
    try:
        data = buf[:span.nbytes]
        source = index.inputs[span.source]
        source.read(span.offset, data)
        if xxhash.xxh3_64_intdigest(data) != index.digests[j]:
            raise InputChanged(changed(source.name))
        block_lengths = index.lengths[span.first:span.first + span.count]
        ends = np.cumsum(block_lengths, dtype=np.int64)
        local = ids - span.first
        lengths = block_lengths[local].astype(np.int64)
        starts = ends[local]
        starts -= lengths
        place_records(data, starts, lengths, out, dests)
    finally:
        pool.release(buf)


class InputMethod(TwoPhase):
    """The two-phase frame with pass 0 and the windows as its phases; pass 0 may find the
    method does not fit after all (the engine's scatter then reads the inputs once), and an
    input that changes under it starts the run over as the engine (reading it once)."""

    name = MethodName.INPUT

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        if job.opts.manifest is not None:
            return None  # its first pass reads the inputs in parallel pieces: no in-order digest
        return suitable(job.reader, job.geo, job.size, job.stats.workers, job.output_path, None,
                        job.declined)

    def temp_bytes(self) -> Optional[int]:
        return 0  # if it falls back, a full disk is still a clean one-line error

    def run(self) -> ShuffleStats:
        job = self.job
        try:
            return super().run()
        except InputChanged as exc:
            sources, why = exc.sources, str(exc)
        # Started outside the handler, and after a collection: the exception's traceback holds
        # the first attempt's frames, whose locals (window buffer, index, read buffers) would
        # otherwise live on beside the engine's and break the memory bound.
        gc.collect()
        job.fresh_reader(sources)
        job.stats = ShuffleStats(seed=job.stats.seed, workers=job.stats.workers,
                                 budget=job.stats.budget)
        return TwoPhase(job, f"started over: {why}").run()

    def scatter(self, engine: Engine, prog: Progress) -> Any:
        job = self.job
        prepared = prepare(engine, job.reader, job.streams, job.opts.buckets, prog.scattered)
        if prepared is None:  # not suitable after all: read once, the engine way
            self.ran_as, self.why = MethodName.ENGINE, "the input method did not fit after pass 0"
            return scatter_level(job, engine, job.fresh_reader(), prog)
        index, windows = prepared
        job.stats.runs, job.stats.buckets = index.runs, index.k
        job.stats.store, job.stats.passes = "none", len(windows)
        return prepared

    def gather(self, engine: Engine, phase1: Any, sink: Any, prog: Progress) -> None:
        if not isinstance(phase1, tuple):
            return super().gather(engine, phase1, sink, prog)
        index, windows = phase1
        write_windows(engine, index, windows, sink, self.job.streams, prog)

    def release(self, phase1: Any, exc: Optional[BaseException] = None) -> None:
        if not isinstance(phase1, tuple) or phase1[0].closed:
            return
        if isinstance(exc, InputChanged):
            exc.sources = phase1[0].sources()
        phase1[0].close()
