"""``bigshuf.shuffle``: options in, a shuffled output out, nothing left behind on failure.

This is the one entry point the CLI and Python callers share: the options were validated once
(:class:`ShuffleOptions`); here every output is checked, the budget planned (the output's
compressor and the input's decoder set aside), the method chosen (:mod:`bigshuf.shuffler.methods`)
and the file systems checked, all before any work. ``--aligned`` runs one job per input and
publishes the outputs together.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

from bigshuf.common.codecs import (
    check_codecs,
    check_decoders,
    compressor_bytes,
    decoder_limit,
    decoders_within,
)
from bigshuf.common.container import budget_warning, memory_temp_problem
from bigshuf.common.errors import BigshufError, UsageError, changed, warn_stderr
from bigshuf.common.inputs import InputKind, describe_input
from bigshuf.common.output import check_destination
from bigshuf.common.randomness import resolve_seed
from bigshuf.common.signals import SignalGuard
from bigshuf.common.space import check_free_space
from bigshuf.common.tempdir import temp_directory
from bigshuf.shuffler.dedup import Distinct, UniqueReader, find_distinct
from bigshuf.shuffler.epochs import allocator_slack, by_epoch, epoch_options, run_epochs
from bigshuf.shuffler.manifest import run_recorded
from bigshuf.shuffler.methods import Job, Method, choose
from bigshuf.shuffler.methods.cluster import Cluster
from bigshuf.shuffler.mixture import MixReader, Share, count_inputs, input_names, plan_mixture, split_table
from bigshuf.shuffler.options import NAME_FIELD, ShuffleOptions
from bigshuf.shuffler.plan import Geometry, plan
from bigshuf.shuffler.records import RecordReader, display_name
from bigshuf.shuffler.rereading import read_once, rereadable_inputs
from bigshuf.shuffler.sources import record_inputs
from bigshuf.shuffler.split import split_outputs, split_pattern, split_sizes
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import (
    check_distinct,
    check_shard_count,
    check_shard_names,
    claim_name,
    held,
    in_run,
    outer_hold,
    publish_or_hold,
    run_names,
    shard_paths,
)


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
    """Run a validated shuffle (see :func:`shuffle`): check every output, plan the budget,
    choose the method (:func:`bigshuf.shuffler.methods.choose`), check the file systems, run;
    with --manifest, record what was written (:mod:`bigshuf.shuffler.manifest`)."""
    if not in_run():  # the whole run: every file it writes is written once
        with run_names():
            names = list(_known_output_names(opts))
            if opts.manifest is not None:
                names.append(opts.manifest)
            check_distinct(names, "the output names", " (put {index}, {epoch}, {split} or "
                           "{name} where it tells the files apart)")
            if opts.manifest is not None:
                claim_name(opts.manifest, f"--manifest {opts.manifest}")
            # Once, for the options as given: an epoch's or a split's own options carry the
            # budget as a number, and the room may have shrunk by a spool since.
            _check_budget(opts)
            stats = run(opts)
            stats.budget = opts.memory_capped or stats.budget
            return stats
    if opts.manifest is not None and outer_hold() is None:  # not for the runs of one inside
        return run_recorded(opts, _run)
    return _run(opts)


def _run(opts: ShuffleOptions) -> ShuffleStats:
    """--aligned: one run per input; --epochs: one run per epoch; else one run."""
    if opts.aligned:
        return run_aligned(opts)
    if opts.epochs is not None:
        return run_epochs(opts, run, _check_outputs, rereadable_inputs)
    if opts.mix is not None and opts.sample != 0:
        return run_mixture(opts)
    _check_outputs(opts)
    job = Job(opts, plan_run(opts), resolve_seed(opts.seed))
    job.stats.budget = opts.memory_capped or ""
    with decoders_within(decoder_limit(opts.memory_bytes)), ExitStack() as spooled:
        if opts.unique:
            _unique_preflight(job)
            spooled.callback(find_duplicates(job))
        method = choose(job)
        if not isinstance(method, Cluster):
            _preflight(method)
        return method.run()


def find_duplicates(job: Job) -> Any:
    """--unique: the pass that finds the first occurrence of every distinct record
    (:mod:`bigshuf.shuffler.dedup`); the job's reader then drops the others. Every input is
    read again from what this pass opened (:mod:`bigshuf.shuffler.rereading`: streams copied
    once to an unlinked file in --temp-dir, files held open), and must hold the same bytes
    (digests compared by the second reading). Returns what closes them."""
    opts, geo = job.opts, job.geo
    if opts.input_range is not None or opts.sample == 0:  # distinct numbers; nothing read
        return lambda: None
    t0 = time.perf_counter()
    stopped = threading.Event()
    held: Any = None
    with SignalGuard(stop=stopped.set) as signals:
        def check() -> None:
            if stopped.is_set():
                raise signals.error()
        try:
            items, held = ([], None) if opts.generated else rereadable_inputs(opts)

            def inputs() -> List[Any]:
                if opts.generated:
                    return record_inputs(opts)
                return [p.open() if hasattr(p, "open") else p for p in items]
            reader = RecordReader(inputs(), opts.sep, header=opts.header, warn=job.warn,
                                  digest=True)
            # The output's compressor is not open yet: the pass may use its share. The bitmap
            # (which stays for the shuffle) is bounded by --memory itself, not by what is left.
            distinct = find_distinct(reader, geo.block_bytes, geo.block_records,
                                     geo.memory - geo.reserved + _compressor_reserve(opts),
                                     job.stats.workers, temp_directory(opts.temp_dir),
                                     job.streams.seed, reader.estimated_records(), check,
                                     budget=opts.memory_bytes)
            distinct.digests = [e["digest"] for e in reader.input_entries]
        except BaseException:
            if held is not None:
                held.close()
            raise
    job.inputs, job.distinct = inputs, distinct
    # The bitmap stays for the shuffle, with a block of scratch for the filter's compaction.
    job.geo = replace(geo, reserved=geo.reserved + distinct.nbytes + geo.block_bytes)
    job.stats.unique, job.stats.duplicates = True, distinct.duplicates
    job.stats.unique_seconds = time.perf_counter() - t0
    return held.close if held is not None else (lambda: None)


def _unique_preflight(job: Job) -> None:
    """--unique, before its pass: the temporary directory, and free space for the input's
    size (the distinct records are at most that) in the temporary file and the output, as the
    run without -u checks before any work. Streams' sizes are unknown: not counted."""
    opts = job.opts
    temp_directory(opts.temp_dir)
    if opts.generated or opts.scheduler is not None:
        return
    known = 0
    for p in opts.inputs:
        info = describe_input(p) if isinstance(p, (str, os.PathLike)) else None
        if info is not None and info.kind is InputKind.FILE:
            known += info.size or 0
        elif info is not None and info.kind is InputKind.COMPRESSED:
            known += 4 * (info.disk_bytes or 0)  # the estimate the methods use
    # The spool copy of streams is not counted (unknown); the shuffle's own preflight still runs.
    check_free_space(known, job.output_path, opts.temp_dir,
                     job.geo.memory_store_capacity(job.stats.workers),
                     sample=opts.sample is not None)


