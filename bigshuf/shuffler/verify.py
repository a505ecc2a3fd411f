"""Order-free fingerprints of a file's records, for ``bigshuf verify``.

The fingerprint of a multiset of records is (count, S1, S2) with S1 = sum of h(r) and
S2 = sum of g(h(r)) modulo 2**64, where h is a 64-bit hash of one record (terminator included)
and g a bijective mixer: a sum does not depend on order, so a file and any shuffle of it have
the same fingerprint, while a lost, duplicated or altered record changes it.

h is **keyed**: every ``verify`` draws a random 64-bit key, never shown, so no pair of files
can be crafted in advance to have the same fingerprint (the unkeyed hash it replaces was
invertible: a second 16-byte line with any line's hash could be solved for). Fingerprints are
comparable only under one key; the hex digests printed differ from run to run.

h is computed without a Python object per record where that matters:

* records longer than ``LONG`` bytes: XXH3-64 seeded with the key, one call per record, which
  costs little per byte at these lengths;
* shorter records: two NH sums (UMAC's universal hash: 32-bit halves of each 8-byte lane plus
  key words, multiplied in pairs, added modulo 2**64; two records of one length collide with
  probability 2**-32 per sum, and the two sums have independent keys), then the length and an
  avalanche, vectorised with numpy over all the short records of a block.

Records of any length are accepted: the input is read into one ``BLOCK``-byte buffer and a record
that does not end within half of it is hashed incrementally with the same seeded XXH3-64 (its
digest equals the one-shot digest), so memory stays at about two blocks a file whatever the
longest line. Fingerprints add up: the fingerprint of several files is the sum of theirs, which is
how ``verify IN SPLIT1 SPLIT2 ...`` checks that splits (or shards) together hold exactly the input.
"""
from __future__ import annotations

import builtins
import secrets
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import xxhash

from bigshuf.common.inputs import check_read_once_given_once
from bigshuf.common.progress import Progress
from bigshuf.common.signals import SignalGuard
from bigshuf.shuffler.records import (
    PathLike,
    RecordReader,
    display_name,
    find_record_ends,
    open_input,
    read_fully,
)

LONG = 128
#: Bytes of a file's first record kept for the --header hint.
HEAD = 4096
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


