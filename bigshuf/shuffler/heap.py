"""glibc's malloc told to keep what numpy frees while the engine runs.

The phases allocate and free per-record arrays of a few MB for every block and unit (ends,
orders, lengths, a fancy index's temporary). With glibc's defaults, a worker thread's arena gives
the top of its heap back (``madvise``) whenever it frees more than 128 KB, and the next block
faults the same pages in again and the kernel clears them: on 1 GiB of short lines at
``--memory 256M``, 630,000 page faults and ~1.5 s of system time out of ~7 s of CPU. A fixed mmap
threshold above those arrays (they come from the arenas, not from one ``mmap`` each) and a top
pad of half a block (what an arena keeps beyond its top chunk) bring it to ~35,000 faults.

The pad is sized by the budget (a block is ``--memory``/16), so the memory kept is a few per
cent of it; peak RSS stays within the budget's bound (``scripts/bench_memory.py``). The settings
are process-wide, so :func:`roomy_heap` puts glibc's defaults back on exit and trims the heap:
a library caller's process is left as it was. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from typing import Iterator, Optional

#: mallopt(3) parameters.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: glibc's defaults (mallopt(3)): put back on exit. (The default mmap threshold grows by itself
#: with what is freed; once set it stays fixed, so 128 KB is its starting value.)
DEFAULT_TOP_PAD = 128 << 10
DEFAULT_MMAP_THRESHOLD = 128 << 10
#: Allocations up to this come from the arenas: glibc's largest mmap threshold (32 MB on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: The top pad's bounds.
MIN_PAD, MAX_PAD = 128 << 10, 64 << 20

_lock = threading.Lock()
_users = 0


def _libc_mallopt():
    """glibc's mallopt, looked up in the running process; None elsewhere (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return None  # not glibc: its mallopt ignores these parameters or has none
        f, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    f.argtypes, f.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return f, trim


_mallopt = _libc_mallopt()


def top_pad(block_bytes: int) -> int:
    """The arenas' top pad for blocks of ``block_bytes``: half a block, within bounds."""
    return max(MIN_PAD, min(MAX_PAD, block_bytes // 2))


@contextlib.contextmanager
def roomy_heap(block_bytes: int, mallopt=None) -> Iterator[Optional[int]]:
    """While inside, freed arrays up to 32 MB stay with the process (see the module's
    docstring); yields the pad set, or None where glibc is not there. Nested or concurrent
    uses (threads running shuffles) keep the first one's settings; the last to leave puts the
    defaults back."""
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
    try:
        yield pad
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                set_(M_TOP_PAD, DEFAULT_TOP_PAD)
                set_(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
                trim(0)