def _check_budget(opts: ShuffleOptions) -> None:
    """Warn if an explicit --memory cannot fit this container's memory cgroup (the default
    was already capped to fit it: :func:`bigshuf.common.container.default_budget`)."""
    if opts.memory_capped is None and opts.scheduler is None:
        why = budget_warning(opts.memory_bytes)
        if why is not None:
            (opts.warn or warn_stderr)(why)


def run_aligned(opts: ShuffleOptions) -> ShuffleStats:
    """``--aligned``: each input shuffled on its own into -o with {name} replaced by its file
    name. The order is a function of the seed and the record's index only, so inputs with as
    many records get one permutation. The counts are compared first (nothing is written if they
    differ), and no output is published before every one is complete."""
    seed = resolve_seed(opts.seed)  # one seed for every input, drawn once if not given
    runs = [replace(opts, inputs=[p], output=aligned_output(opts, p), aligned=False, seed=seed,
                    random_source=None) for p in opts.inputs]
    for r in runs:  # every output's names (every epoch's), before any work
        epochs = epoch_options(r, 0) if r.epochs is not None else [r]
        for one in (epochs if by_epoch(r) or r.split is not None else epochs[:1]):
            _check_outputs(one)
    geo = plan_run(opts)
    counts = [_count_records(r, geo) for r in runs]
    if len(set(counts)) > 1:
        listed = ", ".join(f"{display_name(p)} {n:,}" for p, n in zip(opts.inputs, counts))
        raise UsageError(f"--aligned: the inputs hold different numbers of records: {listed}")
    def same_counts(done: List[ShuffleStats]) -> None:
        for p, st, n in zip(opts.inputs, done, counts):
            if st.records != n:
                raise BigshufError(changed(display_name(p)))
    done = published_together([partial(run, r) for r in runs], same_counts)
    stats = done[0]
    stats.outputs = [o for st in done for o in st.outputs]
    stats.inputs = [i for st in done for i in st.inputs]
    return stats


