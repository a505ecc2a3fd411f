"""``--unique``: which records are the first occurrence of their bytes, in bounded memory.

One pass over the inputs (:func:`find_distinct`) gives every record a 128-bit content hash and
its index; equal records must meet, so the (hash, index) pairs are partitioned by the hash's top
bits (the one place where content decides where a record goes: DESIGN section 6). A partition
keeps, for each hash, the smallest index seen: blocks are deduplicated on the workers, their
survivors merged into the table in RAM and compacted when it fills its share of ``--memory``;
when compaction no longer frees enough, every partition is written to the temporary file and
the table starts empty, and at the end each partition (from the file and RAM) is reduced on its
own, a partition too big for memory being split again by the next bits of the hash. The result
is a bitmap over record indices (:class:`Distinct`), one bit a record, kept through the
shuffle (set aside from the engine's budget).

The shuffle then reads the inputs again through :meth:`Distinct.filter`, which drops the
records whose bit is clear and renumbers the survivors densely (``Block.first`` is the rank
among survivors): so the shuffle of the distinct records is, byte for byte, the shuffle of
``awk '!seen[$0]++'``'s output with the same seed, and uniform over the distinct records (their
keys depend on their ranks, never on their content or their number of copies).

The hash (:func:`record_hashes128`): records up to 64 bytes (the short lines of word lists and
ids, where a call per record would cost more than the whole shuffle) are hashed vectorised with
four NH sums (UMAC's universal hash over 32-bit halves; each sum lets two distinct records of one
length collide with probability at most 2^-32 over its key, and the four keys are independent)
folded into two 64-bit words; longer records get XXH3-128, one call each. The keys come from the
seed (a stream of their own), so a run is reproducible and no input prepared in advance can aim at
a collision. Modelled as a random 128-bit function, n distinct records merge anywhere with
probability at most n(n-1)/2^129: below 1.5e-21 for a billion (README, "--unique").
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generator, Iterator, List, Optional, Tuple

import numpy as np
import xxhash

from bigshuf.common.container import temp_growth_watch
from bigshuf.common.errors import BigshufError, UsageError, changed
from bigshuf.common.output import pwrite_all
from bigshuf.common.randomness import Purpose, fmix
from bigshuf.common.tempdir import temp_write_error, unlinked_temp_fd
from bigshuf.shuffler.buffers import BufferPool
from bigshuf.shuffler.records import Block, RecordReader
from bigshuf.shuffler.segments import gather_records

_U = np.uint64
#: Records up to this many bytes are hashed vectorised (NH); longer ones with XXH3-128.
SHORT = 64
#: Records hashed per vectorised step (the temporaries stay in the CPU cache).
SLICE = 16384
#: Bytes of a table entry: the hash's two words and the record's index (and in a base, a
#: contiguous copy of the first word for the look-ups).
ENTRY_BYTES = 32
#: Most partitions a table level uses (a partition too big is split again one level down).
MAX_PARTITIONS = 4096
#: Fewest entries a partition's share of the table holds (fewer partitions below it).
PIECE_ENTRIES = 1024
_MASKS = {w: np.tril(np.ones((w + 1, w), np.uint8), -1).astype(np.uint8) * 255 for w in (16, 32, 64)}
_MASKS = {w: m.view("<u8") for w, m in _MASKS.items()}
_P1, _P2 = _U(0x9E3779B185EBCA87), _U(0xC2B2AE3D27D4EB4F)


@dataclass(frozen=True)
class ContentKey:
    """The hash's keys, from the run's seed: NH key words (4 sums x 16 half-lanes) and the
    XXH3 seed of long records."""

    nh: np.ndarray
    xxh_seed: int

    @classmethod
    def from_seed(cls, seed: int) -> "ContentKey":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(Purpose.DEDUP,))))
        nh = rng.integers(0, 1 << 32, size=(4, SHORT // 4), dtype=np.uint64).astype(np.uint32)
        return cls(nh, int(rng.integers(0, 1 << 63)))


def _nh_window(padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray, w: int,
               key: ContentKey) -> Tuple[np.ndarray, np.ndarray]:
    """Hashes of records of at most ``w`` bytes: each record's window of ``w`` bytes (zeroed
    past its end) as 32-bit half-lanes, four NH sums over them, folded with the length."""
    m = len(starts)
    windows = np.ndarray((len(padded) - w + 1,), dtype=np.dtype((np.void, w)), buffer=padded,
                         strides=(1,))
    rows = windows[starts].view("<u8").reshape(m, w // 8)
    rows &= _MASKS[w][lengths]
    halves = np.ascontiguousarray(rows.view(np.uint32).T)  # (w/4, m): one half-lane a row
    a, b = np.empty(m, np.uint32), np.empty(m, np.uint32)
    p = np.empty(m, _U)
    sums = np.zeros((4, m), _U)
    for s in range(4):
        acc = sums[s]
        for j in range(0, w // 4, 2):  # NH: (lo + k) mod 2^32 * (hi + k') mod 2^32, summed
            np.add(halves[j], key.nh[s, j], out=a)
            np.add(halves[j + 1], key.nh[s, j + 1], out=b)
            np.multiply(a, b, out=p, dtype=_U)
            acc += p
    length = lengths.astype(_U)
    h1 = sums[1] + length * _P1
    h1 = sums[0] + fmix(h1)
    h2 = sums[3] + length * _P2
    h2 = sums[2] + fmix(h2)
    return fmix(h1), fmix(h2)


def record_hashes128(data: np.ndarray, ends: np.ndarray, key: ContentKey
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """The two 64-bit words of each record's content hash (``data`` holds the records back to
    back, record i ending at ``ends[i]``). Equal records get equal words; see the module
    docstring for distinct ones."""
    n = len(ends)
    h1, h2 = np.empty(n, _U), np.empty(n, _U)
    if n == 0:
        return h1, h2
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1]
    lengths = ends - starts
    # Windows are read from the block itself; only records starting in its last SHORT bytes,
    # whose windows would run past it, are read from a small zero-padded copy of that tail.
    tail = int(np.searchsorted(starts, len(data) - SHORT, side="right"))
    padded = np.zeros(len(data) - int(starts[tail]) + SHORT if tail < n else 0, np.uint8)
    if tail < n:
        padded[:len(data) - int(starts[tail])] = data[int(starts[tail]):]
    for lo, hi, buf, shift in ((0, tail, data, 0), (tail, n, padded, int(starts[min(tail, n - 1)]))):
        for a in range(lo, hi, SLICE):
            b = min(hi, a + SLICE)
            s, ln = starts[a:b] - shift, lengths[a:b]
            for w, low in ((16, 0), (32, 17), (64, 33)):
                sel = np.flatnonzero((ln >= low) & (ln <= w))
                if len(sel):
                    h1[a + sel], h2[a + sel] = _nh_window(buf, s[sel], ln[sel], w, key)
    long_idx = np.flatnonzero(lengths > SHORT)
    if len(long_idx):
        mv = memoryview(data)  # type: ignore[arg-type]
        digest, seed = xxhash.xxh3_128_intdigest, key.xxh_seed
        mask = (1 << 64) - 1
        for i, a, b in zip(long_idx.tolist(), starts[long_idx].tolist(), ends[long_idx].tolist()):
            d = digest(mv[a:b], seed)
            h1[i], h2[i] = d >> 64, d & mask
    return h1, h2


def first_of_each(entries: np.ndarray) -> np.ndarray:
    """Rows (h1, h2, index) reduced to one per distinct (h1, h2), with its smallest index,
    sorted by h1."""
    if len(entries) <= 1:
        return entries
    order = np.argsort(entries[:, 0])
    s = entries[order]
    same1 = s[1:, 0] == s[:-1, 0]
    same = same1 & (s[1:, 1] == s[:-1, 1])
    if (same1 & ~same).any():  # equal first words, different second ones: sort by both
        s = entries[np.lexsort((entries[:, 1], entries[:, 0]))]
        same = (s[1:, 0] == s[:-1, 0]) & (s[1:, 1] == s[:-1, 1])
    if not same.any():
        return s
    heads = np.flatnonzero(np.concatenate(([True], ~same)))
    out = s[heads]
    out[:, 2] = np.minimum.reduceat(s[:, 2], heads)
    return out


def first_in_block(h1: np.ndarray, h2: np.ndarray, first: int) -> np.ndarray:
    """:func:`first_of_each` for one block's records (indices ``first, first + 1, ...``), 3-4x
    faster: each record's position is packed into the low bits of its first word and the packed
    words sorted (numpy's SIMD sort, no argsort), which orders equal words by position, so the
    head of each run of equal hashes is its first occurrence. A run of equal top bits holding
    different hashes (a few in a million blocks) takes :func:`first_of_each`."""
    n = len(h1)
    bits = max(1, int(n - 1).bit_length())
    low = _U((1 << bits) - 1)
    packed = h1 & ~low
    packed |= np.arange(n, dtype=_U)
    packed.sort()
    pos = (packed & low).astype(np.int64)
    top = packed & ~low
    s1, s2 = h1[pos], h2[pos]
    same_top = top[1:] == top[:-1]
    same = same_top & (s1[1:] == s1[:-1]) & (s2[1:] == s2[:-1])
    if (same_top & ~same).any():
        entries = np.empty((n, 3), _U)
        entries[:, 0], entries[:, 1] = h1, h2
        entries[:, 2] = np.arange(first, first + n, dtype=_U)
        return first_of_each(entries)
    heads = np.flatnonzero(np.concatenate(([True], ~same)))
    out = np.empty((len(heads), 3), _U)
    out[:, 0], out[:, 1] = s1[heads], s2[heads]
    out[:, 2] = pos[heads]
    out[:, 2] += _U(first)
    return out


class _Spill:
    """The table's pieces in the one unlinked temporary file: appended, read back whole."""

    def __init__(self, directory: str):
        self.directory = directory
        self.fd = unlinked_temp_fd(directory)
        self.end = 0
        self.watch = temp_growth_watch(directory)  # a tmpfs file inside a memory cgroup

    def write(self, rows: np.ndarray) -> Tuple[int, int]:
        if self.watch is not None:
            self.watch.guard(rows.nbytes)
        try:
            pwrite_all(self.fd, np.ascontiguousarray(rows), self.end)
        except OSError as exc:
            raise temp_write_error(exc, self.directory) from None
        where = (self.end, len(rows))
        self.end += rows.nbytes
        return where

    def read(self, where: Tuple[int, int]) -> np.ndarray:
        offset, count = where
        out = np.empty((count, 3), _U)
        view = memoryview(out).cast("B")
        while len(view):
            got = os.preadv(self.fd, [view], offset)
            if got <= 0:
                raise OSError(f"temporary file in {self.directory} was truncated")
            view, offset = view[got:], offset + got
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Table:
    """(hash, first index) of every distinct hash seen, partitioned by the hash's top bits
    below ``shift`` bits already used by the levels above; in RAM up to ``limit`` bytes of
    entries, the rest in the temporary file (see the module docstring).

    A partition holds a *base*, sorted and reduced, and the pieces added since. A piece's
    hashes already in the base are absorbed at once (the base keeps the smaller index), so
    with many duplicates the table stays at about one entry per distinct record and is seldom
    compacted (base and pieces reduced into a new base)."""

    def __init__(self, limit: int, partitions: int, spill: Callable[[], _Spill], shift: int = 0):
        self.limit = max(limit, ENTRY_BYTES * 1024)
        # Each spill writes a piece of every partition and keeps its place (a tuple, ~120
        # bytes): so many partitions that pieces hold a few entries would make that list
        # outgrow the table itself (-S 1M on 800 k records: +23 MiB).
        partitions = min(partitions, max(2, self.limit // (ENTRY_BYTES * PIECE_ENTRIES)))
        self.bits = max(0, int(partitions - 1).bit_length())
        self.shift = shift
        self.spill = spill
        count = 1 << self.bits
        self.base: List[np.ndarray] = [np.empty((0, 3), _U) for _ in range(count)]
        self.base_h1: List[np.ndarray] = [np.empty(0, _U) for _ in range(count)]
        self.ram: List[List[np.ndarray]] = [[] for _ in range(count)]
        self.disk: List[List[Tuple[int, int]]] = [[] for _ in range(count)]
        self.rows = 0

    def partition_of(self, h1: np.ndarray) -> np.ndarray:
        if self.bits == 0:
            return np.zeros(len(h1), np.int64)
        return ((h1 << _U(self.shift)) >> _U(64 - self.bits)).astype(np.int64)

    def add(self, entries: np.ndarray) -> None:
        """Add rows (h1, h2, index), each (h1, h2) once (:func:`first_of_each`)."""
        if not len(entries):
            return
        part = self.partition_of(entries[:, 0])
        if self.shift == 0 and (part[1:] >= part[:-1]).all():  # the partitions are slices
            cuts = np.flatnonzero(part[1:] != part[:-1]) + 1
            for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(part)]):
                self._add(int(part[a]), entries[a:b])
        else:
            order = np.argsort(part, kind="stable")
            sizes = np.bincount(part, minlength=len(self.ram))
            at = 0
            for p in np.flatnonzero(sizes).tolist():
                self._add(p, entries[order[at:at + sizes[p]]])
                at += int(sizes[p])
        if self.rows * ENTRY_BYTES > self.limit:
            self._compact()
            if self.rows * ENTRY_BYTES > self.limit // 2:
                self._to_disk()

    def _add(self, p: int, rows: np.ndarray) -> None:
        base, h1 = self.base[p], self.base_h1[p]
        if len(base):
            at = np.minimum(np.searchsorted(h1, rows[:, 0]), len(base) - 1)
            hit = (h1[at] == rows[:, 0]) & (base[at, 1] == rows[:, 1])
            if hit.any():
                at = at[hit]
                base[at, 2] = np.minimum(base[at, 2], rows[hit, 2])
                rows = rows[~hit]
        if len(rows):
            self.ram[p].append(rows)
            self.rows += len(rows)

    def _compact(self) -> None:
        self.rows = 0
        for p, pieces in enumerate(self.ram):
            if pieces:
                self.base[p] = first_of_each(np.concatenate([self.base[p], *pieces]))
                self.base_h1[p] = np.ascontiguousarray(self.base[p][:, 0])
                pieces.clear()
            self.rows += len(self.base[p])

    def _to_disk(self) -> None:
        spill = self.spill()
        for p, pieces in enumerate(self.ram):
            for rows in [self.base[p], *pieces]:
                if len(rows):
                    self.disk[p].append(spill.write(rows))
            pieces.clear()
            self.base[p], self.base_h1[p] = np.empty((0, 3), _U), np.empty(0, _U)
        self.rows = 0

    def firsts(self, check: Callable[[], None]) -> Iterator[np.ndarray]:
        """The first index of every distinct hash, a partition at a time (unsorted)."""
        for p in range(len(self.ram)):
            check()
            pieces, spilled = [self.base[p], *self.ram[p]], self.disk[p]
            self.ram[p], self.base[p], self.base_h1[p] = [], np.empty((0, 3), _U), np.empty(0, _U)
            rows = sum(len(x) for x in pieces) + sum(c for _, c in spilled)
            if rows * ENTRY_BYTES * 3 <= self.limit or self.shift + self.bits >= 56:
                table = [self.spill().read(w) for w in spilled] + pieces
                if rows:
                    yield first_of_each(np.concatenate(table))[:, 2]
                continue
            # Too big for memory at once: split it again by the next bits of the hash.
            sub = Table(self.limit, MAX_PARTITIONS, self.spill, self.shift + self.bits)
            for w in spilled:
                sub.add(first_of_each(self.spill().read(w)))
            for x in pieces:
                sub.add(first_of_each(x))
            del pieces
            yield from sub.firsts(check)


@dataclass
class Distinct:
    """Which records survive ``--unique``: bit i of :attr:`keep` (little-endian bit order) is
    set when record i (its index among all inputs' records, headers left out) is the first
    occurrence of its bytes. ``input_records[s]``/``input_distinct[s]``: records and survivors
    of input s (``input_start[s]`` is the index of its first record)."""

    keep: np.ndarray
    records: int
    distinct: int
    input_records: List[int] = field(default_factory=list)
    input_distinct: List[int] = field(default_factory=list)
    spilled: int = 0  # bytes of table entries the pass wrote to the temporary file
    #: XXH3-128 of each input's bytes as the pass read them (None: not recorded); the
    #: shuffle's reading must find the same (UniqueReader).
    digests: Optional[List[Optional[str]]] = None

    @property
    def duplicates(self) -> int:
        return self.records - self.distinct

    @property
    def nbytes(self) -> int:
        return int(self.keep.nbytes)

    @property
    def input_start(self) -> List[int]:
        return np.concatenate(([0], np.cumsum(self.input_records[:-1]))).astype(int).tolist() \
            if self.input_records else []

    def kept(self, first: int, count: int) -> np.ndarray:
        """Bool mask: which of records ``first .. first + count - 1`` survive."""
        lo, hi = first >> 3, (first + count + 7) >> 3
        bits = np.unpackbits(self.keep[lo:hi], bitorder="little")
        return bits[first & 7:(first & 7) + count].view(bool)

    def filter(self, blocks: Iterator[Block], first: int = 0,
               release: Optional[Callable[[np.ndarray], None]] = None) -> Iterator[Block]:
        """The blocks with their duplicates dropped (compacted in place, so a pool buffer stays
        the pool's), numbered densely from ``first``: a block's ``first`` becomes the rank of
        its first survivor. Blocks left empty are released and skipped."""
        rank = first
        for block in blocks:
            mask = self.kept(block.first, block.count)
            count = int(np.count_nonzero(mask))
            if count == 0:
                if release is not None:
                    release(block.data)
                continue
            if count == block.count:
                block.first = rank
                rank += count
                yield block
                continue
            ends = block.ends
            starts = np.concatenate(([0], ends[:-1]))[mask]
            lengths = ends[mask] - starts
            total = int(lengths.sum())
            # Gathered into a scratch buffer, then copied back to the block's front: the block
            # keeps its buffer (a pool's), and a copy in place could overwrite its own sources.
            scratch = np.empty(total, np.uint8)
            gather_records(block.data, starts, lengths, scratch)
            block.data[:total] = scratch
            del scratch
            yield Block(block.index, block.data[:total], np.cumsum(lengths), block.source,
                        block.sep, count, block.offset, rank)
            rank += count


def find_distinct(reader: RecordReader, block_bytes: int, block_records: int, memory: int,
                  workers: int, temp_dir: str, seed: int, estimated_records: int,
                  check: Callable[[], None], per_input: bool = False,
                  budget: Optional[int] = None) -> Distinct:
    """Read ``reader`` once and find the first occurrence of every distinct record.

    ``memory`` bounds what this pass holds (the reader's block, the workers' blocks and their
    hashing temporaries, the table, and at the end the bitmap of n/8 bytes, refused past an
    eighth of ``budget``, the run's --memory: default ``memory``). With ``per_input``, records of different inputs never count as
    duplicates of each other (each input's hashes are salted with its number):
    ``input_distinct`` then counts each input's own distinct records (for a mixture that
    deduplicates within each input). ``check`` raises to stop (a signal)."""
    # The reader's block and each worker's block with its hashing temporaries (~100 bytes a
    # record) come first; the table gets half of what remains (a partition is reduced at most
    # three times its size at once), and at the end, with the workers done, the bitmap is made
    # beside it.
    room = memory - block_bytes - workers * (block_bytes + 100 * block_records)
    limit = max(room // 2, ENTRY_BYTES * 4096)
    parts = 1
    while parts < MAX_PARTITIONS and estimated_records * ENTRY_BYTES * 3 > limit * parts:
        parts *= 2
    spill_box: List[_Spill] = []

    def spill() -> _Spill:
        if not spill_box:
            spill_box.append(_Spill(temp_dir))
        return spill_box[0]

    try:
        table = Table(limit, parts, spill)
        counts = _fill(table, reader, block_bytes, block_records,
                       max(budget if budget is not None else memory, 0), workers,
                       ContentKey.from_seed(seed), check, per_input)
        return _survivors(table, counts, check, spill_box[0].end if spill_box else 0)
    finally:
        for s in spill_box:
            s.close()


def _fill(table: Table, reader: RecordReader, block_bytes: int, block_records: int,
          budget: int, workers: int, key: ContentKey, check: Callable[[], None],
          per_input: bool) -> List[int]:
    """Hash and reduce every block on the workers, adding each block's distinct hashes to
    ``table`` in order; returns the records of each input. More records than ``budget`` (the
    run's --memory: the bitmap gets an eighth of it, a bit a record) is refused as soon as it
    is seen, naming the --memory the records seen so far need."""
    pool = BufferPool(block_bytes)

    def hash_block(block: Block) -> np.ndarray:
        check()
        h1, h2 = record_hashes128(block.data, block.ends, key)
        if per_input:  # the same words xored into every record of one input
            salt = fmix(np.array([block.source + 1, block.source + 1 + (1 << 32)], _U))
            h1 ^= salt[0]
            h2 ^= salt[1]
        pool.release(block.data)
        return first_in_block(h1, h2, block.first)

    counts = [0] * len(reader.inputs)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bigshuf-unique")
    pending: List[Future] = []
    try:
        for block in reader.blocks(block_bytes, block_records, pool):
            check()
            if reader.records > budget:
                raise UsageError(too_many_records(reader.records, budget))
            if block.count == 0:
                pool.release(block.data)
                continue
            counts[block.source - reader.first_source] += block.count
            pending.append(executor.submit(hash_block, block))
            del block
            while len(pending) >= workers or (pending and pending[0].done()):
                table.add(pending.pop(0).result())
        while pending:
            table.add(pending.pop(0).result())
        return counts
    finally:
        for f in pending:
            f.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
        pool.clear()


def too_many_records(records: int, budget: int) -> str:
    """The refusal of ``records`` (and more to come) at --memory ``budget``: the bitmap's
    bit a record may take an eighth of --memory, so they need --memory ``records`` bytes."""
    need = -(-records // (1 << 20))
    return (f"--unique keeps a bit per record in an eighth of --memory: {records:,} records "
            f"or more need --memory {need}M or more (raise --memory from {budget:,} bytes)")


def _survivors(table: Table, counts: List[int], check: Callable[[], None], spilled: int
               ) -> Distinct:
    """The bitmap of the table's first indices, and the survivors of each input."""
    n = sum(counts)
    keep = np.zeros((n + 7) // 8 + 1, np.uint8)
    bounds = np.cumsum(counts)
    per_input = np.zeros(len(counts), np.int64)
    for firsts in table.firsts(check):
        np.bitwise_or.at(keep, (firsts >> _U(3)).astype(np.int64),
                         np.left_shift(1, (firsts & _U(7)).astype(np.uint8)).astype(np.uint8))
        per_input += np.bincount(np.searchsorted(bounds, firsts.astype(np.int64), "right"),
                                 minlength=len(counts))[:len(counts)]
    return Distinct(keep, n, int(per_input.sum()), counts, per_input.tolist(), spilled)


class UniqueReader(RecordReader):
    """A reader whose blocks hold only the survivors of ``distinct``, numbered densely: to
    every method it looks like a reader of the deduplicated input (``records``/``payload``
    count the survivors; the size is unknown beforehand, as for a stream, so the input method,
    which re-reads inputs by position, declines)."""

    def __init__(self, distinct: Distinct, inputs, sep: int = 10, header: bool = False, warn=None,
                 digest: bool = False):
        super().__init__(inputs, sep, header=header, warn=warn)
        self.distinct = distinct
        # The reading itself (its warnings were given by the first pass: not repeated); its
        # digests are compared with the pass's whatever --manifest says.
        self._inner = RecordReader(inputs, sep, header=header,
                                   digest=digest or distinct.digests is not None)
        self.input_entries = self._inner.input_entries  # --manifest: what was read, as read

    def known_size(self) -> Optional[int]:
        return None

    def plain_files(self) -> bool:
        return False

    def blocks(self, capacity: int, max_records: Optional[int] = None,
               pool=None) -> Generator[Block, None, None]:
        inner = self._inner
        release = pool.release if pool is not None else None
        try:
            for block in self.distinct.filter(self._same_records(inner.blocks(capacity, max_records,
                                                                              pool)),
                                              release=release):
                self.bytes_read, self.header = inner.bytes_read, inner.header
                self.records += block.count
                self.payload += block.nbytes
                yield block
        finally:
            self.bytes_read, self.header = inner.bytes_read, inner.header

    def _same_records(self, blocks: Iterator[Block]) -> Iterator[Block]:
        """The blocks of the second reading, which must hold the bytes the first read (a file
        that changed in between would be filtered by another file's bitmap): checked at its
        end, before any output is published."""
        n = self.distinct.records
        for block in blocks:
            if block.first + block.count > n:
                break
            yield block
        digests = [e["digest"] for e in self._inner.input_entries]
        if self._inner.records != n or \
                (self.distinct.digests is not None and digests != self.distinct.digests):
            named = [p if isinstance(p, str) else getattr(p, "name", None) for p in self.inputs]
            names = ", ".join(p for p in named if isinstance(p, str))
            raise BigshufError(changed(names or "input", " (--unique reads it twice)"))
