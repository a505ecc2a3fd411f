"""Phase 1, scatter: every record goes to the bucket holding its key; a block's records are
regrouped by bucket into one run, with their keys beside them.

A level's buckets are consecutive intervals of keys (:class:`KeyRange`), so gathering the
buckets in order and sorting each by key gives the records in key order: the order contract of
:class:`bigshuf.common.randomness.OrderKeys`, whatever the number of buckets or levels. The key
comes from the record's index, never from its content: equal lines are records like any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from bigshuf.shuffler.segments import gather_records

#: Bytes of per-record metadata the partition needs at its peak (ends, bucket ids, lengths,
#: order, sorted starts and lengths, the copy's destinations; and a scratch buffer of the
#: block's size for the keys, 32 bytes a record at the most records a block may hold): used by
#: the planner to size blocks.
PARTITION_BYTES_PER_RECORD = 74
#: Bytes a record's key takes in a run.
KEY_BYTES = 8
_SPACE = 1 << 64
_STEP = 1 << 16


@dataclass(frozen=True)
class KeyRange:
    """Keys ``lo .. lo + span - 1`` cut into buckets of ``width`` keys: bucket j holds
    ``lo + j*width .. lo + (j+1)*width - 1``. The top level is all 2^64 keys."""

    lo: int = 0
    span: int = _SPACE
    width: int = _SPACE

    @classmethod
    def cut(cls, lo: int, span: int, buckets: int) -> "KeyRange":
        """The range cut into (at most) ``buckets`` buckets of equal width."""
        return cls(lo, span, max(1, -(-span // max(1, buckets))))

    def merged(self, times: int) -> "KeyRange":
        """Bucket pairs merged ``times`` times (what the run index does as runs pile up):
        bucket j becomes j >> times."""
        return KeyRange(self.lo, self.span, min(self.width << times, _SPACE))

    @property
    def buckets(self) -> int:
        return -(-self.span // self.width)

    def child(self, bucket: int) -> "KeyRange":
        """The keys of bucket ``bucket``, as a range of its own (one bucket)."""
        lo = self.lo + bucket * self.width
        span = min(self.width, self.lo + self.span - lo)
        return KeyRange(lo, span, span)

    def bucket_of(self, keys: np.ndarray) -> np.ndarray:
        """The bucket of each key (all inside the range)."""
        k = self.buckets
        if k == 1:
            return np.zeros(len(keys), dtype=np.uint16)
        out = np.empty(len(keys), dtype=bucket_dtype(k))
        lo, w = np.uint64(self.lo), self.width
        shift = np.uint64(w.bit_length() - 1) if w & (w - 1) == 0 else None
        for a in range(0, len(keys), _STEP):  # cache-sized temporaries
            x = keys[a:a + _STEP] - lo
            out[a:a + _STEP] = x >> shift if shift is not None else x // np.uint64(w)
        return out


def bucket_dtype(buckets: int):
    return np.uint16 if buckets <= (1 << 16) else np.uint32


def partition(data: np.ndarray, ends: np.ndarray, keys: np.ndarray, bucket_of: np.ndarray,
              buckets: int, out: np.ndarray, keys_out: Optional[np.ndarray] = None
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write the records of ``data`` into ``out`` grouped by bucket, keeping input order inside
    each bucket. Returns (bytes per bucket, records per bucket, the keys in the new order, in
    ``keys_out`` if given); the counts are int64 arrays of length ``buckets``."""
    n = len(ends)
    counts = np.bincount(bucket_of, minlength=buckets).astype(np.int64)
    if n == 0:
        return np.zeros(buckets, dtype=np.int64), counts, keys
    if buckets == 1:
        out[:len(data)] = data
        return np.array([len(data)], dtype=np.int64), counts, keys
    lengths = np.diff(ends, prepend=0)
    nbytes = np.bincount(bucket_of, weights=lengths, minlength=buckets).astype(np.int64)
    # Records in (bucket, input position) order: a stable sort on the small bucket numbers is
    # a radix sort in numpy (cheap); the copy then reads forward through at most K streams
    # and writes sequentially.
    # (``take`` in "clip" mode: an order is never out of range, and the default mode checks
    # every index and buffers ``out``; 3-4x faster than indexing.)
    order = np.argsort(bucket_of, kind="stable")
    starts = np.take(ends, order, mode="clip")
    sorted_lengths = np.take(lengths, order, mode="clip")
    sorted_keys = np.take(keys, order, out=None if keys_out is None else keys_out[:n], mode="clip")
    del order, lengths
    starts -= sorted_lengths
    gather_records(data, starts, sorted_lengths, out, 0)
    return nbytes, counts, sorted_keys
