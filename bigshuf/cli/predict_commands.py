"""`bigshuf can` and `bigshuf threshold`: parse options into the library's options objects, call
it, print the report. Every rule about which options go together lives in ``CanOptions`` and
``ThresholdOptions`` (``validate``), not here; defaults shown in --help come from the library.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

import click

from bigshuf.cli.base import main, reports_errors
from bigshuf.common import stdio
from bigshuf.predict import defaults as d
from bigshuf.predict.metrics import METRICS


class _List(click.ParamType):
    """A comma-separated list, e.g. ``0.5,0.7,0.9`` (numbers) or ``top-k,any-k``."""

    def __init__(self, kind: Callable[[str], Any], name: str):
        self.kind = kind
        self.name = name

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            return [self.kind(v.strip()) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.name.lower()}", param, ctx)


def _show(values: Any) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _prediction_io_options(func: Callable) -> Callable:
    """Options that say how prediction files are read and written (shared by can/threshold)."""
    options = [
        click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
                     help="Output file (default: stdout). Written atomically; .npy for a matrix."),
        click.option("--format", type=click.Choice(["auto", *d.FORMATS]),
                     default="auto", show_default=True, help="Input format (auto: by extension; stdin is sniffed)."),
        click.option("--key", default=None,
                     help="JSONL key of the probability vector or score; CSV column prefix or comma list "
                          "of columns (default: found automatically)."),
        click.option("--label-key", default=None, help="JSONL key / CSV column of the gold label."),
        click.option("--labels", "labels", type=click.Path(dir_okay=False), default=None,
                     help="Gold labels in a separate file (one per line, or .npy), e.g. for .npy input."),
        click.option("--classes", default=None,
                     help="Class names in index order: a comma list or a file (one name a line)."),
        click.option("--logits/--probs", "logits", default=None,
                     help="Rows are logits (softmax first; sigmoid with --multi-label) / probabilities "
                          "(default: logits only under a logits key or logit_* columns)."),
        click.option("--pred-key", default=d.PRED_KEY, show_default=True,
                     help="Key/column the predicted class is written under."),
        click.option("--report", "report", type=click.Path(dir_okay=False, allow_dash=True), default=None,
                     help="Also write the report as JSON to this file."),
        click.option("-q", "--quiet", is_flag=True, help="No report on stderr (warnings still show)."),
        click.option("-S", "--memory", default=d.DEFAULT_MEMORY, show_default=True,
                     help="Bound on peak memory (RSS) in bytes, K/M/G/T suffixes, like shuffle's: chunks, "
                          "reference set, tuning and search data are sized to fit."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _echo_params(params: Dict[str, Any]) -> None:
    """Search results with nowhere else to go are printed on stdout as JSON."""
    click.echo(json.dumps(params, indent=2, ensure_ascii=False))


def _warnings_only(lines: List[str]) -> None:
    for w in lines:
        click.echo(f"bigshuf: warning: {w}", err=True)


CAN_EXAMPLES = """\b
Examples:
  bigshuf can test.jsonl --prior train_labels.txt -o adjusted.jsonl
  bigshuf can dev.jsonl --tune --prior train_labels.txt --save-params can.json
  bigshuf can test.jsonl --params can.json --reference dev.jsonl -o adjusted.jsonl
  bigshuf can preds.npy --labels gold.txt --uncertainty any-k --report report.json -q
Full documentation: bigshuf readme (and docs/predictions.md in the source tree)
"""

THRESHOLD_EXAMPLES = """\b
Examples:
  bigshuf threshold dev.jsonl --metric f1 --save-params cut.json      # binary: best cut
  bigshuf threshold test.jsonl --params cut.json -o decided.jsonl     # apply it
  bigshuf threshold dev.jsonl --save-params weights.json              # multi-class weights
  bigshuf threshold dev.jsonl --multi-label --metric micro-f1 --save-params cuts.json
