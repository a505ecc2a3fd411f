"""Phase 2, gather: load buckets with their keys, put each unit's records in key order, emit them.

Consecutive buckets are loaded together as one *unit* (one read per run covers them all). The
buckets are consecutive intervals of keys, so sorting a unit's records by key puts them in bucket
order and each bucket in key order: the order contract. Grouping is for I/O only and never
changes the output. A bucket too large for a unit is not sorted here; the caller scatters it
again by the next bits of its keys (one level down, same order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from bigshuf.common.errors import BigshufError
from bigshuf.shuffler.records import find_record_ends
from bigshuf.shuffler.scatter import KEY_BYTES
from bigshuf.shuffler.segments import gather_records
from bigshuf.shuffler.store import Store

#: Peak per-record metadata of a unit's sort (keys, ends, the packed sort keys and the order;
#: then starts, lengths and the copy's destinations).
PERMUTE_BYTES_PER_RECORD = 64


@dataclass(frozen=True)
class Unit:
    """Buckets ``first..last-1`` gathered together; ``oversized`` means one bucket to re-scatter."""

    first: int
    last: int
    nbytes: int
    records: int
    out_offset: int     # byte offset of the unit in the shuffled stream
    out_record: int     # index of the unit's first record in the shuffled stream
    oversized: bool = False


def plan_units(bucket_bytes: np.ndarray, bucket_records: np.ndarray, max_bytes: int,
               max_records: int) -> List[Unit]:
    """Group consecutive buckets into units of at most ``max_bytes`` and ``max_records``."""
    nbytes, nrec = int(bucket_bytes.sum()), int(bucket_records.sum())
    if nbytes <= max_bytes and nrec <= max_records:  # one unit, as the loop finds it: a small
        # input's 4096 buckets took the loop ~0.6 ms, an eighth of a tiny run's CPU
        return [Unit(0, len(bucket_bytes), nbytes, nrec, 0, 0)] if nbytes or nrec else []
    return _plan_units_loop(bucket_bytes, bucket_records, max_bytes, max_records)


def _plan_units_loop(bucket_bytes: np.ndarray, bucket_records: np.ndarray, max_bytes: int,
                     max_records: int) -> List[Unit]:
    units: List[Unit] = []
    k = len(bucket_bytes)
    out_offset = 0
    out_record = 0
    i = 0
    bb = bucket_bytes.tolist()
    br = bucket_records.tolist()
    while i < k:
        if bb[i] > max_bytes or br[i] > max_records:
            units.append(Unit(i, i + 1, bb[i], br[i], out_offset, out_record, True))
            out_offset += bb[i]
            out_record += br[i]
            i += 1
            continue
        j, nbytes, nrec = i, 0, 0
        while j < k and nbytes + bb[j] <= max_bytes and nrec + br[j] <= max_records:
            nbytes += bb[j]
            nrec += br[j]
            j += 1
        if nrec or nbytes:
            units.append(Unit(i, j, nbytes, nrec, out_offset, out_record))
        out_offset += nbytes
        out_record += nrec
        i = j
    return units


class BucketReader:
    """Reads buckets of a scattered level from its store, bucket-major, with their keys."""

    def __init__(self, store: Store, run_offsets: np.ndarray, piece_bytes: np.ndarray,
                 piece_records: np.ndarray):
        self.store = store
        self.piece_bytes = piece_bytes                       # [R, K]
        self.piece_records = piece_records                   # [R, K]
        self.piece_start = _exclusive(piece_bytes) + run_offsets[:, None]     # [R, K] offsets
        run_bytes = piece_bytes.sum(axis=1)
        self.key_start = KEY_BYTES * _exclusive(piece_records) + (run_offsets + run_bytes)[:, None]

    def columns(self, first: int, last: int) -> "BucketReader":
        """A reader of buckets first..last-1 only (renumbered from 0) and no store: what a
        cluster task needs to be sent."""
        part = object.__new__(BucketReader)
        part.store = None  # type: ignore[assignment]
        for name in ("piece_bytes", "piece_records", "piece_start", "key_start"):
            setattr(part, name, getattr(self, name)[:, first:last].copy())
        return part

    def read(self, first: int, last: int, out: np.ndarray, keys: np.ndarray,
             last_use: bool = False) -> np.ndarray:
        """Fill ``out`` with buckets first..last-1, each bucket contiguous (runs in order), and
        ``keys`` with their keys in the same order. Returns the start of each bucket in ``out``
        (length last-first+1). With ``last_use``, the store may free what was read."""
        cols = slice(first, last)
        starts = read_buckets(self.store, self.piece_start[:, cols], self.piece_bytes[:, cols], out)
        read_buckets(self.store, self.key_start[:, cols], KEY_BYTES * self.piece_records[:, cols],
                     keys.view(np.uint8))
        if last_use:
            self.discard(first, last)
        return starts

    def discard(self, first: int, last: int) -> None:
        """Buckets first..last-1 and their keys were read for the last time: the store may
        free them (per run, one range of records and one of keys)."""
        for start, size in ((self.piece_start, self.piece_bytes),
                            (self.key_start, KEY_BYTES * self.piece_records)):
            spans = size[:, first:last].sum(axis=1)
            for r in np.flatnonzero(spans):
                self.store.discard(int(start[r, first]), int(spans[r]))

    def prefetch(self, first: int, last: int) -> None:
        """Tell the store that buckets first..last-1 and their keys are read next: per run,
        one range of records and one of keys (consecutive buckets are contiguous in a run)."""
        ranges: List[Tuple[int, int]] = []
        for start, size in ((self.piece_start, self.piece_bytes),
                            (self.key_start, KEY_BYTES * self.piece_records)):
            spans = size[:, first:last].sum(axis=1)
            ranges.extend(zip(start[:, first].tolist(), spans.tolist()))
        self.store.prefetch([(o, n) for o, n in ranges if n])

    def pieces(self, bucket: int) -> List[Piece]:
        """Every non-empty piece of one bucket, in run order."""
        rows = np.flatnonzero(self.piece_records[:, bucket])
        return [Piece(int(self.piece_start[r, bucket]), int(self.piece_bytes[r, bucket]),
                      int(self.key_start[r, bucket]), int(self.piece_records[r, bucket]))
                for r in rows]


@dataclass(frozen=True)
class Piece:
    """One run's records of one bucket: where its bytes and its keys are in the store."""

    offset: int
    nbytes: int
    key_offset: int
    records: int


