"""Order-free fingerprints of a file's records, for ``bigshuf verify``.

The fingerprint of a multiset of records is (count, S1, S2) with S1 = sum of h(r) and
S2 = sum of g(h(r)) modulo 2**64, where h is a 64-bit hash of one record (terminator included)
and g a second bijective mixer: a sum does not depend on order, so a file and any shuffle of it
have the same fingerprint, while a lost, duplicated or altered record changes it (a collision
needs two 64-bit sums to cancel at once).

h is computed without a Python object per record where that matters:

* records longer than ``LONG`` bytes: XXH3-64 (python-xxhash), one call per record, which
  costs little per byte at these lengths;
* shorter records: XXH64's round function and avalanche, vectorised with numpy over all the
  short records of a block, eight bytes (one lane) at a time, seeded with the record length.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np
import xxhash

from bigshuf.common.progress import Progress
from bigshuf.shuffler.records import PathLike, RecordReader, display_name

LONG = 128
SLICE_RECORDS = 16384
BLOCK = 32 << 20

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_U = np.uint64


def _avalanche(h: np.ndarray) -> np.ndarray:
    h ^= h >> _U(33)
    h *= _P2
    h ^= h >> _U(29)
    h *= _P3
    h ^= h >> _U(32)
    return h


def _short_hashes(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """XXH64-style hashes of records starting at byte ``starts`` with ``lengths`` bytes, reading
    8-byte lanes from ``words`` (the block as aligned little-endian uint64, with a spare word).

    Records are sorted by lane count, longest first, so the records still being hashed at lane j
    are always a prefix: slices instead of fancy indexing, and in-place arithmetic.
    """
    nwords = (lengths + 7) >> 3
    order = np.argsort((LONG // 8 + 1 - nwords).astype(np.uint8), kind="stable")
    nw = nwords[order]
    k0 = (starts >> 3)[order]
    shift = ((starts & 7) << 3).astype(np.uint64)[order]
    back = _U(63) - shift                       # hi << (64 - shift), split so shift 0 works
    last = ((lengths - 1) & 7) + 1              # bytes used in the final lane, 1..8
    last_mask = (np.left_shift(_U(1), (last * 8 - 1).astype(np.uint64)) << _U(1)) - _U(1)
    last_mask = last_mask[order]
    acc = _P5 + lengths.astype(np.uint64)[order] * _P1
    # active[j]: how many records have more than j lanes (nw is sorted descending).
    maxw = int(nw[0])
    active = np.searchsorted(-nw, -np.arange(1, maxw + 2), side="right")
    for j in range(maxw):
        m = int(active[j])
        m_next = int(active[j + 1])
        k = k0[:m] + j
        lane = words[k]
        lane >>= shift[:m]
        k += 1
        hi = words[k]
        hi <<= back[:m]
        hi <<= _U(1)
        lane |= hi
        lane[m_next:m] &= last_mask[m_next:m]
        lane *= _P2
        a = acc[:m]
        a += lane
        np.left_shift(a, _U(31), out=hi)
        a >>= _U(33)
        a |= hi
        a *= _P1
    out = np.empty_like(acc)
    out[order] = _avalanche(acc)
    return out


def record_hashes(data: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The 64-bit hash of every record of a block (``data`` holds the records back to back)."""
    n = len(ends)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1]
    lengths = ends - starts
    short = lengths <= LONG
    if short.any():
        size = len(data)
        words = np.zeros(size // 8 + 2, dtype="<u8")
        words.view(np.uint8)[:size] = data
        idx = np.flatnonzero(short)
        # Slices of records spanning a few hundred KB keep every lane read in the L2 cache.
        for a in range(0, len(idx), SLICE_RECORDS):
            sel = idx[a:a + SLICE_RECORDS]
            out[sel] = _short_hashes(words, starts[sel], lengths[sel])
    long_idx = np.flatnonzero(~short)
    if len(long_idx):
        mv = memoryview(data)
        digest = xxhash.xxh3_64_intdigest
        out[long_idx] = np.fromiter(
            (digest(mv[s:e]) for s, e in zip(starts[long_idx].tolist(), ends[long_idx].tolist())),
            dtype=np.uint64, count=len(long_idx))
    return out


@dataclass(frozen=True)
class Fingerprint:
    """Record count and the two order-free sums of one input."""

    path: str
    count: int
    sum1: int
    sum2: int
    bytes: int

    @property
    def hexdigest(self) -> str:
        """A short display form: XXH3-64 of (count, sum1, sum2)."""
        h = xxhash.xxh3_64()
        h.update(self.count.to_bytes(8, "little"))
        h.update(self.sum1.to_bytes(8, "little"))
        h.update(self.sum2.to_bytes(8, "little"))
        return h.hexdigest()

    def same_multiset(self, other: "Fingerprint") -> bool:
        return (self.count, self.sum1, self.sum2) == (other.count, other.sum1, other.sum2)


def fingerprint(path: PathLike, zero_terminated: bool = False,
                progress: Optional[Progress] = None) -> Fingerprint:
    """Fingerprint the records of ``path`` ('-' for stdin; compressed files by extension)."""
    reader = RecordReader([path], 0 if zero_terminated else 10)
    s1 = np.uint64(0)
    s2 = np.uint64(0)
    with np.errstate(over="ignore"):
        for block in reader.blocks(BLOCK):
            h = record_hashes(block.data, block.ends)
            s1 += h.sum(dtype=np.uint64)
            s2 += _avalanche(h ^ _P4).sum(dtype=np.uint64)
            if progress is not None:
                progress.gathered(block.nbytes)
    return Fingerprint(display_name(path), reader.records, int(s1), int(s2), reader.payload)


@dataclass(frozen=True)
class VerifyResult:
    first: Fingerprint
    second: Fingerprint

    @property
    def same(self) -> bool:
        return self.first.same_multiset(self.second)

    def difference(self) -> str:
        a, b = self.first, self.second
        if a.count != b.count:
            return f"{a.path} has {a.count:,} lines, {b.path} has {b.count:,}"
        return "same number of lines, but different contents (fingerprints differ)"


def verify(first: PathLike, second: PathLike, zero_terminated: bool = False,
           progress: Optional[bool] = None) -> VerifyResult:
    """Do ``first`` and ``second`` hold the same multiset of records? Both are read at once
    (one thread each: hashing and decompression release the GIL for much of the work)."""
    # Open both first so a missing second file fails before the first is read.
    RecordReader([first]), RecordReader([second])
    prog = Progress(progress, None, first="verify")
    results: list = [None, None]
    errors: list = []

    def run(i: int, path: PathLike) -> None:
        try:
            results[i] = fingerprint(path, zero_terminated, prog)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, p), daemon=True)
               for i, p in enumerate((first, second))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    finally:
        prog.close()
    if errors:
        raise errors[0]
    return VerifyResult(results[0], results[1])
