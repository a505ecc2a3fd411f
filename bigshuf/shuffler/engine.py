"""The engine: scatter and gather levels on a pool of worker threads.

The output is the records in the order of their keys (:class:`~bigshuf.common.randomness.OrderKeys`,
a function of the seed and the record's index only). A level's buckets are consecutive intervals
of keys, so writing the buckets in order, each sorted by key, writes the records in key order; a
bucket too big for a unit is scattered again by its keys into a level of its own. Why that order
is exactly uniform: README, "Why the order is exactly uniform".
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Set

import numpy as np

from bigshuf.common.container import memory_view
from bigshuf.common.output import TIGHT_WRITE_PIECE
from bigshuf.common.progress import Progress
from bigshuf.common.randomness import Streams
from bigshuf.shuffler.buffers import BufferPool
from bigshuf.shuffler.gather import BucketReader, Piece, Unit, order_unit, plan_units
from bigshuf.shuffler.heap import roomy_heap
from bigshuf.shuffler.outflow import (
    AHEAD_SHARE,
    AHEAD_UNITS,
    LAG_UNITS,
    Cancelled,
    ReadAhead,
    UnitWriter,
    WriteBehind,
)
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.records import Block
from bigshuf.shuffler.scatter import KEY_BYTES, KeyRange, partition
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.store import (
    FileRegion,
    MemoryStore,
    RunIndex,
    Store,
    TempSpace,
    halvings,
    physical_memory,
)
from bigshuf.shuffler.writing import Sink

#: Blocks smaller than this are scattered by the main thread itself (no hand-off to a worker).
INLINE_BYTES = 64 << 10
#: Seconds the cleanup waits for workers that do not stop (blocked writing to a stalled reader).
STUCK_WAIT = 0.5


@dataclass
class Level:
    """One scattered level: its store and the index of its runs' pieces."""

    store: Store
    run_offsets: np.ndarray
    piece_bytes: np.ndarray     # [R, K]
    piece_records: np.ndarray   # [R, K]
    keys: KeyRange              # bucket j holds the keys of keys.child(j)
    depth: int = 1              # 1 for the top level, 2 for a bucket scattered again, ...

    @property
    def bucket_bytes(self) -> np.ndarray:
        return self.piece_bytes.sum(axis=0)

    @property
    def bucket_records(self) -> np.ndarray:
        return self.piece_records.sum(axis=0)


