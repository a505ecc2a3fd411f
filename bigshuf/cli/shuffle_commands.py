"""`bigshuf shuffle` and `bigshuf verify`: parse options, call bigshuf.shuffler, report."""
from __future__ import annotations

import sys

import click

from bigshuf.cli.base import SIZE, main, reports_errors
from bigshuf.common.errors import UsageError
from bigshuf.shuffler.options import DEFAULT_MEMORY_HELP, ShuffleOptions

SHUFFLE_EXAMPLES = """\b
Examples:
  bigshuf shuffle big.txt -o shuffled.txt            # whole file, 1G budget
  bigshuf shuffle -S 256M --seed 7 a.txt b.txt.gz -o out.zst
  zcat *.gz | bigshuf shuffle -n 1000                # uniform sample of 1000 lines
  bigshuf shuffle corpus.jsonl --shards 64 -o 'train.jsonl.gz'
  bigshuf shuffle -e red green blue                  # shuffle the arguments (shuf -e)
  bigshuf shuffle -i 1-10000000000 -n 5              # 5 distinct numbers of a range (shuf -i)
  bigshuf shuffle -r -n 10 -i 1-6                    # ten dice throws (shuf -r)
  bigshuf shuffle -r words.txt | head -5             # endless draws until the pipe closes
  bigshuf shuffle big.txt --random-source key.bin    # randomness from a file's first 32 bytes
  bigshuf shuffle corpus/*.jsonl --split train=0.98,valid=0.01,test=0.01 -o 'data/{split}.jsonl.gz'
  bigshuf shuffle in.txt --split valid=10000,test=10000,train=rest -o '{split}.txt' --shards 4
  bigshuf shuffle --aligned --seed 5 en.txt de.txt -o 'shuf/{name}'   # one permutation, 2 outputs
  bigshuf shuffle --unique words.txt -o distinct.txt  # each distinct line once, in random order
  bigshuf shuffle in.txt --epochs 3 --seed 7 -o 'epoch-{epoch}.txt'   # 3 independent shuffles
  bigshuf shuffle in.txt --seed 7 --first-epoch 2 --epochs 1 -o 'epoch-{epoch}.txt'   # epoch 2 again
  bigshuf shuffle in.jsonl --shard-size 256M -o 'part-{index:05d}.jsonl.zst'   # shards <= 256M
  bigshuf shuffle in.txt -o out.txt --manifest out.json && bigshuf verify --manifest out.json
  bigshuf shuffle --mix 7,3 -n 1000000 web.txt books.txt -o mix.txt   # 70% web, 30% books
Full documentation: bigshuf readme
"""

VERIFY_EXAMPLES = """\b
Examples:
  bigshuf verify big.txt shuffled.txt                 # exit 0: same lines, any order
  bigshuf verify big.txt out-*-of-00064.txt.gz        # the shards together
  bigshuf verify in.txt data/train.txt data/valid.txt data/test.txt   # the splits together
  bigshuf verify --header data.tsv shuffled.tsv       # outputs of 'shuffle --header'
  bigshuf verify --manifest data/manifest.json        # outputs of 'shuffle --manifest': exit 0, all intact
Full documentation: bigshuf readme
"""


# --- shuffle / verify -----------------------------------------------------------------------

#: GNU shuf's long options: a prefix that is ambiguous only because of bigshuf's own options
#: (``--head`` is also ``--header``) means the shuf option, so shuf command lines keep working.
SHUF_LONG_OPTIONS = ("--echo", "--input-range", "--head-count", "--output", "--random-source",
                     "--repeat", "--zero-terminated", "--help")


class _LongPrefixCommand(click.Command):
    """Accepts unambiguous prefixes of long options (``--rep``, ``--input=1-5``), as getopt_long
    and so GNU shuf do; an ambiguous or unknown one is left for click to reject."""

    def parse_args(self, ctx, args):
        longs = [o for p in self.get_params(ctx) for o in (*p.opts, *p.secondary_opts)
                 if o.startswith("--")]
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            name, eq, value = arg.partition("=")
            if name.startswith("--") and name not in longs:
                matches = [o for o in longs if o.startswith(name)]
                if len(matches) > 1:
                    matches = [o for o in matches if o in SHUF_LONG_OPTIONS]
                if len(matches) == 1:
                    arg = matches[0] + eq + value
            out.append(arg)
        return super().parse_args(ctx, out)


@main.command(cls=_LongPrefixCommand, epilog=SHUFFLE_EXAMPLES)
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True, readable=False))
@click.option("-o", "--output", type=click.Path(allow_dash=True), multiple=True,
              help="Output file (default: stdout). Written under a temporary name beside it and "
                   "renamed at the end. With --shards/--lines-per-shard/--shard-size, the shard name "
                   "pattern (README, 'Sharded output names'); with --split, contains {split}; with "
                   "--epochs, may contain {epoch}. Given twice: an error, like shuf.")
