"""The shuffle: plan, scatter, gather, write — with cleanup on any failure or signal.

Why the output is exactly uniform: for n records and any fixed output order s, the run produces s
iff, for some composition (n_1..n_K) of n, the first n_1 records of s were drawn into bucket 1, the
next n_2 into bucket 2, ..., and each bucket's permutation is the one that puts its records in s's
order. Bucket draws are independent and uniform, so P(s) = sum over compositions of
K^-n * prod 1/n_k!, the same for every s. A bucket scattered again (because it is too big for a
unit) gets a uniform permutation by the same argument, so nothing changes. Records are identified
by position, never by content, so duplicate lines do not matter.
"""
from __future__ import annotations

import io
import os
import secrets
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.shuffler.buffers import BufferPool
from bigshuf.common.errors import BigshufError, Interrupted, UsageError
from bigshuf.shuffler.gather import BucketReader, Unit, permute_buckets, plan_units
from bigshuf.shuffler.plan import Geometry, plan
from bigshuf.common.progress import Progress
from bigshuf.shuffler.records import Block, PathLike, RecordReader, Source, read_fully
from bigshuf.shuffler.scatter import draw_buckets, partition
from bigshuf.common.sizes import format_size, parse_size
from bigshuf.common.space import check_free_space
from bigshuf.shuffler.store import FileRegion, FileStore, MemoryStore, RunIndex, Store
from bigshuf.shuffler.writing import Sink

SeedPath = Tuple[int, ...]


