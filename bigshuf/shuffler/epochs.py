"""``--epochs E``: E independent shuffles of the same input, from one command.

Epoch e is the order contract with its own seed, :func:`~bigshuf.common.randomness.epoch_seed`
(seed, e) (epoch 0 is the seed itself): the same bytes as ``--seed S --first-epoch e --epochs 1``,
whatever the other epochs. Each epoch is one ordinary run of the job (any method, any option
that composes), reading the inputs again; so every epoch is exactly uniform and the epochs are
independent (their keys come from unrelated seeds). Nothing is published before every epoch is
complete.

* With ``{epoch}`` in -o, each epoch writes its own outputs (shards, splits, compression as for
  one run), held until the last epoch is done and published together.
* Otherwise the epochs are one stream, epoch after epoch, into -o (or stdout), cut into shards
  as one run's stream would be: :class:`EpochStream` hands each epoch's run a view of one
  shared :class:`~bigshuf.shuffler.writing.Sink`.

Why not scatter once for all epochs: each epoch's buckets come from its own keys, so a shared
scatter would hold E copies of the data (E x the temporary file or RAM) to save one read and
newline scan of the input per epoch; reading the inputs again is cheaper (they are files in the
page cache) and keeps every epoch within ``--memory``.
"""
from __future__ import annotations

import threading
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, overload

import numpy as np

from bigshuf.common.errors import BigshufError, UsageError, warn_stderr
from bigshuf.common.heap import give_back_freed
from bigshuf.common.randomness import epoch_seed, resolve_seed
from bigshuf.common.signals import SignalGuard
from bigshuf.shuffler.options import EPOCH_FIELD_RE, ShuffleOptions
from bigshuf.shuffler.records import find_record_ends
from bigshuf.shuffler.rereading import read_once
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import (
    _FIELD_SPEC,
    Sink,
    check_shard_count,
    held,
    outer_hold,
    publish_or_hold,
    shared_stream,
)

RunOne = Callable[[ShuffleOptions], ShuffleStats]


def epoch_output(pattern: str, epoch: int) -> str:
    """-o with every ``{epoch}`` / ``{epoch:FORMAT}`` replaced by the epoch's number (other
    fields, {split} {index} {count}, stay for the later steps)."""
    def number(m: Any) -> str:
        spec = m.group(1) or ""
        if _FIELD_SPEC.fullmatch(spec) is None:
            raise UsageError(f"-o {pattern}: {{epoch}} takes an integer format such as :03d")
        return format(epoch, spec)
    return EPOCH_FIELD_RE.sub(number, pattern)


def by_epoch(opts: ShuffleOptions) -> bool:
    """Does each epoch get its own outputs (-o holds {epoch})?"""
    return isinstance(opts.output, str) and EPOCH_FIELD_RE.search(opts.output) is not None


def epoch_options(opts: ShuffleOptions, seed: int) -> "EpochRuns":
    """One run's options per epoch: its seed, and its outputs when -o holds {epoch}."""
    return EpochRuns(opts, seed)


