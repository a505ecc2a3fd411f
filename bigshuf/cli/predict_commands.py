"""`bigshuf can` and `bigshuf threshold`: parse options, call bigshuf.predict, report."""
from __future__ import annotations

from typing import Callable

import click

from bigshuf.cli.base import main, reports_errors
from bigshuf.common.errors import UsageError

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
    from bigshuf.predict.can import can as run_can
    from bigshuf.predict.can import format_can_report

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
    from bigshuf.predict.thresholds import format_threshold_report
    from bigshuf.predict.thresholds import threshold as run_threshold

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