Full documentation: bigshuf readme (and docs/predictions.md in the source tree)
"""


@main.command(epilog=CAN_EXAMPLES)
@click.argument("input", type=click.Path(allow_dash=True))
@_prediction_io_options
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Take the confident reference rows from this file (e.g. the dev set) instead of "
                   "INPUT; INPUT is then read once, streaming.")
@click.option("--reference-labels", type=click.Path(dir_okay=False), default=None,
              help="Gold labels of the --reference rows in a separate file.")
@click.option("--prior", default=None,
              help="Class prior: a file of training labels (one a line, or JSONL), a file or string of "
                   "weights (comma list or JSON), 'uniform', 'reference' (labels of the reference "
                   "rows), or 'estimate' / 'estimate-bbse': the test prior estimated from INPUT by EM "
                   "from the model's mean prediction on --reference, or by BBSE from the labelled "
                   "--reference's confusion matrix (label shift). Default: label frequencies of the "
                   "tuning rows with --tune, of a labelled --reference file, else uniform (with a "
                   "warning: it hurts on imbalanced classes).")
@click.option("--method", type=click.Choice(d.ADJUSTMENTS), default=d.DEFAULT_ADJUSTMENT, show_default=True,
              help="can: CAN on the uncertain rows; prior-shift: every row times prior / the model's "
                   "mean prediction on --reference, renormalised (the plain label-shift correction).")
@click.option("--tau", type=float, default=None,
              help=f"Rows with uncertainty >= tau are adjusted.  [default: {d.DEFAULT_TAU}]")
@click.option("--alpha", type=float, default=None,
              help=f"Exponent applied before each normalisation.  [default: {d.DEFAULT_ALPHA:g}]")
@click.option("--iterations", type=int, default=None,
              help=f"Alternating normalisation rounds.  [default: {d.DEFAULT_ITERATIONS}]")
@click.option("-k", "--top-k", type=int, default=None,
              help=f"k of the top-k uncertainty.  [default: {d.DEFAULT_K}]")
@click.option("--uncertainty", type=click.Choice(d.RULES), default=None,
              help="top-k: top-k entropy >= tau (the blog's rule); any-k: top-j entropy >= tau for any j "
                   f"from 2 to the number of classes (the official code's rule).  [default: {d.DEFAULT_RULE}]")
@click.option("--params", "params", type=click.Path(dir_okay=False), default=None,
              help="Read tau/alpha/iterations/k/rule/prior from a file saved by --tune --save-params "
                   "(options given explicitly win).")
@click.option("--tune", is_flag=True,
              help="Search tau, alpha, iterations, k and the rule on the labelled INPUT; rows are written "
                   "only with -o.")
@click.option("--save-params", type=click.Path(dir_okay=False), default=None,
              help="With --tune: save the winner (and prior) as JSON.")
@click.option("--cv", type=int, default=d.DEFAULT_FOLDS, show_default=True,
              help="With --tune: folds of the cross-validated estimate (0 or 1: skip it).")
@click.option("--taus", type=_List(float, "NUMBERS"), default=None,
              help=f"Tuning grid for tau.  [default: {_show(d.GRID_TAUS)}]")
@click.option("--alphas", type=_List(float, "NUMBERS"), default=None,
              help=f"Tuning grid for alpha.  [default: {_show(d.GRID_ALPHAS)}]")
@click.option("--iterations-grid", type=_List(int, "INTS"), default=None,
              help=f"Tuning grid for iterations.  [default: {_show(d.GRID_ITERATIONS)}]")
@click.option("--ks", type=_List(int, "INTS"), default=None,
              help=f"Tuning grid for k.  [default: {_show(d.GRID_KS)}]")
@click.option("--rules", type=_List(str, "RULES"), default=None,
              help=f"Tuning grid for the uncertainty rule.  [default: {_show(d.GRID_RULES)}]")
@click.option("--search", type=click.Choice(d.SEARCHES), default=d.DEFAULT_SEARCH, show_default=True,
              help="With --tune: halving (successive halving over row subsamples), exhaustive (every "
                   "grid point on all rows) or exact (exact CAN for every point; slow).")
@click.option("--max-reference", type=int, default=d.DEFAULT_MAX_REFERENCE, show_default=True,
              help="Cap on the reference rows kept in memory (0: no cap).")
@click.option("--subsample", type=click.Choice(d.SUBSAMPLES), default=d.DEFAULT_SUBSAMPLE, show_default=True,
              help="How the capped reference set is drawn (stratified: proportional by predicted class).")
@click.option("--seed", type=int, default=d.DEFAULT_SEED, show_default=True,
              help="Seed for subsampling and cross-validation folds.")
@click.option("--progress/--no-progress", default=None, help="Progress bar while tuning.")
@reports_errors
def can(quiet: bool, **flags: Any) -> None:
    """Re-balance uncertain predictions in INPUT ('-' for stdin) with CAN (classification with
    alternating normalisation) and a class prior.

    Rows keep all their fields; uncertain rows get the adjusted vector, every row gets the
    predicted class under --pred-key. See docs/predictions.md.
    """
    from bigshuf.predict import can_command as cc
    from bigshuf.predict.options import CanOptions

    opts = CanOptions(**flags)
    if opts.tune and not opts.save_params and opts.output is None:
        stdio.stdout()  # the params go there: a closed stdout is a usage error before any work
    result = cc.run_can(opts)
    if not quiet:
        click.echo(cc.format_can_report(result), err=True)
    else:
        _warnings_only(result.warnings)
    if opts.tune and not opts.save_params and opts.output is None:
        assert result.prior is not None
        _echo_params({"bigshuf": "can", **result.params, "prior": result.prior.values})


@main.command(epilog=THRESHOLD_EXAMPLES)
@click.argument("input", type=click.Path(allow_dash=True))
@_prediction_io_options
@click.option("--metric", type=click.Choice(sorted(METRICS)), default=None,
              help="What to maximise: " + "; ".join(f"{m.name}: {m.help}" for m in METRICS.values()) +
                   " (macro-f1 and micro-f1 with --multi-label only).  "
                   f"[default: {d.DEFAULT_METRIC}; {d.DEFAULT_MULTILABEL_METRIC} with --multi-label; "
                   "with --params, the metric saved there]")
@click.option("--multi-label", is_flag=True,
              help="Labels are lists and each value an independent probability (sigmoid outputs): "
                   "find one cut per label.")
@click.option("--params", "params", type=click.Path(dir_okay=False), default=None,
              help="Apply a cut/weights/cuts saved by --save-params instead of searching.")
@click.option("--save-params", type=click.Path(dir_okay=False), default=None,
              help="Save the cut (binary), class weights (multi-class) or label cuts (multi-label) as JSON.")
@click.option("--positive", default=None,
              help=f"Binary data: the positive class (name or index).  [default: {d.DEFAULT_POSITIVE}]")
@click.option("--cv", type=int, default=d.DEFAULT_FOLDS, show_default=True,
              help="Folds of the cross-validated estimate of the gain (0 or 1: skip it).")
@click.option("--seed", type=int, default=d.DEFAULT_SEED, show_default=True,
              help="Seed for the cross-validation folds.")
@reports_errors
def threshold(quiet: bool, **flags: Any) -> None:
    """Find the decision threshold (binary), class weights (multi-class) or per-label cuts
    (--multi-label) that maximise a metric on the labelled INPUT, or apply saved ones with
    --params.

    Searching prints the params on stdout unless --save-params or -o is given; applying writes
    every row with the decision under --pred-key. See docs/predictions.md.
    """
    from bigshuf.predict import threshold_command as tc
    from bigshuf.predict.options import ThresholdOptions

    opts = ThresholdOptions(**flags)
    if not opts.params and not opts.save_params and opts.output is None:
        stdio.stdout()  # the params go there: a closed stdout is a usage error before any work
    result = tc.run_threshold(opts)
    if not quiet:
        click.echo(tc.format_threshold_report(result), err=True)
    else:
        _warnings_only(result.warnings)
    if not opts.params and not opts.save_params and opts.output is None:
        _echo_params(result.params)
