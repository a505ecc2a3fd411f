"""Progress bars on stderr (tqdm): shown when stderr is a terminal, or when forced.

The one place bars are made: :func:`bar` for counted steps (tasks, grid points) and
:class:`Progress` for the two byte-counted phases of a shuffle.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Optional


def progress_enabled(flag: Optional[bool]) -> bool:
    """``--progress``/``--no-progress`` win; by default only when stderr is a TTY."""
    if flag is not None:
        return flag
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: Optional[int], desc: str, enabled: Optional[bool], unit: str = "it") -> Any:
    """A tqdm bar on stderr (or a do-nothing one when disabled): ``update(n)``, ``close()``."""
    if not progress_enabled(enabled):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


class Progress:
    """One bar per phase, in bytes. Thread-safe updates; a no-op when disabled."""

    def __init__(self, enabled: Optional[bool], total_in: Optional[int],
                 first: str = "scatter", second: str = "gather"):
        self.enabled = progress_enabled(enabled)
        self.lock = threading.Lock()
        self.bar = None
        self.seen = 0
        self.second = second
        if self.enabled:
            from tqdm import tqdm
            self._tqdm = tqdm
            self.bar = tqdm(total=total_in, desc=first, unit="B", unit_scale=True,
                            unit_divisor=1024, file=sys.stderr, dynamic_ncols=True, leave=False)

    def scattered(self, total_read: int) -> None:
        """Report the total bytes read so far."""
        if self.bar is not None:
            with self.lock:
                self.bar.update(total_read - self.seen)
                self.seen = total_read

    def start_gather(self, total: Optional[int]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = self._tqdm(total=total, desc=self.second, unit="B", unit_scale=True,
                                  unit_divisor=1024, file=sys.stderr, dynamic_ncols=True,
                                  leave=False)

    def gathered(self, nbytes: int) -> None:
        if self.bar is not None:
            with self.lock:
                self.bar.update(nbytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
