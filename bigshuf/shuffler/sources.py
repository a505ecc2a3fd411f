"""Records that come from the command line, not from files: ``-e ARG...`` and ``-i LO-HI``.

Both are offered to the engine as one input stream (source 0) of known size, generated on the
fly, so a full shuffle of a range larger than memory is an ordinary engine run (scatter to the
temporary file, gather) and memory stays bounded. ``-i LO-HI -n K`` never generates the range:
it draws K distinct offsets directly (:func:`sample_range`), so ``-i 1-10000000000 -n 5`` is
instant.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from bigshuf.common.randomness import Streams
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.records import Source
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import Sink

#: Numbers formatted per chunk of a generated range (bounds the chunk's bytes to ~1.3 MB).
RANGE_CHUNK = 1 << 16
#: -i -n K: chunk c of candidates holds (2K + 64) << min(c, 10) draws. Sizes depend on K only,
#: so the offsets drawn depend on the seed and K, never on --memory.
MAX_DOUBLINGS = 10
#: Bytes of working memory one sampled offset may cost (candidates, unique, sorted copies).
BYTES_PER_OFFSET = 64


class GeneratedStream:
    """A read-only binary stream over an iterator of byte chunks (``readinto`` only)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""
        self._pos = 0

    def readinto(self, view: Any) -> int:
        view = memoryview(view).cast("B")
        n = 0
        while n < len(view):
            if self._pos == len(self._buf):
                self._buf, self._pos = next(self._chunks, b""), 0
                if not self._buf:
                    break
            take = min(len(view) - n, len(self._buf) - self._pos)
            view[n:n + take] = self._buf[self._pos:self._pos + take]
            n += take
            self._pos += take
        return n

    def close(self) -> None:
        self._chunks = iter(())


def echo_source(args: Sequence[bytes], sep: int) -> Source:
    """The -e arguments as one input of records (each argument plus the terminator)."""
    term = bytes([sep])
    size = sum(len(a) + 1 for a in args)
    chunks = (b"".join(a + term for a in args[i:i + 4096]) for i in range(0, len(args), 4096))
    return Source("<-e arguments>", GeneratedStream(chunks), size, False, size)  # type: ignore[arg-type]


def range_bytes(lo: int, hi: int) -> int:
    """Bytes of the decimal lines lo..hi, one terminator each."""
    total, digits = 0, 1
    while 10 ** (digits - 1) <= hi:
        a, b = max(lo, 10 ** (digits - 1) if digits > 1 else 0), min(hi, 10 ** digits - 1)
        if a <= b:
            total += (b - a + 1) * (digits + 1)
        digits += 1
    return total


def format_numbers(values: Sequence[int], sep: int) -> bytes:
    """Decimal lines, each ended by ``sep``."""
    if not len(values):
        return b""
    term = chr(sep)
    return (term.join(map(str, values)) + term).encode("ascii")


def range_source(lo: int, hi: int, sep: int) -> Source:
    """The integers lo..hi as one input of decimal records, generated a chunk at a time."""
    chunks = (format_numbers(range(a, min(a + RANGE_CHUNK, hi + 1)), sep)
              for a in range(lo, hi + 1, RANGE_CHUNK))
    size = range_bytes(lo, hi)
    return Source(f"<-i {lo}-{hi}>", GeneratedStream(chunks), size, False, size)  # type: ignore[arg-type]


# -- -i LO-HI -n K ---------------------------------------------------------------------------

def sample_offsets(count: int, k: int, streams: Streams, geo: Geometry) -> Optional[np.ndarray]:
    """K distinct offsets in [0, count) in uniformly random order, or None when they do not fit
    in the budget (the caller then shuffles the range with the engine and keeps the first K).

    K > count/2: the first K of a uniform permutation of all offsets. Otherwise the first K
    distinct values of an endless i.i.d. uniform sequence (drawn in chunks, duplicates and
    values already taken skipped): by symmetry every ordered K-tuple of distinct offsets is
    equally likely, and the rejections cost little because at most half the range is taken.
    """
    k = min(k, count)
    if 2 * k > count:
        if count * BYTES_PER_OFFSET > geo.memory // 2:
            return None
        return streams.range_sample(0).permutation(count)[:k].astype(np.uint64)
    if k * BYTES_PER_OFFSET > geo.memory // 2:
        return None
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
                 before_rename: Callable[[], None]) -> bool:
    """-i LO-HI -n K without generating the range; False if the engine must do it instead."""
    lo, hi = opts.input_range
    assert opts.sample is not None
    count = hi - lo + 1
    offsets = sample_offsets(count, opts.sample, streams, geo)
    if offsets is None:
        return _sample_range_by_engine(opts, geo, streams, stats)
    # Formatted a chunk at a time (<= hi < 2**64: no overflow): K Python ints and their text
    # at once cost more than the offsets' whole share of the budget.
    chunks = (format_numbers((offsets[i:i + RANGE_CHUNK] + np.uint64(lo)).tolist(), opts.sep)
              for i in range(0, len(offsets), RANGE_CHUNK))
    stats.outputs = write_records(opts, chunks, len(offsets), before_rename)
    stats.records = count
    stats.records_out = len(offsets)
    stats.store = "range"
    return True


#: Largest number of draws subset_chunks makes (numpy's hypergeometric takes populations
#: under 10**9); beyond it the engine shuffles the whole range and keeps the first K.
MAX_SUBSET_DRAWS = 10 ** 9 - 1


