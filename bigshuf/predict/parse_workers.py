"""JSONL rows of the common shape parsed on forked worker processes, counted in ``--memory``.

orjson holds the GIL while it builds the Python floats of a row, and that (with ``np.array`` over
them) is most of a big JSONL pass, so the rows are cut into pieces that worker processes parse:
the reading process sends a piece's byte range in the file (24 bytes; the worker reads the text
itself), the worker answers with its labels and float64 values, or "declined" when any row is not
of the common shape -- the reading process then parses that whole chunk itself, exactly as
without workers (so errors name the same first bad line, in file order). Workers run the same
parse function as the reading process, so the values are the same bits.

Memory: every worker is charged in ``Budget.parse_plan`` at the reading process's RSS when it is
forked (its copy-on-write pages count again in its own RSS) plus its piece, so the budget decides
how many workers and how large a piece; when it holds none, the file is parsed in-process.

Lifetime: workers ignore the stopping signals (the reading process handles them and kills its
workers by pid in ``close``), die with the reading process (``PR_SET_PDEATHSIG``), and exit with
``os._exit`` (no cleanup of the parent's state). They are forked only from a process running one
thread (forking a threaded process can copy a held lock).
"""
from __future__ import annotations

import ctypes
import itertools
import os
import signal
import struct
import threading
from collections import deque
from typing import Callable, Deque, Iterator, List, Optional, Tuple

import numpy as np

from bigshuf.common.cpus import usable_cpus
from bigshuf.common.signals import STOPPING
from bigshuf.predict.formats import BOM

#: Files smaller than this are parsed in-process (forking and the first pieces cost ~0.05 s).
MIN_FILE_BYTES = 8 << 20
#: At most this many workers (parsing scales little beyond, and each costs its RSS).
MAX_WORKERS = 4
#: Pieces in flight per worker: one being parsed, one waiting (no idle gap between pieces).
DEPTH = 2
BLOCK_HINT = 1 << 22  # as ``formats.jsonl_line_blocks``: the same lines, the same numbers

Parsed = Tuple[np.ndarray, np.ndarray]  # (values n x width float64, labels int64)
ParseFn = Callable[[List[bytes]], Optional[Parsed]]
_REQUEST = struct.Struct("<qqq")  # start, end, rows
_HEADER = struct.Struct("<qq")  # rows (-1: declined), width


def wanted_workers() -> int:
    """Workers to ask the budget for: the CPUs this process may use, capped (none on one CPU)."""
    cpus = usable_cpus()
    return 0 if cpus < 2 else min(MAX_WORKERS, cpus)


def can_fork() -> bool:
    """Only a single-threaded process forks (threads may hold locks the child would inherit)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def current_rss() -> int:
    """This process's resident set size in bytes (what a forked worker starts with)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 256 << 20  # unknown: charge a generous interpreter


def chunk_spans(path: str, size: int, piece: int) -> Iterator[Tuple[List[int], List[bytes], List[Tuple[int, int, int]]]]:
    """The chunks ``formats.jsonl_line_blocks`` regrouped by ``size`` would give -- (line numbers,
    lines) -- with the byte ranges of their pieces of at most ``piece`` lines: (start, end, rows)."""
    numbers: List[int] = []
    lines: List[bytes] = []
    starts: List[int] = []
    lineno, offset = 1, 0
    with open(path, "rb") as f:
        while True:
            block = f.readlines(BLOCK_HINT)
            if block:
                if lineno == 1 and block[0].startswith(BOM):
                    block[0] = block[0][len(BOM):]
                    offset = len(BOM)
                pos = list(itertools.accumulate(map(len, block), initial=offset))
                offset = pos[-1]
                kept = [i for i, raw in enumerate(block) if raw and not raw.isspace()]
                if len(kept) == len(block):
                    numbers.extend(range(lineno, lineno + len(block)))
                    lines.extend(block)
                    starts.extend(pos[:-1])
                else:
                    numbers.extend(lineno + i for i in kept)
                    lines.extend(block[i] for i in kept)
                    starts.extend(pos[i] for i in kept)
                lineno += len(block)
            while len(lines) >= size or (not block and lines):
                n = min(size, len(lines))
                pieces = [(starts[k], starts[min(k + piece, n) - 1] + len(lines[min(k + piece, n) - 1]),
                           min(k + piece, n) - k) for k in range(0, n, piece)]
                yield numbers[:n], lines[:n], pieces
                del numbers[:n], lines[:n], starts[:n]
            if not block:
                return


class WorkerLost(Exception):
    """A worker ended without answering (killed, out of memory): parse in-process instead."""