@click.option("-S", "--memory", type=SIZE, default=None, show_default=DEFAULT_MEMORY_HELP,
              help="Memory budget of the whole run, K/M/G/T suffixes (minimum 1M). Peak RSS stays "
                   "within SIZE + ~64 MB of interpreter; the longest accepted line is SIZE/16.")
@click.option("--seed", type=int, metavar="N", default=None,
              help="Random seed: the same seed and input give the same lines in the same order, "
                   "whatever --memory, --jobs, the machine, a file or stdin (README, 'The order "
                   "contract'); .xz/.zst outputs hold them in an encoding sized by --memory. "
                   "Without it a random seed is drawn (-v prints it).")
@click.option("-j", "--jobs", type=int, metavar="N", default=None,
              help="Worker threads (default: the cores this process may use, its CPU affinity, capped so all workers fit in --memory). "
                   "Does not change the output.")
@click.option("-T", "--temp-dir", default=None, metavar="DIR",
              help="Directory for the one temporary file (default: $TMPDIR or /tmp).")
@click.option("--buckets", type=int, metavar="K", default=None,
              help="Force the number of buckets (testing, tuning); otherwise the planner decides.")
@click.option("-z", "--zero-terminated", is_flag=True, help="Records end with NUL, not newline.")
@click.option("--header", is_flag=True,
              help="The first line of the first input stays on top (on every shard); the first line "
                   "of every other input is dropped (a warning names those that differ).")
@click.option("--shards", type=int, metavar="N", default=None,
              help="Write N output files of near-equal line counts.")
@click.option("--lines-per-shard", type=int, metavar="L", default=None,
              help="Write output files of L lines each (the last may be shorter).")
@click.option("-n", "--head-count", "sample", metavar="N", multiple=True,
              help="Output a uniform random sample of N lines (all lines if fewer), in random order. "
                   "Given several times, the smallest N wins (like shuf). With -r: N draws.")
@click.option("-e", "--echo", is_flag=True,
              help="Treat each INPUT as an input line, not a file name (shuf -e): "
                   "'bigshuf shuffle -e a b c'.")
@click.option("-i", "--input-range", metavar="LO-HI", multiple=True,
              help="Shuffle the integers LO..HI instead of input files (shuf -i); -n K draws K "
                   "distinct numbers without generating the range.")
@click.option("-r", "--repeat", is_flag=True,
              help="Sample with replacement (shuf -r): each output line is drawn independently and "
                   "uniformly from all input lines. With -n N, N lines; without -n, endless, until "
                   "the reader closes the pipe (exit 0). Input of any size, bounded memory.")
@click.option("--random-source", metavar="FILE", multiple=True,
              help="Take the randomness from FILE: its first 32 bytes are the seed, so the same file "
                   "gives the same output (not shuf's output). A shorter file is an error. Not with "
                   "--seed.")
@click.option("--split", metavar="NAME=SIZE,...", multiple=True,
              help="Cut the shuffled input into disjoint splits in one pass, e.g. "
                   "train=0.98,valid=0.01,test=0.01 or valid=10000,test=10000,train=rest (sizes by "
                   "largest remainder of the line count). Each split is a uniform random subset in "
                   "random order, written to -o with {split} replaced by its name; --shards and "
                   "--lines-per-shard apply to each split.")
@click.option("--aligned", is_flag=True,
              help="Line-parallel INPUTS (a translation pair, features and labels): shuffle each "
                   "with the same permutation into its own output, -o with {name} replaced by the "
                   "input's file name, e.g. -o 'shuf/{name}'. Inputs whose line counts differ are "
                   "refused (exit 2) before anything is written.")
@click.option("-u", "--unique", is_flag=True,
              help="Drop duplicate lines (byte-equal): the first occurrence of each distinct line "
                   "is kept and the distinct lines are shuffled uniformly (with -n: a uniform "
                   "sample of them). -v reports how many were dropped. Not with -r, --aligned or "
                   "--scheduler.")
@click.option("--epochs", type=int, metavar="E", default=None,
              help="E independent shuffles of the inputs (epoch e: the seed of epoch e, README "
                   "'Epochs'), into one output each when -o holds {epoch} (0..E-1, e.g. "
                   "-o 'ep{epoch}.txt'), else one after the other in one output. Inputs are "
                   "read once per epoch (stdin is first copied to --temp-dir).")
@click.option("--first-epoch", type=int, metavar="F", default=None,
              help="Number the epochs from F (default 0): '--first-epoch 2 --epochs 1' writes "
                   "epoch 2 alone, the same bytes as in a longer run with that --seed.")
@click.option("--shard-size", type=SIZE, metavar="SIZE", default=None,
              help="Write shards of at most SIZE bytes (K/M/G, before compression, the header "
                   "included), cut at record ends; a longer record is a shard of its own. Names: "
                   "-o with {index}, or -NNNNN before the extension.")