@dataclass(frozen=True)
class HashKey:
    """The secret of one verification: a seed for XXH3 and the NH key words (two independent
    NH sums, a key word for each 32-bit half of each 8-byte lane)."""

    seed: int
    nh: np.ndarray  # (2 sums, 2 halves, lanes) uint64 values below 2**32

    @classmethod
    def from_seed(cls, seed: int) -> "HashKey":
        rng = np.random.Generator(np.random.PCG64(seed))
        nh = rng.integers(0, 1 << 32, size=(2, 2, LONG // 8 + 1), dtype=np.uint64)
        return cls(seed & ((1 << 64) - 1), nh)

    @classmethod
    def fresh(cls) -> "HashKey":
        return cls.from_seed(secrets.randbits(64))


def _short_hashes(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                  key: HashKey) -> np.ndarray:
    """Keyed hashes of records starting at byte ``starts`` with ``lengths`` bytes, reading
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
    n = len(order)
    sums = np.zeros((2, n), dtype=np.uint64)
    a, b = np.empty(n, dtype=np.uint32), np.empty(n, dtype=np.uint32)
    t = np.empty(n, dtype=np.uint64)
    keys = key.nh.astype(np.uint32)
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
        up = words[k]
        up <<= back[:m]
        up <<= _U(1)
        lane |= up
        lane[m_next:m] &= last_mask[m_next:m]
        halves = lane.view(np.uint32)  # little-endian: low half, high half of each lane
        for s in range(2):  # NH: (lo + a) mod 2**32 * (hi + b) mod 2**32, summed mod 2**64
            np.add(halves[0::2], keys[s, 0, j], out=a[:m])  # uint32: wraps mod 2**32
            np.add(halves[1::2], keys[s, 1, j], out=b[:m])
            np.multiply(a[:m], b[:m], out=t[:m], dtype=np.uint64)
            sums[s, :m] += t[:m]
    h = sums[0]
    h += lengths.astype(np.uint64)[order] * _P1   # records that differ only in zero padding
    h += _U(key.seed)
    _avalanche(h)
    h ^= sums[1]
    out = np.empty_like(h)
    out[order] = _avalanche(h)
    return out


def record_hashes(data: np.ndarray, ends: np.ndarray, key: HashKey) -> np.ndarray:
    """The keyed 64-bit hash of every record of a block (``data`` holds the records back to
    back)."""
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
            out[sel] = _short_hashes(words, starts[sel], lengths[sel], key)
    long_idx = np.flatnonzero(~short)
    if len(long_idx):
        mv = memoryview(data)
        digest = xxhash.xxh3_64_intdigest
        seed = key.seed
        out[long_idx] = np.fromiter(
            (digest(mv[s:e], seed) for s, e in zip(starts[long_idx].tolist(), ends[long_idx].tolist())),
            dtype=np.uint64, count=len(long_idx))
    return out


@dataclass(frozen=True)
class Fingerprint:
    """Record count and the two order-free sums of one input (or of several: see ``+``)."""

    path: str
    count: int
    sum1: int
    sum2: int
    bytes: int
    head: builtins.bytes = b""  # the first record (its first HEAD bytes): for the --header hint only
    key: int = 0  # the seed of the HashKey the sums were made with

    @property
    def hexdigest(self) -> str:
        """A short display form: XXH3-64 of (count, sum1, sum2)."""
        h = xxhash.xxh3_64()
        h.update(self.count.to_bytes(8, "little"))
        h.update(self.sum1.to_bytes(8, "little"))
        h.update(self.sum2.to_bytes(8, "little"))
        return h.hexdigest()

    def same_multiset(self, other: "Fingerprint") -> bool:
        _same_key(self, other)
        return (self.count, self.sum1, self.sum2) == (other.count, other.sum1, other.sum2)

    def __add__(self, other: "Fingerprint") -> "Fingerprint":
        """The fingerprint of both inputs together (their concatenation, in any order)."""
        _same_key(self, other)
        mask = (1 << 64) - 1
        return Fingerprint(f"{self.path} + {other.path}", self.count + other.count,
                           (self.sum1 + other.sum1) & mask, (self.sum2 + other.sum2) & mask,
                           self.bytes + other.bytes, self.head, self.key)


def _same_key(a: Fingerprint, b: Fingerprint) -> None:
    if a.key != b.key:
        raise ValueError("fingerprints made with different keys cannot be compared")


class _Sums:
    """Running count and sums; with ``skip_first`` the first record is left out (--header)."""

    def __init__(self, skip_first: bool):
        self.skip = skip_first
        self.count = 0
        self.nbytes = 0
        self.s1 = np.uint64(0)
        self.s2 = np.uint64(0)

    def add(self, hashes: np.ndarray, lengths: np.ndarray) -> None:
        if self.skip and len(hashes):
            self.skip = False
            hashes, lengths = hashes[1:], lengths[1:]
        with np.errstate(over="ignore"):
            self.s1 += hashes.sum(dtype=np.uint64)
            self.s2 += _avalanche(hashes ^ _P4).sum(dtype=np.uint64)
        self.count += len(hashes)
        self.nbytes += int(lengths.sum())

    def add_long(self, digest: int, length: int) -> None:
        self.add(np.array([digest], dtype=np.uint64), np.array([length], dtype=np.int64))


def fingerprint(path: PathLike, zero_terminated: bool = False,
                progress: Optional[Progress] = None, header: bool = False,
                key: "int | HashKey | None" = None) -> Fingerprint:
    """Fingerprint the records of ``path`` ('-' for stdin; compressed files by extension), lines
    of any length; with ``header`` its first line is left out. Holds one BLOCK-byte buffer: a
    record still unfinished after half of it is hashed as a stream (XXH3-64, as for any record
    over LONG bytes, so the fingerprint does not depend on BLOCK). ``key`` (a HashKey or its
    seed; None draws one) keys the hashes: compare only fingerprints made with the same key."""
    sep = 0 if zero_terminated else 10
    hkey = key if isinstance(key, HashKey) else \
        HashKey.fresh() if key is None else HashKey.from_seed(key)
    src = open_input(path)
    sums = _Sums(header)
    buf = np.empty(BLOCK, dtype=np.uint8)
    head: Optional[bytes] = None
    carry = 0                                     # unfinished record at the front of buf
    long_hash: Optional["xxhash.xxh3_64"] = None  # inside a record longer than BLOCK / 2
    long_len = 0
    try:
        while True:
            got = read_fully(src.stream, memoryview(buf)[carry:], src.name)
            eof = got < BLOCK - carry
            if progress is not None:
                progress.gathered(got)
            n = carry + got
            if head is None:
                hits = np.flatnonzero(buf[:min(n, HEAD)] == sep)
                head = bytes(buf[:int(hits[0]) + 1 if len(hits) else min(n, HEAD)])
            if long_hash is not None:
                hits = np.flatnonzero(buf[:n] == sep)
                cut = int(hits[0]) + 1 if len(hits) else n
                long_hash.update(memoryview(buf)[:cut])
                long_len += cut
                if not len(hits) and not eof:
                    carry = 0
                    continue
                if not len(hits):  # last record without terminator: it gets one, like the shuffle
                    long_hash.update(bytes([sep]))
                    long_len += 1
                sums.add_long(long_hash.intdigest(), long_len)
                long_hash = None
                buf[:n - cut] = buf[cut:n]
                n -= cut
            carry = _hash_block(buf, n, sep, eof, sums, hkey)
            if eof:
                break
            if carry >= BLOCK // 2:  # no terminator in half a block: hash this record as a stream
                long_hash, long_len = xxhash.xxh3_64(seed=hkey.seed), carry
                long_hash.update(memoryview(buf)[:carry])
                carry = 0
    finally:
        src.close()
    return Fingerprint(display_name(path), sums.count, int(sums.s1), int(sums.s2), sums.nbytes,
                       head or b"", hkey.seed)


def _hash_block(buf: np.ndarray, n: int, sep: int, eof: bool, sums: _Sums, key: HashKey) -> int:
    """Hash the whole records of ``buf[:n]`` (at end of input the tail too, given a
    terminator: there is room, as the last read was short); move the unfinished tail to the
    front and return its length."""
    if eof and n and buf[n - 1] != sep:
        buf[n] = sep
        n += 1
    ends = find_record_ends(buf[:n], sep)
    done = int(ends[-1]) if len(ends) else 0
    if len(ends):
        starts = np.concatenate([[0], ends[:-1]])
        sums.add(record_hashes(buf[:done], ends, key), ends - starts)
    rest = n - done
    if rest > 0:
        buf[:rest] = buf[done:n]
    return rest


@dataclass(frozen=True)
class VerifyResult:
    """``first`` against ``second`` (the sum of ``parts`` when several files were given)."""

    first: Fingerprint
    second: Fingerprint
    parts: Tuple[Fingerprint, ...] = ()
    header: bool = False

    @property
    def same(self) -> bool:
        return self.first.same_multiset(self.second)

    def difference(self) -> str:
        a, b = self.first, self.second
        other = f"the {len(self.parts)} others together" if self.parts else b.path
        if a.count != b.count:
            return f"{a.path} has {a.count:,} lines, {other} {b.count:,}" + self._header_hint()
        return "same number of lines, but different contents (fingerprints differ)"

    def _header_hint(self) -> str:
        """Outputs of ``shuffle --header`` repeat the header on every file: compared without
        ``--header``, they hold one line more per extra file, all files starting alike."""
        files = (self.first, *(self.parts or (self.second,)))
        extra = self.second.count - self.first.count
        if self.header or extra != len(files) - 2 or not self.first.head \
                or any(f.head != self.first.head for f in files):
            return ""
        return (f" (every file starts with the same line, {extra:,} more than once in all: "
                "outputs of 'shuffle --header'? compare with --header)")


def verify(first: PathLike, second: PathLike, *more: PathLike, zero_terminated: bool = False,
           progress: Optional[bool] = None, header: bool = False) -> VerifyResult:
    """Does ``first`` hold the same multiset of records as ``second`` (and ``more``, together)?
    E.g. an input against the files of a --split or of shards. Files are read two at a time
    (hashing and decompression release the GIL for much of the work). With ``header``, the first
    line of every file is left out."""
    paths: List[PathLike] = [first, second, *more]
    check_read_once_given_once(paths)
    for p in paths:  # a missing file fails before any is read
        RecordReader([p])
    prog = Progress(progress, _known_size(paths), first="verify")
    stopped = threading.Event()
    pool = ThreadPoolExecutor(max_workers=2)
    # The shuffle's signal policy: the first signal wins and the run stops within a fraction
    # of a second, even with a worker blocked opening a FIFO nobody writes (it is not waited
    # for: the command exits without it).
    with SignalGuard(stop=stopped.set) as signals:
        try:
            key = HashKey.fresh()  # one per verification: see the module docstring
            futures = [pool.submit(fingerprint, p, zero_terminated, prog, header, key)
                       for p in paths]
            pending = set(futures)
            while pending:
                if stopped.is_set():
                    raise signals.error()
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                for f in done:
                    f.result()
            prints = [f.result() for f in futures]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            prog.close()
    rest = _total(prints[1:])
    return VerifyResult(prints[0], rest, tuple(prints[1:]) if more else (), header)


def _known_size(paths: Sequence[PathLike]) -> Optional[int]:
    """Bytes the progress bar counts (the records read), if known before reading: every file
    uncompressed and regular."""
    return RecordReader(list(paths)).known_size()


def _total(prints: Sequence[Fingerprint]) -> Fingerprint:
    total = prints[0]
    for fp in prints[1:]:
        total = total + fp
    return total