def _exclusive(a: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums along the buckets (axis 1)."""
    out = np.cumsum(a, axis=1)
    out -= a
    return out


def read_buckets(store: Store, piece_start: np.ndarray, piece_bytes: np.ndarray,
                 out: np.ndarray) -> np.ndarray:
    """Read m consecutive buckets into ``out`` bucket-major, given the store offset and size of
    each piece ([R, m] arrays: consecutive buckets are contiguous in each run, so this is one
    vectored read per run). Returns the start of each bucket in ``out`` (length m+1)."""
    totals = piece_bytes.sum(axis=0)
    bucket_start = np.zeros(len(totals) + 1, dtype=np.int64)
    np.cumsum(totals, out=bucket_start[1:])
    # Destination of piece (r, j): bucket j's start + bytes of runs before r in bucket j.
    dest = np.cumsum(piece_bytes, axis=0)
    dest -= piece_bytes
    dest += bucket_start[None, :-1]
    for r in range(piece_bytes.shape[0]):
        row = piece_bytes[r]
        if not row.any():
            continue
        views = [out[d:d + n] for d, n in zip(dest[r].tolist(), row.tolist())]
        store.read_into(int(piece_start[r, 0]), views)
    return bucket_start


def key_order(keys: np.ndarray, scratch: Optional[np.ndarray] = None) -> np.ndarray:
    """The permutation that sorts ``keys`` (distinct uint64s), as int64 positions; in
    ``scratch`` (bytes, at least 8 a key) if given, so no fresh pages are faulted in.

    numpy sorts uint64 values with SIMD (~5 ns a key) but argsorts them at 15-25 ns: so the
    record's position is packed into the low bits of its key, the packed values sorted, and the
    positions read back. Keys equal above the packed bits (a few per million) are then put in
    full-key order, so the result is exactly the key order."""
    n = len(keys)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    bits = int(n - 1).bit_length()
    mask = np.uint64((1 << bits) - 1)
    packed = np.bitwise_and(keys, ~mask, out=None if scratch is None else scratch[:8 * n].view(np.uint64))
    tied = []
    for a in range(0, n, _STEP):  # in cache-sized steps: small temporaries
        packed[a:a + _STEP] |= np.arange(a, min(n, a + _STEP), dtype=np.uint64)
    packed.sort()
    for a in range(0, n - 1, _STEP):
        lo, hi = packed[a:a + _STEP], packed[a + 1:a + 1 + _STEP]
        same = np.flatnonzero((lo[:len(hi)] ^ hi) <= mask)  # equal above the packed bits
        if len(same):
            tied.append(same + a)
    packed &= mask
    order = packed.view(np.int64)
    if tied:
        at = np.concatenate(tied)
        at = np.unique(np.concatenate((at, at + 1)))   # positions in a tied group, ascending
        group = np.cumsum(np.concatenate(([1], np.diff(at) != 1)))  # runs of neighbours
        order[at] = order[at][np.lexsort((keys[order[at]], group))]
    return order


#: Keys handled per vectorised step where a temporary is needed.
_STEP = 1 << 16


def order_unit(buf: np.ndarray, total: int, keys: np.ndarray, sep: int, out: np.ndarray,
               scratch: Optional[np.ndarray] = None) -> int:
    """Write the records of ``buf[:total]`` into ``out`` in the order of their ``keys``
    (``scratch``: see :func:`key_order`). Returns the number of records."""
    ends = find_record_ends(buf[:total], sep)
    n = len(ends)
    if n != len(keys):
        raise BigshufError(f"internal error: {n} records but {len(keys)} keys")
    if n == 0:
        return 0
    order = key_order(keys, scratch)
    starts = np.take(ends, order, mode="clip")  # see scatter.partition: a permutation
    lengths = np.take(np.diff(ends, prepend=0), order, mode="clip")
    del order, ends
    starts -= lengths
    gather_records(buf, starts, lengths, out, 0)
    return n
