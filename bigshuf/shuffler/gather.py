"""Phase 2, gather: load buckets, permute each bucket's records uniformly, emit them in bucket order.

Consecutive buckets are loaded together as one *unit* (one read per run covers them all), but each
bucket is permuted on its own: grouping is for I/O only and never changes the output. Small buckets
keep the permutation's random reads inside the CPU cache. A bucket too large for a unit is not
permuted here; the caller scatters it again (same argument, one level down).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from bigshuf.shuffler.records import find_record_ends
from bigshuf.shuffler.segments import gather_records
from bigshuf.shuffler.store import Store

#: Peak per-record metadata of a unit permutation (ends, permutation, bucket numbers and their
#: sort; then starts, lengths and the copy's destinations).
PERMUTE_BYTES_PER_RECORD = 48


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
    """Reads buckets of a scattered level from its store, bucket-major."""

    def __init__(self, store: Store, run_offsets: np.ndarray, piece_bytes: np.ndarray):
        self.store = store
        self.run_offsets = run_offsets
        self.piece_bytes = piece_bytes                       # [R, K]
        # Offset of each piece inside its run: exclusive prefix sum along the buckets.
        within = np.cumsum(piece_bytes, axis=1)
        within -= piece_bytes
        self.piece_start = within + run_offsets[:, None]     # [R, K] store offsets

    def read(self, first: int, last: int, out: np.ndarray, last_use: bool = False) -> np.ndarray:
        """Fill ``out`` with buckets first..last-1, each bucket contiguous (runs in order).
        Returns the start of each bucket in ``out`` (length last-first+1). With ``last_use``,
        the store may free what was read."""
        starts = read_buckets(self.store, self.piece_start[:, first:last],
                              self.piece_bytes[:, first:last], out)
        if last_use:
            spans = self.piece_bytes[:, first:last].sum(axis=1)
            for r in np.flatnonzero(spans):
                self.store.discard(int(self.piece_start[r, first]), int(spans[r]))
        return starts

    def pieces(self, bucket: int) -> List[Tuple[int, int]]:
        """(store offset, bytes) of every non-empty piece of one bucket, in run order."""
        col = self.piece_bytes[:, bucket]
        return [(int(self.piece_start[r, bucket]), int(col[r])) for r in np.flatnonzero(col)]


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


def permute_buckets(buf: np.ndarray, bucket_start: np.ndarray, sep: int,
                    rng: np.random.Generator, out: np.ndarray) -> int:
    """Write each bucket of ``buf`` (bounds in ``bucket_start``) into ``out``, in bucket order,
    with every bucket's records in uniformly random order. Returns the number of records.

    One random permutation of all the unit's records, then a stable sort by bucket: inside each
    bucket the records keep their relative order in that permutation, which is uniform and
    independent between buckets. Vectorised, so a unit of thousands of tiny buckets costs the
    same as one big bucket, while the reads of each bucket stay within its (small) region.
    """
    total = int(bucket_start[-1])
    ends = find_record_ends(buf[:total], sep)
    n = len(ends)
    if n == 0:
        return 0
    # Record index where each bucket starts: buckets hold whole records, so bounds are ends.
    first = np.searchsorted(ends, bucket_start, side="right")
    first[0] = 0
    perm = rng.permutation(n)
    m = len(bucket_start) - 1
    if m > 1:
        bucket_of = np.repeat(np.arange(m, dtype=np.uint16 if m <= 1 << 16 else np.uint32),
                              np.diff(first))
        perm = perm[np.argsort(bucket_of[perm], kind="stable")]
        del bucket_of
    starts = ends[perm]
    lengths = np.diff(ends, prepend=0)[perm]
    del perm, ends
    starts -= lengths
    gather_records(buf, starts, lengths, out, 0)
    return n