def published_together(jobs: Sequence[Callable[[], ShuffleStats]],
                       check: Optional[Callable[[List[ShuffleStats]], None]] = None
                       ) -> List[ShuffleStats]:
    """Run ``jobs`` with every output they finish held under its temporary name, then publish
    them together (or hand them to an enclosing hold: --manifest, --epochs). A failure, a
    signal or ``check`` raising publishes none of them."""
    done: List[ShuffleStats] = []
    outer = outer_hold()
    sinks: List[Any] = []
    with SignalGuard() as signals:
        try:
            with held() as sinks:
                for job in jobs:
                    done.append(job())
            if check is not None:
                check(done)
            signals.defer()
            publish_or_hold(sinks, outer)
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
    return done


def run_mixture(opts: ShuffleOptions) -> ShuffleStats:
    """``--mix``: count the inputs, share the total out, then shuffle the mixture as one
    virtual stream (:mod:`bigshuf.shuffler.mixture`); with --split, one run per split (each
    keeps its own elements), published together."""
    _check_outputs(opts)
    geo = plan_run(opts)  # one more block: the copy (or compacted block) made while one is held
    geo = replace(geo, reserved=geo.reserved + geo.block_bytes)
    seed = resolve_seed(opts.seed)
    inner = replace(opts, mix=None, sample=None, split=None, seed=seed, random_source=None,
                    unique=False)
    names = input_names(opts.inputs)
    with decoders_within(decoder_limit(opts.memory_bytes)), ExitStack() as spooled:
        fresh = _fresh_readings(opts, spooled)
        distinct = None
        if opts.unique:  # dedup within each input: the counts are of each one's distinct records
            distinct, geo = _distinct_within_inputs(fresh(opts), geo, seed)
            counts = distinct.input_distinct
        else:
            counter = RecordReader(record_inputs(fresh(opts)), opts.sep, header=opts.header,
                                   warn=lambda m: None)
            counts = count_inputs(counter, geo.block_bytes, geo.block_records)
        shares = plan_mixture(names, counts, opts.mix, opts.sample)
        taken = [s.as_dict() for s in shares]  # before anything is published
        if opts.split is None:
            stats = _mixture_job(fresh(inner), geo, seed, shares, None, distinct)
        else:
            stats = _mixture_splits(opts, inner, geo, seed, shares, distinct, fresh)
    stats.taken = taken
    if distinct is not None:
        stats.unique, stats.duplicates = True, distinct.duplicates
    return stats


def _fresh_readings(opts: ShuffleOptions, spooled: ExitStack
                    ) -> Callable[[ShuffleOptions], ShuffleOptions]:
    """Options whose inputs are a new reading at each call: as given when every input can be
    opened again; else streams (stdin, pipes) are first copied to --temp-dir and files held
    open (rereading.py), and each reading opens those afresh."""
    if not read_once(opts):
        return lambda o: o
    parts, held = rereadable_inputs(opts)
    spooled.callback(held.close)
    return lambda o: replace(o, inputs=[p.open() if hasattr(p, "open") else p for p in parts])


