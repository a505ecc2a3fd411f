"""Runs that need no engine: ``-n 0`` (nothing is read) and ``-i LO-HI -n K`` (K distinct
numbers drawn, the range never generated: ``-i 1-10000000000 -n 5`` is instant).

``-i LO-HI -n K`` has its own draws, a function of the seed, the range's size and K alone (never
of ``--memory``): the first K distinct values of an endless i.i.d. uniform sequence of offsets,
drawn in chunks whose sizes depend on K only (duplicates and values already taken skipped). By
symmetry every ordered K-tuple of distinct offsets is equally likely, and the rejections cost
little because this method takes at most half the range. When K is more than half the range,
the run is the engine's shuffle of the range cut after K lines (the head of ``-i LO-HI``'s
order), which no budget can make too large.
"""
from __future__ import annotations

from typing import Callable, Iterable, List, Optional

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.common.randomness import Streams
from bigshuf.common.signals import SignalGuard
from bigshuf.common.sizes import format_size
from bigshuf.shuffler.methods.base import Job, Method, MethodName
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.sources import RANGE_CHUNK, format_numbers
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import Sink

#: -i -n K: chunk c of candidates holds (2K + 64) << min(c, 10) draws. Sizes depend on K only,
#: so the offsets drawn depend on the seed and K, never on --memory.
MAX_DOUBLINGS = 10
#: Bytes of working memory one sampled offset may cost (candidates, unique, sorted copies).
BYTES_PER_OFFSET = 64


class NothingToRead(Method):
    """-n 0: no input is opened or read (like shuf -n 0); the outputs are made, empty."""

    name = MethodName.NOTHING

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        return "-n 0" if job.opts.sample == 0 else None

    def reads_inputs(self) -> bool:
        return False

    def run(self) -> ShuffleStats:
        with SignalGuard() as signals:
            self.job.stats.outputs = write_records(self.job.opts, [], 0, signals.defer)
        return self._done()


class RangeSample(Method):
    """-i LO-HI -n K with K at most half the range: K distinct offsets drawn."""

    name = MethodName.RANGE

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        opts = job.opts
        if opts.input_range is None or opts.sample is None or opts.repeat:
            return None
        lo, hi = opts.input_range
        if 2 * min(opts.sample, hi - lo + 1) > hi - lo + 1:
            return None  # the engine's order, cut after K
        return f"-i -n {opts.sample:,}: at most half of the {hi - lo + 1:,} numbers"

    def reads_inputs(self) -> bool:
        return False

    def run(self) -> ShuffleStats:
        job = self.job
        with SignalGuard() as signals:
            sample_range(job.opts, job.geo, job.streams, job.stats, signals.defer)
        job.stats.store = "none"
        return self._done()


def sample_offsets(count: int, k: int, streams: Streams, geo: Geometry) -> np.ndarray:
    """K distinct offsets in [0, count) in uniformly random order (2K <= count); a usage error
    if they cannot be held within half of the budget."""
    k = min(k, count)
    need = k * BYTES_PER_OFFSET
    if need > geo.sample_share:
        raise UsageError(f"-i -n {k:,} holds the numbers it draws in memory: it needs "
                         f"--memory {format_size(2 * need)} or more")
    taken = np.empty(0, dtype=np.uint64)      # sorted
    parts: List[np.ndarray] = []
    got, chunk = 0, 0
    while got < k:
        size = (2 * k + 64) << min(chunk, MAX_DOUBLINGS)
        cand = streams.range_sample(chunk + 1).integers(0, count, size, dtype=np.uint64,
                                                        endpoint=False)
        new = _first_distinct(cand, taken, k - got)
        parts.append(new)
        got += len(new)
        chunk += 1
        if got < k:
            taken = np.union1d(taken, new).astype(np.uint64)
    return np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else \
        np.empty(0, dtype=np.uint64)



def _first_distinct(cand: np.ndarray, taken: np.ndarray, want: int) -> np.ndarray:
    """The first ``want`` values of ``cand`` in order of first occurrence, each once, leaving
    out those in ``taken`` (sorted). What ``np.unique(return_index=True)`` then an argsort
    gave, in about 50 bytes a candidate instead of 80 (the share is BYTES_PER_OFFSET)."""
    perm = np.argsort(cand, kind="stable")    # equal values: the first occurrence first
    first = np.empty(len(cand), dtype=bool)
    first[:1] = True
    ordered = cand[perm]
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    del ordered
    idx = perm[first]
    del perm, first
    idx.sort()
    values = cand[idx]
    del idx
    if len(taken):
        pos = np.minimum(np.searchsorted(taken, values), len(taken) - 1)
        values = values[taken[pos] != values]
    return values[:want].copy()


def sample_range(opts: ShuffleOptions, geo: Geometry, streams: Streams, stats: ShuffleStats,
                 before_rename: Callable[[], None]) -> None:
    """-i LO-HI -n K without generating the range."""
    lo, hi = opts.input_range
    assert opts.sample is not None
    count = hi - lo + 1
    offsets = sample_offsets(count, opts.sample, streams, geo)
    # Formatted a chunk at a time (<= hi < 2**64: no overflow): K Python ints and their text
    # at once cost more than the offsets' whole share of the budget.
    chunks = (format_numbers((offsets[i:i + RANGE_CHUNK] + np.uint64(lo)).tolist(), opts.sep)
              for i in range(0, len(offsets), RANGE_CHUNK))
    stats.outputs = write_records(opts, chunks, len(offsets), before_rename)
    stats.records = count
    stats.records_out = len(offsets)


def write_records(opts: ShuffleOptions, chunks: Iterable[bytes], records: int,
                  before_rename: Callable[[], None], header: Optional[bytes] = None) -> List[str]:
    """Write ``records`` whole records (given as byte chunks, in order) to the outputs of
    ``opts``, atomically; returns the file names written."""
    sink = Sink.for_options(opts, records, header)
    sink.open()
    try:
        for data in chunks:
            sink.write(np.frombuffer(data, dtype=np.uint8), data.count(opts.sep))
        sink.finish(before_rename)
    except BaseException:
        sink.abort()
        raise
    return [p for p in sink.paths if isinstance(p, str)]


