"""``bigshuf threshold`` as a library call: options checked once, search or apply, cross-validation,
and the report. Three modes share one shape: binary (a cut), multi-class (class weights) and
multi-label (one cut per label).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bigshuf.common.errors import InputError, UsageError
from bigshuf.common.heap import give_back_freed
from bigshuf.common.sizes import format_size
from bigshuf.predict.budget import THRESHOLD_BYTES_PER_VALUE, Budget
from bigshuf.predict.defaults import (
    DEFAULT_METRIC,
    DEFAULT_MULTILABEL_METRIC,
    DEFAULT_POSITIVE,
)
from bigshuf.predict.formats import Layout, check_pred_key
from bigshuf.predict.metrics import METRICS, Confusion, binary_metric, cv_folds, cv_line, lowered, percent
from bigshuf.predict.multilabel import apply_label_cuts, find_label_cuts, multilabel_value
from bigshuf.predict.options import ThresholdOptions, keywords
from bigshuf.predict.outputs import RunOutputs, checkpoint, run_command
from bigshuf.predict.reading import PredictionFile, Predictions, read_json
from bigshuf.predict.reports import ThresholdReport
from bigshuf.predict.safety import (
    MIN_ROWS_TO_TUNE,
    NO_GAIN,
    CrossValidation,
    adopt,
    covers_classes,
    cv_warnings,
    dev_warnings,
    distinct_counts,
    duplicate_groups,
    skew,
)
from bigshuf.predict.thresholds import (
    apply_threshold,
    binary_scores,
    default_cut,
    find_class_weights,
    find_threshold,
)
from bigshuf.predict.writing import PredictionWriter


def load_threshold_params(path: str) -> Dict[str, Any]:
    """Read a params file written by ``bigshuf threshold --save-params``."""
    obj = read_json(path, "threshold params file")
    if obj.get("bigshuf") not in (None, "threshold"):
        raise InputError(f"is a {obj.get('bigshuf')} params file, not a threshold one", path)
    mode = obj.get("mode")
    if mode == "binary" and isinstance(obj.get("cut"), (int, float)):
        return obj
    values = obj.get("weights" if mode == "multiclass" else "cuts")
    if mode in ("multiclass", "multilabel") and isinstance(values, list) and values and \
            all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in values):
        return obj
    raise InputError("not a threshold params file (needs mode binary with a cut, multiclass with non-negative "
                     "weights, or multilabel with non-negative cuts)", path)


def _resolve_positive(positive: Any, layout: Layout) -> int:
    if positive is None:
        return DEFAULT_POSITIVE
    if isinstance(positive, str) and layout.classes and positive in layout.classes:
        return layout.classes.index(positive)
    try:
        index = int(positive)
    except (TypeError, ValueError):
        raise UsageError(f"--positive {positive!r} is not a class name or index") from None
    if index not in (0, 1):
        raise UsageError("--positive must be class 0 or 1 in binary data")
    return index


class _Scorer:
    """Fits params on labelled rows and measures the metric, for every mode. ``y`` is the label
    vector (binary, multi-class) or the boolean label matrix (multi-label)."""

    def __init__(self, metric: str, layout: Layout, positive: int):
        self.metric, self.layout, self.positive = metric, layout, positive
        self.mode = "multilabel" if layout.multi_label else \
            "binary" if layout.scalar or layout.width == 2 else "multiclass"
        self.m = layout.n_classes

    def fit(self, values: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Dict[str, Any]:
        if self.mode == "multilabel":
            cuts, _ = find_label_cuts(values, y, self.metric)
            return {"mode": "multilabel", "cuts": cuts.tolist()}
        if self.mode == "binary":
            scores = binary_scores(values, self.layout, self.positive)
            cut, _ = find_threshold(scores, y == self.positive, self.metric)
            return {"mode": "binary", "cut": cut, "positive": self.positive}
        # classes with too few distinct rows keep their untuned weight (fitted to 1-2 rows, weights
        # of 0.02-0.9 lost 4.6 test points from a 200-row dev file)
        frozen = distinct_counts(y, self.m, groups) < MIN_ROWS_TO_TUNE
        weights, _ = find_class_weights(values, y, self.metric, frozen=frozen)
        return {"mode": "multiclass", "weights": weights.tolist()}

    def unchanged(self, values: np.ndarray) -> Dict[str, Any]:
        """The usual rule as params: weights 1 (argmax), the default cut, cuts of 0.5."""
        if self.mode == "multilabel":
            return {"mode": "multilabel", "cuts": [0.5] * self.m}
        if self.mode == "binary":
            scores = binary_scores(values, self.layout, self.positive)
            return {"mode": "binary", "cut": default_cut(scores), "positive": self.positive}
        return {"mode": "multiclass", "weights": [1.0] * self.m}

    def fit_or_keep(self, values: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Dict[str, Any]:
        """Fitted params, or the usual rule when the fit does not beat it on these rows:
        "unchanged" is a point of every search. ``groups``: the rows' copy groups
        (``duplicate_groups`` of the whole file, restricted to these rows)."""
        fitted = self.fit(values, y, groups)
        if self.score(y, self.decide(fitted, values)) > self.score(y, self.baseline(values)) + 1e-12:
            return fitted
        return self.unchanged(values)

    def decide(self, params: Dict[str, Any], values: np.ndarray) -> np.ndarray:
        if params["mode"] == "multilabel":
            return apply_label_cuts(params, values)
        return apply_threshold(params, values, self.layout)

    def baseline(self, values: np.ndarray) -> np.ndarray:
        """The usual rule: argmax; score >= 0.5 (0 for non-probability scores); p >= 0.5 per label."""
        if self.mode == "multilabel":
            return values >= 0.5
        if self.layout.scalar:
            return np.where(values >= default_cut(values), self.positive, 1 - self.positive)
        return values.argmax(axis=1)

    def score(self, y: np.ndarray, preds: np.ndarray) -> float:
        return self.value(self.counts(y, preds))

    def counts(self, y: np.ndarray, preds: np.ndarray) -> np.ndarray:
        """The additive counts the metric needs (summed over chunks when applying: O(m) memory)."""
        if self.mode == "multilabel":
            return np.array([len(y) * np.ones(self.m), (y & preds).sum(axis=0), (~y & preds).sum(axis=0),
                             y.sum(axis=0)], dtype=np.float64)
        if self.mode == "binary":
            t, p = y == self.positive, preds == self.positive
            return np.array([(t & p).sum(), (~t & p).sum(), t.sum(), (~t).sum()], dtype=np.float64)
        c = Confusion.of(y, preds, self.m)
        return np.array([np.full(self.m, c.n), c.true_n, c.pred_n, c.tp])

    def value(self, counts: np.ndarray) -> float:
        if self.mode == "multilabel":
            n, tp, fp, pos = counts
            return multilabel_value(self.metric, int(n[0]) if len(n) else 0, tp, fp, pos)
        if self.mode == "binary":
            return float(binary_metric(self.metric, *counts))
        n = int(counts[0][0]) if counts.shape[1] else 0
        return METRICS[self.metric].multiclass(Confusion(n, *counts[1:])) if n else 0.0


def _gold(data: Predictions) -> np.ndarray:
    return data.targets if data.targets is not None else data.labels


def threshold(input: Any, output: Any = None, **options: Any) -> ThresholdReport:
    """Search (or, with ``params``, apply) a decision threshold; returns the report
    (``ThresholdReport``).

    Paths are ``str`` or ``pathlib.Path``. Keywords are the CLI's long option names (the fields
    of ``ThresholdOptions``; the older ``folds`` and ``fmt`` still work). Search mode needs gold labels on every row:
    it finds the best binary cut, multi-class weights or (``multi_label``) per-label cuts for
    ``metric``, estimates by ``cv``-fold cross-validation how much of the dev gain survives,
    saves the params to ``save_params``, and writes the decided rows to ``output`` only if one
    is given. Apply mode (``params``): streams ``input`` and writes every row with the decision
    under ``pred_key`` to ``output`` (None or ``-``: stdout); labelled rows are scored.
    """
    return run_threshold(ThresholdOptions(input=input, output=output, **keywords(options)))


def run_threshold(opts: ThresholdOptions) -> ThresholdReport:
    """``bigshuf threshold`` with validated options; returns the report. Every output is
    checked before any work and published only when all are complete (``RunOutputs``); a signal stops
    the run with nothing written (``guarded``)."""
    read = [("INPUT", opts.input), ("--labels", opts.labels), ("--params", opts.params)]
    also = [("--classes", opts.classes if isinstance(opts.classes, str) else None)]
    return run_command(opts, read, ("INPUT",), also, bool(opts.params) or opts.output is not None,
                       lambda outs: _run_threshold(opts, outs))


def _run_threshold(opts: ThresholdOptions, outs: RunOutputs) -> ThresholdReport:
    saved = load_threshold_params(opts.params) if opts.params else None
    if saved and (saved["mode"] == "multilabel") != opts.multi_label:
        raise UsageError("the params hold per-label cuts: add --multi-label" if not opts.multi_label else
                         f"the params hold a {saved['mode']} decision rule, not per-label cuts")
    default = DEFAULT_MULTILABEL_METRIC if opts.multi_label else DEFAULT_METRIC
    metric = opts.metric or (saved or {}).get("metric", default)  # applying: the metric tuned for
    result: Dict[str, Any] = {"command": "threshold", "input": "<stdin>" if opts.input == "-" else opts.input,
                              "metric": metric}
    if saved:
        result.update(_apply_params(opts, saved, metric, outs))
        result["params_file"] = opts.params
    else:
        result.update(_search(opts, metric, outs))
    report = ThresholdReport.from_dict(result)
    if opts.report:
        outs.write_json("--report", opts.report, report.to_dict())
    return report


def _check_layout(pf: PredictionFile, multi_label: bool, opts: ThresholdOptions) -> None:
    if opts.params or opts.output is not None:
        check_pred_key(pf.layout, opts.pred_key, pf.name, vectors=False)
    if multi_label and pf.layout.scalar:
        raise UsageError(f"--multi-label needs one probability per label; {pf.name} has one score per row")


def _search(opts: ThresholdOptions, metric: str, outs: RunOutputs) -> Dict[str, Any]:
    budget = Budget(opts.memory)
    with PredictionFile(opts.input, chunk_rows=budget.chunk_rows, **opts.read_options()) as pf:
        _check_layout(pf, opts.multi_label, opts)
        budget.fit(pf.layout.width)
        pf.chunk_rows, pf.budget = budget.chunk_rows, budget
        data = pf.read_all(max_rows=budget.matrix_rows(per_value=THRESHOLD_BYTES_PER_VALUE), seed=opts.seed)
        give_back_freed()  # what glibc keeps of the reading pass is not in the budget
        missing = np.flatnonzero(data.labels < 0)
        if missing.size:
            raise InputError("no gold label on this row (the search needs labelled rows)", data.path,
                             int(data.lines[missing[0]]))
        warnings: List[str] = []
        if data.sampled_from:
            warnings.append(f"searching on a uniform sample of {len(data.labels)} of {data.sampled_from} rows to stay "
                            f"within --memory {format_size(opts.memory)}")
        scorer = _Scorer(metric, data.layout, 1 if opts.multi_label else _resolve_positive(opts.positive, data.layout))
        y = _gold(data)
        folds = opts.cv if opts.cv >= 2 and len(data.values) >= 2 else 0  # folds need rows to train on
        groups = duplicate_groups(data.values)  # once: the folds' fits take their rows' part
        fitted, cv = _fit_and_cross_validate(scorer, data.values, y, data.labels, folds, opts.seed, groups)
        before = scorer.score(y, scorer.baseline(data.values))
        after = scorer.score(y, scorer.decide(fitted, data.values))
        labels_ok = True if scorer.mode == "multilabel" else covers_classes(data.labels, data.layout.n_classes)
        problem = "" if scorer.mode == "multilabel" else skew(data.labels, data.layout.n_classes, groups)
        adopted, reason = adopt(after - before, cv, labels_ok, problem)
        if scorer.mode != "multilabel":
            warnings += dev_warnings(data.labels, data.layout.n_classes, "the search", groups)
        warnings += cv_warnings(cv, adopted)
        if not adopted:
            if reason != NO_GAIN:
                warnings.append(f"the search keeps the usual rule: {reason}")
            fitted = {**scorer.unchanged(data.values), "unchanged": True, "reason": reason}
            after = before
        found = {"bigshuf": "threshold", "version": 1, "metric": metric, **fitted, "classes": data.classes}
        out: Dict[str, Any] = {"mode": found["mode"], "rows": len(data.values), "params": found,
                               "dev": {"before": before, "after": after, "gain": after - before},
                               "warnings": warnings, "adopted": adopted}
        if cv is not None:
            out["cv"] = found["cv"] = cv.to_dict()
        found["dev"] = out["dev"]
        if opts.save_params:
            outs.write_json("--save-params", opts.save_params, found)
        if opts.output is not None:
            _write_decisions(pf, found, opts, outs, scorer)
    return out


def _fit_and_cross_validate(scorer: _Scorer, values: np.ndarray, y: np.ndarray, strata: np.ndarray, folds: int,
                            seed: int, groups: np.ndarray) -> Tuple[Dict[str, Any], Optional[CrossValidation]]:
    """The params fitted on all rows, and (``folds`` >= 2) the held-out metric of params fitted on
    the other folds (or the usual rule, when the fit does not beat it there) versus the usual rule:
    pooled, and per fold for the noise.

    The fits are independent (each seeds its own search) and numpy releases the GIL in their heavy
    parts, so they run two at a time, the fit on all rows beside the folds': six fits of similar
    cost in three rounds (the whole-data fit alone first took a fourth). Two fits at a time is
    what ``THRESHOLD_BYTES_PER_VALUE`` counts."""
    if folds < 2:
        return scorer.fit_or_keep(values, y, groups), None
    n = len(values)
    held_preds = np.zeros(y.shape if scorer.mode == "multilabel" else n, dtype=y.dtype if scorer.mode == "multilabel"
                          else np.int64)
    key = _strata(y) if scorer.mode == "multilabel" else strata
    held_out = [held for held in cv_folds(key, min(folds, n), seed, groups) if held.size]

    def fit_fold(held: np.ndarray) -> None:
        train = np.setdiff1d(np.arange(n), held)
        held_preds[held] = scorer.decide(scorer.fit_or_keep(values[train], y[train], groups[train]), values[held])

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        whole = pool.submit(scorer.fit_or_keep, values, y, groups)
        list(pool.map(fit_fold, held_out))
        fitted = whole.result()
    checkpoint()  # a signal that came while waiting on the pool stops the run here
    base = scorer.baseline(values)
    gains = [scorer.score(y[h], held_preds[h]) - scorer.score(y[h], base[h]) for h in held_out]
    return fitted, CrossValidation(len(held_out), scorer.score(y, base), scorer.score(y, held_preds), gains)


def _strata(targets: np.ndarray) -> np.ndarray:
    """Multi-label rows are stratified by their rarest label (or 'no label'), so rare labels
    reach every fold."""
    counts = targets.sum(axis=0)
    rank = np.where(targets, counts, np.iinfo(np.int64).max)
    rarest = rank.argmin(axis=1)
    return np.where(targets.any(axis=1), rarest, -1)


@dataclass
class _Tally:
    """What applying params learnt, summed chunk by chunk (no per-row array is kept: the
    multi-label gold, usual-rule and decided matrices took 3 bytes a value of the whole file)."""

    rows: int = 0
    labelled: int = 0
    decisions: Any = 0
    base: Any = 0
    after: Any = 0


def _write_decisions(pf: PredictionFile, params: Dict[str, Any], opts: ThresholdOptions, outs: RunOutputs,
                     scorer: _Scorer) -> _Tally:
    """Stream ``pf``, write rows with decisions; return the decision counts and metric counts."""
    tally = _Tally()
    with PredictionWriter(opts.output, pf, pred_key=opts.pred_key, vectors=False, outputs=outs) as writer:
        for chunk in pf.chunks():
            p = scorer.decide(params, chunk.values)
            writer.write(chunk, p)
            tally.rows += len(p)
            tally.decisions = tally.decisions + (p.sum(axis=0) if p.ndim == 2 else
                                                 np.bincount(p, minlength=pf.layout.n_classes))
            has = chunk.labels >= 0
            if has.any():
                gold = (chunk.targets if chunk.targets is not None else chunk.labels)[has]
                tally.labelled += int(has.sum())
                tally.base = tally.base + scorer.counts(gold, scorer.baseline(chunk.values[has]))
                tally.after = tally.after + scorer.counts(gold, p[has])
    return tally


def _check_params_fit(params: Dict[str, Any], pf: PredictionFile) -> None:
    lay = pf.layout
    mode = params["mode"]
    if mode == "binary" and not (lay.scalar or lay.width == 2):
        raise UsageError(f"the params hold a binary cut, but {pf.name} has {lay.width} classes")
    size = len(params.get("weights") or params.get("cuts") or ())
    if mode in ("multiclass", "multilabel") and (lay.scalar or lay.width != size):
        what = "class weights" if mode == "multiclass" else "label cuts"
        raise UsageError(f"the params hold {size} {what}, but {pf.name} has {lay.n_classes} classes")
    saved = params.get("classes")
    if saved and lay.classes and list(saved) != lay.classes:
        raise UsageError(f"the params were found for classes {saved}, but {pf.name} has {lay.classes}")


def _apply_params(opts: ThresholdOptions, params: Dict[str, Any], metric: str, outs: RunOutputs) -> Dict[str, Any]:
    budget = Budget(opts.memory)
    with PredictionFile(opts.input, chunk_rows=budget.chunk_rows, **opts.read_options()) as pf:
        pf.chunk_rows = budget.fit(pf.layout.width).chunk_rows
        _check_layout(pf, opts.multi_label, opts)
        _check_params_fit(params, pf)
        scorer = _Scorer(metric, pf.layout, int(params.get("positive", DEFAULT_POSITIVE)))
        tally = _write_decisions(pf, params, opts, outs, scorer)
    out: Dict[str, Any] = {"mode": params["mode"], "rows": tally.rows, "params": params,
                           "decisions": np.asarray(tally.decisions).astype(int).tolist()}
    if tally.labelled:
        b, a = scorer.value(tally.base), scorer.value(tally.after)
        out["applied"] = {"labelled": tally.labelled, "before": b, "after": a, "gain": a - b}
        change = lowered(b, a)
        if change:  # as `can` does: the labels say the saved rule hurts here
            out["warnings"] = [f"THE SAVED {params['mode'].upper()} RULE LOWERED {metric.upper()} on the {tally.labelled} "
                               f"labelled rows: {change} (were the params tuned on a sample "
                               "like these rows?)"]
    return out


def format_threshold_report(report: ThresholdReport) -> str:
    """The human-readable report ``bigshuf threshold`` prints on stderr."""
    result = report.to_dict()
    p = result["params"]
    metric = result["metric"]
    lines = [f"bigshuf: warning: {w}" for w in result.get("warnings", ())]  # as with -q and shuffle
    lines.append(f"{result['rows']} rows, {_describe(p)}" + (" -- the usual rule, kept" if p.get("unchanged") else ""))
    dev = result.get("dev")
    if dev:
        lines.append(f"{metric} on these rows: {percent(dev['before'])} -> {percent(dev['after'])} "
                     f"({100 * dev['gain']:+.2f} points; usual rule -> tuned)")
    cv = result.get("cv")
    if cv and dev:
        lines.append(cv_line(cv, dev["gain"]))
    applied = result.get("applied")
    if applied:
        lines.append(f"{metric} on the {applied['labelled']} labelled rows: {percent(applied['before'])} -> "
                     f"{percent(applied['after'])} ({100 * applied['gain']:+.2f} points)")
    return "\n".join(lines)


def _describe(p: Dict[str, Any]) -> str:
    if p["mode"] == "binary":
        positive = p.get("positive", DEFAULT_POSITIVE)
        name = p["classes"][positive] if p.get("classes") else positive
        return f"binary cut {p['cut']:.6g} (class {name} when score >= cut)"
    values = p["weights"] if p["mode"] == "multiclass" else p["cuts"]
    shown = ", ".join(f"{w:.3g}" for w in values[:8]) + (", ..." if len(values) > 8 else "")
    if p["mode"] == "multiclass":
        return f"class weights [{shown}] (argmax of p * t)"
    return f"per-label cuts [{shown}] (label j when p_j >= cut_j)"
