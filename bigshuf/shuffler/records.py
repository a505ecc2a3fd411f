"""Reading records: opening inputs (files, stdin, compressed) and cutting them into blocks of
whole records held as one byte buffer plus an array of record ends.

A record is everything up to and including its terminator (newline, or NUL with -z). Bytes are
never decoded. A final record without a terminator gets one, per input file, like shuf(1).
"""
from __future__ import annotations

import lzma
import os
import sys
from dataclasses import dataclass
from typing import BinaryIO, Generator, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import xxhash

from bigshuf.common import stdio
from bigshuf.common.codecs import check_codecs, open_decompressed
from bigshuf.common.errors import BigshufError, InputError
from bigshuf.common.inputs import (
    InputInfo,
    InputKind,
    check_read_once_given_once,
    check_readable,
    describe_input,
)

PathLike = Union[str, "os.PathLike[str]"]

_SCAN_SLICE = 1 << 20  # bytes per terminator scan: bounds the temporary bool/int arrays


def display_name(path: PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


@dataclass
class Source:
    """One input: its display name, an open binary stream, and its size when it is knowable."""

    name: str
    stream: BinaryIO
    size: Optional[int]  # bytes of *record data* when known (uncompressed regular file)
    compressed: bool
    file_size: Optional[int]  # bytes on disk, for estimates
    owned: bool = True        # close the stream when done (not for caller-provided streams)

    def close(self) -> None:
        if self.owned:
            try:
                self.stream.close()
            except OSError:
                pass


def open_input(path: PathLike) -> Source:
    """Open ``path`` ('-' is stdin) for reading raw bytes, decompressing by extension."""
    name = display_name(path)
    if str(path) == "-":
        fd, stream = stdio.stdin()
        if fd is None:
            return Source(name, stream, None, False, None, owned=False)  # type: ignore[arg-type]
        raw = os.fdopen(os.dup(fd), "rb", buffering=0)
        return Source(name, raw, None, False, None)
    check_readable(path)
    info = describe_input(path)
    try:
        raw = open(info.path, "rb", buffering=0)
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), info.path) from None
    if info.codec is None:
        return Source(name, raw, info.size, False, info.disk_bytes)
    stream = open_decompressed(raw, info.codec, info.path)
    return Source(name, stream, None, True, info.disk_bytes)  # type: ignore[arg-type]


def _as_source(item) -> Source:
    """A path, an open binary stream or a Source, as a Source."""
    if isinstance(item, Source):
        return item
    if hasattr(item, "readinto") or hasattr(item, "read"):
        name = getattr(item, "name", None)
        name = name if isinstance(name, str) else "<stream>"
        stream = item if hasattr(item, "readinto") else ReadintoAdapter(item)
        return Source(name, stream, None, False, None, owned=False)  # type: ignore[arg-type]
    return open_input(item)


class ReadintoAdapter:
    """Gives a stream with only read() a readinto()."""

    def __init__(self, stream):
        self.stream = stream

    def readinto(self, view) -> int:
        data = self.stream.read(len(view))
        n = len(data)
        view[:n] = data
        return n


def read_fully(stream: BinaryIO, view: memoryview, name: str) -> int:
    """Fill ``view`` from ``stream`` until it is full or the stream ends; return bytes read."""
    got = 0
    total = len(view)
    while got < total:
        try:
            n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        except BigshufError:
            raise  # Interrupted: the SIGINT/SIGTERM handler ran during the read
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            raise InputError(f"read error: {exc}", name) from None
        except Exception as exc:  # zstd/gzip raise their own classes for corrupt data
            raise InputError(f"read error: {exc}", name) from None
        if not n:
            break
        got += n
    return got


_LITTLE_ENDIAN = sys.byteorder == "little"


def find_terminators(data: np.ndarray, sep: int) -> np.ndarray:
    """Positions of ``sep`` in ``data`` (int64): ``np.flatnonzero(data == sep)``, 2-3x faster
    unless lines are very short. numpy's nonzero is the slow part, so it runs on the
    comparison's bytes taken 8 at a time (a uint64 word each); a word holding one terminator
    gives its place from its value (the byte's flag is bit 8c of the word); the few words with
    more are taken apart byte by byte."""
    hits = data == sep
    m = len(data) - len(data) % 8
    if not _LITTLE_ENDIAN or m == 0:
        return np.flatnonzero(hits)
    words = hits[:m].view(np.uint64)
    w = np.flatnonzero(words != 0)
    if len(w) * 2 > len(words):  # lines of a few bytes: nothing to gain
        return np.flatnonzero(hits)
    v = words[w]
    multi = np.flatnonzero(v & (v - np.uint64(1)))
    if len(multi) * 16 > len(w):
        return np.flatnonzero(hits)
    pos = w * 8 + (np.log2(v) * 0.125).astype(np.int64)  # exact: v is 2**(8c) where single
    if len(multi):
        pos = _with_multi(hits[:m].reshape(-1, 8), w, pos, multi)
    tail = np.flatnonzero(hits[m:])
    return np.concatenate([pos, tail + m]) if len(tail) else pos


