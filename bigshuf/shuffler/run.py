"""``bigshuf.shuffle``: options in, a shuffled output out, nothing left behind on failure.

This is the one entry point the CLI and Python callers share: the options were validated once
(:class:`ShuffleOptions`); here every output is checked, the budget planned (the output's
compressor and the input's decoder set aside), the method chosen (:mod:`bigshuf.shuffler.methods`)
and the file systems checked, all before any work. ``--aligned`` runs one job per input and
publishes the outputs together.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, List, Sequence, Set

from bigshuf.common.codecs import (
    check_codecs,
    check_decoders,
    compressor_bytes,
    decoder_limit,
    decoders_within,
)
from bigshuf.common.container import budget_warning, memory_temp_problem
from bigshuf.common.errors import BigshufError, UsageError, warn_stderr
from bigshuf.common.output import check_destination
from bigshuf.common.randomness import resolve_seed
from bigshuf.common.signals import SignalGuard
from bigshuf.common.space import check_free_space
from bigshuf.common.tempdir import temp_directory
from bigshuf.shuffler.methods import Job, Method, choose
from bigshuf.shuffler.methods.cluster import Cluster
from bigshuf.shuffler.options import NAME_FIELD, ShuffleOptions
from bigshuf.shuffler.plan import Geometry, plan
from bigshuf.shuffler.records import RecordReader, display_name
from bigshuf.shuffler.sources import record_inputs
from bigshuf.shuffler.split import split_outputs, split_pattern
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import check_distinct, check_shard_names, held, publish_all


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
    choose the method (:func:`bigshuf.shuffler.methods.choose`), check the file systems, run."""
    _check_budget(opts)
    if opts.aligned:
        return run_aligned(opts)
    _check_outputs(opts)
    job = Job(opts, plan_run(opts), resolve_seed(opts.seed))
    job.stats.budget = opts.memory_capped or ""
    with decoders_within(decoder_limit(opts.memory_bytes)):
        method = choose(job)
        if not isinstance(method, Cluster):
            _preflight(method)
        return method.run()


#: Budgets warned about in this process (an --aligned run's jobs would repeat its warning).
_WARNED: Set[int] = set()


def _check_budget(opts: ShuffleOptions) -> None:
    """Warn (once) if an explicit --memory cannot fit this container's memory cgroup (the
    default was already capped to fit it: :func:`bigshuf.common.container.default_budget`)."""
    if opts.memory_capped is None and opts.scheduler is None:
        why = budget_warning(opts.memory_bytes)
        if why is not None and opts.memory_bytes not in _WARNED:
            _WARNED.add(opts.memory_bytes)
            (opts.warn or warn_stderr)(why)


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
    what the engine and the input method keep in RAM. Only those two change (the shuffle's
    blocks and units do not), so a compressed output holds the plain output's bytes."""
    memory = opts.memory_bytes
    decoders = 0 if opts.generated or opts.scheduler is not None \
        else check_decoders(opts.inputs, memory)
    return replace(plan(memory), reserved=decoders + max(compressor_bytes(o, memory)
                                                         for o in _output_names(opts)))


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