@dataclass
class ShuffleStats:
    """What a run did; ``summary()`` is what ``-v`` prints."""

    records: int = 0
    bytes: int = 0
    records_out: int = 0
    seed: int = 0
    buckets: int = 0
    runs: int = 0
    levels: int = 0
    store: str = "memory"
    workers: int = 1
    scatter_seconds: float = 0.0
    gather_seconds: float = 0.0
    outputs: List[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.store == "reservoir":
            return (f"bigshuf: {self.records:,} records ({format_size(self.bytes)}) -> "
                    f"{self.records_out:,} sampled in one pass (reservoir); seed {self.seed}")
        return (f"bigshuf: {self.records:,} records ({format_size(self.bytes)}) -> "
                f"{self.records_out:,} written; seed {self.seed}; {self.buckets} buckets, "
                f"{self.runs} runs, {self.levels} level(s), runs in {self.store}; "
                f"{self.workers} worker(s); scatter {self.scatter_seconds:.2f}s, "
                f"gather {self.gather_seconds:.2f}s")


class _Cancelled(Exception):
    """Raised inside workers once the run is being torn down."""


@dataclass
class _Level:
    store: Store
    run_offsets: np.ndarray
    piece_bytes: np.ndarray     # [R, K]
    piece_records: np.ndarray   # [R, K]

    @property
    def bucket_bytes(self) -> np.ndarray:
        return self.piece_bytes.sum(axis=0)

    @property
    def bucket_records(self) -> np.ndarray:
        return self.piece_records.sum(axis=0)


def _rng(seed: int, path: SeedPath) -> np.random.Generator:
    """An independent generator for one block or bucket, keyed by its position in the plan (so
    the output does not depend on how many workers ran or in which order)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=path)))


class PiecesStream(io.RawIOBase):
    """Reads a list of (offset, size) pieces of a store as one stream (re-scattering a bucket)."""

    def __init__(self, store: Store, pieces: List[Tuple[int, int]]):
        self.store = store
        self.pieces = pieces
        self.i = 0
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        view = np.frombuffer(b, dtype=np.uint8)
        done = 0
        while done < len(view) and self.i < len(self.pieces):
            off, size = self.pieces[self.i]
            n = min(size - self.pos, len(view) - done)
            self.store.read_into(off + self.pos, [view[done:done + n]])
            done += n
            self.pos += n
            if self.pos == size:
                self.i += 1
                self.pos = 0
        return done


class Engine:
    """Runs scatter and gather levels on a pool of worker threads.

    Threads, not processes: numpy and file I/O release the GIL for the heavy parts, and one
    process keeps the whole run inside one memory budget and one set of descriptors.
    """

    def __init__(self, geo: Geometry, workers: int, seed: int, sep: int,
                 temp_dir: Optional[str], progress: Progress, stats: ShuffleStats):
        self.geo = geo
        self.workers = workers
        self.seed = seed
        self.sep = sep
        self.temp_dir = temp_dir
        self.progress = progress
        self.stats = stats
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bigshuf")
        self.cancel = threading.Event()
        self.signalled = False  # set by the signal handler (a plain flag: it must take no lock)
        self.stores: List[Store] = []
        self.pool = BufferPool(geo.block_bytes)
        self.file: Optional[FileStore] = None   # the one temporary file, made when needed
        self.file_top = 0                        # end of the regions of open levels

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        self.cancel.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.pool.clear()
        for s in list(reversed(self.stores)):
            s.close()
        self.stores.clear()
        if self.file is not None:
            self.file.close()
            self.file = None

    def _check(self) -> None:
        if self.signalled or self.cancel.is_set():
            raise _Cancelled()

    def _wait_some(self, pending: List[Future], limit: int) -> List[Future]:
        """Wait until fewer than ``limit`` futures are pending; re-raise worker errors."""
        while len(pending) >= limit:
            self._check()
            done, rest = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
            pending = list(rest)
        return pending

    # -- scatter ----------------------------------------------------------------------------
    def scatter(self, blocks: Iterator[Block], path: SeedPath, size: Optional[int],
                buckets: Optional[int], on_block: Callable[[Block], None]) -> _Level:
        """Scatter a stream of blocks into a new level (store + index)."""
        geo = self.geo
        k0 = buckets or geo.initial_buckets()
        index = RunIndex(k0, geo.index_entries, fixed=buckets is not None)
        mem_cap = geo.memory_store_capacity(self.workers)
        store: Store
        if size is not None and size > mem_cap:
            store = self._new_file_store()
        else:
            store = MemoryStore(max(mem_cap if size is None else size, 0))
            self.stores.append(store)
        pending: List[Future] = []
        lock = threading.Lock()

        def task(block: Block, run: int, offset: int, dest: Store) -> None:
            self._check()
            # Keyed by (input, block within input): a block's draws do not depend on other
            # inputs, so one task per input file (bigshuf.dask) reproduces them exactly.
            rng = _rng(self.seed, path + (0, block.source, block.index))
            bucket_of = draw_buckets(rng, block.count, k0)
            if isinstance(dest, MemoryStore):
                out = dest.buf[offset:offset + block.nbytes]
                nbytes, counts = partition(block.data, block.ends, bucket_of, k0, out)
                self.pool.release(block.data)
            else:
                out = self.pool.get()[:block.nbytes]
                nbytes, counts = partition(block.data, block.ends, bucket_of, k0, out)
                self.pool.release(block.data)
                del bucket_of
                self._check()
                dest.write(offset, out)
                self.pool.release(out)
            with lock:
                index.record(run, nbytes, counts)

        for block in blocks:
            self._check()
            on_block(block)
            if block.count == 0:
                self.pool.release(block.data)
                continue
            if isinstance(store, MemoryStore) and index.end + block.nbytes > store.capacity:
                # Turned out larger than RAM allows: move the runs to a file and go on. The
                # layout is the same, so the output is the same as if we had started on disk.
                pending = self._wait_some(pending, 1)
                store = self._spill(store, index.end)
            run, offset = index.allocate(block.nbytes)
            pending = self._wait_some(pending, self.workers)
            pending.append(self.executor.submit(task, block, run, offset, store))
            del block
        self._wait_some(pending, 1)
        offsets, b, c = index.matrices()
        self.stats.runs += len(offsets)
        if isinstance(store, FileRegion):
            self.file_top = store.base + index.end  # nested levels go after this one
        return _Level(store, offsets, b, c)

    def _new_file_store(self) -> FileRegion:
        """A region at the end of the temporary file (created on first use, then shared by all
        levels, so one descriptor and nothing to lose if the temp directory goes away)."""
        if self.file is None:
            self.file = FileStore(self.temp_dir)
            self.file_top = 0
        region = FileRegion(self.file, self.file_top, on_close=self._region_closed)
        self.stores.append(region)
        self.stats.store = "temporary file"
        return region

    def _region_closed(self, region: FileRegion) -> None:
        self.file_top = min(self.file_top, region.base)
        if region in self.stores:
            self.stores.remove(region)

    def _spill(self, mem: MemoryStore, used: int) -> FileRegion:
        fs = self._new_file_store()
        step = self.geo.block_bytes
        for a in range(0, used, step):
            self._check()
            fs.write(a, mem.buf[a:min(used, a + step)])
        mem.close()
        self.stores.remove(mem)
        return fs

    # -- gather -----------------------------------------------------------------------------
    def gather(self, level: _Level, sink: Sink, path: SeedPath, base_offset: int = 0) -> None:
        """Permute every bucket of ``level`` and write them to ``sink`` in bucket order."""
        geo = self.geo
        reader = BucketReader(level.store, level.run_offsets, level.piece_bytes)
        units = plan_units(level.bucket_bytes, level.bucket_records, geo.unit_bytes, geo.unit_records)
        turn = [0]
        cond = threading.Condition()

        def task(i: int, unit: Unit) -> None:
            self._check()
            buf = self.pool.get()[:unit.nbytes]
            starts = reader.read(unit.first, unit.last, buf, last_use=True)
            out = self.pool.get()[:unit.nbytes]
            self._check()
            n = permute_buckets(buf, starts, self.sep, _rng(self.seed, path + (1, unit.first)), out)
            self.pool.release(buf)
            del buf
            if n != unit.records:
                raise BigshufError(f"internal error: bucket records {n} != index {unit.records}")
            if sink.positional:
                sink.write_at(base_offset + unit.out_offset, out, n)
                self.pool.release(out)
                self.progress.gathered(unit.nbytes)
                return
            with cond:
                while turn[0] != i:
                    if self.cancel.is_set():
                        raise _Cancelled()
                    cond.wait(0.2)
            try:
                self._check()
                sink.write(out, n)
                self.pool.release(out)
                self.progress.gathered(unit.nbytes)
            finally:
                with cond:
                    turn[0] += 1
                    cond.notify_all()

        pending: List[Future] = []
        for i, unit in enumerate(units):
            self._check()
            if sink.full:
                break
            if unit.oversized:
                pending = self._wait_some(pending, 1)
                self.rescatter(level.store, reader.pieces(unit.first), unit.nbytes, sink,
                               path + (2, unit.first), base_offset + unit.out_offset)
                with cond:
                    turn[0] += 1
                continue
            pending = self._wait_some(pending, self.workers)
            pending.append(self.executor.submit(task, i, unit))
        self._wait_some(pending, 1)

    def rescatter(self, store: Store, pieces: List[Tuple[int, int]], nbytes: int, sink: Sink,
                  path: SeedPath, out_offset: int = 0) -> None:
        """A bucket too big for memory (given as its pieces in ``store``): scatter it again
        into its own level, then gather that level into ``sink``."""
        stream = PiecesStream(store, pieces)
        src = Source("<bucket>", stream, nbytes, False, nbytes)  # type: ignore[arg-type]
        sub_reader = RecordReader([src], self.sep)
        blocks = sub_reader.blocks(self.geo.block_bytes, self.geo.block_records, self.pool)
        sub = self.scatter(blocks, path, nbytes, None, lambda b: None)
        self.stats.levels = max(self.stats.levels, len(path) // 2 + 1)
        try:
            self.gather(sub, sink, path, out_offset)
        finally:
            sub.store.close()
            if sub.store in self.stores:
                self.stores.remove(sub.store)


def shuffle(inputs: Sequence[PathLike], output: Optional[str] = None, *,
            memory: "int | str" = "1G", seed: Optional[int] = None, jobs: Optional[int] = None,
            temp_dir: Optional[str] = None, buckets: Optional[int] = None,
            zero_terminated: bool = False, header: bool = False, shards: Optional[int] = None,
            lines_per_shard: Optional[int] = None, sample: Optional[int] = None,
            progress: Optional[bool] = None, warn: Optional[Callable[[str], None]] = None,
            fsync: bool = False) -> ShuffleStats:
    """Shuffle the records of ``inputs`` (paths, '-' for stdin) into ``output`` (None or '-':
    stdout; with ``shards``/``lines_per_shard`` a shard name pattern).

    ``memory`` bounds the whole run; ``seed`` makes it reproducible; ``sample`` keeps only that
    many records (a uniform sample in random order); ``fsync`` makes the outputs durable
    before they are renamed into place. Raises :class:`bigshuf.common.errors.BigshufError`
    subclasses on failure, after removing every temporary file; the destination is then untouched.
    """
    mem = parse_size(memory)
    geo = plan(mem)
    if shards is not None and lines_per_shard is not None:
        raise UsageError("--shards and --lines-per-shard cannot be used together")
    if shards is not None and shards < 1:
        raise UsageError("--shards must be at least 1")
    if lines_per_shard is not None and lines_per_shard < 1:
        raise UsageError("--lines-per-shard must be at least 1")
    if (shards or lines_per_shard) and (output in (None, "-") or hasattr(output, "write")):
        raise UsageError("sharded output needs -o/--output (the shard name pattern)")
    if buckets is not None and buckets < 1:
        raise UsageError("--buckets must be at least 1")
    if sample is not None and sample < 0:
        raise UsageError("-n must not be negative")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if temp_dir is not None and not os.path.isdir(temp_dir):
        raise UsageError(f"temporary directory does not exist: {temp_dir}")
    if not inputs:
        inputs = ["-"]
    sep = 0 if zero_terminated else 10
    warn = warn or _stderr_warn
    seed = secrets.randbits(63) if seed is None else int(seed)
    reader = RecordReader(inputs, sep, header=header, warn=warn)
    stats = ShuffleStats(seed=seed)
    workers = geo.workers(jobs)
    stats.workers = workers
    size = reader.known_size()
    _check_output_target(output, shards or lines_per_shard)
    check_free_space(size if size is not None else reader.estimated_size(), output,
                     temp_dir, geo.memory_store_capacity(workers))

    if sample is not None and buckets is None:
        from bigshuf.shuffler.sampling import try_reservoir
        with _signals_raise() as signals:
            if try_reservoir(reader, output, sample, geo, seed, sep, stats, progress=progress,
                             size=size, shards=shards, lines_per_shard=lines_per_shard,
                             before_rename=signals.defer, durable=fsync):
                return stats
        reader = RecordReader(inputs, sep, header=header, warn=warn)

    prog = Progress(progress, size)
    engine = Engine(geo, workers, seed, sep, temp_dir, prog, stats)
    sink: Optional[Sink] = None
    with _signals_raise(engine) as signals:
        try:
            t0 = time.perf_counter()

            def on_block(block: Block) -> None:
                prog.scattered(reader.bytes_read)

            blocks = reader.blocks(geo.block_bytes, geo.block_records, engine.pool)
            level = engine.scatter(blocks, (), size, buckets, on_block)
            stats.records = reader.records
            stats.bytes = reader.payload
            stats.buckets = level.piece_bytes.shape[1]
            stats.levels = max(stats.levels, 1)
            t1 = time.perf_counter()
            stats.scatter_seconds = t1 - t0
            prog.start_gather(stats.bytes if sample is None else None)
            sink = Sink(output, sep, stats.records, shards=shards,
                        lines_per_shard=lines_per_shard, limit=sample, header=reader.header,
                        durable=fsync)
            sink.open()
            engine.gather(level, sink, ())
            engine.close()
            signals.defer()  # everything is written: only the renames are left, do them all
            sink.finish()
            stats.records_out = sink.done
            stats.outputs = [p for p in sink.paths if isinstance(p, str)]
            stats.gather_seconds = time.perf_counter() - t1
        except BaseException as exc:
            engine.close()
            if sink is not None:
                sink.abort()
            if signals.fired:  # whatever surfaced first (_Cancelled from a check), report the signal
                raise signals.error() from None
            if isinstance(exc, _Cancelled):
                raise BigshufError("stopped") from None
            raise
        finally:
            prog.close()
    return stats


def _check_output_target(output, sharded: bool) -> None:
    """Usage errors (exit 2) for an output that cannot be written, before any work."""
    if output in (None, "-") or hasattr(output, "write"):
        return
    out = os.fspath(output)
    d = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(d):
        raise UsageError(f"output directory does not exist: {d}")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"output directory is not writable: {d}")
    if not sharded and os.path.isdir(out):
        raise UsageError(f"output is a directory: {out}")


def _stderr_warn(message: str) -> None:
    import sys
    print(f"bigshuf: warning: {message}", file=sys.stderr)


class _signals_raise:
    """While active (main thread only), SIGINT/SIGTERM raise :class:`Interrupted` so cleanup
    runs; SIGXFSZ is ignored so a file-size limit surfaces as an EFBIG write error instead of
    killing the process with a half-written file.

    With an ``engine``, the handler does not raise wherever the main thread happens to be: an
    exception between a lock's acquire and the ``with`` block that releases it (threading and
    executor internals) leaves the lock taken, and the cleanup then hangs. It sets
    ``engine.signalled`` and the main loop stops at its next check (within 0.2 s); only a
    blocking read of the input (a slow pipe) is interrupted on the spot."""

    def __init__(self, engine: Optional["Engine"] = None):
        self.engine = engine

    def __enter__(self):
        self.saved = {}
        self.deferred = False
        self.fired: List[int] = []
        if threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum, frame):
            # Only the first signal counts: a second one (Ctrl-C twice, SIGINT then SIGTERM)
            # must not break into the cleanup the first started.
            if self.fired or self.deferred:
                return
            self.fired.append(signum)
            if self.engine is None or (frame is not None and frame.f_code is read_fully.__code__):
                raise self.error()
            self.engine.signalled = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, handler)
        if hasattr(signal, "SIGXFSZ"):
            self.saved[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return self

    def error(self) -> Interrupted:
        return Interrupted(self.fired[0], signal.Signals(self.fired[0]).name)

    def defer(self) -> None:
        """Ignore SIGINT/SIGTERM from now on: the outputs are complete and being renamed, and
        a set of shards must not end half new, half old (the run then finishes, exit 0).
        Raises :class:`Interrupted` if a signal came before."""
        if self.fired:
            raise self.error()
        self.deferred = True

    def __exit__(self, *exc):
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        return False
