"""Writing the shuffled stream: stdout, one file, or shards; plain or compressed by extension.

Files go through :mod:`bigshuf.common.output`: a regular file is written under a private
temporary name and renamed over the destination only when the whole run has succeeded (so a
failure or a signal leaves the old file, or none, and shuffling a file onto itself works);
devices, FIFOs and inherited descriptors are written through. Shards are the shuffled stream cut
in order, so only one is open at a time: memory and descriptors do not grow with their number.
"""
from __future__ import annotations

import contextlib
import os
import re
import string
import threading
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, cast

import numpy as np
import xxhash

from bigshuf.common import stdio
from bigshuf.common.codecs import compression_of, compressor_for
from bigshuf.common.container import TempGrowthWatch, temp_growth_watch
from bigshuf.common.errors import UsageError, describe_os_error, warn_stderr
from bigshuf.common.output import (
    NAME_MAX,
    Destination,
    TempGroup,
    check_destination,
    file_key,
    publishing,
    pwrite_all,
    same_file,
    start_writeback,
    write_all,
)
from bigshuf.shuffler.plan import shard_share
from bigshuf.shuffler.records import find_record_ends


class _FdWriter:
    """Minimal file object over a descriptor, so compressors can write through it."""

    def __init__(self, fd: int, what: str):
        self.fd = fd
        self.what = what

    def write(self, data) -> int:
        total = len(memoryview(data).cast("B"))
        try:
            write_all(self.fd, data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise describe_os_error(exc, f"writing {self.what}") from None
        return total

    def flush(self) -> None:
        pass


class OutputFile:
    """One destination: stdout, a caller's stream, or a path (see bigshuf.common.output for what
    happens to files, links, devices and pipes), optionally compressed by its extension."""

    def __init__(self, path: Any, group: Optional[TempGroup] = None, memory: Optional[int] = None,
                 digest: bool = False):
        self._write_lock = threading.Lock()
        self.dest: Optional[Destination] = None
        self.compressor = None
        self.bytes_written = 0
        self.records = 0  # records written (the header not counted), for the manifest
        # --manifest: the digest of the plain bytes, as they are written (sequential writes only)
        self.hasher = xxhash.xxh3_128() if digest else None
        self.path: Optional[str] = None
        self.watch: Optional[TempGrowthWatch] = None
        if hasattr(path, "write"):  # a caller's binary stream: written in order, not closed
            self.fd, self.raw, self.stream = -1, path, path
            return
        if path is None or path == "-":
            fd, stream = stdio.stdout()
            if fd is None:  # a replaced sys.stdout: written in order like a caller's stream
                self.fd, self.raw, self.stream = -1, stream, stream
                return
            self.fd = fd
            self.raw = _FdWriter(self.fd, "standard output")
            self.stream = self.raw
            return
        self.path = os.fspath(path)
        self.dest = Destination(self.path, group)
        self.fd = self.dest.fd
        # A file in RAM (tmpfs) inside a memory cgroup: stopped with an error before the
        # OOM killer fires, as the temporary files are (devices and pipes are not files).
        self.watch = temp_growth_watch(os.path.dirname(self.dest.target), role="output") \
            if self.dest.atomic else None
        self.raw = _FdWriter(self.fd, self.path)
        self.compressor = compressor_for(self.path, self.raw, memory)
        self.stream = self.compressor if self.compressor is not None else self.raw

    @property
    def positional(self) -> bool:
        """True if bytes can be written at any offset (a plain file under a temporary name)."""
        return self.dest is not None and self.dest.positional and self.compressor is None \
            and self.hasher is None

    @property
    def digest(self) -> Optional[str]:
        """The plain bytes' XXH3-128, hex (None without --manifest)."""
        return None if self.hasher is None else self.hasher.hexdigest()

    def write(self, data: np.ndarray) -> None:
        if self.watch is not None:
            self.watch.guard(len(data))  # the plain bytes: a compressed file grows less
        if self.hasher is not None:
            self.hasher.update(memoryview(data))
        try:
            self.stream.write(memoryview(data))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise describe_os_error(exc, f"writing {self.path or 'standard output'}") from None
        self.bytes_written += len(data)

    def write_at(self, offset: int, data: np.ndarray, piece: int = 0) -> None:
        """Write ``data`` at ``offset``, ``piece`` bytes a call (see common.output.pwrite_all)."""
        try:
            with self._write_lock:  # see FileStore.write: one writer at a time is faster
                if self.watch is not None:
                    self.watch.guard(len(data))
                pwrite_all(self.fd, data, offset, piece)
        except OSError as exc:
            raise describe_os_error(exc, f"writing {self.path}") from None
        self.bytes_written += len(data)

    def start_writeback(self, offset: int, length: int) -> None:
        """Hand a written range to the disk now, without waiting (a hint; files under a
        temporary name only, never devices, pipes or stdout)."""
        if self.positional:
            start_writeback(self.fd, offset, length)

    def forget(self, offset: int, length: int) -> None:
        """Drop a written range's clean pages from the page cache (a hint, as above)."""
        if self.positional and hasattr(os, "posix_fadvise") and length > 0:
            try:
                os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass

    def finish(self) -> None:
        """Flush the compressor; a file still has its temporary name."""
        if self.compressor is not None:
            try:
                self.compressor.close()
            except OSError as exc:
                raise describe_os_error(exc, f"writing {self.path}") from None
            # Drop every reference: a closed compressor can keep its buffers and threads
            # until collected, and finished shards must not add up.
            self.compressor = None
            self.stream = self.raw

    def close(self) -> None:
        """Finished and closed (a completed shard): frees its compressor and descriptor now,
        so the memory and descriptors of a run do not grow with the number of shards."""
        self.finish()
        if self.dest is not None:
            self.dest.close_fd()

    def commit(self, durable: bool = False) -> None:
        """Give the finished file its real name (see Destination.commit)."""
        if self.dest is not None:
            self.dest.commit(durable)

    def abort(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        self.compressor = None
        if self.dest is not None:
            self.dest.abort()

    def finished(self) -> "OutputFile":
        """What a closed file keeps until it is published (a few hundred bytes, not the
        writer's): the run keeps one per shard."""
        if self.dest is None or self.compressor is not None:
            return self
        return _Finished(self.dest, self.bytes_written, self.records,  # type: ignore[return-value]
                         self.digest)


class _Finished:
    """A closed output waiting for its rename: OutputFile's publishing interface only."""

    __slots__ = ("dest", "bytes_written", "records", "digest")
    compressor = None

    def __init__(self, dest: Destination, bytes_written: int, records: int, digest: Optional[str]):
        self.dest, self.bytes_written, self.records, self.digest = dest, bytes_written, records, digest

    @property
    def path(self) -> str:
        return self.dest.path

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass

    def finished(self) -> "_Finished":
        return self

    def commit(self, durable: bool = False) -> None:
        self.dest.commit(durable)

    def abort(self) -> None:
        self.dest.abort()


def shard_paths(pattern: str, count: int) -> "ShardNames":
    """File names of ``count`` shards, made when asked for (see :class:`ShardNames`).

    A pattern containing ``{index}`` (and optionally ``{count}``) is formatted, e.g.
    ``out-{index:03d}.txt``; otherwise ``-NNNNN-of-MMMMM`` goes before the extension
    (compression suffix included): ``out.jsonl.gz`` -> ``out-00000-of-00064.jsonl.gz``.
    """
    return ShardNames(pattern, count)


class ShardNames(Sequence[str]):
    """The names of ``count`` shards, each formatted when it is asked for: a run holds the
    pattern, not N names (20 000 shards made up front held 81 MB at ``-S 1M``)."""

    def __init__(self, pattern: str, count: int, known: bool = True):
        self.n = count
        self.known = known  # False with --shard-size: no {count}, no -of-MMMMM in the names
        if "{" in pattern:
            check_pattern(pattern)  # {index} with an integer format: distinct, bounded names
            self.template = pattern
        else:
            d, base = os.path.split(pattern)
            suffix = ""
            comp = compression_of(base)
            if comp:
                base, suffix = base[: -len(comp)], comp
            stem, ext = os.path.splitext(base)
            if not stem:
                stem, ext = base, ""
            width = max(5, len(str(count)))
            numbered = f"-{{index:0{width}d}}-of-{{count:0{width}d}}" if known else "-{index:05d}"
            self.template = os.path.join(d, stem.replace("{", "{{").replace("}", "}}")
                                         + numbered
                                         + (ext + suffix).replace("{", "{{").replace("}", "}}"))
        self[0] if count else None  # a pattern that cannot format fails now, before any work

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n and self.known:
            raise IndexError(i)
        try:
            return self.template.format(index=i, count=self.n)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise UsageError(f"bad shard pattern {self.template!r}: {exc}") from None


#: Bytes a run keeps per shard until it publishes them all (the shard's temporary and final
#: names, its Destination, its line count; measured ~500, rounded up).
SHARD_BYTES = 1024


def max_shards(memory: int) -> int:
    """The most shards a run at ``memory`` may write: their bookkeeping within a quarter of it."""
    return max(1, shard_share(memory) // SHARD_BYTES)


def check_shard_count(count: int, memory: int) -> None:
    """Refuse more shards than :func:`max_shards` allows, before the bookkeeping is made."""
    if count > max_shards(memory):
        raise UsageError(f"{count:,} shards (--shards, or lines / --lines-per-shard) are more than "
                         f"--memory {memory:,} bytes can keep track of (at most "
                         f"{max_shards(memory):,}: raise --memory)")


#: A field of a shard pattern: ``{index}`` or ``{count}`` with an integer format spec
#: (fill/align, sign, ``#``, ``0``, width, grouping, and a type d x X o b n), nothing else.
_FIELD_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?#?0?([0-9]*)[,_]?[dxXobn]?")


def check_pattern(pattern: str) -> None:
    """A shard pattern's fields are ``{index}``/``{count}`` with integer formats, at most a
    file name wide: so every name formats, distinct names come from distinct indices, and no
    width can make a name (or its error message) hundreds of megabytes long."""
    try:
        fields = [f for f in string.Formatter().parse(pattern) if f[1] is not None]
    except ValueError as exc:
        raise UsageError(f"bad shard pattern {pattern!r}: {exc}") from None
    for _, name, spec, conversion in fields:
        if name not in ("index", "count"):
            raise UsageError(f"bad shard pattern {pattern!r}: {{{name}}} is not a field "
                             "(use {index} and {count}, e.g. 'part-{index:05d}.txt')")
        m = _FIELD_SPEC.fullmatch(spec or "")
        if conversion or m is None:
            raise UsageError(f"bad shard pattern {pattern!r}: {{{name}}} takes an integer format "
                             "such as :05d or :x")
        if m.group(1) and int(m.group(1)) > NAME_MAX:
            raise UsageError(f"bad shard pattern {pattern!r}: a width over {NAME_MAX} makes a "
                             "name longer than a file name can be")
    if not any(name == "index" for _, name, _, _ in fields):
        raise UsageError(f"shard pattern {pattern!r} does not give distinct names (use {{index}})")


class Sink:
    """Receives the shuffled stream and routes it to the outputs.

    ``limit`` keeps only the first records (sampling); shards split the stream by record counts.
    Sequential writes must come in stream order (the caller serialises them); a single plain
    file also accepts positional writes, so gather workers need not wait for each other.
    """

    paths: Sequence[Optional[str]]

    def __init__(self, output: Optional[str], sep: int, total_records: int,
                 shards: Optional[int] = None, lines_per_shard: Optional[int] = None,
                 limit: Optional[int] = None, header: Optional[bytes] = None,
                 durable: bool = False, memory: Optional[int] = None,
                 warn: Optional[Callable[[str], None]] = None, shard_size: Optional[int] = None,
                 digest: bool = False):
        self.sep = sep
        self.shard_size = shard_size  # --shard-size: cut by bytes, the count found as it goes
        self.digest = digest
        self.memory = memory  # the run's budget: bounds the compressor's memory
        self.durable = durable
        self.limit = limit
        n = total_records if limit is None else min(limit, total_records)
        self.records_out = n
        self.header = header or b""
        if shard_size:
            # The names are made as shards open: the first stands for all in the checks.
            self.shard_names = ShardNames(os.fspath(cast(str, output)), 1, known=False)
            self.paths = [self.shard_names[0]]
            self.quota = [n]
        elif shards or lines_per_shard:
            count = max(1, -(-n // lines_per_shard)) if lines_per_shard else int(shards or 1)
            if memory is not None:  # before any per-shard bookkeeping is made
                check_shard_count(count, memory)
            if lines_per_shard:
                per = [lines_per_shard] * count
                per[-1] = n - lines_per_shard * (count - 1)
            else:
                q, r = divmod(n, count)
                per = [q + (1 if i < r else 0) for i in range(count)]
                if warn is not None and n < count:
                    warn(f"--shards {count} for {n:,} line(s): {count - n} of the shards of "
                         f"{output} are empty" + (" but for the header" if header else ""))
            self.paths = shard_paths(os.fspath(cast(str, output)), count)
            self.quota = per
            check_distinct(cast(Sequence[str], self.paths))
        else:
            self.paths = [output]
            self.quota = [n]
        self.files: List[OutputFile] = []  # opened so far; shards open one at a time, in order
        self.run_files = _OPENED.get()  # the run's files (writing threads do not share its context)
        self.claimed: List[str] = []  # ... of them, this sink's (given back if it is aborted)
        self.group = TempGroup()
        self.current = 0
        self.left_in_current = 0
        self.done = 0                 # records written
        self.lock = threading.Lock()
        self.positional = False

    def open(self) -> None:
        self._start_file(0)
        self.positional = len(self.paths) == 1 and self.files[0].positional \
            and self.limit is None and not self.shard_size

    def _start_file(self, i: int) -> None:
        """Open output ``i`` (closing the finished one before it, and keeping only what its
        publishing needs) and write the header."""
        if self.files:
            self.files[-1].close()
            self.files[-1] = self.files[-1].finished()
        if self.shard_size and i >= len(self.paths):
            if self.memory is not None and i >= max_shards(self.memory):
                self.abort()
                raise UsageError(f"--shard-size {self.shard_size:,} makes more than "
                                 f"{max_shards(self.memory):,} shards of {self.paths[0]}, the most "
                                 f"--memory {self.memory:,} bytes can keep track of (raise "
                                 f"--memory or --shard-size)")
            cast(List[Optional[str]], self.paths).append(self.shard_names[i])
            self.quota.append(self.records_out - self.done)
        try:
            path = self.paths[i]
            if isinstance(path, (str, os.PathLike)) and os.fspath(path) != "-":
                self.claimed.append(claim_name(os.fspath(path), names=self.run_files))
            self.files.append(OutputFile(path, self.group, self.memory, self.digest))
        except BaseException:
            self.abort()
            raise
        self.current = i
        self.left_in_current = self.quota[i]
        if self.header:
            self.files[i].write(np.frombuffer(self.header, dtype=np.uint8))

    @property
    def wrote_to_stream(self) -> bool:
        """Did bytes already go where they cannot be taken back (stdout, a pipe, a device)?"""
        return any(f.bytes_written and (f.dest is None or not f.dest.atomic) for f in self.files)

    @property
    def full(self) -> bool:
        return self.done >= self.records_out

    def write_at(self, offset: int, data: np.ndarray, records: int, piece: int = 0) -> None:
        """Positional write of whole records (single plain file); ``offset`` is in the shuffled
        stream, the header is accounted for here; ``piece``: bytes a write call."""
        self.files[0].write_at(len(self.header) + offset, data, piece)
        with self.lock:
            self.done += records
            self.files[0].records += records

    def start_writeback(self, offset: int, length: int) -> None:
        """See :meth:`OutputFile.start_writeback` (positional sinks; stream offsets)."""
        self.files[0].start_writeback(len(self.header) + offset, length)

    def forget(self, offset: int, length: int) -> None:
        """See :meth:`OutputFile.forget` (positional sinks; stream offsets)."""
        self.files[0].forget(len(self.header) + offset, length)

    def write(self, data: np.ndarray, records: int) -> None:
        """Append the next ``records`` whole records of the stream, in order."""
        if self.full or records == 0:
            return
        if self.shard_size:
            return self._write_by_size(data, records)
        if len(self.paths) == 1 and self.done + records <= self.records_out:
            self.files[0].write(data)
            self.files[0].records += records
            self.done += records
            return
        ends = find_record_ends(data, self.sep)
        pos = 0
        i = 0
        while i < len(ends) and not self.full:
            take = min(self.left_in_current, len(ends) - i, self.records_out - self.done)
            if take:
                end = int(ends[i + take - 1])
                self.files[self.current].write(data[pos:end])
                self.files[self.current].records += take
                pos = end
                i += take
                self.done += take
                self.left_in_current -= take
            if self.left_in_current == 0 and self.current + 1 < len(self.paths):
                self._start_file(self.current + 1)

    def _write_by_size(self, data: np.ndarray, records: int) -> None:
        """--shard-size: as many whole records as fit in the current shard's SIZE bytes (the
        header counts), then the next shard; a record longer than SIZE is a shard of its own."""
        ends = find_record_ends(data, self.sep)[:self.records_out - self.done]
        size = cast(int, self.shard_size)
        pos = i = 0
        while i < len(ends):
            f = self.files[self.current]
            room = size - f.bytes_written
            take = int(np.searchsorted(ends[i:], pos + room, side="right")) if room > 0 else 0
            if take == 0 and f.records == 0:
                take = 1  # alone in its shard
            if take:
                end = int(ends[i + take - 1])
                f.write(data[pos:end])
                f.records += take
                pos, i = end, i + take
                self.done += take
            if i < len(ends):
                self._start_file(self.current + 1)

    @classmethod
    def for_options(cls, opts: Any, records: int, header: Optional[bytes] = None,
                    output: Any = None, limit: Optional[int] = None,
                    checking: bool = False) -> "Sink":
        """The sink a run with options ``opts`` writes ``records`` records to (``output``
        overrides ``opts.output``, e.g. one split's name). ``checking``: only its names are
        wanted (before the line count is known), so nothing is reported about its shards.
        Inside :func:`shared_stream` (``--epochs`` into one output), the epoch's view of the
        stream shared by all epochs."""
        shared = _SHARED.get()
        if shared is not None and not checking:
            return shared.view(opts, records, header, limit)
        return cls(opts.output if output is None else output, opts.sep, records,
                   shards=opts.shards, lines_per_shard=opts.lines_per_shard, limit=limit,
                   header=header, durable=opts.fsync, memory=opts.memory_bytes,
                   warn=None if checking else (opts.warn or warn_stderr),
                   shard_size=getattr(opts, "shard_size", None),
                   digest=getattr(opts, "manifest", None) is not None)

    def finish(self, before_publish: Optional[Callable[[], None]] = None) -> None:
        """Flush every output (and create the empty ones: a signal can still stop that), call
        ``before_publish`` (the run's signal deferral), then give each output its final name
        (or, inside :func:`held`, leave the names to :func:`publish_all`). Two runs publishing
        the same names are serialised by a directory lock: a set of shards is never a mix."""
        self.complete()
        if before_publish is not None:
            before_publish()
        if not _hold(self):
            publish_all([self])

    def release(self) -> None:
        """Forget the temporary names (after commit)."""
        self.group.release()

    def close_current(self) -> None:
        """Finish and close the output being written (it keeps its temporary name until
        commit): its compressor's memory and its descriptor go now."""
        if self.files:
            self.files[-1].close()

    def complete(self) -> None:
        """Create the outputs nobody wrote to yet (empty but for the header) and flush all."""
        while len(self.files) < len(self.paths):
            self._start_file(len(self.files))
        for f in self.files:
            f.finish()

    def destinations(self) -> List[Destination]:
        return [f.dest for f in self.files if f.dest is not None]

    def output_entries(self) -> List[dict]:
        """What each output holds, for the manifest: its path (None: standard output or a
        caller's stream), shard number (None if not sharded), records, plain bytes, digest,
        and whether it can be read back (a renamed file, not a pipe or device)."""
        sharded = len(self.paths) > 1 or bool(self.shard_size) or not isinstance(self.paths, list)
        return [{"path": getattr(f, "path", None), "shard": i if sharded else None,
                 "records": f.records, "bytes": f.bytes_written, "digest": f.digest,
                 "file": f.dest is not None and f.dest.atomic}
                for i, f in enumerate(self.files)]

    def commit(self) -> None:
        """Rename every completed output into place (the caller holds the publishing lock)."""
        for f in self.files:
            f.commit(self.durable)

    def abort(self) -> None:
        for f in self.files:
            f.abort()
        for key in self.claimed:  # a method that starts over opens them again
            if self.run_files is not None:
                self.run_files.pop(key, None)
        self.claimed = []
        self.group.remove_all()  # also one whose creation a signal interrupted
        self.group.release()


_HELD: ContextVar[Optional[List[Any]]] = ContextVar("bigshuf_held_outputs", default=None)
#: The files one run has opened (or reserved, like its manifest), by :func:`file_key`.
_OPENED: ContextVar[Optional[Dict[str, str]]] = ContextVar("bigshuf_opened_outputs", default=None)


@contextlib.contextmanager
def run_names() -> Iterator[Dict[str, str]]:
    """The scope of one run (the outermost call; the runs of epochs, splits and --aligned
    inputs inside share it): no file is written twice in it. Names known before any work are
    checked then (:func:`check_all_distinct`); this catches the others (--shard-size,
    --lines-per-shard) as each file is opened: exit 2, nothing published."""
    names = _OPENED.get()
    if names is not None:
        yield names
        return
    names = {}
    token = _OPENED.set(names)
    try:
        yield names
    finally:
        _OPENED.reset(token)


def in_run() -> bool:
    """Inside :func:`run_names` (a run inside another: an epoch's, an --aligned input's)?"""
    return _OPENED.get() is not None


def claim_name(path: str, what: str = "", names: Optional[Dict[str, str]] = None) -> str:
    """Record that this run writes ``path`` (``what``: how to name it in the error); a second
    output (or the manifest) ending at the same file is a usage error. ``names``: the run's
    (a Sink keeps it: shards may open in a worker thread, outside the run's context)."""
    names = _OPENED.get() if names is None else names
    key = file_key(path)
    if names is None:
        return key
    if key in names:
        first = names[key]
        raise UsageError(f"the output names are not distinct: {first} and {what or path} are "
                         "the same file (nothing written)")
    names[key] = what or path
    return key


#: --epochs without {epoch}: the stream every epoch's run appends to (see shuffler/epochs.py).
_SHARED: ContextVar[Optional[Any]] = ContextVar("bigshuf_shared_stream", default=None)


@contextlib.contextmanager
def shared_stream(stream: Any) -> Iterator[Any]:
    """Inside this block, :meth:`Sink.for_options` returns ``stream.view(...)``: the runs of
    all epochs write one stream, cut into the same outputs."""
    token = _SHARED.set(stream)
    try:
        yield stream
    finally:
        _SHARED.reset(token)


def outer_hold() -> Optional[List[Any]]:
    """The list of an enclosing :func:`held` block (None outside one)."""
    return _HELD.get()


def publish_or_hold(sinks: Sequence[Any], outer: Optional[List[Any]]) -> None:
    """Publish ``sinks`` together, or leave them to the enclosing :func:`held` block whose list
    is ``outer`` (a manifest is written before anything is published)."""
    if outer is not None:
        outer.extend(sinks)
    else:
        publish_all(sinks)


@contextlib.contextmanager
def held() -> Iterator[List[Any]]:
    """Sinks finished inside this block keep their temporary names and are listed here: the
    caller publishes them together (:func:`publish_all`) or aborts them all (``--aligned``:
    no output is published unless every one is complete)."""
    sinks: List[Any] = []
    token = _HELD.set(sinks)
    try:
        yield sinks
    finally:
        _HELD.reset(token)


def _hold(sink: Any) -> bool:
    """Keep ``sink`` for a later :func:`publish_all` if inside :func:`held`."""
    sinks = _HELD.get()
    if sinks is None:
        return False
    sinks.append(sink)
    return True


def publish_all(sinks: Sequence[Any]) -> None:
    """Rename every complete output of ``sinks`` into place under one publishing lock."""
    with publishing([d for s in sinks for d in s.destinations()]):
        for s in sinks:
            s.commit()
    for s in sinks:
        s.release()


def check_distinct(paths: Sequence[str], what: str = "shard names", hint: str = "") -> None:
    """Refuse outputs that are one file (the same name, or links to one target): the second
    would replace the first, and its lines would be lost."""
    pair = same_file(paths)
    if pair is not None:
        a, b = pair
        raise UsageError(f"{what} are not distinct: {a} and {b} are the same file" if a != b
                         else f"{what} are not distinct: {a} more than once{hint}")


def check_shard_names(pattern: str, shards: Optional[int]) -> None:
    """Before any work: the pattern formats, and every directory it names is writable (with
    --lines-per-shard the count is not known yet: the first two names stand for the rest)."""
    names = shard_paths(pattern, shards or 2)
    check_distinct(names)
    seen = set()
    for name in names:
        d = os.path.dirname(os.path.abspath(name))
        if d not in seen:
            seen.add(d)
            check_destination(name)