class EpochRuns(Sequence[ShuffleOptions]):
    """The epochs' options, made when asked for: ``--epochs 1000000000 -n 1`` neither holds a
    billion option sets nor waits for them before its first line."""

    def __init__(self, opts: ShuffleOptions, seed: int):
        self.opts, self.seed, self.numbers = opts, seed, opts.epoch_numbers
        self.own = by_epoch(opts)

    def __len__(self) -> int:
        return len(self.numbers)

    @overload
    def __getitem__(self, i: int) -> ShuffleOptions: ...

    @overload
    def __getitem__(self, i: slice) -> List[ShuffleOptions]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[ShuffleOptions, List[ShuffleOptions]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        e = self.numbers[i]
        return replace(self.opts, epochs=None, first_epoch=None, random_source=None,
                       seed=epoch_seed(self.seed, e),
                       output=epoch_output(self.opts.output, e) if self.own else self.opts.output)


class EpochSeeds(Mapping[int, int]):
    """Each epoch's number and seed, computed when read (as many as --epochs)."""

    def __init__(self, seed: int, numbers: range):
        self.seed, self.numbers = seed, numbers

    def __getitem__(self, e: int) -> int:
        if e not in self.numbers:
            raise KeyError(e)
        return epoch_seed(self.seed, e)

    def __iter__(self) -> Iterator[int]:
        return iter(self.numbers)

    def __len__(self) -> int:
        return len(self.numbers)


def run_epochs(opts: ShuffleOptions, run_one: RunOne, check: Callable[[ShuffleOptions], None],
               spool_inputs: Optional[Callable[[ShuffleOptions], Tuple[List[Any], Any]]] = None
               ) -> ShuffleStats:
    """Run every epoch of ``opts`` with ``run_one`` (``check`` validates one run's outputs, all
    before any work), publish them together; the stats of the whole. Inputs that can be read
    only once (stdin, a pipe, a caller's stream) are first copied by ``spool_inputs`` to an
    unlinked file in --temp-dir (as -r does), which every epoch reads."""
    seed = resolve_seed(opts.seed)  # drawn once if not given: every epoch derives from it
    runs = epoch_options(opts, seed)
    # --split without {epoch}: one epoch only (options), whose splits are its own outputs.
    own = by_epoch(opts) or opts.split is not None
    for r in (runs if own else runs[:1]):  # one stream: every epoch has the same outputs
        check(r)
    if own and opts.shards:  # every epoch's shards are held until all are published
        check_shard_count(opts.shards * len(runs) * len(opts.split or [None]), opts.memory_bytes)
    # Every output name of the whole run is checked distinct by run.run, before any work.
    outer = outer_hold()
    done = _Totals()
    stream = None if own else EpochStream(len(runs))
    sinks: List[Any] = []
    spool = None
    slack = _SLACK.set(len(runs) > 1)
    with SignalGuard() as signals:
        try:
            parts = None
            if spool_inputs is not None and len(runs) > 1 and read_once(opts):
                parts, spool = spool_inputs(opts)
            with held() as sinks, shared_stream(stream) if stream is not None else nullcontext():
                for e, r in zip(opts.epoch_numbers, runs):
                    before = len(sinks)
                    if parts is not None:  # a fresh reading of the spooled inputs
                        r = replace(r, inputs=[p.open() if hasattr(p, "open") else p for p in parts])
                    st = run_one(r)
                    release_freed_memory()
                    for s in sinks[before:]:
                        s.epoch = e
                    if done.first and (st.records, st.inputs) != (done.first.records,
                                                                  done.first.inputs):
                        raise BigshufError("the input changed between epochs (its records or "
                                           "digest differ): no epoch written")
                    done.add(st)
            if stream is not None and stream.sink is not None:
                sinks = [stream.finish()]
            signals.defer()
            publish_or_hold(sinks, outer)
        except BaseException:
            # Asked before the aborts: epochs already sent to stdout or a pipe stay there.
            partial = stream is not None and stream.sink is not None and stream.sink.wrote_to_stream
            for s in sinks:
                s.abort()
            if stream is not None:
                stream.abort()
            if signals.fired:
                raise signals.error(partial=partial) from None
            raise
        finally:
            _SLACK.reset(slack)
            if spool is not None:
                spool.close()
    stats = done.first
    assert stats is not None
    stats.records_out = done.records_out
    stats.outputs = list(done.outputs)
    stats.epoch_seeds = EpochSeeds(seed, opts.epoch_numbers)
    stats.seed = seed
    return stats


class _Totals:
    """What the epochs' stats add up to, without keeping each one (memory stays bounded
    whatever --epochs): the first run's stats, the records written, the distinct outputs."""

    def __init__(self) -> None:
        self.first: Optional[ShuffleStats] = None
        self.records_out = 0
        self.outputs: Dict[str, None] = {}

    def add(self, st: ShuffleStats) -> None:
        self.first = self.first or st
        self.records_out += st.records_out
        self.outputs.update(dict.fromkeys(st.outputs))


#: Inside a run of several epochs (see allocator_slack).
_SLACK: ContextVar[bool] = ContextVar("bigshuf_epoch_slack", default=False)


def allocator_slack(memory: int) -> int:
    """Bytes of --memory an epoch's run leaves to the allocator (added to the plan's reserve:
    RAM runs and the input method's windows shrink, the output bytes do not change): glibc
    serves the second epoch's buffers from heaps that keep what the first one freed, ~30-60 MiB
    at --memory 256M. With an eighth set aside (and malloc_trim between epochs), three epochs
    of 1 GiB of JSON peaked at 275-313 MiB in 7 runs (one run: 281; bound 320), without it at
    307-344, at the same CPU time."""
    return memory // 8 if _SLACK.get() else 0


def release_freed_memory() -> None:
    """Hand the memory an epoch freed back to the system before the next one (glibc's
    malloc_trim; elsewhere nothing to do).

    glibc keeps freed blocks in its heaps, and raises its mmap threshold as large blocks are
    freed, so the next epoch's buffers come from the heap: on 1 GiB of JSON at --memory 256M,
    three epochs peaked at 307-335 MiB against one run's 278-281 (bound 320). Trimming between
    epochs kept them at 307 in three runs, at no CPU cost. Fixing the mmap threshold instead
    (128 KiB to 16 MiB) kept one run's peak but cost 1-1.4 million page faults, +30-60 % CPU."""
    give_back_freed()


class EpochStream:
    """The one stream of all epochs (-o without {epoch}): the first epoch's run makes the Sink,
    for E x its record count; every run writes through its own :class:`_EpochView`."""

    def __init__(self, epochs: int) -> None:
        self.sink: Optional[Sink] = None
        self.epochs = epochs
        self.bytes_before = 0  # stream bytes of the finished epochs (positional writes)
        self.finished = 0      # epochs finished
        self.aborted = False   # a run took its outputs back (it may start over: see view)

    def view(self, opts: ShuffleOptions, records: int, header: Optional[bytes],
             limit: Optional[int]) -> "_EpochView":
        out = records if limit is None else min(limit, records)
        if self.aborted:
            # The input method starts over as the engine when an input changes under it: fine
            # before any epoch is done (a new stream), not once one is (its lines are gone).
            if self.finished:
                raise BigshufError("an input changed while the epochs were being written")
            self.sink, self.aborted = None, False
        if self.sink is None:  # every epoch reads the same input: E x the first one's records
            self.sink = Sink(opts.output, opts.sep, out * self.epochs, shards=opts.shards,
                             lines_per_shard=opts.lines_per_shard, header=header,
                             durable=opts.fsync, memory=opts.memory_bytes,
                             warn=opts.warn or warn_stderr, shard_size=opts.shard_size,
                             digest=opts.manifest is not None)
        return _EpochView(self, out)

    def finish(self) -> Sink:
        """Complete every output of the stream (published by the caller)."""
        assert self.sink is not None
        self.sink.complete()
        return self.sink

    def abort(self) -> None:
        if self.sink is not None:
            self.sink.abort()


class _EpochView:
    """One epoch's run's Sink: its records appended to the shared stream (positional writes
    shifted by the epochs before it), finished without publishing."""

    def __init__(self, stream: EpochStream, records_out: int):
        assert stream.sink is not None
        self.stream = stream
        self.sink: Sink = stream.sink
        self.records_out = records_out
        self.done = 0
        self.bytes = 0
        self.base = stream.bytes_before
        self.lock = threading.Lock()
        self.epoch: Optional[int] = None

    @property
    def positional(self) -> bool:
        return self.sink.positional

    @property
    def full(self) -> bool:
        return self.done >= self.records_out

    @property
    def paths(self) -> Any:
        return self.sink.paths

    @property
    def wrote_to_stream(self) -> bool:
        return self.sink.wrote_to_stream

    def open(self) -> None:
        if not self.sink.files:
            self.sink.open()

    def write(self, data: np.ndarray, records: int) -> None:
        take = min(records, self.records_out - self.done)
        if take <= 0:
            return
        if take < records:
            data = data[:int(find_record_ends(data, self.sink.sep, take)[take - 1])]
        self.sink.write(data, take)
        self.done += take
        self.bytes += len(data)

    def write_at(self, offset: int, data: np.ndarray, records: int, piece: int = 0) -> None:
        self.sink.write_at(self.base + offset, data, records, piece)
        with self.lock:
            self.done += records
            self.bytes += len(data)

    def start_writeback(self, offset: int, length: int) -> None:
        self.sink.start_writeback(self.base + offset, length)

    def forget(self, offset: int, length: int) -> None:
        self.sink.forget(self.base + offset, length)

    def finish(self, before_publish: Optional[Callable[[], None]] = None) -> None:
        self.stream.bytes_before += self.bytes  # published with the last epoch
        self.stream.finished += 1

    def close_current(self) -> None:
        pass

    def abort(self) -> None:
        self.sink.abort()
        self.stream.aborted = True