class ParseWorkers:
    """``n`` forked workers parsing byte ranges of ``path`` with ``parse``; answers in the order
    the ranges were submitted (piece i goes to worker i mod n, each worker answers in order)."""

    def __init__(self, path: str, n: int, parse: ParseFn, width: int):
        self.path, self.parse, self.width = path, parse, width
        self.pids: List[int] = []
        self.requests: List[int] = []
        self.answers: List[int] = []
        self.sent = self.received = 0
        parent = os.getpid()
        try:
            for _ in range(n):
                req_r, req_w = os.pipe()
                ans_r, ans_w = os.pipe()
                # Blocked across the fork: a signal must not run the parent's handler in the
                # worker before it ignores them (the handler's exception would unwind the
                # caller's frames there); the parent gets its pending signal at the unblock.
                signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
                try:
                    pid = os.fork()
                except BaseException:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
                    raise
                if pid == 0:  # the worker: never returns into the caller's frames
                    code = 1
                    try:
                        for sig in STOPPING:
                            signal.signal(sig, signal.SIG_IGN)
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
                        _die_with_parent(parent)
                        for fd in (req_w, ans_r, *self.requests, *self.answers):
                            os.close(fd)
                        self._serve(req_r, ans_w)
                        code = 0
                    finally:
                        os._exit(code)
                self.pids.append(pid)
                self.requests.append(req_w)
                self.answers.append(ans_r)
                os.close(req_r)
                os.close(ans_w)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
        except BaseException:
            self.close()
            raise

    @property
    def in_flight(self) -> int:
        return self.sent - self.received

    def submit(self, start: int, end: int, rows: int) -> None:
        try:
            os.write(self.requests[self.sent % len(self.pids)], _REQUEST.pack(start, end, rows))
        except OSError:
            raise WorkerLost() from None
        self.sent += 1

    def result(self) -> Optional[Parsed]:
        """The answer to the oldest piece not yet answered: (values, labels), or None (declined)."""
        fd = self.answers[self.received % len(self.pids)]
        rows, width = _HEADER.unpack(_read_exact(fd, _HEADER.size))
        self.received += 1
        if rows < 0:
            return None
        labels = np.empty(rows, dtype=np.int64)
        values = np.empty((rows, width), dtype=np.float64)
        _read_into(fd, labels)
        _read_into(fd, values)
        return values, labels

    def close(self) -> None:
        """Kill and reap every worker (by its pid), close the pipes."""
        for fd in self.requests + self.answers:
            os.close(fd)
        self.requests, self.answers = [], []
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except InterruptedError:  # pragma: no cover - PEP 475 retries
                    continue
                except ChildProcessError:
                    break
        self.pids = []

    def __enter__(self) -> "ParseWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self, requests: int, answers: int) -> None:
        with open(self.path, "rb") as f:
            while True:
                msg = _read_exact(requests, _REQUEST.size, eof_ok=True)
                if not msg:
                    return
                start, end, rows = _REQUEST.unpack(msg)
                f.seek(start)
                text = f.read(end - start)
                lines = [raw for raw in text.split(b"\n") if raw and not raw.isspace()]
                del text
                parsed = self.parse(lines) if len(lines) == rows else None
                del lines
                if parsed is None:
                    _write_all(answers, _HEADER.pack(-1, 0))
                    continue
                values, labels = parsed
                _write_all(answers, _HEADER.pack(len(values), self.width))
                _write_all(answers, memoryview(np.ascontiguousarray(labels, dtype=np.int64)).cast("B"))
                _write_all(answers, memoryview(np.ascontiguousarray(values, dtype=np.float64)).cast("B"))
                del parsed, values, labels


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when the reading process dies; if it already has, go."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: EOF on the pipe still ends it
        pass
    if os.getppid() != parent:
        os._exit(0)


def _read_exact(fd: int, n: int, eof_ok: bool = False) -> bytes:
    parts: List[bytes] = []
    got = 0
    while got < n:
        part = os.read(fd, n - got)
        if not part:
            if eof_ok and not got:
                return b""
            raise WorkerLost()
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_into(fd: int, arr: np.ndarray) -> None:
    view = memoryview(arr).cast("B")
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise WorkerLost()
        got += n


def _write_all(fd: int, data: "bytes | memoryview") -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]


class ChunkQueue:
    """Chunks in file order while their pieces are parsed ahead: (numbers, lines, answers)."""

    def __init__(self) -> None:
        self.items: Deque[Tuple[List[int], List[bytes], int, List[Optional[Parsed]]]] = deque()

    def add(self, numbers: List[int], lines: List[bytes], pieces: int) -> None:
        self.items.append((numbers, lines, pieces, []))

    def take(self, workers: ParseWorkers) -> None:
        """Receive the next answer into the oldest chunk still waiting for one."""
        for _, _, pieces, answers in self.items:
            if len(answers) < pieces:
                answers.append(workers.result())
                return
        raise AssertionError("no answer outstanding")  # pragma: no cover

    def ready(self) -> bool:
        return bool(self.items) and len(self.items[0][3]) == self.items[0][2]
