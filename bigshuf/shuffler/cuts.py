"""Where :meth:`RecordReader.blocks` cuts a regular file, found by reading only around the cuts.

The reader fills a block-sized buffer from the start of the next record and keeps it up to its
last terminator, so each cut depends on the one before: the reading thread has to find them in
order. Read by position, a file does not need the whole buffer for that, only its tail (back to
the last terminator) — a few KB per cut instead of a full copy and scan in that one thread; the
blocks' bytes are then read and scanned by the workers in parallel (the input method's pass 0).

Same cuts as the reader when no block reaches ``max_records`` records (the reader then cuts by
count, and sizes its next read by it): the caller checks each block's count and gives up
otherwise. None here when the reader would refuse the input (a line longer than a block), so
that the reader reports it its usual way.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

#: Bytes read at a time while looking for a terminator.
STEP = 1 << 16


class Moved(Exception):
    """The file ended earlier than its size said: it is changing."""


def plan_cuts(fd: int, size: int, capacity: int, sep: int,
              skip_header: bool) -> Optional[Tuple[List[Tuple[int, int]], Optional[bytes]]]:
    """(blocks, header line) of one input of ``size`` bytes: each block as (offset, bytes),
    the bytes counting the terminator the reader gives a last line without one; the first
    line (with its terminator) if ``skip_header``, else None."""
    blocks: List[Tuple[int, int]] = []
    header: Optional[bytes] = None
    start = 0
    if skip_header and size:
        end = _first_end(fd, 0, min(size, capacity), sep)
        if end is None:  # no terminator in the first buffer: all of a short file, or too long
            if size >= capacity:
                return None
            return [], _pread(fd, size, 0) + bytes([sep])
        header, start = _pread(fd, end, 0), end
    buffer_start = 0  # the reader's buffer starts here (before the header, for the first block)
    while start < size:
        if size - buffer_start < capacity:  # the buffer reaches the end of the file
            last = _pread(fd, 1, size - 1)
            blocks.append((start, size - start + (last != bytes([sep]))))
            break
        last_end = _last_end(fd, start, buffer_start + capacity, sep)
        if last_end is None:
            if buffer_start < start:  # the buffer held only the header: read on from it
                buffer_start = start
                continue
            return None  # a line longer than a block
        blocks.append((start, last_end - start))
        start = buffer_start = last_end
    return blocks, header


def _pread(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise Moved()
    return data


def _first_end(fd: int, lo: int, hi: int, sep: int) -> Optional[int]:
    """Position after the first terminator in [lo, hi), or None."""
    pos = lo
    while pos < hi:
        chunk = _pread(fd, min(STEP, hi - pos), pos)
        i = chunk.find(sep)
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)
    return None


def _last_end(fd: int, lo: int, hi: int, sep: int) -> Optional[int]:
    """Position after the last terminator in [lo, hi), or None."""
    pos = hi
    while pos > lo:
        a = max(lo, pos - STEP)
        i = _pread(fd, pos - a, a).rfind(sep)
        if i >= 0:
            return a + i + 1
        pos = a
    return None
