"""Command-line interface: parses options, calls the library, reports.

Every command is a thin wrapper over a library function of the same name (``bigshuf.shuffle``,
``bigshuf.verify``, ``bigshuf.predict.can``, ``bigshuf.threshold``). Errors are reported as one line on
stderr with the exit status carried by the exception (see ``bigshuf.common.errors``); no traceback.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable, NoReturn

import click

from bigshuf import __version__
from bigshuf.common.errors import BigshufError, UsageError
from bigshuf.common.sizes import parse_size


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"bigshuf: error: {message}", err=True)
    sys.exit(code)


def reports_errors(func: Callable) -> Callable:
    """Turn library exceptions into one-line messages with the right exit status."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BigshufError as exc:
            _fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            # The reader went away (e.g. `bigshuf shuffle big.txt | head`): quiet, like coreutils.
            try:
                sys.stdout = None  # type: ignore[assignment]
            finally:
                sys.exit(141)
        except KeyboardInterrupt:
            _fail("interrupted; no output written, temporary files removed", 130)
        except MemoryError:
            _fail("out of memory; lower --memory or raise the process memory limit", 1)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            _fail(f"{exc.strerror or exc}{where}", 1)
        except Exception as exc:  # a bug: say so in one line; BIGSHUF_DEBUG=1 shows the trace
            if os.environ.get("BIGSHUF_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} "
                  "(please report it; BIGSHUF_DEBUG=1 shows the traceback)", 1)

    return wrapper


class SizeParam(click.ParamType):
    """A byte count such as 1G, 256M, 512K or 1000000."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeParam()


class _OneLineErrorsGroup(click.Group):
    """Click reports usage errors on several lines; we keep to one line on stderr, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("aborted", 1)
        except click.ClickException as exc:
            msg = exc.format_message().replace("\n", " ")
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                msg += f" Try '{ctx.command_path} --help'."
            _fail(msg, exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_OneLineErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bigshuf")
def main() -> None:
    """Shuffle huge line files exactly uniformly in bounded memory, and post-process
    classifier predictions (CAN re-balancing, threshold search)."""


# --- shuffle / verify -----------------------------------------------------------------------

@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True, readable=False))
@click.option("-o", "--output", type=click.Path(allow_dash=True), default=None,
              help="Output file (default: stdout). With --shards/--lines-per-shard, the base name "
                   "of the shard files (see README, 'Sharded output').")
@click.option("-S", "--memory", type=SIZE, default="1G", show_default=True,
              help="Memory budget for the whole run (K/M/G/T suffixes).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed: the same seed, input and --memory give byte-identical output.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker threads (default: all cores). Does not change the output.")
@click.option("-T", "--temp-dir", default=None, metavar="DIR",
              help="Directory for the temporary bucket file (default: $TMPDIR or /tmp).")
@click.option("--buckets", type=click.IntRange(min=1), default=None,
              help="Force the number of buckets (for tests and tuning).")
@click.option("-z", "--zero-terminated", is_flag=True, help="Records end with NUL, not newline.")
@click.option("--header", is_flag=True,
              help="Keep the first line of the input on top (once, even with many inputs).")
@click.option("--shards", type=click.IntRange(min=1), default=None,
              help="Write N output files of near-equal line counts.")
@click.option("--lines-per-shard", type=click.IntRange(min=1), default=None,
              help="Write output files of L lines each (the last may be shorter).")
@click.option("-n", "--head-count", "sample", type=click.IntRange(min=0), default=None,
              help="Output at most N lines: a uniform random sample, in random order.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars on stderr (default: only when stderr is a terminal).")
@click.option("-v", "--verbose", is_flag=True, help="Print a summary (records, buckets, timings).")
@click.option("--fsync", is_flag=True,
              help="Flush outputs to disk before renaming them into place (survives power loss).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask cluster (tcp://host:8786, or 'local[:N]' for N local worker "
                   "processes); inputs, -o and --temp-dir may then be fsspec URLs (s3://...). "
                   "Needs: pip install 'bigshuf[dask]'.")
@reports_errors
def shuffle(inputs, output, memory, seed, jobs, temp_dir, buckets, zero_terminated, header,
            shards, lines_per_shard, sample, progress, verbose, fsync, scheduler):
    """Shuffle the lines of INPUTS (files, '-' for stdin; none means stdin) uniformly at random.

    Compressed inputs and outputs (.gz, .bz2, .xz, .zst) are handled by file extension.
    """
    from bigshuf.shuffler.engine import shuffle as run_shuffle

    if scheduler is not None:
        if sample is not None:
            raise UsageError("-n/--head-count is not available with --scheduler")
        from bigshuf.shuffler.cluster import shuffle_on_cluster

        stats = shuffle_on_cluster(
            list(inputs), output, scheduler=scheduler, memory=memory, seed=seed,
            temp_dir=temp_dir, buckets=buckets, zero_terminated=zero_terminated, header=header,
            shards=shards, lines_per_shard=lines_per_shard, progress=progress, jobs=jobs,
            warn=lambda m: click.echo(f"bigshuf: warning: {m}", err=True))
        if verbose:
            click.echo(stats.summary(), err=True)
        return
    stats = run_shuffle(
        list(inputs) or ["-"], output, memory=memory, seed=seed, jobs=jobs, temp_dir=temp_dir,
        buckets=buckets, zero_terminated=zero_terminated, header=header, shards=shards,
        lines_per_shard=lines_per_shard, sample=sample, progress=progress, fsync=fsync,
    )
    if verbose:
        click.echo(stats.summary(), err=True)