def subset_chunks(count: int, k: int, streams: Streams, capacity: int
                  ) -> Optional[Iterator[np.ndarray]]:
    """A uniform K-subset of [0, count) in increasing order, as uint64 arrays (one per value
    bucket), holding about ``capacity`` draws at a time; None when it cannot be drawn so
    (K > count/2: the range itself is at most 2K lines, or more than MAX_SUBSET_DRAWS draws).

    Why it is uniform: S i.i.d. uniform draws (S a little over K) give a set D of distinct
    values; every permutation of the range leaves the draws' law unchanged, so given |D| = d,
    D is a uniform d-subset. If d >= K (else the attempt is redrawn from fresh streams), K of
    D chosen uniformly are a uniform K-subset of the range. The draws are made per bucket of
    the value range (how many fall in each: sequential binomials, to numpy's float precision
    like its other samplers), each bucket's from its own stream, twice: once to count its
    distinct values, once to emit the ones chosen (how many per bucket: sequential
    hypergeometric draws; which: a uniform choice inside the bucket).
    """
    if 2 * k > count:
        return None
    margin = 64 + 2 * (k * k // count + 1)  # about twice the duplicates expected
    attempt = 0
    while True:
        draws = k + margin
        if draws > MAX_SUBSET_DRAWS:
            return None
        width = -(-count // max(1, -(-draws // max(1, capacity))))
        sizes = np.minimum(width, count - np.arange(-(-count // width), dtype=object) * width)
        counts = _split_draws(draws, [int(x) for x in sizes], count, streams.range_subset(attempt, 0))
        distinct = np.array([len(np.unique(_bucket_draws(streams, attempt, j, int(sizes[j]), c)))
                             for j, c in enumerate(counts)], dtype=np.int64)
        if int(distinct.sum()) >= k:
            break
        attempt += 1
        margin *= 2
    take = _choose_counts(distinct, k, streams.range_subset(attempt, 1))

    def chunks() -> Iterator[np.ndarray]:
        for j in np.flatnonzero(take).tolist():
            values = np.unique(_bucket_draws(streams, attempt, j, int(sizes[j]), int(counts[j])))
            pick = streams.range_subset(attempt, 2, j).choice(len(values), int(take[j]),
                                                              replace=False)
            pick.sort()
            yield values[pick] + np.uint64(j * width)

    return chunks()


def _split_draws(draws: int, sizes: List[int], count: int, rng: np.random.Generator) -> List[int]:
    """How many of ``draws`` uniform draws over [0, count) fall in each bucket (multinomial)."""
    out, left_draws, left = [], draws, count
    for size in sizes:
        c = left_draws if size >= left else int(rng.binomial(left_draws, size / left))
        out.append(c)
        left_draws -= c
        left -= size
    return out


def _bucket_draws(streams: Streams, attempt: int, j: int, size: int, draws: int) -> np.ndarray:
    return streams.range_subset(attempt, 3, j).integers(0, size, draws, dtype=np.uint64)


def _choose_counts(distinct: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """How many of a uniform K-subset of the union fall in each bucket (sequential
    hypergeometric draws: bucket j against all the buckets after it)."""
    take = np.zeros(len(distinct), dtype=np.int64)
    left, rest = k, int(distinct.sum())
    for j, d in enumerate(distinct.tolist()):
        rest -= d
        if left == 0:
            break
        take[j] = left if rest == 0 else int(rng.hypergeometric(d, rest, left)) if d else 0
        left -= int(take[j])
    return take


def _sample_range_by_engine(opts: ShuffleOptions, geo: Geometry, streams: Streams,
                            stats: ShuffleStats) -> bool:
    """-i LO-HI -n K with K offsets beyond memory: a uniform K-subset of the range, generated
    in increasing order a bucket at a time, shuffled by the engine (through the temporary
    file); never the whole range (-i 1-10000000000 -n 10000000 used to need 101 GB)."""
    lo, hi = opts.input_range
    assert opts.sample is not None
    # A bucket's draws, their distinct copy and the choice (~24 bytes a draw) stay near 5% of
    # the budget: they live beside the engine, which reads them as its input.
    subset = subset_chunks(hi - lo + 1, opts.sample, streams, max(1, geo.memory // 512))
    if subset is None:
        return False
    from bigshuf.shuffler.records import RecordReader
    from bigshuf.shuffler.run import _run_engine

    def text() -> Iterator[bytes]:
        for values in subset:
            for i in range(0, len(values), RANGE_CHUNK):
                yield format_numbers((values[i:i + RANGE_CHUNK] + np.uint64(lo)).tolist(), opts.sep)

    source = Source(f"<-i {lo}-{hi} -n {opts.sample}>", GeneratedStream(text()), None, False,  # type: ignore[arg-type]
                    None)
    _run_engine(opts, RecordReader([source], opts.sep), geo, streams, stats, None)
    stats.records = hi - lo + 1
    return True


def write_records(opts: ShuffleOptions, chunks: Iterable[bytes], records: int,
                  before_rename: Callable[[], None], header: Optional[bytes] = None) -> List[str]:
    """Write ``records`` whole records (given as byte chunks, in order) to the outputs of
    ``opts``, atomically; returns the file names written."""
    sink = Sink.for_options(opts, records, header)
    sink.open()
    try:
        for data in chunks:
            sink.write(np.frombuffer(data, dtype=np.uint8), data.count(opts.sep))
        before_rename()
        sink.finish()
    except BaseException:
        sink.abort()
        raise
    return [p for p in sink.paths if isinstance(p, str)]


def record_inputs(opts: ShuffleOptions) -> List[Any]:
    """What a RecordReader reads: the inputs, or a fresh stream of the -e/-i records (a new one
    at every call, so a second pass reads them again)."""
    if not opts.generated:
        return list(opts.inputs)
    if opts.echo is not None:
        return [echo_source(opts.echo_lines, opts.sep)]
    lo, hi = opts.input_range
    return [range_source(lo, hi, opts.sep)]
