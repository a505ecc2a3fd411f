"""Sampling (``-n N``): the first N records of the full shuffle with the same seed.

The full shuffle writes the records in key order (:class:`~bigshuf.common.randomness.OrderKeys`),
so its first N records are the N with the smallest keys: one pass keeps them (a bounded top-N,
vectorised over blocks: a block's records whose keys beat the largest kept key compete with the
kept ones, and the N smallest stay), then writes them in key order. The sample is therefore a
uniform N-subset in uniform order, and it is the same sample at every ``--memory``, from a
file or a stream, by this way or by the engine's (which stops after N).

Where the kept records' bytes live never changes which are kept:

* in memory while they fit in the reservoir's share of the budget (which plans for lines of ~32
  bytes);
* when the sampled lines turn out longer, the reservoir **spills**: its bytes go to the run's
  one temporary file (unlinked at once, like the engine's) and from then on each block's kept
  records are appended there; replaced records leave garbage, compacted away when the file grows
  past twice the live sample. At the end the records are read back in key order, a piece
  of the output at a time, with reads merged over nearby records.

So the decision to spill is taken from the data alone, in one pass, the same way for a regular
file and for the same bytes on a stream (stdin, a FIFO, ``<(cmd)``), and no input is read twice.

Only when N slots do not fit in the budget (:func:`reservoir_fits`, a rule of N and --memory
alone) does the caller shuffle the whole input with the engine and stop after N records.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from bigshuf.common.errors import describe_os_error
from bigshuf.common.progress import Progress
from bigshuf.common.randomness import Streams
from bigshuf.common.signals import SignalGuard
from bigshuf.shuffler.gather import key_order
from bigshuf.shuffler.methods.base import Job, Method, MethodName
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.records import RecordReader
from bigshuf.shuffler.segments import gather_records, place_records
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.store import FileStore
from bigshuf.shuffler.writing import Sink

#: Bytes of bookkeeping a reservoir slot costs (start, length and key).
SLOT_BYTES = 24
#: Bytes a record costs in the index arrays of one piece read back from a spilled reservoir
#: (its slot, start, length, destination, their sorted copies and the copy's temporaries).
PIECE_BYTES_PER_RECORD = 128
#: Records of a spilled reservoir less than this far apart in the file are read with one call
#: (reading a gap costs less than another system call and loop step).
READ_GAP = 16 << 10


def piece_sizes(room: int, longest: int) -> Tuple[int, int]:
    """(bytes, records) of a piece of a spilled reservoir read back at once: a quarter of
    ``room`` for the output buffer and one for the staging buffer (never less than the longest
    record), half for the pieces' index arrays."""
    return max(room // 4, longest), max(1, room // 2 // PIECE_BYTES_PER_RECORD)


def reservoir_fits(sample: int, geo: Geometry) -> bool:
    """Can N slots (and records of a typical ~32 bytes) live in half the budget?"""
    return sample * (SLOT_BYTES + 32) <= geo.sample_share


def data_budget(sample: int, geo: Geometry) -> int:
    """Bytes of sampled records the reservoir holds in memory before it spills. Compaction holds
    the old and the new buffer at once: each gets half of what the slots leave."""
    return (geo.sample_share - sample * SLOT_BYTES) // 2


class _Reservoir:
    """N slots over one byte buffer, or over the temporary file once the records outgrow
    ``budget``; replaced records leave garbage, compacted when it piles up.

    A spilled reservoir reads records back in pieces: at most ``piece_bytes`` of records (the
    output buffer) and ``piece_records`` records (index arrays), through a staging buffer of
    ``piece_bytes``. The buffers and the pieces' arrays take ``room`` bytes, what the in-memory
    data buffers had minus one int64 per slot (the permutation, or the compaction's order)."""

    def __init__(self, size: int, budget: int, room: int, longest: int,
                 temp_dir: Optional[str] = None):
        self.size = size
        self.budget = budget
        self.start = np.zeros(size, dtype=np.int64)
        self.length = np.zeros(size, dtype=np.int64)
        self.key = np.zeros(size, dtype=np.uint64)
        self.data = np.empty(min(budget, 1 << 20), dtype=np.uint8)
        self.used = 0
        self.live = 0
        self.filled = 0
        self.temp_dir = temp_dir
        self.file: Optional[FileStore] = None
        self.end = 0       # bytes in the file: live records and garbage
        self.spilled = 0   # bytes written to the file in all
        self.piece_bytes, self.piece_records = piece_sizes(room, longest)
        self._staging: Optional[np.ndarray] = None
        self._out: Optional[np.ndarray] = None

    def put(self, slots: np.ndarray, src: np.ndarray, starts: np.ndarray,
            lengths: np.ndarray) -> None:
        """Store records (src[starts:starts+lengths]) into ``slots`` (distinct)."""
        need = int(lengths.sum())
        self.live += need - int(self.length[slots].sum())
        if self.file is None and self.used + need > len(self.data) and not self._make_room(need):
            self._spill()
        if self.file is None:
            self.start[slots] = self.used + np.cumsum(lengths) - lengths
            self.length[slots] = lengths
            self.used = gather_records(src, starts, lengths, self.data, self.used)
        else:
            buf = np.empty(need, dtype=np.uint8)
            gather_records(src, starts, lengths, buf, 0)
            self.file.write(self.end, buf)
            self.start[slots] = self.end + np.cumsum(lengths) - lengths
            self.length[slots] = lengths
            self.end += need
            self.spilled += need
        self.filled = max(self.filled, int(slots.max()) + 1)
        if self.file is not None and self.end > max(2 * self.live, self.piece_bytes):
            self._compact_file()

    def _make_room(self, need: int) -> bool:
        """Drop garbage (and grow, within budget) so ``need`` more bytes fit; False if they
        cannot (the slots this block replaces still count until overwritten: compaction copies
        them once)."""
        held = int(self.length[:self.filled].sum())
        if held + need > self.budget:
            return False
        self._compact(min(self.budget, max(2 * self.live, held + need, 1 << 20)))
        return True

    def _compact(self, capacity: int) -> None:
        new = np.empty(capacity, dtype=np.uint8)
        k = self.filled
        end = gather_records(self.data, self.start[:k], self.length[:k], new, 0)
        self.start[:k] = np.cumsum(self.length[:k]) - self.length[:k]
        self.data = new
        self.used = end

    def _spill(self) -> None:
        """Move the records to the temporary file, at the offsets they had in the buffer."""
        self.file = FileStore(self.temp_dir)
        self.file.write(0, self.data[:self.used])
        self.end = self.spilled = self.used
        self.data = np.empty(0, dtype=np.uint8)

    def _compact_file(self) -> None:
        """Rewrite the live records back to back, in file order, from offset 0. Safe in place:
        a piece is read whole before it is written, never past where it was read from."""
        assert self.file is not None
        order = np.argsort(self.start[:self.filled])  # offsets are distinct: any sort
        pos = 0
        for idx in self.pieces(order):
            records = self.read(idx)
            self.file.write(pos, records)
            self.start[idx] = pos + np.cumsum(self.length[idx]) - self.length[idx]
            pos += len(records)
        del order
        self.file.truncate(pos)
        self.end = pos

    def pieces(self, order: np.ndarray) -> Iterator[np.ndarray]:
        """``order`` (slots) cut into consecutive pieces of at most ``piece_records`` records
        and ``piece_bytes`` bytes."""
        for a in range(0, len(order), self.piece_records):
            chunk = order[a:a + self.piece_records]
            ends = np.cumsum(self.length[chunk])
            i = 0
            while i < len(chunk):
                base = int(ends[i - 1]) if i else 0
                j = max(i + 1, int(np.searchsorted(ends, base + self.piece_bytes, side="right")))
                yield chunk[i:j]
                i = j

    def read(self, idx: np.ndarray) -> np.ndarray:
        """The records of slots ``idx`` (one piece) from the file, back to back in that order
        (a view of the output buffer, valid until the next read).

        In file order, a window of the file as large as the staging buffer at a time: the
        staging buffer mirrors the window, and only the runs of its records (records less than
        READ_GAP apart read together) are read into it, one call each."""
        assert self.file is not None
        staging, out = self._buffers()
        lengths = self.length[idx]
        dests = np.cumsum(lengths) - lengths
        total = int(dests[-1] + lengths[-1])
        by_offset = np.argsort(self.start[idx])
        s = self.start[idx][by_offset]
        ln = lengths[by_offset]
        d = dests[by_offset]
        e = s + ln
        fd, view, size = self.file.fd, memoryview(staging), len(staging)  # type: ignore[arg-type]
        i = 0
        while i < len(s):
            lo = int(s[i])
            j = int(np.searchsorted(e, lo + size, side="right"))  # > i: a record fits
            first = np.flatnonzero(s[i + 1:j] - e[i:j - 1] > READ_GAP) + (i + 1)
            run_lo = np.concatenate(([lo], s[first])) - lo
            run_hi = np.concatenate((e[first - 1], [e[j - 1]])) - lo
            try:
                for a, b in zip(run_lo.tolist(), run_hi.tolist()):
                    got = os.preadv(fd, [view[a:b]], lo + a)
                    if got != b - a:  # short read: the careful way
                        self.file.read_into(lo + a + got, [staging[a + got:b]])
            except OSError as exc:
                raise describe_os_error(
                    exc, f"reading temporary data in {self.file.directory}") from None
            place_records(staging, s[i:j] - lo, ln[i:j], out, d[i:j])
            i = j
        return out[:total]

    def _buffers(self) -> Tuple[np.ndarray, np.ndarray]:
        """(staging, output) buffers of ``piece_bytes`` each, made on first use."""
        if self._staging is None or self._out is None:
            self._staging = np.empty(self.piece_bytes, dtype=np.uint8)
            self._out = np.empty(self.piece_bytes, dtype=np.uint8)
        return self._staging, self._out

    def close(self) -> None:
        self.data = np.empty(0, dtype=np.uint8)
        self._staging = self._out = None
        if self.file is not None:
            self.file.close()


class Reservoir(Method):
    """-n N whose N slots fit in half of --memory: one pass, the N smallest keys kept."""

    name = MethodName.RESERVOIR

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        # Decided from N and --memory alone, so a file and the same bytes on a stream take the
        # same way (the reservoir spills to the temporary file if the lines are long).
        n = job.opts.sample
        if n is None or job.opts.buckets is not None or not reservoir_fits(n, job.geo):
            return None
        return f"-n {n:,}: its slots fit in half of --memory"

    def run(self) -> ShuffleStats:
        job = self.job
        with SignalGuard() as signals:
            sample_by_reservoir(job.reader, job.opts, job.geo, job.streams, job.stats, job.size,
                                signals.defer)
        job.stats.store = "temporary file" if job.stats.spilled else "memory"
        return self._done()


def sample_by_reservoir(reader: RecordReader, opts: ShuffleOptions, geo: Geometry,
                        streams: Streams, stats: ShuffleStats, size: Optional[int] = None,
                        before_rename: Optional[Callable[[], None]] = None) -> None:
    """Sample ``opts.sample`` records by reservoir (the caller checked :func:`reservoir_fits`)
    and write them. ``before_rename`` is called once everything is written, before the outputs
    get their names (signal deferral)."""
    sample = opts.sample
    assert sample is not None and reservoir_fits(sample, geo)
    budget = data_budget(sample, geo)
    res = _Reservoir(sample, budget, 2 * budget - 8 * sample, geo.block_bytes, opts.temp_dir)
    prog = Progress(opts.progress, size, first="sample", second="write")
    try:
        for block in reader.blocks(geo.block_bytes, geo.block_records):
            _sample_block(res, block, streams)
            prog.scattered(reader.bytes_read)
        sink = _write_sample(res, opts, streams, reader.header, before_rename)
    finally:
        prog.close()
        res.close()
    stats.records = reader.records
    stats.bytes = reader.payload
    stats.records_out = res.filled
    stats.spilled = res.spilled
    stats.outputs = [p for p in sink.paths if isinstance(p, str)]


def _sample_block(res: _Reservoir, block, streams: Streams) -> None:
    """Keep the records of ``block`` whose keys are among the N smallest seen so far: the first
    N records fill the slots, later ones replace the slots of the largest keys they beat."""
    n = block.count
    keys = streams.keys.range(block.first, n)
    ends = block.ends
    lengths = np.diff(ends, prepend=0)
    starts = ends - lengths
    direct = min(res.size - res.filled, n)
    if direct:
        slots = np.arange(res.filled, res.filled + direct)
        res.key[slots] = keys[:direct]
        res.put(slots, block.data, starts[:direct], lengths[:direct])
    if direct == n or res.size == 0:
        return
    cand = np.flatnonzero(keys[direct:] < res.key.max()) + direct
    if not len(cand):
        return
    both = np.concatenate((res.key, keys[cand]))
    keep = np.argpartition(both, res.size - 1)[:res.size]  # the N smallest (keys are distinct)
    stays = np.zeros(res.size, dtype=bool)
    stays[keep[keep < res.size]] = True
    slots = np.flatnonzero(~stays)
    records = cand[keep[keep >= res.size] - res.size]
    res.key[slots] = keys[records]
    res.put(slots, block.data, starts[records], lengths[records])


def _write_sample(res: _Reservoir, opts: ShuffleOptions, streams: Streams, header: Optional[bytes],
                  before_rename: Optional[Callable[[], None]]) -> Sink:
    """The reservoir in key order, to the outputs: from memory in one piece, or from the
    temporary file a piece at a time (the same order either way)."""
    k = res.filled
    perm = key_order(res.key[:k])
    out = None
    if res.file is None:
        out = np.empty(int(res.length[:k].sum()), dtype=np.uint8)
        gather_records(res.data, res.start[:k][perm], res.length[:k][perm], out, 0)
        res.data = np.empty(0, dtype=np.uint8)
    sink = Sink.for_options(opts, k, header)
    sink.open()
    try:
        if out is not None:
            sink.write(out, k)
        else:
            for idx in res.pieces(perm):
                sink.write(res.read(idx), len(idx))
        sink.finish(before_rename)
    except BaseException:
        sink.abort()
        raise
    return sink
