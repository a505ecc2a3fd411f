"""glibc's malloc told to give freed arrays back while a search runs.

The budget counts the arrays a step holds, not what the allocator keeps after they are freed.
With glibc's defaults, freeing a large (mmapped) array raises the mmap threshold to its size, so
later arrays of up to that size come from the heaps -- the main one and each worker thread's
arena -- and a freed one stays in the process unless it is at the top of its heap: ``threshold
-S 100M`` on 150 000 x 200 rows peaked at 168 MiB (bound 164) after the sample's reservoir had
been freed, 126 MiB with arrays over 1 MiB always mapped and unmapped. On exit the threshold
goes where glibc's own dynamic rule leaves it after a 32 MB array (as ``shuffler/heap.py``
does) and the heap is trimmed. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Iterator

#: mallopt(3)'s parameter, and the sizes used.
M_MMAP_THRESHOLD = -3
MAPPED_ABOVE = 1 << 20
GLIBC_LARGEST_THRESHOLD = 32 << 20


def _libc():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return None
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


@contextlib.contextmanager
def returned_arrays() -> Iterator[None]:
    """While inside, arrays over 1 MiB are mapped on their own and unmapped when freed."""
    if _LIBC is None:
        yield
        return
    _LIBC.mallopt(M_MMAP_THRESHOLD, MAPPED_ABOVE)
    try:
        yield
    finally:
        _LIBC.mallopt(M_MMAP_THRESHOLD, GLIBC_LARGEST_THRESHOLD)
        _LIBC.malloc_trim(0)