@main.command()
@click.argument("first", type=click.Path(allow_dash=True))
@click.argument("second", type=click.Path(allow_dash=True))
@click.option("-z", "--zero-terminated", is_flag=True, help="Records end with NUL, not newline.")
@click.option("--progress/--no-progress", default=None, help="Progress bars on stderr.")
@reports_errors
def verify(first, second, zero_terminated, progress):
    """Exit 0 if FIRST and SECOND hold the same multiset of lines, 1 if not.

    Order-free: compares line counts and xxhash-based fingerprints, at disk speed.
    """
    from bigshuf.shuffler.verify import verify as run_verify

    result = run_verify(first, second, zero_terminated=zero_terminated, progress=progress)
    for fp in (result.first, result.second):
        click.echo(f"{fp.count:>14,d} lines  {fp.hexdigest}  {fp.path}")
    if result.same:
        click.echo("same multiset of lines")
    else:
        click.echo("DIFFERENT: " + result.difference())
        sys.exit(1)


# --- prediction commands (can, threshold) ---------------------------------------------------
# (kept together below this line)


class _NumberList(click.ParamType):
    """A comma-separated list of numbers, e.g. ``0.5,0.7,0.9``."""

    def __init__(self, kind: type):
        self.kind = kind
        self.name = "INTS" if kind is int else "NUMBERS"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            return [self.kind(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.name.lower()}", param, ctx)


def _prediction_io_options(func: Callable) -> Callable:
    """Options that say how prediction files are read and written (shared by can/threshold)."""
    options = [
        click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
                     help="Output file (default: stdout). Written atomically; .npy for a matrix."),
        click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv", "tsv", "npy"]),
                     default="auto", show_default=True, help="Input format (auto: by extension; stdin is sniffed)."),
        click.option("--key", default=None,
                     help="JSONL key of the probability vector or score; CSV column prefix or comma list "
                          "of columns (default: found automatically)."),
        click.option("--label-key", default=None, help="JSONL key / CSV column of the gold label."),
        click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None,
                     help="Gold labels in a separate file (one per line, or .npy), e.g. for .npy input."),
        click.option("--classes", default=None,
                     help="Class names in index order: a comma list or a file (one name a line)."),
        click.option("--logits/--probs", "logits", default=None,
                     help="Rows are logits (softmax first) / probabilities (default: logits only under "
                          "a logits key or logit_* columns)."),
        click.option("--pred-key", default="pred", show_default=True,
                     help="Key/column the predicted class is written under."),
        click.option("--report", "report_file", type=click.Path(dir_okay=False, allow_dash=True), default=None,
                     help="Also write the report as JSON to this file."),
        click.option("-q", "--quiet", is_flag=True, help="No report on stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _read_options(fmt, key, label_key, labels_file, classes, logits) -> dict:
    return {"fmt": fmt, "key": key, "label_key": label_key, "labels": labels_file,
            "classes": classes, "logits": logits}


def _emit_params(params: dict) -> None:
    """Search results with nowhere else to go are printed on stdout as JSON."""
    import json

    click.echo(json.dumps(params, indent=2, ensure_ascii=False))


@main.command()
@click.argument("input", type=click.Path(allow_dash=True))
@_prediction_io_options
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Take the confident reference rows from this file (e.g. the dev set) instead of "
                   "INPUT; INPUT is then read once, streaming.")
@click.option("--reference-labels", type=click.Path(dir_okay=False), default=None,
              help="Gold labels of the --reference rows in a separate file.")
@click.option("--prior", default=None,
              help="Class prior: a file of training labels (one a line, or JSONL), a file or string of "
                   "weights (comma list or JSON), 'uniform' or 'reference' (labels of the reference "
                   "rows). Default: label frequencies of the tuning rows with --tune, of a labelled "
                   "--reference file, else uniform.")
@click.option("--tau", type=click.FloatRange(0, 1), default=None,
              help="Rows with top-k uncertainty >= tau are adjusted.  [default: 0.9]")
@click.option("--alpha", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Exponent applied before each normalisation.  [default: 1]")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Alternating normalisation rounds.  [default: 1]")
@click.option("-k", "--top-k", "k", type=click.IntRange(min=2), default=None,
              help="k of the top-k uncertainty.  [default: 3]")
@click.option("--params", "params_file", type=click.Path(dir_okay=False), default=None,
              help="Read tau/alpha/iterations/k/prior from a file saved by --tune --save-params "
                   "(options given explicitly win).")
@click.option("--tune", is_flag=True,
              help="Grid-search tau, alpha, iterations and k on the labelled INPUT; rows are written "
                   "only with -o.")
