"""``--split train=0.98,valid=0.01,test=0.01``: one shuffle, cut into disjoint splits.

The engine's output is a uniformly random permutation of the input lines. Cutting it into
consecutive pieces of sizes s_1, s_2, ... therefore gives splits that are exactly uniform random
subsets of those sizes, disjoint, together exactly the input, each in uniformly random order
(any fixed assignment of positions to splits has that property under a uniform permutation).
So a split run is an ordinary engine run whose writer routes the stream to one
:class:`~bigshuf.shuffler.writing.Sink` per split, in order, the way shards are cut; no extra
randomness is drawn. The sizes come from the true line count (known after the scatter) by the
largest-remainder method, so they add up to it exactly. The cluster publish step cuts the same
stream the same way (:func:`split_outputs`).
"""
from __future__ import annotations

import math
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import InputError
from bigshuf.common.output import Destination
from bigshuf.shuffler.options import SPLIT_FIELD, ShuffleOptions, SplitPart, split_value
from bigshuf.shuffler.records import find_record_ends
from bigshuf.shuffler.writing import Sink, _hold, check_distinct, check_shard_count, publish_all


def split_sizes(parts: Sequence[SplitPart], total: int, unique: bool = False) -> List[int]:
    """Lines per split: counts as given, fractions (and the rest) by largest remainder of their
    share of ``total`` (with ``unique``, the distinct records: so the messages say);
    ties go to the split named first."""
    what = " distinct" if unique else ""
    fixed = sum(int(split_value(p)) for p in parts if p[1] == "count")
    if fixed > total:
        wanted = ", ".join(f"{n}={v}" for n, kind, v in parts if kind == "count")
        raise InputError(f"--split {wanted} needs {fixed:,}{what} lines; "
                         f"the input has {total:,}{what}")
    free = total - fixed
    fractions = sum(split_value(p) for p in parts if p[1] == "fraction")
    if fixed and fractions * total > free + 1e-6:
        raise InputError(f"--split: {fixed:,} lines by count plus {fractions:g} of {total:,}"
                         f"{what} lines is more than the input has")
    share = [split_value(p) * total if p[1] == "fraction" else
             max(0.0, free - fractions * total) if p[1] == "rest" else 0.0
             for p in parts]
    scale = free / sum(share) if sum(share) > 0 else 0.0
    share = [s * scale for s in share]  # exact floats can overshoot by an ulp; sum is `free`
    sizes = [int(split_value(p)) if p[1] == "count" else math.floor(s)
             for p, s in zip(parts, share)]
    left = total - sum(sizes)
    order = sorted((i for i, (_, kind, _) in enumerate(parts) if kind != "count"),
                   key=lambda i: (-(share[i] - math.floor(share[i])), i))
    for i in order[:left]:
        sizes[i] += 1
    return sizes


def split_pattern(output: str, name: str) -> str:
    """-o with ``{split}`` replaced by a split's name (other fields stay for shard names)."""
    return output.replace(SPLIT_FIELD, name)


def split_outputs(opts: ShuffleOptions, total: int, sizes: Optional[List[int]] = None,
                  checking: bool = True) -> Tuple[List[str], List[int]]:
    """Every output file of a split run and its line count, in stream order (the cluster
    publish step cuts the shuffled stream with these). ``sizes`` overrides the split sizes
    (the options check the names with empty splits, before the line count is known).
    ``checking``: names only; otherwise (the cluster's publish) empty shards are reported."""
    paths: List[str] = []
    quota: List[int] = []
    if sizes is None:
        sizes = split_sizes(opts.split, total, opts.unique)
    for (name, _, _), size in zip(opts.split, sizes):
        sink = Sink.for_options(opts, size, output=split_pattern(os.fspath(opts.output), name),
                                checking=checking)
        paths += [os.fspath(p) for p in sink.paths if p is not None]
        quota += sink.quota
    check_shard_count(len(paths), opts.memory_bytes)  # every split's shards are kept at once
    check_distinct(paths, "--split: the output names", f" (put {SPLIT_FIELD} in -o)")
    return paths, quota


class SplitSink(Sink):
    """Routes the shuffled stream to one Sink per split: the first s_1 records to the first,
    the next s_2 to the second, ... Sequential writes only (the engine serialises them)."""

    def __init__(self, opts: ShuffleOptions, total_records: int, header: Optional[bytes] = None):
        self.sep = opts.sep
        self.durable = opts.fsync
        self.limit = None
        self.header = header or b""
        self.records_out = total_records
        split_outputs(opts, total_records)  # distinct names, checked before any file is made
        sizes = split_sizes(opts.split, total_records, opts.unique)
        self.sinks = [Sink.for_options(opts, size, header, split_pattern(os.fspath(opts.output), name))
                      for (name, _, _), size in zip(opts.split, sizes)]
        self.sizes = sizes
        self.names = [name for name, _, _ in opts.split]
        self.paths = [p for s in self.sinks for p in s.paths]
        self.quota = [q for s in self.sinks for q in s.quota]
        self.current = 0
        self.done = 0
        self.positional = False

    def open(self) -> None:
        """Open the first split's output. Each next one is opened when the stream reaches it
        and the one before closed, so one compressor at a time holds memory, as with shards
        (all at once broke the memory bound with 8 compressed splits)."""
        self._advance()

    def _advance(self) -> None:
        """Close the splits that are full and open the one the stream goes to now (splits no
        record reaches are made, header only, by finish())."""
        try:
            while self.current < len(self.sinks) and self.sinks[self.current].full:
                self.sinks[self.current].close_current()
                self.current += 1
            if self.current < len(self.sinks) and not self.sinks[self.current].files:
                self.sinks[self.current].open()
        except BaseException:
            self.abort()
            raise

    def write(self, data: np.ndarray, records: int) -> None:
        """Append the next ``records`` whole records, splitting them between sinks in order."""
        ends: Optional[np.ndarray] = None
        pos = i = 0
        while i < records and self.current < len(self.sinks):
            sink = self.sinks[self.current]
            take = min(records - i, sink.records_out - sink.done)
            if take == records - i and i == 0:
                sink.write(data, take)
            else:
                if ends is None:
                    ends = find_record_ends(data, self.sep)
                end = int(ends[i + take - 1])
                sink.write(data[pos:end], take)
                pos = end
            i += take
            self.done += take
            self._advance()

    def write_at(self, offset: int, data: np.ndarray, records: int, piece: int = 0) -> None:
        raise AssertionError("SplitSink takes sequential writes only")

    def finish(self, before_publish: Optional[Callable[[], None]] = None) -> None:
        """Complete every file of every split, then give each its name, all under one
        publishing lock (no split is published before all are complete)."""
        for s in self.sinks:
            s.complete()
        if before_publish is not None:
            before_publish()
        if not _hold(self):
            publish_all(self.sinks)

    def destinations(self) -> List[Destination]:
        return [d for s in self.sinks for d in s.destinations()]

    def commit(self) -> None:
        for s in self.sinks:
            s.commit()

    def release(self) -> None:
        for s in self.sinks:
            s.release()

    def abort(self) -> None:
        for s in self.sinks:
            s.abort()

    @property
    def wrote_to_stream(self) -> bool:
        return any(s.wrote_to_stream for s in self.sinks)
