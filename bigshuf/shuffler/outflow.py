"""The gather's output side: one thread writes the finished units, in unit order.

A gather worker reads a unit, sorts it, and hands the sorted bytes over here; it then starts
on its next unit while this thread writes (issue 21: in a memory cgroup with cold caches the
writes took ~45% of the gather and were not overlapped with the reads and sorts, because each
worker wrote its own unit). Units are written in order (so a stream gets them in turn, and a
file is written front to back), and the writer holds at most ``depth`` units: a worker with a
later unit waits until the units before it are written, so the memory held is bounded by the
planner's share (:attr:`bigshuf.shuffler.plan.Geometry.writer_units`).

When the page cache cannot hold the output next to the temporary file (a tight memory cgroup),
the written ranges are handed to the disk at once and dropped from the cache a little later
(:class:`WriteBehind`): memory reclaim then finds clean pages instead of waiting for dirty ones.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional

#: Seconds between two looks at the stop flag while waiting (a signal handler only sets a
#: flag; stop() and every hand-over notify at once).
POLL = 0.2
#: Bytes written after a range before its pages are dropped, in units of the gather (the range
#: is on its way to the disk by then: dropping waits for nothing).
LAG_UNITS = 2
#: The read-ahead window: this share of the page cache's room (when the gather starts), at
#: least one unit and at most AHEAD_UNITS.
AHEAD_SHARE = 8
AHEAD_UNITS = 4


class Cancelled(Exception):
    """Raised inside workers (and by the writer's waits) once the run is being torn down."""


class UnitWriter:
    """Writes items 0, 1, 2, ... in that order on one thread; :meth:`put` hands one over.

    ``write(item)`` does the writing (and frees the item's buffer); an item ``None`` is a unit
    written by someone else (an oversized bucket gathered one level down), only counted. The
    first error of ``write`` stops the writer and is raised again by every later :meth:`put`
    and by :meth:`finish`.
    """

    def __init__(self, write: Callable[[Any], None], depth: int, stopping: Callable[[], bool],
                 name: str = "bigshuf-writer"):
        self._write = write
        self.depth = max(1, depth)
        self.stopping = stopping  # True once the run is torn down (a signal, an error)
        self.cond = threading.Condition()
        self.held: Dict[int, Any] = {}
        self.next = 0           # the item written next (all before it are written)
        self.error: Optional[BaseException] = None
        self.stopped = False
        self.busy = False       # an item is being written
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    # -- the workers' side ------------------------------------------------------------------
    def put(self, i: int, item: Any) -> None:
        """Hand item ``i`` over; waits while it is ``depth`` or more items ahead of the writer."""
        with self.cond:
            while i - self.next >= self.depth and not self._over():
                self.cond.wait(POLL)
            self._raise()
            self.held[i] = item
            self.cond.notify_all()

    def finish(self) -> None:
        """Wait until every item handed over is written, then stop the thread."""
        self.drain()
        self.stop()

    def drain(self) -> None:
        """Wait until every item handed over is written (the thread goes on)."""
        with self.cond:
            while (self.held or self.busy) and not self._over():
                self.cond.wait(POLL)
            self._raise()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the thread (items not yet written are dropped) and wait for it a while."""
        with self.cond:
            self.stopped = True
            self.held.clear()
            self.cond.notify_all()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    # -- the thread --------------------------------------------------------------------------
    def _over(self) -> bool:
        return self.stopped or self.error is not None or self.stopping()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
        if self.stopped or self.stopping():
            raise Cancelled()

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.next not in self.held and not self._over():
                    self.cond.wait(POLL)
                if self._over():
                    return
                item = self.held.pop(self.next)
                self.busy = True
            try:
                if item is not None:
                    self._write(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the workers and the driver
                with self.cond:
                    self.error = exc
                    self.busy = False
                    self.held.clear()
                    self.cond.notify_all()
                return
            with self.cond:
                self.next += 1
                self.busy = False
                self.cond.notify_all()


class WriteBehind:
    """Written ranges of a file handed to the disk at once, and dropped from the page cache
    once ``lag`` more bytes were written after them (they are clean or nearly so by then).

    For a tight page cache only (a memory cgroup smaller than the temp file plus the output):
    there, reclaim would otherwise find the output's pages dirty and wait for them, stalling
    every reader and writer of the cgroup. ``start(offset, n)`` and ``forget(offset, n)`` are
    the file's (``OutputFile.start_writeback`` / ``forget``); ranges come in file order."""

    def __init__(self, start: Callable[[int, int], None], forget: Callable[[int, int], None],
                 lag: int):
        self._start = start
        self._forget = forget
        self.lag = lag
        self.pending: list = []   # written ranges not yet dropped, oldest first
        self.pending_bytes = 0

    def written(self, offset: int, n: int) -> None:
        if n <= 0:
            return
        self._start(offset, n)
        self.pending.append((offset, n))
        self.pending_bytes += n
        while self.pending and self.pending_bytes - self.pending[0][1] >= self.lag:
            o, k = self.pending.pop(0)
            self.pending_bytes -= k
            self._forget(o, k)


class ReadAhead:
    """Asks the store for the units' pieces ahead of the workers, on a thread of its own.

    ``fadvise(WILLNEED)`` returns only once the kernel has queued the reads, which in a tight
    memory cgroup means after it reclaimed the pages to read into: 1.5-1.8 s of a 4 s gather
    when the thread handing out the units asked, so the next unit waited for a worker. Here the
    units (in order) are asked for while they start less than ``window`` bytes after the
    furthest unit a worker has begun to read (:meth:`reading`); ``ask(unit)`` asks for one.
    """

    def __init__(self, units: List[Any], ask: Callable[[Any], None], window: int,
                 stopping: Callable[[], bool], name: str = "bigshuf-readahead"):
        self.units = units
        self.ask = ask
        self.window = window
        self.stopping = stopping
        self.frontier = 0   # stream offset where the furthest unit being read ends
        self.stopped = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def reading(self, out_offset: int, nbytes: int) -> None:
        """A worker begins to read the unit at ``out_offset`` of ``nbytes`` bytes."""
        with self.cond:
            if out_offset + nbytes > self.frontier:
                self.frontier = out_offset + nbytes
                self.cond.notify_all()

    def stop(self, timeout: Optional[float] = None) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join(timeout)

    def _run(self) -> None:
        for unit in self.units:
            with self.cond:
                while unit.out_offset >= self.frontier + self.window and not self._over():
                    self.cond.wait(POLL)
                if self._over():
                    return
            try:
                self.ask(unit)
            except Exception:  # noqa: BLE001 - a hint: the reads themselves report errors
                return

    def _over(self) -> bool:
        return self.stopped or self.stopping()
