"""``bigshuf.shuffle``: options in, a shuffled output out, nothing left behind on failure.

This is the one entry point the CLI and Python callers share: it validates the options (once,
in :class:`ShuffleOptions`), runs the checks that need the file system before any work, picks
the method (reservoir sample, local engine, or the Dask cluster) and owns the cleanup.
"""
from __future__ import annotations

import gc
import os
import time
from dataclasses import replace
from typing import Any, List, Optional, Sequence, Tuple

from bigshuf.common.codecs import (
    check_codecs,
    check_decoders,
    compressor_bytes,
    decoder_limit,
    decoders_within,
)
from bigshuf.common.errors import BigshufError, UsageError, warn_stderr
from bigshuf.common.output import check_destination
from bigshuf.common.progress import Progress
from bigshuf.common.randomness import Streams, resolve_seed
from bigshuf.common.signals import SignalGuard
from bigshuf.common.space import check_free_space
from bigshuf.common.tempdir import temp_directory
from bigshuf.shuffler.engine import Cancelled, Engine, Level
from bigshuf.shuffler.options import NAME_FIELD, ShuffleOptions
from bigshuf.shuffler.plan import Geometry, plan
from bigshuf.shuffler.records import RecordReader, display_name
from bigshuf.shuffler.scatter import KEY_BYTES, KeyRange
from bigshuf.shuffler.sources import record_inputs
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import Sink, check_distinct, check_shard_names, held, publish_all


def shuffle(inputs: Sequence[Any] = ("-",), output: Any = None, **options: Any) -> ShuffleStats:
    """Shuffle the records of ``inputs`` (paths, '-' for stdin) into ``output`` (None or '-':
    stdout; with ``shards``/``lines_per_shard`` a shard name pattern).

    Keywords are the fields of :class:`~bigshuf.shuffler.options.ShuffleOptions`: ``memory``
    bounds the whole run; ``seed`` makes it reproducible; ``sample`` keeps only that many records
    (a uniform sample in random order); ``fsync`` makes the outputs durable before they are
    renamed into place; ``scheduler`` runs it on a Dask cluster. Raises
    :class:`bigshuf.common.errors.BigshufError` subclasses on failure, after removing every
    temporary file; the destination is then untouched.
    """
    return run(ShuffleOptions.from_keywords(inputs, output, **options))


def run(opts: ShuffleOptions) -> ShuffleStats:
    """Run a validated shuffle (see :func:`shuffle`)."""
    if opts.aligned:
        return run_aligned(opts)
    _check_outputs(opts)
    if opts.scheduler is not None:
        from bigshuf.shuffler.cluster import shuffle_on_cluster

        return shuffle_on_cluster(opts)
    geo = plan_run(opts)
    with decoders_within(decoder_limit(opts.memory_bytes)):
        return _run_local(opts, geo)


def _run_local(opts: ShuffleOptions, geo: Geometry) -> ShuffleStats:
    seed = resolve_seed(opts.seed)
    warn = opts.warn or warn_stderr
    stats = ShuffleStats(seed=seed, workers=geo.workers(opts.jobs))
    if opts.direct:
        from bigshuf.shuffler.repeat import run_direct  # -r, -n 0, -i -n: no engine needed

        if run_direct(opts, geo, Streams(seed), stats):
            return stats
    reader = RecordReader(record_inputs(opts), opts.sep, header=opts.header, warn=warn)
    size = _preflight(opts, reader, geo, stats.workers)
    if opts.sample is not None and opts.buckets is None:
        from bigshuf.shuffler.sampling import reservoir_fits, sample_by_reservoir

        # -n: decided from N and --memory alone, so a file and the same bytes on a stream
        # take the same way (the reservoir spills to the temporary file if the lines are long).
        if reservoir_fits(opts.sample, geo):
            with SignalGuard() as signals:
                sample_by_reservoir(reader, opts, geo, Streams(seed), stats, size, signals.defer)
            return stats
    return _run_engine(opts, reader, geo, Streams(seed), stats, size)


