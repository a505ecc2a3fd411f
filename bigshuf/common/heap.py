"""glibc's allocator, reached once through ctypes (None elsewhere: musl, macOS), for the two
places that tell it what to keep: the engine's phases (``shuffler/heap.py``) and, here, freed
arrays handed back to the system between a reading pass and a search (``threshold``).

The budget counts the arrays a step holds, not what the allocator keeps after they are freed.
With glibc's defaults, freeing a large (mmapped) array raises the mmap threshold to its size, so
later arrays of up to that size come from the heaps and a freed one stays in the process unless it
is at the top of its heap: ``threshold -S 100M`` on 150 000 x 200 rows peaked at 168-170 MiB
(bound 164) with the sample's reservoir and chunks kept that way under the search's own arrays;
150 MiB with them trimmed. Unmapping every array over 1 MiB instead (a fixed mmap threshold) gave
126 MiB but 5-7 million page faults and 10-14 s of system time on a 100 000-row search (1 s
before). Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import sys
from typing import Any


def _libc() -> Any:
    """glibc's functions in the running process, with their C types; None where not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return None
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


GLIBC = _libc()


def give_back_freed() -> None:
    """Hand the pages of freed arrays back to the system (``malloc_trim``: every arena, not
    only the top of each heap), e.g. the reading pass's reservoir and chunks before a search."""
    if GLIBC is not None:
        GLIBC.malloc_trim(0)