def _with_multi(rows: np.ndarray, w: np.ndarray, pos: np.ndarray, multi: np.ndarray) -> np.ndarray:
    """``pos`` (one place per nonzero word ``w``) with the words ``multi`` of several
    terminators expanded in place."""
    r, c = np.nonzero(rows[w[multi]])
    counts = np.bincount(r, minlength=len(multi))
    per_word = np.ones(len(w), np.int64)
    per_word[multi] = counts
    at = np.cumsum(per_word)
    at -= per_word
    out = np.empty(int(per_word.sum()), np.int64)
    out[at] = pos
    within = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
    out[at[multi][r] + within] = w[multi][r] * 8 + c
    return out


def find_record_ends(data: np.ndarray, sep: int, limit: Optional[int] = None) -> np.ndarray:
    """Positions just after each terminator in ``data`` (int64), at most ``limit`` of them,
    scanned in slices so the temporaries stay small."""
    n = len(data)
    if n <= _SCAN_SLICE and limit is None:
        return find_terminators(data, sep) + 1
    parts = []
    found = 0
    for a in range(0, n, _SCAN_SLICE):
        hits = find_terminators(data[a:a + _SCAN_SLICE], sep)
        hits += a + 1
        parts.append(hits)
        found += len(hits)
        if limit is not None and found >= limit:
            break
    ends = np.concatenate(parts) if len(parts) != 1 else parts[0]
    return ends[:limit].copy() if limit is not None and len(ends) > limit else ends


def first_unbalanced_quote(data: np.ndarray, sep: int) -> Optional[int]:
    """The first of the whole records in ``data`` holding an odd number of ``"`` bytes, or
    None: the running parity of quotes is odd at the end of that record first."""
    quotes = data == ord('"')
    if not quotes.any():
        return None
    parity = np.bitwise_xor.accumulate(quotes.view(np.uint8))
    odd = np.flatnonzero(parity[np.flatnonzero(data == sep)])
    return int(odd[0]) if len(odd) else None


def _is_path(item) -> bool:
    return isinstance(item, (str, bytes, os.PathLike))


class Block:
    """Whole records: ``data`` with record i spanning ``ends[i-1]:ends[i]``.

    The reader only counts the terminators of a block (cheap) to cut it; the positions are
    found on first use of :attr:`ends`, in whichever worker thread processes the block, so the
    full newline scan does not run in the one reading thread that feeds every worker."""

    __slots__ = ("index", "data", "source", "sep", "offset", "first", "keys", "_ends", "_count")

    def __init__(self, index: int, data: np.ndarray, ends: Optional[np.ndarray] = None,
                 source: int = 0, sep: int = 10, count: Optional[int] = None, offset: int = 0,
                 first: int = 0, keys: Optional[np.ndarray] = None):
        self.index = index      # block number within its input
        self.offset = offset    # where ``data`` starts in its input (bytes read before it)
        self.first = first      # index of its first record among all inputs' records (the key)
        self.keys = keys        # the records' keys, when known (a nested level's blocks)
        self.data = data        # uint8, exactly the block's records
        self.source = source    # which input the block comes from (blocks never span inputs)
        self.sep = sep
        self._ends = ends
        self._count = count if ends is None else len(ends)

    @property
    def ends(self) -> np.ndarray:
        """int64 exclusive end of each record (found on first use)."""
        if self._ends is None:
            self._ends = find_record_ends(self.data, self.sep)
        return self._ends

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = len(self.ends)
        return self._count


def _cut(data: np.ndarray, sep: int, max_records: int) -> Tuple[int, int]:
    """(records, bytes) of the longest prefix of ``data`` made of at most ``max_records`` whole
    records. Counts terminators per slice (no index arrays) and locates only the last one."""
    counts: List[int] = []
    found = 0
    for a in range(0, len(data), _SCAN_SLICE):
        piece = data[a:a + _SCAN_SLICE]
        c = int(np.count_nonzero(piece == sep))
        if found + c >= max_records:  # the max_records-th terminator is in this slice
            hits = find_terminators(piece, sep)
            return max_records, a + int(hits[max_records - found - 1]) + 1
        found += c
        counts.append(c)
    for i in range(len(counts) - 1, -1, -1):
        if counts[i]:
            a = i * _SCAN_SLICE
            return found, a + int(find_terminators(data[a:a + _SCAN_SLICE], sep)[-1]) + 1
    return 0, 0


