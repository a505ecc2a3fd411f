"""The signal policy of a run: SIGINT/SIGTERM end it cleanly, SIGXFSZ becomes an error.

While a :class:`SignalGuard` is active (main thread only), SIGINT and SIGTERM lead to
:class:`~bigshuf.common.errors.Interrupted` (exit 130/143) after cleanup, and SIGXFSZ is ignored
so that a file-size limit surfaces as an EFBIG write error instead of killing the process with a
half-written file.

Where the exception is raised matters. An exception between a lock's acquire and the ``with``
block that releases it (threading and executor internals) leaves the lock taken, and the cleanup
then hangs. So with a ``stop`` callback the handler does not raise: it calls ``stop()`` (which
must take no lock: set a flag) and the main loop stops at its next check. Only in functions
listed in ``raise_in`` (a blocking read of a slow pipe) is it raised on the spot.
"""
from __future__ import annotations

import signal
import threading
from types import CodeType
from typing import Any, Callable, Collection, Dict, List, Optional

from bigshuf.common.errors import Interrupted

STOPPING = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """Context manager installing the policy above; restores the old handlers on exit."""

    def __init__(self, stop: Optional[Callable[[], None]] = None,
                 raise_in: Collection[CodeType] = ()):
        self.stop = stop
        self.raise_in = frozenset(raise_in)
        self.saved: Dict[int, Any] = {}
        self.deferred = False
        self.fired: List[int] = []

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in STOPPING:
            self.saved[sig] = signal.signal(sig, self._handler)
        if hasattr(signal, "SIGXFSZ"):
            self.saved[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        # Only the first signal counts: a second one (Ctrl-C twice, SIGINT then SIGTERM) must
        # not break into the cleanup the first started.
        if self.fired or self.deferred:
            return
        self.fired.append(signum)
        if self.stop is None or (frame is not None and frame.f_code in self.raise_in):
            raise self.error()
        self.stop()

    def error(self) -> Interrupted:
        return Interrupted(self.fired[0], signal.Signals(self.fired[0]).name)

    def defer(self) -> None:
        """Ignore SIGINT/SIGTERM from now on: the outputs are complete and being renamed, and
        a set of shards must not end half new, half old (the run then finishes, exit 0).
        Raises :class:`Interrupted` if a signal came before."""
        if self.fired:
            raise self.error()
        self.deferred = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)