@click.option("--save-params", type=click.Path(dir_okay=False), default=None,
              help="With --tune: save the winner (and prior) as JSON.")
@click.option("--cv", "folds", type=click.IntRange(min=0), default=5, show_default=True,
              help="With --tune: folds of the cross-validated estimate (0 or 1: skip it).")
@click.option("--taus", type=_NumberList(float), default=None, help="Tuning grid for tau (comma list).")
@click.option("--alphas", type=_NumberList(float), default=None, help="Tuning grid for alpha.")
@click.option("--iterations-grid", type=_NumberList(int), default=None, help="Tuning grid for iterations.")
@click.option("--ks", type=_NumberList(int), default=None, help="Tuning grid for k.")
@click.option("--max-reference", type=click.IntRange(min=0), default=100_000, show_default=True,
              help="Cap on the reference rows kept in memory (0: no cap).")
@click.option("--subsample", type=click.Choice(["uniform", "stratified"]), default="uniform", show_default=True,
              help="How the capped reference set is drawn (stratified: proportional by predicted class).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for subsampling and cross-validation folds.")
@click.option("--progress/--no-progress", default=None, help="Progress bar while tuning.")
@reports_errors
def can(input, output, fmt, key, label_key, labels_file, classes, logits, pred_key, report_file, quiet,
        reference, reference_labels, prior, tau, alpha, iterations, k, params_file, tune, save_params,
        folds, taus, alphas, iterations_grid, ks, max_reference, subsample, seed, progress):
    """Re-balance uncertain predictions in INPUT ('-' for stdin) with CAN (classification with
    alternating normalisation) and a class prior.

    Rows keep all their fields; uncertain rows get the adjusted vector, every row gets the
    predicted class under --pred-key. See docs/predictions.md.
    """
    from bigshuf.predict.can import can as run_can, format_can_report

    if tune and params_file:
        raise UsageError("--tune searches the parameters; it cannot also read them with --params")
    if save_params and not tune:
        raise UsageError("--save-params needs --tune")
    grid_given = any(v is not None for v in (taus, alphas, iterations_grid, ks))
    if grid_given and not tune:
        raise UsageError("--taus/--alphas/--iterations-grid/--ks need --tune")
    result = run_can(
        input, output, reference=reference, reference_labels=reference_labels, prior=prior, tau=tau,
        alpha=alpha, iterations=iterations, k=k, params=params_file, tune=tune, save_params=save_params,
        folds=folds, grid={"taus": taus, "alphas": alphas, "iterations": iterations_grid, "ks": ks},
        max_reference=max_reference, subsample=subsample, seed=seed, report=report_file, pred_key=pred_key,
        progress=progress, **_read_options(fmt, key, label_key, labels_file, classes, logits),
    )
    if not quiet:
        click.echo(format_can_report(result), err=True)
    if tune and not save_params and output is None:
        _emit_params({"bigshuf": "can", **result["params"], "prior": result["prior"]["values"]})


@main.command()
@click.argument("input", type=click.Path(allow_dash=True))
@_prediction_io_options
@click.option("--metric", type=click.Choice(["accuracy", "f1", "mcc", "balanced-accuracy"]), default=None,
              help="What to maximise (multi-class: macro F1, multi-class MCC, mean recall).  "
                   "[default: accuracy; with --params, the metric saved there]")
@click.option("--params", "params_file", type=click.Path(dir_okay=False), default=None,
              help="Apply a cut/weights saved by --save-params instead of searching.")
@click.option("--save-params", type=click.Path(dir_okay=False), default=None,
              help="Save the cut (binary) or class weights (multi-class) as JSON.")
@click.option("--positive", default=None,
              help="Binary data: the positive class (name or index).  [default: 1]")
@click.option("--cv", "folds", type=click.IntRange(min=0), default=5, show_default=True,
              help="Folds of the cross-validated estimate of the gain (0 or 1: skip it).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for the cross-validation folds.")
@reports_errors
def threshold(input, output, fmt, key, label_key, labels_file, classes, logits, pred_key, report_file, quiet,
              metric, params_file, save_params, positive, folds, seed):
    """Find the decision threshold (binary) or class weights (multi-class) that maximise a metric
    on the labelled INPUT, or apply saved ones with --params.

    Searching prints the params on stdout unless --save-params or -o is given; applying writes
    every row with the predicted class under --pred-key. See docs/predictions.md.
    """
    from bigshuf.predict.thresholds import format_threshold_report, threshold as run_threshold

    if params_file and save_params:
        raise UsageError("--params applies saved params; --save-params saves searched ones: use one")
    if params_file and positive is not None:
        raise UsageError("--positive is fixed by the params file")
    result = run_threshold(
        input, output, metric=metric, params=params_file, save_params=save_params, positive=positive,
        folds=folds, seed=seed, report=report_file, pred_key=pred_key,
        **_read_options(fmt, key, label_key, labels_file, classes, logits),
    )
    if not quiet:
        click.echo(format_threshold_report(result), err=True)
    if not params_file and not save_params and output is None:
        _emit_params(result["params"])
