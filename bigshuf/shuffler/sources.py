"""Records that come from the command line, not from files: ``-e ARG...`` and ``-i LO-HI``.

Both are offered to the engine as one input stream (source 0) of known size, generated on the
fly, so a full shuffle of a range larger than memory is an ordinary engine run (scatter to the
temporary file, gather) and memory stays bounded. ``-i LO-HI -n K`` never generates the range
(see :mod:`bigshuf.shuffler.methods.direct`).
"""
from __future__ import annotations

from typing import Any, Iterator, List, Sequence

from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.records import Source

#: Numbers formatted per chunk of a generated range (bounds the chunk's bytes to ~1.3 MB).
RANGE_CHUNK = 1 << 16


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


def record_inputs(opts: ShuffleOptions) -> List[Any]:
    """What a RecordReader reads: the inputs, or a fresh stream of the -e/-i records (a new one
    at every call, so a second pass reads them again)."""
    if not opts.generated:
        return list(opts.inputs)
    if opts.echo is not None:
        return [echo_source(opts.echo_lines, opts.sep)]
    lo, hi = opts.input_range
    return [range_source(lo, hi, opts.sep)]
