"""Phase 1, scatter: every record goes to a bucket drawn uniformly at random, independently of
its content and of every other record; a block's records are regrouped by bucket into one run.

The bucket is never derived from a hash of the record: equal lines would always share a bucket.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from bigshuf.shuffler.segments import gather_records

#: Bytes of per-record metadata the partition needs at its peak (ends, bucket ids, lengths, order,
#: sorted starts and lengths, the copy's destinations): used by the planner to size blocks.
PARTITION_BYTES_PER_RECORD = 42


def bucket_dtype(buckets: int):
    return np.uint16 if buckets <= (1 << 16) else np.uint32


def draw_buckets(rng: np.random.Generator, count: int, buckets: int) -> np.ndarray:
    """Independent uniform bucket numbers for ``count`` records."""
    if buckets == 1:
        return np.zeros(count, dtype=np.uint16)
    return rng.integers(0, buckets, count, dtype=bucket_dtype(buckets))


def partition(data: np.ndarray, ends: np.ndarray, bucket_of: np.ndarray, buckets: int,
              out: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Write the records of ``data`` into ``out`` grouped by bucket, keeping input order inside
    each bucket. Returns (bytes per bucket, records per bucket), both int64 arrays of length
    ``buckets``."""
    n = len(ends)
    counts = np.bincount(bucket_of, minlength=buckets).astype(np.int64)
    if n == 0:
        return np.zeros(buckets, dtype=np.int64), counts
    if buckets == 1:
        out[:len(data)] = data
        return np.array([len(data)], dtype=np.int64), counts
    lengths = np.diff(ends, prepend=0)
    nbytes = np.bincount(bucket_of, weights=lengths, minlength=buckets).astype(np.int64)
    # Records in (bucket, input position) order: a stable sort on the small bucket numbers is
    # a radix sort in numpy (cheap); the copy then reads forward through at most K streams
    # and writes sequentially.
    order = np.argsort(bucket_of, kind="stable")
    starts = ends[order]
    sorted_lengths = lengths[order]
    del order, lengths
    starts -= sorted_lengths
    gather_records(data, starts, sorted_lengths, out, 0)
    return nbytes, counts
