"""Sampling (``-n N``): a uniform random sample of N records, written in uniformly random order.

When N records fit in the budget, one pass of reservoir sampling (Algorithm R, vectorised over
blocks: record i, counted from 0, draws j uniform in [0, i] and replaces slot j if j < N), then a
uniform permutation of the reservoir. The brief suggested Algorithm L, which draws fewer random
numbers; vectorised R draws one integer per record (a few ns each, far below the cost of reading
the record) and needs no Python loop per accepted record, so it is the faster choice here, and
exact: every N-subset is equally likely.

Otherwise the caller shuffles the whole input and stops after N records.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from bigshuf.common.errors import BigshufError
from bigshuf.common.progress import Progress
from bigshuf.common.randomness import Streams
from bigshuf.common.sizes import format_size
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.records import RecordReader
from bigshuf.shuffler.segments import gather_records
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import Sink

#: Bytes of bookkeeping a reservoir slot costs (start and length).
SLOT_BYTES = 16


def reservoir_fits(sample: int, geo: Geometry) -> bool:
    """Can N slots (and records of a typical ~32 bytes) live in half the budget?"""
    return sample * (SLOT_BYTES + 32) <= geo.memory // 2


class _Reservoir:
    """N slots over one byte buffer; replaced records leave garbage, compacted when it piles up."""

    def __init__(self, size: int, budget: int):
        self.size = size
        self.budget = budget
        self.start = np.zeros(size, dtype=np.int64)
        self.length = np.zeros(size, dtype=np.int64)
        self.data = np.empty(min(budget, 1 << 20), dtype=np.uint8)
        self.used = 0
        self.live = 0
        self.filled = 0

    def put(self, slots: np.ndarray, src: np.ndarray, starts: np.ndarray,
            lengths: np.ndarray) -> bool:
        """Store records (src[starts:starts+lengths]) into ``slots`` (distinct). False if the
        reservoir no longer fits in its budget."""
        need = int(lengths.sum())
        self.live += need - int(self.length[slots].sum())
        if self.used + need > len(self.data):
            # Slots being replaced still count until overwritten; compaction copies them once.
            if not self._make_room(need):
                return False
        self.start[slots] = self.used + np.cumsum(lengths) - lengths
        self.length[slots] = lengths
        self.used = gather_records(src, starts, lengths, self.data, self.used)
        return True

    def _make_room(self, need: int) -> bool:
        """Drop garbage (and grow, within budget) so ``need`` more bytes fit."""
        if self.live > self.budget:
            return False
        capacity = min(self.budget, max(2 * self.live, 1 << 20))
        self._compact(capacity)
        return self.used + need <= len(self.data)

    def _compact(self, capacity: int) -> None:
        new = np.empty(capacity, dtype=np.uint8)
        k = self.filled
        end = gather_records(self.data, self.start[:k], self.length[:k], new, 0)
        self.start[:k] = np.cumsum(self.length[:k]) - self.length[:k]
        self.data = new
        self.used = end


def try_reservoir(reader: RecordReader, opts: ShuffleOptions, geo: Geometry, streams: Streams,
                  stats: ShuffleStats, size: Optional[int] = None,
                  before_rename: Optional[Callable[[], None]] = None) -> bool:
    """Sample ``opts.sample`` records by reservoir if they fit; returns False (nothing consumed
    from files, nothing written) when the caller should shuffle-and-truncate instead.
    ``before_rename`` is called once everything is written, before the outputs get their names
    (signal deferral)."""
    sample = opts.sample
    assert sample is not None
    if not reservoir_fits(sample, geo):
        return False
    # Compaction holds the old and the new buffer at once: each gets half of what is left.
    budget = (geo.memory // 2 - sample * SLOT_BYTES) // 2
    res = _Reservoir(sample, budget)
    prog = Progress(opts.progress, size, first="sample", second="write")
    seen = 0
    try:
        for block in reader.blocks(geo.block_bytes, geo.block_records):
            if not _sample_block(res, block, seen, streams):
                return _overflow(reader, sample, res.budget)
            seen += block.count
            res.filled = min(sample, seen)
            prog.scattered(reader.bytes_read)
        sink = _write_sample(res, opts, streams, reader.header, before_rename)
    finally:
        prog.close()
    stats.records = reader.records
    stats.bytes = reader.payload
    stats.records_out = res.filled
    stats.store = "reservoir"
    stats.outputs = [p for p in sink.paths if isinstance(p, str)]
    return True


def _sample_block(res: _Reservoir, block, seen: int, streams: Streams) -> bool:
    """Algorithm R over one block (records ``seen`` .. ``seen + count - 1`` of the input):
    record i draws j in [0, i] and enters slot j if j < N. False: the reservoir overflowed."""
    n, sample = block.count, res.size
    ends = block.ends
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1]
    lengths = ends - starts
    idx = np.arange(seen, seen + n)
    fill = idx < sample
    j = np.where(fill, idx, 0)
    rest = ~fill
    if rest.any():
        j[rest] = streams.sample(block.source, block.index).integers(0, idx[rest] + 1)
    take = np.flatnonzero(j < sample)
    if not len(take):
        return True
    slots = j[take]
    # Several records of one block may hit one slot: the last one wins.
    _, first_rev = np.unique(slots[::-1], return_index=True)
    keep = np.sort(len(slots) - 1 - first_rev)
    sel = take[keep]
    return res.put(slots[keep], block.data, starts[sel], lengths[sel])


def _write_sample(res: _Reservoir, opts: ShuffleOptions, streams: Streams, header: Optional[bytes],
                  before_rename: Optional[Callable[[], None]]) -> Sink:
    """The reservoir in a uniformly random order, to the outputs."""
    k = res.filled
    perm = streams.sample_order().permutation(k)
    out = np.empty(int(res.length[:k].sum()), dtype=np.uint8)
    gather_records(res.data, res.start[:k][perm], res.length[:k][perm], out, 0)
    res.data = np.empty(0, dtype=np.uint8)
    sink = Sink.for_options(opts, k, header)
    sink.open()
    try:
        sink.write(out, k)
        if before_rename is not None:
            before_rename()
        sink.finish()
    except BaseException:
        sink.abort()
        raise
    return sink


def _overflow(reader: RecordReader, sample: int, budget: int) -> bool:
    """The sample's records are longer than expected: restart from the files on disk with the
    shuffle-and-truncate method, or fail cleanly for a stream that cannot be read twice."""
    if reader.rereadable():
        return False
    raise BigshufError(f"-n {sample:,}: the sampled lines of this input need more than the "
                       f"{format_size(budget)} the reservoir has at this --memory (it holds the "
                       f"sample twice while compacting); raise --memory")
