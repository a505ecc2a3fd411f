"""Every file one ``can`` / ``threshold`` run writes (rows, params, report), handled as one set.

- **Checked before any work** (:class:`RunOutputs`): each destination must be writable
  (``check_destination``), no two may end at one file (a name, or a link to it), none may be a
  file the run reads (except ``-o`` equal to INPUT: rows are published after the last read, so
  rewriting a file in place works), at most one may be standard output, and standard output must
  be open when something goes there.
- **Written under temporary names**: a file destination to a temporary file beside it, standard
  output and write-through destinations (devices, FIFOs) to an unnamed temporary file.
- **Published together** (:meth:`RunOutputs.publish`) only when all are complete: streams first
  (the ones that can fail without a way back), then the renames under one publishing lock. A
  failure or a signal before that removes every temporary file and leaves every destination as
  it was. Write errors name the destination (``writing FILE: no space left on device``).
- **Signals** (:func:`guarded`): the shuffle's ``SignalGuard`` policy, first signal wins.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

from bigshuf.common import stdio
from bigshuf.common.errors import BigshufError, Interrupted, UsageError, describe_os_error
from bigshuf.common.inputs import check_read_once_given_once
from bigshuf.common.output import (
    Destination,
    TempGroup,
    check_destination,
    inherited_fd,
    is_write_through,
    open_output_stream,
    publishing,
    same_file,
)
from bigshuf.common.signals import SignalGuard

STDOUT = "standard output"


def _is_stdout(path: Optional[str]) -> bool:
    return path is None or path == "-"


def _shown(path: Optional[str]) -> str:
    return STDOUT if _is_stdout(path) else str(path)


def check_inputs(named: Sequence[Tuple[str, Optional[str]]], stdin_ok: Sequence[str]) -> None:
    """Inputs before any work: ``-`` only where stdin is read (``stdin_ok``: the option names),
    a read-once input (stdin, a pipe) given once, and standard input open when it is read."""
    for option, path in named:
        if path == "-" and option not in stdin_ok:
            raise UsageError(f"{option} does not read standard input ('-'): give a file")
    paths = [p for _, p in named if p is not None]
    if paths.count("-") > 1:  # stdin is read once, even when it is a regular file (< file)
        raise UsageError("-: standard input is given more than once (it can be read only once)")
    check_read_once_given_once(paths)
    if "-" in paths:
        stdio.stdin()  # closed (<&-): a usage error, not a crash when it is spooled


def _write_error(exc: OSError, name: str) -> BaseException:
    if isinstance(exc, BrokenPipeError):
        return exc  # the reader went away: the CLI exits quietly with 141
    return describe_os_error(exc, f"writing {name}")


_GUARDS: List[SignalGuard] = []


@contextlib.contextmanager
def guarded() -> Iterator[SignalGuard]:
    """The shuffle's signal policy for a prediction run (``SignalGuard``): the first of INT,
    TERM, HUP, USR1 stops it (exit 128 + its number), later ones are ignored while it cleans up.
    A signal that comes while the main thread waits on worker threads is acted on at the next
    :func:`checkpoint` (or before publishing)."""
    with SignalGuard(stop=lambda: None) as guard:
        _GUARDS.append(guard)
        try:
            yield guard
        finally:
            _GUARDS.remove(guard)


def checkpoint() -> None:
    """Stop here if a signal came while the run could not be stopped at once."""
    for guard in _GUARDS:
        if guard.fired and not guard.deferred:
            raise guard.error()


class _Raw(io.RawIOBase):
    """Writes to a descriptor; an error names the destination, not the temporary file."""

    def __init__(self, fd: int, name: str):
        super().__init__()
        self.fd, self.name_shown = fd, name

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        try:
            return os.write(self.fd, data)
        except OSError as exc:
            raise _write_error(exc, self.name_shown) from None


class _Stage:
    """One destination while the run writes it."""

    def __init__(self, option: str, path: Optional[str], group: TempGroup):
        self.option, self.path, self.name = option, path, _shown(path)
        self.dest: Optional[Destination] = None
        self.spool: Optional[IO[bytes]] = None
        self.file: Optional[io.BufferedWriter] = None
        self.started = False  # some bytes may have gone to the stream destination
        if _is_stdout(path) or is_write_through(str(path)):
            self.spool = tempfile.TemporaryFile(prefix="bigshuf-out-")
            fd = self.spool.fileno()
        else:
            self.dest = Destination(str(path), group)
            fd = self.dest.fd
        self.file = io.BufferedWriter(_Raw(fd, self.name), 1 << 20)

    def temp_path(self) -> str:
        """A path to write the whole output through (numpy's writers want one)."""
        if self.dest is not None:
            assert self.dest.temp is not None
            return self.dest.temp
        assert self.spool is not None
        return f"/proc/self/fd/{self.spool.fileno()}"

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.flush()
            except OSError as exc:
                raise _write_error(exc, self.name) from None
            self.file = None

    def send(self) -> None:
        """Copy a stream destination's held bytes to it."""
        if self.spool is None:
            return
        self.spool.seek(0)
        try:
            if _is_stdout(self.path):
                fd, stream = stdio.stdout()
                out = stream if stream is not None else os.fdopen(os.dup(fd), "wb")  # type: ignore[arg-type]
                self.started = True
                try:
                    shutil.copyfileobj(self.spool, out, 1 << 20)
                    out.flush()
                finally:
                    if stream is None:
                        with contextlib.suppress(OSError):
                            out.close()
            else:
                with open_output_stream(str(self.path)) as out:
                    self.started = True  # opened (a FIFO's reader came): bytes may now reach it
                    shutil.copyfileobj(self.spool, out, 1 << 20)
        except BigshufError:
            raise
        except OSError as exc:
            raise _write_error(exc, self.name) from None

    def discard(self) -> None:
        if self.spool is not None:
            with contextlib.suppress(OSError):
                self.spool.close()
        if self.dest is not None:
            self.dest.abort()


class RunOutputs:
    """The outputs of one run (see the module docstring). ``outputs``: (option, path) pairs, path
    None when the option was not given, ``-`` for standard output (``-o`` None means standard
    output only when ``rows_to_stdout``); ``inputs``: (option, path) pairs of the files read.
    Use as a context manager: leaving it without :meth:`publish` removes every temporary file."""

    def __init__(self, outputs: Sequence[Tuple[str, Optional[str]]], inputs: Sequence[Tuple[str, Optional[str]]],
                 rows_to_stdout: bool = True):
        self.wanted: Dict[Optional[str], str] = {}
        named: List[Tuple[str, str]] = []
        to_stdout: List[str] = []
        for option, path in outputs:
            if path is None and not (option == "-o" and rows_to_stdout):
                continue
            if _is_stdout(path) or inherited_fd(str(path)) == 1:  # -, /dev/stdout, /dev/fd/1
                to_stdout.append(option)
                if _is_stdout(path):
                    continue
            check_destination(path)
            named.append((option, str(path)))
        if len(to_stdout) > 1:
            raise UsageError(f"{' and '.join(to_stdout)} both write to standard output: give one of them a file")
        if to_stdout:
            stdio.stdout()
        for i, (option, path) in enumerate(named):
            for other, earlier in named[:i]:
                if same_file([earlier, path]):
                    raise UsageError(f"{other} {earlier} and {option} {path} are the same file: give each "
                                     "output its own file")
        for option, path in named:
            for in_option, source in inputs:
                if source is None or source == "-" or (option == "-o" and in_option == "INPUT"):
                    continue
                if os.path.exists(source) and same_file([source, path]):
                    raise UsageError(f"{option} {path} is the input {in_option} {source}: writing it would "
                                     "replace what the run reads; give another file")
        self.paths = {option: path for option, path in named}
        self.group = TempGroup()
        self.stages: List[_Stage] = []
        self.published = False

    def __enter__(self) -> "RunOutputs":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.published:
            self.discard()

    def _stage(self, option: str, path: Optional[str]) -> _Stage:
        stage = _Stage(option, path, self.group)
        self.stages.append(stage)
        return stage

    def file(self, option: str, path: Optional[str]) -> IO[bytes]:
        """A binary file for ``option``'s destination (``path`` None or ``-``: stdout)."""
        stage = self._stage(option, path)
        assert stage.file is not None
        return stage.file  # type: ignore[return-value]

    def temp_path(self, option: str, path: str) -> str:
        """A path for ``option``'s destination to be written through by name."""
        stage = self._stage(option, path)
        stage.close()
        return stage.temp_path()

    def write_json(self, option: str, path: Optional[str], obj: Any) -> None:
        import json

        f = self.file(option, path)
        f.write((json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    def publish(self, defer: Any = None) -> None:
        """Complete every output, then publish them all: streams first (a stalled reader can
        still be interrupted), then ``defer`` (e.g. ``SignalGuard.defer``: from here on signals
        are ignored), then the renames."""
        for stage in self.stages:
            stage.close()
        for stage in self.stages:
            # A signal that came while the main thread waited on workers is acted on before a
            # stream is opened: opening a FIFO nobody reads would otherwise wait for ever.
            checkpoint()
            try:
                stage.send()
            except Interrupted as exc:
                if not stage.started:
                    raise
                raise Interrupted(exc.signum, signal.Signals(exc.signum).name, partial=True) from None
        if defer is not None:
            defer()
        dests = [s.dest for s in self.stages if s.dest is not None]
        with publishing(dests):
            for d in dests:
                d.commit()
        self.published = True
        self._release()

    def discard(self) -> None:
        for stage in self.stages:
            stage.discard()
        self.group.remove_all()
        self._release()

    def _release(self) -> None:
        for stage in self.stages:
            if stage.spool is not None:
                with contextlib.suppress(OSError):
                    stage.spool.close()
        self.group.release()


R = TypeVar("R")


def run_command(opts: Any, read: Sequence[Tuple[str, Optional[str]]], stdin_ok: Sequence[str],
                also_read: Sequence[Tuple[str, Optional[str]]], rows: bool,
                body: Callable[[RunOutputs], R]) -> R:
    """The frame every prediction command runs in: its input paths checked (``read``; of them
    only ``stdin_ok`` may be ``-``), its outputs (-o when ``rows`` are written, --save-params,
    --report) checked against them and ``also_read`` before any work, ``body`` run under the
    signal policy, and the outputs published together once it has succeeded."""
    check_inputs(read, stdin_ok=stdin_ok)
    with guarded() as guard, \
            RunOutputs([("-o", opts.output if rows else None), ("--save-params", opts.save_params),
                        ("--report", opts.report)], [*read, *also_read], rows_to_stdout=rows) as outs:
        result = body(outs)
        outs.publish(guard.defer)
    return result