@click.option("--manifest", metavar="FILE.json", default=None,
              help="After the outputs, write FILE.json: version, seed, options, every input and "
                   "output with records, bytes and XXH3-128 digest; published with the outputs. "
                   "Check it later with 'bigshuf verify --manifest FILE.json'.")
@click.option("--mix", metavar="W1,W2,...", default=None,
              help="Mix the INPUTS in these proportions, one weight per input (plain decimal "
                   "numbers such as 7, 0.25 or 1e-6, taken exactly; 0 or 1e-300 to 1e300): "
                   "with -n N, each "
                   "input gives exactly its share of N (largest remainder), repeated when it holds "
                   "fewer lines (whole copies plus a uniform subset); without -n, the largest N "
                   "that repeats no input. The lines of an input are a uniform subset, the order "
                   "uniform; -v says what each input gave. With --split, each split holds the "
                   "same proportions.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars on stderr (default: only when stderr is a terminal).")
@click.option("-v", "--verbose", is_flag=True, help="A summary on stderr: records, seed, buckets, runs, levels, timings.")
@click.option("--fsync", is_flag=True,
              help="Flush each output (and its directory) to disk around the final rename, so it "
                   "survives a power loss; off by default, like sort and shuf.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask cluster (tcp://host:8786, or 'local[:N]' for N local worker "
                   "processes); inputs, -o and --temp-dir may then be fsspec URLs (s3://...). "
                   "Needs the dask extra (README, 'Cluster').")
@reports_errors
def shuffle(inputs, verbose, echo, **options):
    """Shuffle the lines of INPUTS (files, '-' for stdin; none means stdin) uniformly at random.

    Compressed inputs and outputs (.gz, .bz2, .xz, .lzma, .zst) are handled by file extension.
    Accepts GNU shuf's options with shuf's meaning (README, 'bigshuf as shuf').
    """
    from bigshuf.shuffler.run import run

    opts = ShuffleOptions(inputs=[] if echo else list(inputs), echo=list(inputs) if echo else None,
                          **options, warn=lambda m: click.echo(f"bigshuf: warning: {m}", err=True))
    stats = run(opts)
    if verbose:
        click.echo(stats.summary(), err=True)


@main.command(epilog=VERIFY_EXAMPLES)
@click.argument("first", required=False, type=click.Path(allow_dash=True))
@click.argument("others", nargs=-1, type=click.Path(allow_dash=True))
@click.option("--manifest", metavar="FILE.json", default=None,
              help="Instead of FIRST and OTHERS: re-read every output file the manifest of a "
                   "'shuffle --manifest' run lists; one line per missing, truncated, extended "
                   "or altered file (exit 1), a summary when all match (exit 0).")
@click.option("-z", "--zero-terminated", is_flag=True, help="Records end with NUL, not newline.")
@click.option("--header", is_flag=True,
              help="Leave out the first line of every file (outputs of 'shuffle --header', which "
                   "repeats the header on every shard and split).")
@click.option("--progress/--no-progress", default=None, help="Progress bars on stderr.")
@reports_errors
def verify(first, others, manifest, zero_terminated, header, progress):
    """Exit 0 if FIRST holds the same multiset of lines as OTHERS together, 1 if not.

    OTHERS is one file (a shuffle of FIRST) or several (its shards, or the splits of
    'shuffle --split': 'bigshuf verify in.txt data/train.txt data/valid.txt data/test.txt').
    Order-free: compares line counts and xxhash-based fingerprints, at disk speed; lines of any
    length. With --manifest FILE.json instead: every output file of a 'shuffle --manifest' run,
    re-read and compared with the manifest's size and digest.
    """
    from bigshuf.shuffler.verify import verify as run_verify

    if manifest is not None:
        return _verify_manifest(manifest, first, zero_terminated or header)
    if first is None or not others:
        raise UsageError("verify needs FIRST and OTHERS (or --manifest FILE.json)")
    result = run_verify(first, *others, zero_terminated=zero_terminated, progress=progress,
                        header=header)
    for fp in (result.first, *(result.parts or (result.second,))):
        click.echo(f"{fp.count:>14,d} lines  {fp.hexdigest}  {fp.path}")
    if result.parts:
        click.echo(f"{result.second.count:>14,d} lines  {result.second.hexdigest}  "
                   f"(the {len(result.parts)} files together)")
    if result.same:
        click.echo("same multiset of lines")
    else:
        click.echo("DIFFERENT: " + result.difference())
        sys.exit(1)


def _verify_manifest(manifest: str, extra, line_options: bool) -> None:
    from bigshuf.shuffler.manifest import verify_manifest

    if extra is not None or line_options:
        raise UsageError("verify --manifest takes no FILE arguments, -z or --header")
    check = verify_manifest(manifest)
    for line in check.problems:
        click.echo(line)
    if not check.ok:
        click.echo(f"{len(check.problems)} problem(s) in the outputs of {manifest}")
        sys.exit(1)
    click.echo(check.summary())