class Engine:
    """Runs scatter and gather levels on a pool of worker threads.

    Threads, not processes: numpy and file I/O release the GIL for the heavy parts, and one
    process keeps the whole run inside one memory budget and one set of descriptors.
    """

    def __init__(self, geo: Geometry, workers: int, streams: Streams, sep: int,
                 temp_dir: Optional[str], progress: Progress, stats: ShuffleStats):
        self.geo = geo
        self.workers = workers
        self.streams = streams
        self.sep = sep
        self.progress = progress
        self.stats = stats
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bigshuf")
        self.cancel = threading.Event()
        self.signalled = False  # set by the signal handler (a plain flag: it must take no lock)
        self.stores: List[Store] = []
        self.pool = BufferPool(geo.block_bytes)
        self.temp = TempSpace(temp_dir)
        self.inflight: Set[Future] = set()
        self.writers: Set[UnitWriter] = set()

    def submit(self, fn: Callable[..., Any], *args: object) -> Future:
        future = self.executor.submit(fn, *args)
        self.inflight.add(future)
        future.add_done_callback(self.inflight.discard)
        return future

    def stop(self) -> None:
        """Called from a signal handler: only sets a flag (see bigshuf.common.signals)."""
        self.signalled = True

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers and free everything. A worker blocked in a write to a stalled pipe
        or FIFO cannot be interrupted: after STUCK_WAIT seconds the cleanup goes on without it
        (the CLI then exits without waiting for it)."""
        self.cancel.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for w in list(self.writers):
            w.stop(STUCK_WAIT)
        wait(list(self.inflight), timeout=STUCK_WAIT)
        self.pool.clear()
        for s in list(reversed(self.stores)):
            s.close()
        self.stores.clear()
        self.temp.close()

    def check(self) -> None:
        if self.stopping():
            raise Cancelled()

    def stopping(self) -> bool:
        return self.signalled or self.cancel.is_set()

    def wait_for(self, future: Future) -> Any:
        """``future``'s result, waited for as :meth:`wait_some` does (signals noticed)."""
        self.wait_some([future], 1)
        return future.result()

    def wait_some(self, pending: List[Future], limit: int) -> List[Future]:
        """Wait until fewer than ``limit`` futures are pending; re-raise worker errors. Waiting
        for all (``limit`` 1) wakes on the first error or at the end, not once per task: a
        pass may queue all its tasks at once (each running task holds a pool buffer, so no
        more than the workers' buffers exist) without the main thread taking a core from the
        workers at every completion."""
        when = FIRST_EXCEPTION if limit == 1 else FIRST_COMPLETED
        while len(pending) >= limit:
            self.check()
            done, rest = wait(pending, timeout=0.2, return_when=when)
            for f in done:
                f.result()
            pending = list(rest)
        return pending

    # -- scatter ---------------------------------------------------------------------------
    def scatter(self, blocks: Iterator[Block], space: KeyRange, size: Optional[int],
                buckets: Optional[int], on_block: Callable[[Block], None], depth: int = 1) -> Level:
        """Scatter a stream of blocks, whose keys all lie in ``space``, into a new level."""
        with roomy_heap(self.geo.block_bytes):  # freed per-record arrays kept (heap.py)
            return self._scatter(blocks, space, size, buckets, on_block, depth)

    def _scatter(self, blocks: Iterator[Block], space: KeyRange, size: Optional[int],
                 buckets: Optional[int], on_block: Callable[[Block], None], depth: int) -> Level:
        k0 = buckets or self.geo.initial_buckets()
        cut = KeyRange.cut(space.lo, space.span, k0)
        job = _ScatterJob(cut, k0, RunIndex(k0, self.geo.index_entries, fixed=buckets is not None))
        store = self._level_store(size)
        pending: List[Future] = []
        for block in blocks:
            self.check()
            on_block(block)
            if block.count == 0:
                self.pool.release(block.data)
                continue
            run_bytes = block.nbytes + KEY_BYTES * block.count
            if isinstance(store, MemoryStore) and job.index.end + run_bytes > store.capacity:
                # Turned out larger than RAM allows: move the runs to a file and go on. The
                # layout is the same, so the output is the same as if we had started on disk.
                pending = self.wait_some(pending, 1)
                store = self._spill(store, job.index.end)
            run, offset = job.index.allocate(run_bytes)
            if block.nbytes < INLINE_BYTES and block.count < self.geo.block_records:
                # A small block that ends its input (many small input files) costs less than
                # handing it to a worker and waiting for it: do it here. Same keys and layout.
                self._scatter_block(job, block, run, offset, store)
            else:
                pending = self.wait_some(pending, self.workers)
                pending.append(self.submit(self._scatter_block, job, block, run, offset, store))
            del block
        self.wait_some(pending, 1)
        offsets, b, c = job.index.matrices()
        self.stats.runs += len(offsets)
        if isinstance(store, FileRegion):
            self.temp.filled(store, job.index.end)  # nested levels go after this one
        return Level(store, offsets, b, c, cut.merged(halvings(k0, b.shape[1])), depth)

    def _level_store(self, size: Optional[int]) -> Store:
        """RAM when the level (of ``size`` bytes, if known) fits next to the workers, else a
        region of the temporary file."""
        # Never more than the machine has: -S 100T is a bound, and reserving 100 TB of address
        # space fails. (Memory or file holds the same layout: the output does not change.)
        mem_cap = min(self.geo.memory_store_capacity(self.workers), physical_memory())
        if size is not None and size > mem_cap:
            return self._new_file_store()
        # The whole share, reserved but not committed: the records' keys come on top of
        # ``size`` (8 bytes a record, a number not known before reading).
        store = MemoryStore(max(mem_cap, 0))
        self.stores.append(store)
        return store

    def _scatter_block(self, job: "_ScatterJob", block: Block, run: int, offset: int,
                       dest: Store) -> None:
        """Put each record of ``block`` in the bucket of its key and lay the block out bucket
        by bucket, then the keys in the same order, as run ``run`` at ``offset`` of ``dest``."""
        self.check()
        n, count = block.nbytes, block.count
        # The keys, and their copy in bucket order, live in a pool buffer (at most a quarter
        # of it each: a block holds at most block_bytes/32 records).
        scratch = self.pool.get()
        sorted_into = scratch[8 * count:16 * count].view(np.uint64)
        keys = block.keys if block.keys is not None else \
            self.streams.keys.range(block.first, count, scratch[:8 * count].view(np.uint64))
        bucket_of = job.cut.bucket_of(keys)
        if isinstance(dest, MemoryStore):
            out = dest.view(offset, n)
            nbytes, counts, keys = partition(block.data, block.ends, keys, bucket_of, job.k0, out,
                                             sorted_into)
            self.pool.release(block.data)
            dest.write(offset + n, keys.view(np.uint8))
        else:
            out = self.pool.get()[:n]
            nbytes, counts, keys = partition(block.data, block.ends, keys, bucket_of, job.k0, out,
                                             sorted_into)
            self.pool.release(block.data)
            del bucket_of
            self.check()
            dest.write(offset, out)
            self.pool.release(out)
            dest.write(offset + n, keys.view(np.uint8))
        del keys, sorted_into
        self.pool.release(scratch)
        job.index.record(run, nbytes, counts)

    def _new_file_store(self) -> FileRegion:
        """A region at the end of the run's temporary file."""
        region = self.temp.region()
        self.stores.append(region)
        self.stats.store = "temporary file"
        return region

    def _spill(self, mem: MemoryStore, used: int) -> FileRegion:
        fs = self._new_file_store()
        step = self.geo.block_bytes
        for a in range(0, used, step):
            self.check()
            fs.write(a, mem.view(a, min(used, a + step) - a))
        self._drop(mem)
        return fs

    def _drop(self, store: Store) -> None:
        store.close()
        if store in self.stores:
            self.stores.remove(store)

    # -- gather ----------------------------------------------------------------------------
    def gather(self, level: Level, sink: Sink, base_offset: int = 0) -> None:
        """Write every bucket of ``level`` to ``sink`` in bucket order, each in key order."""
        with roomy_heap(self.geo.block_bytes):
            self._gather(level, sink, base_offset)

    def _gather(self, level: Level, sink: Sink, base_offset: int) -> None:
        geo = self.geo
        reader = BucketReader(level.store, level.run_offsets, level.piece_bytes, level.piece_records)
        units = plan_units(level.bucket_bytes, level.bucket_records, geo.unit_bytes, geo.unit_records)
        tight = level.store.cache_is_tight()
        behind = None
        if sink.positional and tight:
            behind = WriteBehind(sink.start_writeback, sink.forget, LAG_UNITS * geo.unit_bytes)
        ahead = self._read_ahead(tight, reader, units)
        writer = UnitWriter(lambda item: self._write_unit(sink, base_offset, behind, *item),
                            geo.writer_units, self.stopping)
        self.writers.add(writer)
        # With the page cache to spare, a file's units are written by the workers themselves:
        # the writes are quick copies, and the writer thread (a third busy thread on 2 cores)
        # measured 6-8% slower on the cached 1 GiB short-line benchmark.
        direct = sink.positional and not tight
        job = _GatherJob(reader, writer, ahead, direct, sink, base_offset)
        try:
            self._hand_out(level, reader, units, job, sink, base_offset)
            writer.finish()
        finally:
            if ahead is not None:
                ahead.stop(STUCK_WAIT)
            writer.stop(STUCK_WAIT)
            self.writers.discard(writer)

    def _read_ahead(self, tight: bool, reader: BucketReader, units: List[Unit]
                    ) -> Optional[ReadAhead]:
        """The thread asking for the units' pieces ahead of the workers, when the temporary
        file cannot stay in the page cache (``tight``; else nothing to ask); its window is a
        share of the page cache's room, between one and AHEAD_UNITS units."""
        if not tight:
            return None
        u = self.geo.unit_bytes
        window = max(u, min(AHEAD_UNITS * u, memory_view().cacheable // AHEAD_SHARE))
        return ReadAhead([x for x in units if not x.oversized],
                         lambda x: reader.prefetch(x.first, x.last), window, self.stopping)

    def _hand_out(self, level: Level, reader: BucketReader, units: List[Unit], job: "_GatherJob",
                  sink: Sink, base_offset: int) -> None:
        """Hand the units to the workers in order (oversized ones gathered one level down)."""
        pending: List[Future] = []
        for i, unit in enumerate(units):
            self.check()
            if sink.full:
                break
            if unit.oversized:
                pending = self.wait_some(pending, 1)
                if not job.direct:  # the units before it are written (a stream takes them in turn)
                    job.writer.drain()
                self.rescatter(level.store, reader.pieces(unit.first), level.keys.child(unit.first),
                               sink, base_offset + unit.out_offset, level.depth + 1)
                if not job.direct:
                    job.writer.put(i, None)
                continue
            pending = self.wait_some(pending, self.workers)
            pending.append(self.submit(self._gather_unit, job, i, unit))
        self.wait_some(pending, 1)

    def _gather_unit(self, job: "_GatherJob", i: int, unit: Unit) -> None:
        """Read unit ``i``'s buckets and keys, order the records by key, and hand them to the
        writer (which writes the units in turn while this worker goes on with its next)."""
        self.check()
        buf = self.pool.get()[:unit.nbytes]
        scratch = self.pool.get()  # the keys and the sort's packed keys: a quarter each at most
        keys = scratch[:8 * unit.records].view(np.uint64)
        if job.ahead is not None:
            job.ahead.reading(unit.out_offset, unit.nbytes)
        job.reader.read(unit.first, unit.last, buf, keys, last_use=True)
        out = self.pool.get()[:unit.nbytes]
        self.check()
        n = order_unit(buf, unit.nbytes, keys, self.sep, out, scratch[8 * unit.records:])
        self.pool.release(buf)
        del buf, keys
        self.pool.release(scratch)
        if job.direct:
            self._write_unit(job.sink, job.base_offset, None, unit, out, n)
        else:
            job.writer.put(i, (unit, out, n))

    def _write_unit(self, sink: Sink, base_offset: int, behind: Optional[WriteBehind], unit: Unit,
                    out: np.ndarray, n: int) -> None:
        """The writer thread's part: one sorted unit to the sink (at its offset, or appended:
        units come in order), then its buffer back to the pool."""
        if sink.positional:
            # a tight page cache: the whole unit in one call (see TIGHT_WRITE_PIECE)
            sink.write_at(base_offset + unit.out_offset, out, n,
                          TIGHT_WRITE_PIECE if behind is not None else 0)
            if behind is not None:
                behind.written(base_offset + unit.out_offset, unit.nbytes)
        else:
            self.check()
            sink.write(out, n)
        self.pool.release(out)
        self.progress.gathered(unit.nbytes)

    def rescatter(self, store: Store, pieces: List[Piece], space: KeyRange, sink: Sink,
                  out_offset: int = 0, depth: int = 2) -> None:
        """A bucket too big for memory (given as its pieces in ``store``, its keys in
        ``space``): scatter it again by its keys into its own level, then gather that level
        into ``sink``."""
        size = sum(p.nbytes + KEY_BYTES * p.records for p in pieces)
        sub = self.scatter(self._piece_blocks(store, pieces), space, size, None, lambda b: None,
                           depth)
        self.stats.levels = max(self.stats.levels, depth)
        try:
            self.gather(sub, sink, out_offset)
        finally:
            self._drop(sub.store)

    def _piece_blocks(self, store: Store, pieces: List[Piece]) -> Iterator[Block]:
        """The pieces of a bucket as blocks of whole records with their keys (each piece
        comes from one block of this geometry, so it fits in one)."""
        cap, most = self.geo.block_bytes, self.geo.block_records
        i = 0
        while i < len(pieces):
            j, nbytes, records = i, 0, 0
            while j < len(pieces) and (j == i or (nbytes + pieces[j].nbytes <= cap
                                                  and records + pieces[j].records <= most)):
                nbytes += pieces[j].nbytes
                records += pieces[j].records
                j += 1
            data = self.pool.get()[:nbytes]
            keys = np.empty(records, dtype=np.uint64)
            kb = keys.view(np.uint8)
            at = kat = 0
            for p in pieces[i:j]:
                self.check()
                store.read_into(p.offset, [data[at:at + p.nbytes]])
                store.read_into(p.key_offset, [kb[kat:kat + KEY_BYTES * p.records]])
                at += p.nbytes
                kat += KEY_BYTES * p.records
            yield Block(i, data, None, 0, self.sep, records, keys=keys)
            i = j


@dataclass
class _ScatterJob:
    """What the blocks of one scatter level share."""

    cut: KeyRange
    k0: int
    index: RunIndex


@dataclass
class _GatherJob:
    """What the units of one gather share: the reader of the level, the writer of the units."""

    reader: BucketReader
    writer: UnitWriter
    ahead: Optional[ReadAhead]
    direct: bool        # the workers write their units themselves (a file, a roomy cache)
    sink: Sink
    base_offset: int