class RecordReader:
    """Streams whole records from several inputs as :class:`Block` objects.

    ``capacity`` bounds the bytes of a block and therefore the longest record accepted;
    ``max_records`` bounds the records per block so per-record metadata stays within budget.
    With ``header``, the first record of the first input is set aside as :attr:`header` and the
    first record of every other input is dropped (a warning names inputs whose header differs).
    """

    def __init__(self, inputs: Sequence[Union[PathLike, "Source"]], sep: int = 10, header: bool = False,
                 warn=None, first_source: int = 0, first_record: int = 0, digest: bool = False):
        self.inputs = list(inputs)
        # --manifest: each input's path, bytes, records and XXH3-128 of the bytes read (the
        # decompressed stream), computed as it is read: no pass of its own.
        self.digest = digest
        self.input_entries: List[dict] = []
        self.first_source = first_source  # number of the first input, for Block.source
        self.first_record = first_record  # records of the inputs before these (Block.first)
        self.sep = sep
        self.want_header = header
        self.header: Optional[bytes] = None
        self.quote_reported = False
        self.warn = warn or (lambda msg: None)
        self.bytes_read = 0      # raw bytes consumed from the inputs (for progress)
        self.records = 0
        self.payload = 0         # bytes of records emitted (terminators included)
        for path in self.inputs:
            if _is_path(path):
                check_readable(cast(PathLike, path))
        # What each path input is, learnt once (None for open streams and Sources).
        self.infos = [describe_input(cast(PathLike, p)) if _is_path(p) else None
                      for p in self.inputs]
        check_read_once_given_once(self.inputs)
        # A codec that cannot be loaded is a usage error now, before any input is read.
        check_codecs([os.fspath(cast(PathLike, p)) for p in self.inputs if _is_path(p) and str(p) != "-"])

    def take_header(self, first: bytes, name: str) -> None:
        """An input's first line under ``header``: the first one seen is the header (that of the
        first *non-empty* input: Spark/Hadoop ``part-*`` directories begin with empty files),
        the others are dropped (with a warning if they differ)."""
        if self.header is None:
            self.header = first
        elif first != self.header:
            self.warn(f"{name}: first line differs from the header of the first input; "
                      f"dropped anyway")

    def watch_quotes(self) -> bool:
        """Look for lines with an unbalanced ``"``? Under ``--header``, when the header looks
        like CSV (has a comma), until one is reported: a quoted field holding a line break is
        two records here, which is worth a warning (records are lines, never parsed)."""
        return self.want_header and not self.quote_reported and self.header is not None \
            and b"," in self.header

    def report_quote(self, name: str, where: str) -> None:
        """Warn once that a quote is not closed at ``where`` (``LINE``, or ``near byte N``)."""
        if not self.quote_reported:
            self.quote_reported = True
            self.warn(f"{name}:{where}: a quote is not closed on this line: a quoted CSV field "
                      "spanning lines is cut into separate records (bigshuf shuffles lines, not "
                      "CSV records)")

    def rereadable(self) -> bool:
        """Can every input be read a second time? Only paths of regular files (links followed):
        stdin, FIFOs, /dev/stdin, /proc/self/fd/N, ``<(cmd)`` and streams are read once."""
        return all(info is not None and info.rereadable for info in self.infos)

    def plain_files(self) -> bool:
        """Is every input a plain (uncompressed) regular file, read again at will?"""
        return all(info is not None and info.kind is InputKind.FILE for info in self.infos)

    def known_size(self) -> Optional[int]:
        """Total input bytes if every input is an uncompressed regular file, else None."""
        return self._total_size(compressed_factor=None)

    def estimated_size(self) -> Optional[int]:
        """Best guess of the total record bytes (compressed files count 4x their size)."""
        return self._total_size(compressed_factor=4)

    def estimated_records(self, sample: int = 1 << 16) -> int:
        """Records the inputs would hold if each were like its start (exact counts come
        later). Every input is sampled: an empty or tiny first one must not stand for the
        others. Inputs that cannot be sampled (streams, compressed files) count 32 bytes a
        record of their estimated size."""
        total = 0
        for path, info in zip(self.inputs, self.infos):
            if info is None or info.kind is not InputKind.FILE:
                total += (self._size_of(path, info, 4) or 0) // 32
                continue
            try:
                with open(info.path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    head = f.read(min(sample, size))
            except OSError:
                continue
            if head:
                total += size * (head.count(bytes([self.sep])) + 1) // len(head)
        return total

    def _total_size(self, compressed_factor: Optional[int]) -> Optional[int]:
        sizes = [self._size_of(p, i, compressed_factor) for p, i in zip(self.inputs, self.infos)]
        return None if any(n is None for n in sizes) else sum(cast(List[int], sizes))

    @staticmethod
    def _size_of(path: object, info: Optional[InputInfo], compressed_factor: Optional[int]
                 ) -> Optional[int]:
        """An input's record bytes if known: a plain file's size (compressed: its size times
        the factor, or unknown without one), a Source's declared size; None for streams."""
        if info is None:
            return path.size if isinstance(path, Source) else None
        if info.kind is InputKind.COMPRESSED and compressed_factor is not None \
                and info.disk_bytes is not None:
            return info.disk_bytes * compressed_factor
        return info.size

    def blocks(self, capacity: int, max_records: Optional[int] = None,
               pool=None) -> Generator[Block, None, None]:
        """Yield blocks of at most ``capacity`` bytes and ``max_records`` records.

        With a :class:`~bigshuf.shuffler.buffers.BufferPool` of ``capacity``-byte buffers, each block's
        buffer comes from it and the consumer releases it when done."""
        sep = self.sep
        max_records = max_records or capacity
        carry = np.empty(0, dtype=np.uint8)
        for source, path in enumerate(self.inputs, self.first_source):
            index = 0
            src = _as_source(path)
            hasher = xxhash.xxh3_128() if self.digest else None
            raw = 0
            try:
                file_records = 0
                consumed = 0  # bytes of this input so far, with the terminator given to its end
                skip_header = self.want_header
                eof = False
                target = capacity
                while not eof or len(carry):
                    buf = pool.get() if pool is not None else np.empty(capacity, dtype=np.uint8)
                    n = len(carry)
                    buf[:n] = carry
                    base = consumed - n  # input offset of buf[0]
                    # Read up to `target` bytes; more (up to capacity) only while no record ends.
                    want = max(target, n + (1 << 16))
                    while not eof:
                        want = min(capacity, want)
                        view = memoryview(buf)  # type: ignore[arg-type]
                        got = read_fully(src.stream, view[n:want], src.name)
                        if hasher is not None:
                            hasher.update(view[n:n + got])
                        raw += got
                        self.bytes_read += got
                        consumed += got
                        eof = n + got < want
                        n += got
                        if eof or n == capacity or np.any(buf[len(carry):n] == sep):
                            break
                        want *= 2
                    if n == 0:
                        if pool is not None:
                            pool.release(buf)
                        break
                    data = buf[:n]
                    count, used = _cut(data, sep, max_records + 1)
                    if eof and used != n and count <= max_records:
                        # Final record without terminator: give it one, like shuf. (At end of
                        # input n < capacity, so there is room.)
                        buf[n] = sep
                        n += 1
                        consumed += 1
                        data = buf[:n]
                        count, used = count + 1, n
                    if count == 0:
                        raise InputError(
                            f"line longer than {capacity:,} bytes, the longest this --memory "
                            f"setting allows (raise --memory)", src.name, file_records + 1)
                    if skip_header:
                        skip_header = False
                        first_end = _cut(data, sep, 1)[1]
                        self.take_header(bytes(data[:first_end]), src.name)
                        file_records += 1
                        base += first_end
                        data = data[first_end:]
                        count, used = count - 1, used - first_end
                        if count == 0:
                            carry = data.copy() if not eof else np.empty(0, np.uint8)
                            if pool is not None:
                                pool.release(buf)
                            continue
                    if count > max_records:
                        count, used = _cut(data, sep, max_records)
                    # Tiny records: read only about what max_records of them need next time, so
                    # the unread tail (copied into the next buffer) stays small. Depends only on
                    # the data, so blocks are the same for a file, a pipe or a cluster task.
                    target = min(capacity, max(1 << 16, used * 5 // 4 + 1)) \
                        if count == max_records else capacity
                    carry = data[used:].copy() if used < len(data) else np.empty(0, np.uint8)
                    if self.watch_quotes():
                        bad = first_unbalanced_quote(data[:used], sep)
                        if bad is not None:
                            self.report_quote(src.name, str(file_records + bad + 1))
                    file_records += count
                    self.records += count
                    self.payload += used
                    yield Block(index, data[:used], None, source, sep, count, base,
                                self.first_record + self.records - count)
                    index += 1
                    del buf, data
                self.input_entries.append({
                    "path": os.fspath(cast(PathLike, path)) if _is_path(path) else src.name, "bytes": raw,
                    "records": file_records,
                    "digest": None if hasher is None else hasher.hexdigest()})
            finally:
                src.close()


def read_all_lines(path: PathLike, sep: int = 10) -> List[bytes]:
    """Every record of a (small) input as bytes objects, terminators included. For tests and
    small tools only: the engine never holds one Python object per record."""
    reader = RecordReader([path], sep)
    out: List[bytes] = []
    for block in reader.blocks(1 << 24):
        starts = np.concatenate([[0], block.ends[:-1]])
        raw = block.data.tobytes()
        out.extend(raw[s:e] for s, e in zip(starts.tolist(), block.ends.tolist()))
    return out