def _distinct_within_inputs(opts: ShuffleOptions, geo: Geometry, seed: int
                            ) -> Tuple[Distinct, Geometry]:
    """--mix --unique: the first occurrence of each distinct record of each input (records of
    different inputs are never duplicates of each other); the bitmap stays for the mixture."""
    stopped = threading.Event()
    with SignalGuard(stop=stopped.set) as signals:
        def check() -> None:
            if stopped.is_set():
                raise signals.error()
        reader = RecordReader(record_inputs(opts), opts.sep, header=opts.header,
                              warn=lambda m: None)
        distinct = find_distinct(reader, geo.block_bytes, geo.block_records,
                                 geo.memory - geo.reserved + _compressor_reserve(opts),
                                 geo.workers(opts.jobs), temp_directory(opts.temp_dir), seed,
                                 reader.estimated_records(), check, per_input=True,
                                 budget=opts.memory_bytes)  # as find_duplicates
    return distinct, replace(geo, reserved=geo.reserved + distinct.nbytes + geo.block_bytes)


def _mixture_splits(opts: ShuffleOptions, inner: ShuffleOptions, geo: Geometry, seed: int,
                    shares: List[Share], distinct: Optional[Distinct],
                    fresh: Callable[[ShuffleOptions], ShuffleOptions]) -> ShuffleStats:
    """Each split of a mixture in its own run over the stream (``fresh``: a new reading of
    the inputs), none published before all are complete."""
    sizes = split_sizes(opts.split, sum(s.taken for s in shares), opts.unique)
    table = split_table([s.taken for s in shares], sizes, seed)
    def split_job(label: int, name: str) -> ShuffleStats:
        part = replace(fresh(inner), output=split_pattern(os.fspath(opts.output), name))
        return _mixture_job(part, geo, seed, shares, (label, table), distinct)
    done = published_together([partial(split_job, label, name)
                               for label, (name, _, _) in enumerate(opts.split)])
    stats = done[0]
    stats.outputs = [o for st in done for o in st.outputs]
    stats.records = stats.records_out = sum(st.records_out for st in done)
    stats.bytes = sum(st.bytes for st in done)
    stats.inputs = done[0].inputs
    return stats


def _mixture_job(opts: ShuffleOptions, geo: Geometry, seed: int, shares: List[Share],
                 split: Optional[Tuple[int, List[List[int]]]],
                 distinct: Optional[Distinct] = None) -> ShuffleStats:
    """One run over the mixture's stream (of one split's elements, with ``split``); with
    ``distinct`` (--unique), of each input's distinct records."""
    digest = opts.manifest is not None
    base: RecordReader = RecordReader(record_inputs(opts), opts.sep, header=opts.header,
                                      warn=opts.warn or warn_stderr, digest=digest) \
        if distinct is None else \
        UniqueReader(distinct, record_inputs(opts), opts.sep, header=opts.header, digest=digest)
    method = choose(Job(opts, geo, seed, MixReader(base, shares, seed, split)))
    method.why = "a mixture (--mix): the chosen records of the inputs as one stream"
    _preflight(method)
    return method.run()


def aligned_output(opts: ShuffleOptions, path: Any) -> str:
    """-o with {name} replaced by the input's file name (which holds no brace: options)."""
    return os.fspath(opts.output).replace(NAME_FIELD, os.path.basename(os.fspath(path)))


def _count_records(opts: ShuffleOptions, geo: Geometry) -> int:
    """The records of ``opts``' inputs (headers left out), read once in bounded memory."""
    reader = RecordReader(record_inputs(opts), opts.sep, header=opts.header)
    for block in reader.blocks(geo.block_bytes, geo.block_records):
        del block
    return reader.records


def plan_run(opts: ShuffleOptions) -> Geometry:
    """The run's sizes: the budget's plan, with the output compressor's bytes and the input
    decoder's window (xz dictionary, zstd window: refused if it cannot fit) set aside from
    what the engine and the input method keep in RAM (and, in a run of several epochs, the
    allocator's slack: epochs.allocator_slack). Only those change (the shuffle's blocks and
    units do not), so a compressed output holds the plain output's bytes."""
    memory = opts.memory_bytes
    decoders = 0 if opts.generated or opts.scheduler is not None \
        else check_decoders(opts.inputs, memory)
    return replace(plan(memory), reserved=decoders + allocator_slack(memory)
                   + _compressor_reserve(opts))