def run_aligned(opts: ShuffleOptions) -> ShuffleStats:
    """``--aligned``: each input shuffled on its own into -o with {name} replaced by its file
    name. The order is a function of the seed and the record's index only, so inputs with as
    many records get one permutation. The counts are compared first (nothing is written if they
    differ), and no output is published before every one is complete."""
    seed = resolve_seed(opts.seed)  # one seed for every input, drawn once if not given
    runs = [replace(opts, inputs=[p], output=aligned_output(opts, p), aligned=False, seed=seed,
                    random_source=None) for p in opts.inputs]
    check_distinct([os.fspath(r.output) for r in runs], "outputs of --aligned",
                   " (inputs with the same file name)")
    for r in runs:
        _check_outputs(r)
    geo = plan_run(opts)
    counts = [_count_records(r, geo) for r in runs]
    if len(set(counts)) > 1:
        listed = ", ".join(f"{display_name(p)} {n:,}" for p, n in zip(opts.inputs, counts))
        raise UsageError(f"--aligned: the inputs hold different numbers of records: {listed}")
    done: List[ShuffleStats] = []
    with SignalGuard() as signals, held() as sinks:
        try:
            for r in runs:
                done.append(run(r))
            for p, st, n in zip(opts.inputs, done, counts):
                if st.records != n:
                    raise BigshufError(f"{display_name(p)}: input changed while it was being shuffled")
            signals.defer()
            publish_all(sinks)
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
    stats = done[0]
    stats.outputs = [o for st in done for o in st.outputs]
    return stats


def aligned_output(opts: ShuffleOptions, path: Any) -> str:
    """-o with {name} replaced by the input's file name (braces escaped for shard patterns)."""
    name = os.path.basename(os.fspath(path))
    if opts.sharded:
        name = name.replace("{", "{{").replace("}", "}}")
    return os.fspath(opts.output).replace(NAME_FIELD, name)


def _count_records(opts: ShuffleOptions, geo: Geometry) -> int:
    """The records of ``opts``' inputs (headers left out), read once in bounded memory."""
    reader = RecordReader(record_inputs(opts), opts.sep, header=opts.header)
    for block in reader.blocks(geo.block_bytes, geo.block_records):
        del block
    return reader.records


def plan_run(opts: ShuffleOptions) -> Geometry:
    """The run's sizes: the budget's plan, with the output compressor's bytes and the input
    decoder's window (xz dictionary, zstd window: refused if it cannot fit) set aside from
    what the engine and the input method keep in RAM. Only those two change (the shuffle's
    blocks and units do not), so a compressed output holds the plain output's bytes."""
    memory = opts.memory_bytes
    decoders = 0 if opts.generated else check_decoders(opts.inputs, memory)
    return replace(plan(memory), reserved=decoders + max(compressor_bytes(o, memory)
                                                         for o in _output_names(opts)))


def _output_names(opts: ShuffleOptions) -> List[Any]:
    """-o, or with --split the name pattern of each split."""
    if opts.split is None or opts.to_stdout:
        return [opts.output]
    from bigshuf.shuffler.split import split_pattern

    return [split_pattern(os.fspath(opts.output), name) for name, _, _ in opts.split]


def _check_outputs(opts: ShuffleOptions) -> None:
    """Every output name, before any work, in every mode: codecs, split names (distinct),
    directories, shard patterns. (URLs are the cluster's storage: checked when written.)"""
    check_codecs([opts.output if isinstance(opts.output, str) else None])  # inputs: by the reader
    if opts.split is not None and not opts.to_stdout:
        from bigshuf.shuffler.split import split_outputs

        split_outputs(opts, 0, [0] * len(opts.split))  # name patterns, distinct names
    for output in _output_names(opts):
        if isinstance(output, str) and "://" in output:
            continue
        if opts.sharded:  # each shard's name, formatted ({index} may name its directory)
            check_shard_names(os.fspath(output), opts.shards)
        else:
            check_destination(output)


def _preflight(opts: ShuffleOptions, reader: RecordReader, geo: Geometry, workers: int
               ) -> Optional[int]:
    """Checks that need the file system, before any work; returns the input size if known."""
    temp_directory(opts.temp_dir)
    size = reader.known_size()
    from bigshuf.shuffler.reread import suitable
    from bigshuf.shuffler.sampling import reservoir_fits

    known = size if size is not None else reader.estimated_size()
    # The temporary file holds the records and their 8-byte keys; the input method and the
    # reservoir need none (if either falls back or spills, a full disk is still a clean
    # one-line error).
    temp = None if known is None else known + KEY_BYTES * reader.estimated_records()
    sampled = opts.sample is not None and opts.buckets is None and reservoir_fits(opts.sample, geo)
    if sampled or suitable(reader, geo, size, workers, None if opts.to_stdout else opts.output):
        temp = 0
    check_free_space(known, None if opts.to_stdout else opts.output, opts.temp_dir,
                     geo.memory_store_capacity(workers), temp, sample=opts.sample is not None)
    return size


