"""``-r/--repeat``: lines drawn independently and uniformly, with replacement (shuf -r).

The draws are one endless sequence of line indices, fixed by the seed alone: chunk c of
``DRAW_CHUNK`` indices comes from its own stream (``Purpose.REPEAT_DRAW``, key ``(c,)``), each
uniform over the n lines of the input. ``-n N`` writes the first N; without ``-n`` the sequence
never ends and the run stops quietly when the reader closes the pipe (``| head`` exits 0).

Memory stays bounded whatever the input size and N:

* ``-i LO-HI``: an index *is* the line (LO + index); nothing is read.
* ``-e ARG...``: the arguments are already in memory; an index picks one.
* files: one pass counts the lines (streams are first copied to an unlinked file in
  ``--temp-dir`` and files held open, since they must be read again: ``shuffler/rereading.py``). Then *rounds*: take the next B indices of the
  sequence (B chosen so their lines fill an eighth of ``--memory`` at the mean line length),
  read the input once collecting those lines in file order, and write them in draw order. Lines
  that turn out longer than expected (more than a quarter of ``--memory``) make a round split in
  two halves (recursively), so the budget holds for any line lengths. Endless output starts
  with one chunk of draws and doubles its rounds up to B (never below the line count, so a
  large input gets no extra pass): `| head` of a tiny file stops at once. The output is the draw sequence itself, so it does not
  depend on B, ``--memory`` or the input's block layout; a round re-reads the input, so N far
  beyond memory costs one input pass per round.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np

from bigshuf.common.errors import InputError
from bigshuf.common.randomness import Streams
from bigshuf.common.signals import SignalGuard
from bigshuf.shuffler.methods.base import Job, Method, MethodName
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.records import RecordReader
from bigshuf.shuffler.rereading import check_unchanged, rereadable_inputs
from bigshuf.shuffler.segments import gather_records
from bigshuf.shuffler.sources import format_numbers
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import Sink

#: Indices per draw chunk (part of the output contract: changing it changes -r outputs). Small,
#: so a chunk (8 bytes a draw) is a small part of even the smallest --memory.
DRAW_CHUNK = 1 << 12
#: Records an endless run claims to have in its Sink (it never gets there).
ENDLESS = 1 << 62
#: Bookkeeping bytes per draw in a round: the index, its sorted copy, order and inverse, start
#: and length, and the reordered start/length copies (8 bytes each), rounded up.
DRAW_BYTES = 80


def draws(streams: Streams, count: int, total: Optional[int]) -> Iterator[np.ndarray]:
    """The draw sequence in chunks (the last one cut so ``total`` indices come out in all)."""
    chunk = 0
    left = total
    while left is None or left > 0:
        size = DRAW_CHUNK if left is None else min(DRAW_CHUNK, left)
        yield streams.repeat_draw(chunk).integers(0, count, DRAW_CHUNK, dtype=np.uint64)[:size]
        chunk += 1
        if left is not None:
            left -= size


class Repeat(Method):
    """-r: the draw sequence of the seed, written until N lines (or the reader) end it."""

    name = MethodName.REPEAT

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        return "-r: draws with replacement" if job.opts.repeat else None

    def reads_inputs(self) -> bool:
        return False  # it reads them its own way (streams copied to the temporary directory)

    def run(self) -> ShuffleStats:
        job = self.job
        with SignalGuard() as signals:
            run_repeat(job.opts, job.geo, job.streams, job.stats, signals.defer)
        job.stats.store = "none"
        return self._done()


def run_repeat(opts: ShuffleOptions, geo: Geometry, streams: Streams, stats: ShuffleStats,
               before_rename: Callable[[], None]) -> ShuffleStats:
    """Write ``opts.sample`` draws (endless without it) to the outputs of ``opts``."""
    total = opts.sample
    header: Optional[bytes] = None
    spool = None
    try:
        if opts.input_range is not None:
            lo, hi = opts.input_range
            count = hi - lo + 1
            chunks = _range_lines(lo, count, opts.sep, streams, total)
        elif opts.echo is not None:
            count = len(opts.echo)
            chunks = _echo_lines(opts.echo_lines, opts.sep, streams, total)
        else:
            inputs, spool = rereadable_inputs(opts)
            count, payload, header = _count(inputs, opts, geo)
            stats.bytes = payload
            # Half the round's byte cap at the mean line length, so a round rarely overflows.
            per_round = max(1, geo.repeat_round // (payload // max(count, 1) + DRAW_BYTES))
            chunks = _file_lines(inputs, opts, geo, streams, count, total, per_round)
        stats.records = count
        if count == 0 and total != 0:
            raise InputError("no lines to repeat", ", ".join(opts.input_names())
                             if not opts.generated else ("-e" if opts.echo is not None else "-i"))
        stats.records_out = _write(opts, chunks, total, header, before_rename)
    finally:
        if spool is not None:
            spool.close()
    return stats


#: What the draw generators yield: whole records (bytes or a uint8 array) and how many.
Chunk = Tuple[Any, int]


def _write(opts: ShuffleOptions, chunks: Iterator[Chunk], total: Optional[int],
           header: Optional[bytes], before_rename: Callable[[], None]) -> int:
    """Write the chunks; endless output ends quietly when the reader goes away."""
    sink = Sink.for_options(opts, ENDLESS if total is None else total, header)
    sink.open()
    try:
        for data, records in chunks:
            sink.write(data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8),
                       records)
        sink.finish(before_rename)
    except BrokenPipeError:
        if total is not None:
            sink.abort()
            raise
        return sink.done  # `bigshuf shuffle -r x | head`: the reader has what it wanted
    except BaseException:
        sink.abort()
        raise
    return sink.done


def _range_lines(lo: int, count: int, sep: int, streams: Streams, total: Optional[int]
                 ) -> Iterator[Chunk]:
    if count == 0:
        return
    for idx in draws(streams, count, total):
        yield format_numbers((idx + np.uint64(lo)).tolist(), sep), len(idx)  # <= hi: no overflow


def _echo_lines(args: List[bytes], sep: int, streams: Streams, total: Optional[int]
                ) -> Iterator[Chunk]:
    term = bytes([sep])
    if not args:
        return
    for idx in draws(streams, len(args), total):
        yield b"".join(args[i] + term for i in idx.tolist()), len(idx)


# -- files -----------------------------------------------------------------------------------

def _reader(inputs: List[Any], opts: ShuffleOptions) -> RecordReader:
    items = [p.open() if hasattr(p, "open") else p for p in inputs]
    return RecordReader(items, opts.sep, header=opts.header, warn=opts.warn)


def _count(inputs: List[Any], opts: ShuffleOptions, geo: Geometry) -> Tuple[int, int, Optional[bytes]]:
    """Lines and bytes of the input (one pass), and the header line if --header."""
    reader = _reader(inputs, opts)
    for _ in reader.blocks(geo.block_bytes, geo.block_records):
        pass
    return reader.records, reader.payload, reader.header


def _file_lines(inputs: List[Any], opts: ShuffleOptions, geo: Geometry, streams: Streams,
                count: int, total: Optional[int], per_round: int) -> Iterator[Chunk]:
    """The drawn lines, in draw order, a round of ``per_round`` draws at a time."""
    if count == 0:
        return
    # Draw chunks are kept in a list and joined once a round is full: joining at every chunk
    # copied the whole pending round each time (quadratic in the round size).
    parts: List[np.ndarray] = []
    have = 0
    # Endless output (`| head -5`) starts after one chunk, not after a memory-full of draws,
    # and its rounds then double: a tiny input's full round (1.6M draws of a 2-line file at
    # 1G) cost 0.65 s of CPU before the closed pipe was seen. A round of at least ``count``
    # draws costs at least its input pass, so rounds never go below that: a large input gets
    # no extra passes. The output is the draw sequence whatever the rounds.
    target = DRAW_CHUNK if total is None else per_round
    for idx in draws(streams, count, total):
        parts.append(idx.astype(np.int64))
        have += len(idx)
        if have < target:
            continue
        pending = np.concatenate(parts)
        while len(pending) >= target:
            yield from _round(pending[:target], inputs, opts, geo)
            pending = pending[target:]
            target = min(per_round, max(2 * target, count))
        parts, have = [pending], len(pending)
    if have:
        yield from _round(np.concatenate(parts), inputs, opts, geo)


def _round(idx: np.ndarray, inputs: List[Any], opts: ShuffleOptions, geo: Geometry
           ) -> Iterator[Chunk]:
    """The lines of ``idx`` in that order; halves the round if they overflow the budget."""
    cap = geo.repeat_split
    got = _collect(idx, inputs, opts, geo, cap)
    check_unchanged(inputs)  # a file rewritten in place since the count: no lines from it
    if got is None:
        half = len(idx) // 2
        yield from _round(idx[:half], inputs, opts, geo)
        yield from _round(idx[half:], inputs, opts, geo)
        return
    data, starts, lengths = got
    inverse = np.empty(len(idx), dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    inverse[order] = np.arange(len(idx))
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    gather_records(data, starts[inverse], lengths[inverse], out, 0)
    del data, starts, lengths, got
    yield out, len(idx)


def _collect(idx: np.ndarray, inputs: List[Any], opts: ShuffleOptions, geo: Geometry, cap: int
             ) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One pass: the lines of ``idx`` in sorted index order, packed in one buffer (None if they
    need more than ``cap`` bytes and there is more than one)."""
    wanted = np.sort(idx)
    starts = np.empty(len(wanted), dtype=np.int64)
    lengths = np.empty(len(wanted), dtype=np.int64)
    data = np.empty(min(cap, 1 << 20), dtype=np.uint8)
    used, i, first = 0, 0, 0
    blocks: Any = _reader(inputs, opts).blocks(geo.block_bytes, geo.block_records)
    try:
        for block in blocks:
            j = int(np.searchsorted(wanted, first + block.count, side="left"))
            local = wanted[i:j] - first
            first += block.count
            if not len(local):
                continue
            ends = block.ends[local]
            begins = np.where(local > 0, block.ends[np.maximum(local - 1, 0)], 0)
            size = int((ends - begins).sum())
            if used + size > len(data):
                if used + size > cap and len(wanted) > 1:
                    return None
                grown = np.empty(max(used + size, min(cap, 2 * len(data))), dtype=np.uint8)
                grown[:used] = data[:used]
                data = grown
            starts[i:j] = used + np.cumsum(ends - begins) - (ends - begins)
            lengths[i:j] = ends - begins
            used = gather_records(block.data, begins, ends - begins, data, used)
            i = j
            if i == len(wanted):
                break
    finally:
        blocks.close()  # a generator: closes the input files now
    return data, starts, lengths