def _compressor_reserve(opts: ShuffleOptions) -> int:
    """Bytes of the output's compressor (one open at a time, whatever the splits)."""
    return max(compressor_bytes(o, opts.memory_bytes) for o in _output_names(opts))


def _known_output_names(opts: ShuffleOptions) -> Iterator[str]:
    """Every output file of the whole run known before any work (each --aligned input's, each
    epoch's, each split's, each of --shards N), for one distinctness check. Names found while
    writing (--shard-size, --lines-per-shard) are checked as they open (writing.claim_name)."""
    tops = [opts]
    if opts.aligned:
        tops = [replace(opts, output=aligned_output(opts, p), aligned=False, inputs=[p])
                for p in opts.inputs]
        check_distinct([os.fspath(r.output) for r in tops], "outputs of --aligned",
                       " (inputs with the same file name)")
    runs: List[ShuffleOptions] = []
    for top in tops:
        epochs = epoch_options(top, 0) if top.epochs is not None else [top]
        if len(epochs) > 1 and (by_epoch(top) or top.split is not None):
            check_distinct([os.fspath(r.output) for r in epochs], "outputs of --epochs",
                           " (put {epoch} in the file name)")
        runs += epochs if by_epoch(top) else epochs[:1]
    if opts.shards:  # all held until published: refuse before making their names
        check_shard_count(opts.shards * len(runs) * len(opts.split or [None]), opts.memory_bytes)
    for r in runs:
        for name in _output_names(r):
            name = os.fspath(name) if isinstance(name, (str, os.PathLike)) else None
            if name is None or name == "-" or "://" in name:
                continue
            if r.shards:
                yield from shard_paths(name, r.shards)
            elif not r.sharded:
                yield name


def _output_names(opts: ShuffleOptions) -> List[Any]:
    """-o, or with --split the name pattern of each split."""
    if opts.split is None or opts.to_stdout:
        return [opts.output]
    return [split_pattern(os.fspath(opts.output), name) for name, _, _ in opts.split]


def _check_outputs(opts: ShuffleOptions) -> None:
    """Every output name, before any work, in every mode: codecs, split names (distinct),
    directories, shard patterns. (URLs are the cluster's storage: checked when written.)"""
    check_codecs([opts.output if isinstance(opts.output, str) else None])  # inputs: by the reader
    if opts.split is not None and not opts.to_stdout:
        split_outputs(opts, 0, [0] * len(opts.split))  # name patterns, distinct names
    for output in _output_names(opts):
        if isinstance(output, str) and "://" in output:
            continue
        if opts.sharded:  # each shard's name, formatted ({index} may name its directory)
            check_shard_names(os.fspath(output), opts.shards)
        else:
            check_destination(output)


def _preflight(method: Method) -> None:
    """Checks that need the file system, before any work: the temporary directory, and free
    space for what the method writes (the temporary file, the output)."""
    job = method.job
    opts = job.opts
    temp_directory(opts.temp_dir)
    if not method.reads_inputs():
        return
    known = job.size if job.size is not None else job.reader.estimated_size()
    in_ram = job.geo.memory_store_capacity(job.stats.workers)
    check_free_space(known, job.output_path, opts.temp_dir, in_ram, method.temp_bytes(),
                     sample=opts.sample is not None)
    temp = method.temp_bytes() if known else 0
    if temp and temp > in_ram:  # a tmpfs temp dir in a memory cgroup: RAM the limit charges
        why = memory_temp_problem(temp_directory(opts.temp_dir), temp, job.geo.memory)
        if why is not None:
            raise BigshufError(why)
    out = job.output_path
    if known and opts.sample is None and isinstance(out, str) and out != "-" and "://" not in out:
        # an output file in RAM too (tmpfs -o); its temp file goes beside the target
        where = os.path.dirname(os.path.realpath(out))
        why = memory_temp_problem(where, known, job.geo.memory, role="output")
        if why is not None:
            raise BigshufError(why)
