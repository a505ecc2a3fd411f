"""glibc's malloc told to keep what numpy frees while the engine runs.

The phases allocate and free per-record arrays of a few MB for every block and unit (ends,
orders, lengths, a fancy index's temporary). With glibc's defaults a worker thread's arena gives
the top of its heap back (``madvise``) as soon as it frees more than its small top pad (128 KB),
and the next block faults the same pages in again while the kernel clears them: on 1 GiB of short
lines at ``--memory 256M``, 630,000 page faults and ~1.3 s of system time out of ~7 s of CPU.
Arrays up to 32 MB taken from the arenas (a fixed mmap threshold), a top pad of half a block
(what a thread's arena keeps when it shrinks) and a trim threshold of two blocks (a threshold of
one block still left ~150,000 faults) bring it to ~35,000. Held by the engine's scatter and
gather only: the input method's windows are its own (its peak RSS rose by 19 MiB with it).

Both are sized by the budget (a block is ``--memory``/16), so what is kept is a small share of
it; peak RSS stays within the budget's bound (``scripts/bench_memory.py``). The settings are
process-wide: on exit :func:`roomy_heap` puts the pad back to glibc's default and leaves the
thresholds where glibc's own dynamic rule puts them once a 32 MB array has been freed (mmap 32
MB, trim 64 MB: the dynamic rule cannot be switched back on), then trims the heap, so a library
caller's process keeps no more than it would after any large numpy work. Elsewhere than glibc it
does nothing.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

from bigshuf.common.heap import GLIBC

#: mallopt(3) parameters.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: glibc's default top pad (mallopt(3)), put back on exit.
DEFAULT_TOP_PAD = 128 << 10
#: Allocations up to this come from the arenas: glibc's largest mmap threshold (32 MB on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: The top pad's bounds.
MIN_PAD, MAX_PAD = 128 << 10, 64 << 20

_lock = threading.Lock()
_users = 0


#: glibc's (mallopt, malloc_trim), or None where the C library is not glibc.
_mallopt = (GLIBC.mallopt, GLIBC.malloc_trim) if GLIBC is not None else None


def top_pad(block_bytes: int) -> int:
    """The arenas' top pad for blocks of ``block_bytes``: half a block, within bounds."""
    return max(MIN_PAD, min(MAX_PAD, block_bytes // 2))


@contextlib.contextmanager
def roomy_heap(block_bytes: int, mallopt=None) -> Iterator[Optional[int]]:
    """While inside, freed arrays up to 32 MB stay with the process (see the module's
    docstring); yields the pad set, or None where glibc is not there. Nested or concurrent
    uses (threads running shuffles) keep the first one's settings; the last to leave sets
    what the module's docstring says and trims."""
    global _users
    calls = mallopt if mallopt is not None else _mallopt
    if calls is None:
        yield None
        return
    set_, trim = calls
    pad = top_pad(block_bytes)
    with _lock:
        _users += 1
        if _users == 1:
            set_(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            set_(M_TOP_PAD, pad)
            set_(M_TRIM_THRESHOLD, 4 * pad)
    try:
        yield pad
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                set_(M_TOP_PAD, DEFAULT_TOP_PAD)
                set_(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)
                trim(0)