def _run_engine(opts: ShuffleOptions, reader: RecordReader, geo: Geometry, streams: Streams,
                stats: ShuffleStats, size: Optional[int]) -> ShuffleStats:
    """The input method where it fits (see shuffler/reread), else the engine; an input that
    changes under the input method starts the run over the engine way (reading it once)."""
    from bigshuf.shuffler.reread import InputChanged, suitable

    if not suitable(reader, geo, size, stats.workers, None if opts.to_stdout else opts.output):
        return _run(opts, reader, geo, streams, stats, size, reread=False)
    try:
        return _run(opts, reader, geo, streams, stats, size, reread=True)
    except InputChanged as exc:
        sources = exc.sources or record_inputs(opts)
    # Started outside the handler, and after a collection: the exception's traceback holds the
    # first attempt's frames, whose locals (window buffer, index, read buffers) would otherwise
    # live on beside the engine's and break the memory bound.
    gc.collect()
    fresh = RecordReader(sources, opts.sep, header=opts.header, warn=opts.warn or warn_stderr)
    return _run(opts, fresh, geo, streams, ShuffleStats(seed=stats.seed, workers=stats.workers),
                fresh.known_size(), reread=False)


def _run(opts: ShuffleOptions, reader: RecordReader, geo: Geometry, streams: Streams,
         stats: ShuffleStats, size: Optional[int], reread: bool) -> ShuffleStats:
    """Scatter (or index), gather, publish; on any failure or signal remove everything written."""
    from bigshuf.shuffler import reread as method

    prog = Progress(opts.progress, size)
    engine = Engine(geo, stats.workers, streams, opts.sep, opts.temp_dir, prog, stats)
    sink: Optional[Sink] = None
    prepared: Optional[Tuple[Any, Any]] = None
    with SignalGuard(stop=engine.stop) as signals:
        try:
            t0 = time.perf_counter()

            prepared, level, reader = _scatter(opts, reader, engine, streams, stats, size,
                                               reread, prog)
            stats.records, stats.bytes = reader.records, reader.payload
            stats.levels = max(stats.levels, 1)
            t1 = time.perf_counter()
            stats.scatter_seconds = t1 - t0
            prog.start_gather(stats.bytes if opts.sample is None else None)
            if opts.split is not None:  # --split: the stream cut into one Sink per split
                from bigshuf.shuffler.split import SplitSink

                sink = SplitSink(opts, stats.records, reader.header)
            else:
                sink = Sink.for_options(opts, stats.records, reader.header, limit=opts.sample)
            sink.open()
            if prepared is not None:
                method.write_windows(engine, *prepared, sink, streams, prog)
                prepared[0].close()
            else:
                assert level is not None
                engine.gather(level, sink)
            engine.close()
            signals.defer()  # everything is written: only the renames are left, do them all
            sink.finish()
            stats.records_out = sink.done
            stats.outputs = [p for p in sink.paths if isinstance(p, str)]
            stats.gather_seconds = time.perf_counter() - t1
        except BaseException as exc:
            engine.close()
            if prepared is not None:
                if isinstance(exc, method.InputChanged):
                    exc.sources = prepared[0].sources()
                prepared[0].close()
            # Asked before abort(), which takes the temporary name back (a file then looks
            # like a stream that got data).
            partial = sink is not None and sink.wrote_to_stream
            if sink is not None:
                sink.abort()
            if signals.fired:  # whatever surfaced first (Cancelled from a check), report the signal
                raise signals.error(partial=partial) from None
            if isinstance(exc, Cancelled):
                raise BigshufError("stopped") from None
            raise
        finally:
            prog.close()
    return stats


def _scatter(opts: ShuffleOptions, reader: RecordReader, engine: Engine, streams: Streams,
             stats: ShuffleStats, size: Optional[int], reread: bool, prog: Progress
             ) -> Tuple[Optional[Tuple[Any, Any]], Optional[Level], RecordReader]:
    """Phase 1: the input method's pass 0 (see shuffler/reread) when asked and it fits, else
    the engine's scatter. Returns (prepared input method or None, level or None, the reader)."""
    from bigshuf.shuffler import reread as method

    geo = engine.geo
    prepared = method.prepare(engine, reader, streams, opts.buckets, prog.scattered) \
        if reread else None
    if prepared is not None:
        stats.runs, stats.buckets = prepared[0].runs, prepared[0].k
        stats.store, stats.passes = "input", len(prepared[1])
        return prepared, None, reader
    if reread:  # not suitable after all: read once, the engine way
        said = reader.quote_reported  # warnings are not repeated by the second reading
        reader = RecordReader(record_inputs(opts), opts.sep, header=opts.header,
                              warn=opts.warn or warn_stderr)
        reader.quote_reported = said
    blocks = reader.blocks(geo.block_bytes, geo.block_records, engine.pool)
    # Each input may gain one terminator (a last line without one): room for it, or a file
    # that exactly fits would spill to the temporary file for a byte.
    room = None if size is None else size + len(reader.inputs)
    level = engine.scatter(blocks, KeyRange(), room, opts.buckets,
                           lambda block: prog.scattered(reader.bytes_read))
    stats.buckets = level.piece_bytes.shape[1]
    return None, level, reader
