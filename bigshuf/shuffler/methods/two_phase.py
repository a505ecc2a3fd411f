"""The two-phase engine as a method: scatter the records by key into RAM or the one temporary
file, gather the buckets in key order (see :mod:`bigshuf.shuffler.engine`). It takes every
job the other methods do not, and it is the frame the input method runs in too (same sink,
signals and cleanup; only the phases differ)."""
from __future__ import annotations

import time
from typing import Any, Optional, Union

from bigshuf.common.errors import BigshufError
from bigshuf.common.progress import Progress
from bigshuf.common.signals import SignalGuard
from bigshuf.shuffler.engine import Cancelled, Engine, Level
from bigshuf.shuffler.methods.base import Job, Method, MethodName
from bigshuf.shuffler.records import RecordReader
from bigshuf.shuffler.scatter import KEY_BYTES, KeyRange
from bigshuf.shuffler.split import SplitSink
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import Sink


class TwoPhase(Method):
    """Scatter, gather, publish; on any failure or signal remove everything written."""

    name = MethodName.ENGINE

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        size, geo = job.size, job.geo
        if job.distinct is not None:
            return "--unique: the size of the distinct records is known as they are read"
        if size is None:
            return "input size unknown before reading (a stream or compressed)"
        room = geo.memory_store_capacity(job.stats.workers)
        if size + len(job.reader.inputs) <= room:
            return "the input fits in RAM next to the workers"
        return "runs in the temporary file"

    def temp_bytes(self) -> Optional[int]:
        job = self.job
        known = job.size if job.size is not None else job.reader.estimated_size()
        # The temporary file holds the records and their 8-byte keys.
        return None if known is None else known + KEY_BYTES * job.reader.estimated_records()

    def run(self) -> ShuffleStats:
        job, opts = self.job, self.job.opts
        stats = job.stats
        prog = Progress(opts.progress, job.size)
        engine = Engine(job.geo, stats.workers, job.streams, opts.sep, opts.temp_dir, prog, stats)
        sink: Optional[Union[Sink, SplitSink]] = None
        phase1: Any = None
        with SignalGuard(stop=engine.stop) as signals:
            try:
                t0 = time.perf_counter()
                phase1 = self.scatter(engine, prog)
                reader = job.reader
                stats.records, stats.bytes = reader.records, reader.payload
                stats.levels = max(stats.levels, 1)
                t1 = time.perf_counter()
                stats.scatter_seconds = t1 - t0
                prog.start_gather(stats.bytes if opts.sample is None else None)
                # --split: the stream cut into one Sink per split
                sink = SplitSink(opts, stats.records, reader.header) if opts.split is not None \
                    else Sink.for_options(opts, stats.records, reader.header, limit=opts.sample)
                engine.check()  # a signal flagged during phase 1: before opening (a FIFO) blocks
                sink.open()
                self.gather(engine, phase1, sink, prog)
                self.release(phase1)
                engine.close()
                # Everything is written: once the outputs are complete, only the renames are
                # left, and signals are deferred to do them all.
                sink.finish(signals.defer)
                stats.records_out = sink.done
                stats.outputs = [p for p in sink.paths if isinstance(p, str)]
                stats.gather_seconds = time.perf_counter() - t1
            except BaseException as exc:
                engine.close()
                self.release(phase1, exc)
                # Asked before abort(), which takes the temporary name back (a file then looks
                # like a stream that got data).
                partial = sink is not None and sink.wrote_to_stream
                if sink is not None:
                    sink.abort()
                if signals.fired:  # whatever surfaced first (Cancelled from a check): the signal
                    raise signals.error(partial=partial) from None
                if isinstance(exc, Cancelled):
                    raise BigshufError("stopped") from None
                raise
            finally:
                prog.close()
        return self._done()

    # -- the phases (the input method overrides them) ---------------------------------------
    def scatter(self, engine: Engine, prog: Progress) -> Any:
        """Phase 1: the engine's scatter of the job's reader; returns the level."""
        return scatter_level(self.job, engine, self.job.reader, prog)

    def gather(self, engine: Engine, level: Any, sink: Any, prog: Progress) -> None:
        engine.gather(level, sink)

    def release(self, phase1: Any, exc: Optional[BaseException] = None) -> None:
        """Give back what phase 1 holds (after the gather, or on failure)."""


def scatter_level(job: Job, engine: Engine, reader: RecordReader, prog: Progress) -> Level:
    """The engine's scatter of ``reader`` into the top level."""
    geo, stats = job.geo, job.stats
    blocks = reader.blocks(geo.block_bytes, geo.block_records, engine.pool)
    # Each input may gain one terminator (a last line without one): room for it, or a file
    # that exactly fits would spill to the temporary file for a byte.
    room = None if job.size is None else job.size + len(reader.inputs)
    level = engine.scatter(blocks, KeyRange(), room, job.opts.buckets,
                           lambda block: prog.scattered(reader.bytes_read))
    stats.buckets = level.piece_bytes.shape[1]
    return level
