"""Command-line interface: parses options, calls the library, reports.

Every command is a thin wrapper over a library function of the same name (``bigshuf.shuffle``,
``bigshuf.verify``, ``bigshuf.can``, ``bigshuf.threshold``). Errors are reported as one line on
stderr with the exit status carried by the exception (see ``bigshuf.errors``); no traceback.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Optional

import click

from bigshuf import __version__
from bigshuf.errors import BigshufError, UsageError
from bigshuf.sizes import parse_size


def _fail(message: str, code: int) -> "NoReturn":  # type: ignore[name-defined]
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bigshuf")
def main() -> None:
    """Shuffle huge line files exactly uniformly in bounded memory, and post-process
    classifier predictions (CAN re-balancing, threshold search)."""


# --- shuffle / verify -----------------------------------------------------------------------

@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", type=click.Path(allow_dash=True), default=None,
              help="Output file (default: stdout). With --shards/--lines-per-shard, the base name "
                   "of the shard files (see README, 'Sharded output').")
@click.option("-S", "--memory", type=SIZE, default="1G", show_default=True,
              help="Memory budget for the whole run (K/M/G/T suffixes).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed: the same seed, input and --memory give byte-identical output.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker threads (default: all cores). Does not change the output.")
@click.option("-T", "--temp-dir", type=click.Path(file_okay=False), default=None,
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
@reports_errors
def shuffle(inputs, output, memory, seed, jobs, temp_dir, buckets, zero_terminated, header,
            shards, lines_per_shard, sample, progress, verbose):
    """Shuffle the lines of INPUTS (files, '-' for stdin; none means stdin) uniformly at random.

    Compressed inputs and outputs (.gz, .bz2, .xz, .zst) are handled by file extension.
    """
    from bigshuf.shuffle import shuffle as run_shuffle

    stats = run_shuffle(
        list(inputs) or ["-"], output, memory=memory, seed=seed, jobs=jobs, temp_dir=temp_dir,
        buckets=buckets, zero_terminated=zero_terminated, header=header, shards=shards,
        lines_per_shard=lines_per_shard, sample=sample, progress=progress,
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
    from bigshuf.fingerprints import verify as run_verify

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
