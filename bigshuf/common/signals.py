"""The signal policy of a run: stop cleanly on INT, TERM, HUP and USR1; never die half-written.

While a :class:`SignalGuard` is active (main thread only):

- SIGINT, SIGTERM, SIGHUP and SIGUSR1 stop the run: everything written so far is removed and
  :class:`~bigshuf.common.errors.Interrupted` reports it (exit 128 + the signal number). Only the
  first one counts; later ones cannot break into the cleanup it started.
- Once the outputs are complete and being renamed (:meth:`SignalGuard.defer`), they are ignored:
  the run finishes and exits 0, and a set of shards never ends half old, half new.
- SIGXFSZ is ignored, so a file-size limit surfaces as an EFBIG write error instead of killing
  the process with a half-written file. SIGPIPE stays ignored (Python's default): writing to a
  closed pipe raises BrokenPipeError, and the CLI exits quietly with 141 like ``shuf | head``.

Where the exception is raised matters. Raised between a lock's acquire and the ``with`` block
that releases it (inside threading or executor internals), it leaves the lock taken and the
cleanup hangs. So when the main thread is inside those modules, the handler only calls ``stop()``
(which sets a flag) and the run stops at its next check (within 0.2 s); anywhere else (a blocking
``open`` of a FIFO, a read of a slow pipe, a write to a stalled reader) it raises at once.

A process that *is* the command line (:func:`own_process`) keeps ignoring these signals after a
run that published its outputs or was already stopped, until it exits: a late signal can then
neither turn a success into a failure nor change the reported signal.
"""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any, Callable, Dict, List, Optional

from bigshuf.common.errors import Interrupted

STOPPING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1")
                 if hasattr(signal, name))
_INTERNALS = tuple(os.path.join(os.path.dirname(threading.__file__), name)
                   for name in ("threading.py", "queue.py", os.path.join("concurrent", "futures")))
#: Stopping signals this process was started with ignored (``nohup`` ignores SIGHUP; a shell
#: ignores SIGINT for a background job): they stay ignored, as ``sort`` leaves them.
IGNORED_AT_START = frozenset(sig for sig in STOPPING if signal.getsignal(sig) == signal.SIG_IGN)
_OWN_PROCESS = [False]
_DEPTH = [0]  # guards active in the main thread


def own_process() -> None:
    """Declare that this process is the bigshuf command (see the module docstring)."""
    _OWN_PROCESS[0] = True


_OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the bigshuf package
_THIRD_PARTY = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


def _in_internals(frame: Optional[FrameType]) -> bool:
    """Is the main thread inside code that may hold a lock it releases only on normal exit:
    threading/queue/executor internals, or any third-party library (a threaded compressor,
    Dask)? Raising there can leave that lock taken and hang the cleanup."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_INTERNALS):
            return True
        if any(t in name for t in _THIRD_PARTY) and not name.startswith(_OWN) \
                and os.sep + "click" + os.sep not in name:  # click only calls the command
            return True
        frame = frame.f_back
    return False


class SignalGuard:
    """Context manager installing the policy above; restores the old handlers on exit."""

    def __init__(self, stop: Optional[Callable[[], None]] = None):
        self.stop = stop
        self.saved: Dict[int, Any] = {}
        self.deferred = False
        self.fired: List[int] = []

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is not threading.main_thread():
            return self
        _DEPTH[0] += 1
        for sig in STOPPING:
            if sig not in IGNORED_AT_START:
                self.saved[sig] = signal.signal(sig, self._handler)
        if hasattr(signal, "SIGXFSZ"):
            self.saved[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return self

    def _handler(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.fired or self.deferred:
            return
        self.fired.append(signum)
        if self.stop is not None and _in_internals(frame):
            self.stop()
            return
        raise self.error()

    def error(self, partial: bool = False) -> Interrupted:
        """The error to report; ``partial``: some output already went to a stream (stdout, a
        pipe, a device) and cannot be taken back."""
        return Interrupted(self.fired[0], signal.Signals(self.fired[0]).name, partial)

    def defer(self) -> None:
        """Ignore the stopping signals from now on: the outputs are complete and being renamed.
        Raises :class:`Interrupted` if a signal came before."""
        if self.fired:
            raise self.error()
        self.deferred = True

    def __exit__(self, *exc: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        _DEPTH[0] -= 1
        # Only the outermost guard ends the run (an --aligned run holds one guard per input
        # inside its own): an inner one hands the signals back to it.
        keep_ignoring = _OWN_PROCESS[0] and (self.deferred or bool(self.fired)) and not _DEPTH[0]
        for sig, old in self.saved.items():
            signal.signal(sig, signal.SIG_IGN if keep_ignoring and sig in STOPPING else old)
