"""``bigshuf can`` as a library call: options checked once, the reference set, the pass over the
file, the tuning step, and the report (with the warnings that say when CAN is likely to hurt).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from bigshuf.common.errors import InputError, UsageError
from bigshuf.common.sizes import format_size
from bigshuf.predict.budget import Budget
from bigshuf.predict.can import CanModel, confident_mask
from bigshuf.predict.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_ITERATIONS,
    DEFAULT_K,
    DEFAULT_RULE,
    DEFAULT_TAU,
    ESTIMATES,
    RULES,
)
from bigshuf.predict.formats import check_pred_key
from bigshuf.predict.metrics import cv_line, lowered, percent
from bigshuf.predict.options import CanOptions, check_can_params, keywords
from bigshuf.predict.outputs import RunOutputs, checkpoint, run_command
from bigshuf.predict.priors import (
    UNIFORM_DEFAULT,
    bbse_prior,
    effective_prior,
    em_prior,
    em_warnings,
    resolve_prior,
)
from bigshuf.predict.reading import PredictionFile, read_json
from bigshuf.predict.reference import Reference, ReferenceSampler, collect_reference
from bigshuf.predict.reports import CanReport
from bigshuf.predict.safety import NO_GAIN
from bigshuf.predict.tune import CanParams, label_prior, tune_can
from bigshuf.predict.writing import PredictionWriter


def official_reference_size(m: int) -> int:
    """Reference rows the official KMnP/can code draws for its random reference sets."""
    return max(5 * m, 1000)


def load_can_params(path: str) -> Dict[str, Any]:
    """Read a params file written by ``bigshuf can --tune --save-params``."""
    obj = read_json(path, "CAN params file")
    if obj.get("bigshuf") not in (None, "can"):
        raise InputError(f"is a {obj.get('bigshuf')} params file, not a CAN one", path)
    for name in ("tau", "alpha", "iterations", "k"):
        if name in obj and not isinstance(obj[name], (int, float)):
            raise InputError(f"{name!r} must be a number", path)
    if obj.get("rule", DEFAULT_RULE) not in RULES:
        raise InputError(f"'rule' must be one of {', '.join(RULES)}", path)
    return obj


def _resolve_params(saved: Optional[Dict[str, Any]], opts: CanOptions) -> Optional[CanParams]:
    """Explicit options win over a saved params file, which wins over the defaults. None: the
    saved params say "leave the predictions unchanged" (tuning found nothing better) and no knob
    was given explicitly."""
    given = saved or {}
    # an explicit --prior (e.g. estimate, under label shift) is a new question the dev-tuned
    # "unchanged" did not answer: CAN then runs with the default knobs
    explicit = (opts.tau, opts.alpha, opts.iterations, opts.top_k, opts.uncertainty, opts.prior)
    if given.get("unchanged") and all(v is None for v in explicit):
        return None

    def pick(value: Any, name: str, default: Any) -> Any:
        return value if value is not None else given.get(name, default)

    p = CanParams(tau=float(pick(opts.tau, "tau", DEFAULT_TAU)), alpha=float(pick(opts.alpha, "alpha", DEFAULT_ALPHA)),
                  iterations=int(pick(opts.iterations, "iterations", DEFAULT_ITERATIONS)),
                  k=int(pick(opts.top_k, "k", DEFAULT_K)), rule=str(pick(opts.uncertainty, "rule", DEFAULT_RULE)))
    check_can_params(p.tau, p.alpha, p.iterations, p.k, p.rule)
    return p


class _Accuracy:
    """Running before/after accuracy over labelled rows, overall and per confidence group."""

    def __init__(self) -> None:
        self.counts = {g: [0, 0, 0] for g in ("overall", "confident", "uncertain")}  # rows, before, after

    def add(self, labels: np.ndarray, before: np.ndarray, after: np.ndarray, uncertain: np.ndarray) -> None:
        has = labels >= 0
        for group, mask in (("overall", has), ("confident", has & ~uncertain), ("uncertain", has & uncertain)):
            c = self.counts[group]
            c[0] += int(mask.sum())
            c[1] += int((before[mask] == labels[mask]).sum())
            c[2] += int((after[mask] == labels[mask]).sum())

    def report(self) -> Optional[Dict[str, Any]]:
        if self.counts["overall"][0] == 0:
            return None
        return {g: {"rows": r, "before": b / r if r else None, "after": a / r if r else None}
                for g, (r, b, a) in self.counts.items()}


def can(input: Any, output: Any = None, *, grid: Optional[Dict[str, Sequence[Any]]] = None,
        **options: Any) -> CanReport:
    """Apply CAN to a prediction file (``bigshuf can``); returns the report (``CanReport``).

    Paths are ``str`` or ``pathlib.Path``. Keywords are the CLI's long option names (the
    fields of ``CanOptions``: ``top_k``, ``uncertainty``, ``cv``, ``format``, ...; the older
    ``k``, ``rule``, ``folds``, ``fmt`` still work); ``grid`` may also give ``taus``, ``alphas``,
    ``iterations``, ``ks``, ``rules`` as one dict. Without ``tune``: adjusts the uncertain rows
    of ``input`` and writes every row to ``output`` (None or ``-``: stdout), with the parameters
    from the arguments, else from ``params`` (a saved params file), else the defaults. The
    reference set is the confident rows of ``reference`` (read first, so ``input`` is streamed
    once) or of ``input`` itself (read twice), capped at ``max_reference`` rows.

    With ``tune``: searches the parameters on the labelled ``input``, saves them to
    ``save_params``, and writes the adjusted rows only if ``output`` is given.
    """
    options = keywords(options)
    for name, values in (grid or {}).items():
        if values:
            options["iterations_grid" if name == "iterations" else name] = values
    return run_can(CanOptions(input=input, output=output, **options))


def run_can(opts: CanOptions) -> CanReport:
    """``bigshuf can`` with validated options; returns the report. Every output is checked
    before any work and published only when all are complete (``RunOutputs``); a signal stops
    the run with nothing written (``guarded``)."""
    read = [("INPUT", opts.input), ("--reference", opts.reference), ("--labels", opts.labels),
            ("--reference-labels", opts.reference_labels), ("--params", opts.params)]
    also = [("--prior", opts.prior if isinstance(opts.prior, str) else None),
            ("--classes", opts.classes if isinstance(opts.classes, str) else None)]
    return run_command(opts, read, ("INPUT", "--reference"), also,
                       not opts.tune or opts.output is not None, lambda outs: _run_can(opts, outs))


def _run_can(opts: CanOptions, outs: RunOutputs) -> CanReport:
    saved = load_can_params(opts.params) if opts.params else None
    chosen = _resolve_params(saved, opts)
    result: Dict[str, Any] = {"command": "can", "input": "<stdin>" if opts.input == "-" else opts.input,
                              "output": opts.output or "-", "method": opts.method, "warnings": []}
    budget = Budget(opts.memory)
    with PredictionFile(opts.input, chunk_rows=budget.chunk_rows, **opts.read_options()) as pf:
        _check_input(pf, saved, opts)
        budget.fit(pf.layout.width)
        pf.chunk_rows, pf.budget = budget.chunk_rows, budget
        prior_vec = None
        if opts.tune:
            chosen = _tune(pf, result, opts, budget)
            checkpoint()
            prior_vec = np.asarray(result["prior"]["values"])
            if opts.save_params:
                outs.write_json("--save-params", opts.save_params,
                                _params_document(chosen, result, pf.layout.classes))
            if opts.output is None:
                return _finish(result, opts, outs)
        ref = _reference(pf, chosen, opts, budget)
        if prior_vec is None:
            prior_vec = _prior(pf, opts, saved, ref, result, budget)
        result["reference"] = ref.stats
        if opts.method == "prior-shift":
            result["params"] = {"method": "prior-shift"}
            _apply(pf, PriorShift(prior_vec, effective_prior(ref.mean, ref.stats["rows"])), None, opts,
                   outs, result)
        elif chosen is None:
            result["params"] = {"unchanged": True}
            _apply(pf, None, None, opts, outs, result)
        else:
            result["params"] = asdict(chosen)
            _warn_small_reference(result, len(ref.rows), pf.layout.width)
            if not len(ref.rows) and not budget.identity_fits(chosen.iterations):
                raise UsageError(f"no reference row is confident, and the {pf.layout.width:,} x {pf.layout.width:,} "
                                 f"identity reference CAN falls back to does not fit in --memory {format_size(opts.memory)}: "
                                 "lower --tau, give a --reference file with confident rows, or raise --memory")
            model = CanModel(ref.rows, prior_vec, chosen.alpha, chosen.iterations,
                             batch_bytes=budget.batch_bytes)
            _apply(pf, model, chosen, opts, outs, result)
    _warn_if_worse(result)
    return _finish(result, opts, outs)


class PriorShift:
    """The plain label-shift correction: every row times target prior / source prior (the model's
    mean prediction on the reference), renormalised. Same interface as ``CanModel.adjust``."""

    def __init__(self, target: np.ndarray, source: np.ndarray):
        self.weights = np.divide(target, source, out=np.zeros(len(target)), where=source > 0)
        self.identity_fallback = False

    def adjust(self, rows: np.ndarray) -> np.ndarray:
        out = rows * self.weights
        total = out.sum(axis=1, keepdims=True)
        return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


PRIOR_FAR = 0.25
"""Total-variation distance between the tuning prior and the mean prediction on the tuning rows
above which the rows are said not to match the prior (a dev file of 8 classes' rows tuned with the
training-label prior lost 7 points on test)."""


def _check_input(pf: PredictionFile, saved: Optional[Dict[str, Any]], opts: CanOptions) -> None:
    lay = pf.layout
    if not opts.tune or opts.output is not None:
        check_pred_key(lay, opts.pred_key, pf.name, vectors=True)
    if lay.scalar or lay.width < 2:
        what = "one score" if lay.scalar else f"{lay.width} value{'s' if lay.width != 1 else ''}"
        raise UsageError(f"CAN needs a probability vector of at least two classes per row; {pf.name} has "
                         f"{what} per row")
    if saved and saved.get("classes") and lay.classes and saved["classes"] != lay.classes:
        raise UsageError(f"{opts.params} was tuned for classes {saved['classes']}, but {pf.name} has {lay.classes}")


def _reference(pf: PredictionFile, p: Optional[CanParams], opts: CanOptions, budget: "Budget") -> Reference:
    """The reference pass: ``--reference`` (read first, so INPUT streams once) or INPUT itself."""
    rng = np.random.default_rng(opts.seed)
    confusion = opts.prior == "estimate-bbse"
    if confusion:
        budget.check_bbse(pf.layout.width)
    cap = budget.reference_rows(opts.max_reference, p.iterations if p else 1)
    ref = _collect(pf, p, opts, cap, rng, confusion, budget.chunk_rows)
    if cap != opts.max_reference and ref.stats["confident"] > cap:  # only when the cap bites
        pf.notes.append(f"reference capped at {cap} of {ref.stats['confident']} rows to stay within --memory "
                        f"{format_size(opts.memory)}")
    return ref


def _collect(pf: PredictionFile, p: Optional[CanParams], opts: CanOptions, cap: int, rng: np.random.Generator,
             confusion: bool, chunk_rows: int) -> Reference:
    if not opts.reference:
        if opts.method == "prior-shift" or isinstance(opts.prior, str) and opts.prior in ESTIMATES:
            what = "--method prior-shift" if opts.method == "prior-shift" else f"--prior {opts.prior}"
            raise UsageError(f"{what} needs --reference (a dev file: the model's mean prediction there is the "
                             "prior it was calibrated to)")
        ref = collect_reference(pf, p, cap, opts.subsample, rng)
        ref.stats["source"] = f"{pf.name} (its own confident rows)"
        return ref
    ref_options = dict(opts.read_options(), labels=opts.reference_labels)
    with PredictionFile(opts.reference, chunk_rows=chunk_rows, **ref_options) as rf:
        if rf.layout.width != pf.layout.width:
            raise UsageError(f"{rf.name} has {rf.layout.width} classes, {pf.name} has {pf.layout.width}")
        ref = collect_reference(rf, p, cap, opts.subsample, rng, confusion=confusion)
    if confusion and not ref.label_counts.any():
        raise UsageError("--prior estimate-bbse needs gold labels in the --reference rows")
    return ref


def _prior(pf: PredictionFile, opts: CanOptions, saved: Optional[Dict[str, Any]], ref: Reference,
           result: Dict[str, Any], budget: "Budget") -> np.ndarray:
    """The prior for applying CAN, and a plain warning when it is the uniform default."""
    spec = opts.prior if opts.prior is not None else (saved or {}).get("prior")
    if isinstance(spec, str) and spec in ESTIMATES:
        return _estimate(pf, opts, ref, result, budget)
    if spec is None and opts.reference and ref.label_counts.any():
        # A separate labelled reference (dev) set: its label frequencies are the natural prior.
        # Never the input's own labels: that would leak test labels.
        spec = "reference"
    vec, source = resolve_prior(spec, pf.label_map, ref.labels)
    if opts.prior is None and saved and saved.get("prior") is not None:
        source = f"saved in {opts.params} ({saved.get('prior_source', 'given')})"
    result["prior"] = {"source": source, "values": vec.tolist()}
    if (vec == 0).any():
        result["warnings"].append(f"{int((vec == 0).sum())} of {len(vec)} classes have prior 0 ({source}): "
                                  "CAN can never pick them")
    if source == UNIFORM_DEFAULT:
        result["warnings"].append(
            "no --prior given, so CAN uses a uniform prior: it pushes uncertain rows towards equal class "
            "frequencies, which lowers accuracy when the classes are imbalanced. Give the training-label "
            "frequencies with --prior train_labels.txt (one label a line), or weights (--prior 0.5,0.3,0.2)")
    return vec


def _estimate(pf: PredictionFile, opts: CanOptions, ref: Reference, result: Dict[str, Any],
              budget: "Budget") -> np.ndarray:
    """The prior of INPUT under label shift: EM from the reference's mean prediction, or BBSE
    from the reference's confusion matrix. EM holds INPUT's rows (a uniform sample of them when
    they do not fit in --memory); BBSE only counts predictions."""
    m = pf.layout.width
    cap = budget.matrix_rows(m)
    sampler = ReferenceSampler(m, cap, np.random.default_rng(opts.seed))
    predicted = np.zeros(m, dtype=np.int64)
    for chunk in pf.chunks(cache=True):
        probs = chunk.values / chunk.values.sum(axis=1, keepdims=True)
        predicted += np.bincount(probs.argmax(axis=1), minlength=m)
        if opts.prior == "estimate":
            sampler.add(probs)
    if opts.prior == "estimate-bbse":
        assert ref.confusion is not None
        vec = bbse_prior(ref.confusion, predicted, result["warnings"])
        info: Dict[str, Any] = {"method": "bbse", "reference_labelled": int(ref.label_counts.sum())}
        zero = int((vec == 0).sum())
        if zero:
            result["warnings"].append(f"the BBSE estimate gives {zero} classes ({int(((vec == 0) & (predicted > 0)).sum())} "
                                      f"of which {pf.name} predicts) a prior of 0, so CAN can never pick them "
                                      "(--prior estimate, EM, never gives 0)")
        source = f"BBSE estimate from {ref.stats['source']}'s confusion matrix and {pf.name}'s predictions"
    else:
        rows = sampler.uniform()
        start = effective_prior(ref.mean, ref.stats["rows"])
        vec, iterations, converged = em_prior(rows, start)
        info = {"method": "em", "iterations": iterations, "converged": converged, "rows": len(rows),
                "of_rows": sampler.seen, "start": start.tolist()}
        result["warnings"].extend(em_warnings(vec, start, ref.stats["rows"], len(rows)))
        source = (f"EM estimate on {pf.name} ({iterations} iterations, "
                  f"{'converged' if converged else 'NOT converged'}) from the mean prediction on {ref.stats['source']}")
        if not converged:
            result["warnings"].append(f"the EM prior estimate did not converge in {iterations} iterations")
        if sampler.seen > len(rows):
            result["warnings"].append(f"EM estimated the prior on a uniform sample of {len(rows)} of {sampler.seen} rows "
                                      f"to stay within --memory {format_size(opts.memory)}")
    result["prior"] = {"source": source, "values": vec.tolist(), "estimate": info}
    return vec


def _warn_small_reference(result: Dict[str, Any], used: int, m: int) -> None:
    want = official_reference_size(m)
    if used < want:
        result["warnings"].append(
            f"the reference set has only {used} confident rows for {m} classes (the official CAN code draws "
            f"max(5 x classes, 1000) = {want}): the column sums CAN divides by are noisy; use a larger "
            "labelled --reference file or a lower --tau")


def _warn_if_worse(result: Dict[str, Any]) -> None:
    acc = (result.get("accuracy") or {}).get("overall")
    change = lowered(acc["before"], acc["after"]) if acc and acc["rows"] else None
    if acc and change:
        hint = " (with the uniform default prior: give --prior)" if result["prior"]["source"] == UNIFORM_DEFAULT else ""
        fewer = round((acc["before"] - acc["after"]) * acc["rows"])
        result["lowered_accuracy"] = True
        result["warnings"].insert(0, f"CAN LOWERED ACCURACY on the {acc['rows']} labelled rows: {change} "
                                     f"({fewer} fewer correct){hint}")


def _finish(result: Dict[str, Any], opts: CanOptions, outs: RunOutputs) -> CanReport:
    report = CanReport.from_dict(result)
    if opts.report:
        outs.write_json("--report", opts.report, report.to_dict())
    return report


def _apply(pf: PredictionFile, model: Any, p: Optional[CanParams], opts: CanOptions, outs: RunOutputs,
           result: Dict[str, Any]) -> None:
    """The pass that writes every row: CAN (``model`` a CanModel, ``p`` its knobs) on the
    uncertain rows, ``PriorShift`` on every row (``p`` None), or nothing (``model`` None)."""
    acc = _Accuracy()
    rows = uncertain_n = changed_n = untouched = 0
    with PredictionWriter(opts.output, pf, pred_key=opts.pred_key, outputs=outs) as writer:
        for chunk in pf.replay():
            probs = chunk.values / chunk.values.sum(axis=1, keepdims=True)
            if model is None:
                uncertain = np.zeros(len(probs), dtype=bool)
            elif p is None:
                uncertain = np.ones(len(probs), dtype=bool)
            else:
                uncertain = ~confident_mask(probs, p.tau, p.k, p.rule)
            out = probs.copy()
            if uncertain.any():
                adjusted = model.adjust(probs[uncertain])
                dead = adjusted.sum(axis=1) <= 0  # all mass on zero-prior classes: keep the row
                adjusted[dead] = probs[uncertain][dead]
                untouched += int(dead.sum())
                out[uncertain] = adjusted
            before, after = probs.argmax(axis=1), out.argmax(axis=1)
            acc.add(chunk.labels, before, after, uncertain)
            rows += len(chunk)
            uncertain_n += int(uncertain.sum())
            changed_n += int((before != after).sum())
            writer.write(chunk, after, out, uncertain)
    result.update(rows=rows, confident=rows - uncertain_n, uncertain=uncertain_n,
                  changed_predictions=changed_n, accuracy=acc.report())
    if untouched:
        result["left_unchanged_zero_prior"] = untouched
    if model is not None and model.identity_fallback:
        result.setdefault("notes", []).append("no confident reference rows: used the identity matrix")
    result.setdefault("notes", []).extend(pf.notes)


def _tune(pf: PredictionFile, result: Dict[str, Any], opts: CanOptions, budget: "Budget") -> Optional[CanParams]:
    """Search the knobs on INPUT's labelled rows; None: leave the predictions unchanged."""
    data = pf.read_all(max_rows=budget.tuning_rows(pf.layout.width), seed=opts.seed)
    probs, labels = data.values / data.values.sum(axis=1, keepdims=True), data.labels
    missing = np.flatnonzero(labels < 0)
    if missing.size:
        raise InputError("no gold label on this row (--tune needs labelled rows)", pf.name, int(data.lines[missing[0]]))
    if data.sampled_from:
        result["warnings"].append(f"tuning on a uniform sample of {len(labels)} of {data.sampled_from} rows "
                                  f"to stay within --memory {format_size(opts.memory)}")
    spec, m = opts.prior, pf.layout.width
    # Without --prior, tuning uses the label frequencies of the tuning rows (per fold in
    # cross-validation, so held-out labels never leak): a uniform prior would push an imbalanced
    # dev set's uncertain rows towards rare classes, which is rarely what the user wants.
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "reference"):
        prior_arg: Any = "labels"
        q = label_prior(labels, probs, m)
        source = f"label frequencies of the {len(labels)} tuning rows (per fold in cross-validation)"
        zero = int((np.bincount(labels, minlength=m) == 0).sum())
        if zero:
            source += f"; {zero} classes without a row get a share of the mean prediction"
            result["warnings"].append(
                f"{zero} of {m} classes have no tuning row, so a prior from these labels would give them 0 "
                "(CAN could never pick them); they get a share of the model's mean prediction instead: "
                "give the training labels with --prior train_labels.txt")
    else:
        if isinstance(spec, str) and spec in ESTIMATES:
            raise UsageError(f"--prior {spec} estimates a test file's prior; --tune uses the dev file's labels "
                             "(tune, then apply with --prior estimate --reference dev)")
        q, source = resolve_prior(spec, pf.label_map)
        prior_arg = q
        if (q == 0).any():
            result["warnings"].append(f"{int((q == 0).sum())} classes have prior 0: CAN can never pick them")
    moved = 0.5 * float(np.abs(q - probs.mean(axis=0)).sum())
    if moved > PRIOR_FAR:
        result["warnings"].append(
            f"the tuning prior ({source}) is far from the model's mean prediction on the tuning rows ({moved:.0%} of "
            "the mass differs): the tuning rows are not spread like the data the prior describes, so a setting "
            "tuned on them may not carry over")
    result["prior"] = {"source": source, "values": q.tolist()}
    res = tune_can(probs, labels, prior_arg, folds=opts.cv, seed=opts.seed, max_reference=opts.max_reference,
                   search=opts.search, progress=opts.progress, **opts.grid())
    result["warnings"].extend(res.warnings)
    if not res.adopted and res.reason != NO_GAIN:
        result["warnings"].append(f"tuning keeps the predictions unchanged: {res.reason}")
    result["tune"] = {"rows": res.rows, "baseline": res.baseline, "accuracy": res.accuracy, "gain": res.gain,
                      "best": asdict(res.best), "grid_points": res.search["grid_points"], "search": res.search,
                      "top": res.table[:10], "cv": res.cv.to_dict() if res.cv else None,
                      "adopted": res.adopted, "reason": res.reason}
    result["params"] = asdict(res.best) if res.adopted else {"unchanged": True}
    return res.chosen


def _params_document(p: Optional[CanParams], result: Dict[str, Any], classes: Optional[List[str]]) -> Dict[str, Any]:
    tune = result["tune"]
    knobs: Dict[str, Any] = asdict(p) if p is not None else {"unchanged": True, "reason": tune["reason"]}
    return {"bigshuf": "can", "version": 1, **knobs,
            "prior": result["prior"]["values"], "prior_source": result["prior"]["source"],
            "classes": classes,
            "dev": {"rows": tune["rows"], "accuracy_before": tune["baseline"], "accuracy_after": tune["accuracy"]},
            "cv": {k: v for k, v in (tune["cv"] or {}).items() if k != "chosen"} or None}


def format_can_report(report: CanReport) -> str:
    """The human-readable report ``bigshuf can`` prints on stderr (warnings first)."""
    result = report.to_dict()
    lines = [f"bigshuf: warning: {w}" for w in result.get("warnings", ())]  # as with -q and shuffle
    if result.get("tune"):
        lines += _tune_lines(result["tune"])
    if "rows" in result and result["params"].get("unchanged"):
        lines.append(f"CAN not applied (the tuned params say: leave unchanged): {result['rows']} rows written as "
                     "they were")
    elif "rows" in result and result["method"] == "prior-shift":
        lines.append(f"prior shift: {result['rows']} rows re-weighted by prior / mean prediction on "
                     f"{result['reference']['source']}, {result['changed_predictions']} predictions changed")
    elif "rows" in result:
        p, ref = result["params"], result["reference"]
        lines.append(f"CAN tau={p['tau']} alpha={p['alpha']} iterations={p['iterations']} k={p['k']} "
                     f"rule={p['rule']}: {result['rows']} rows, {result['confident']} confident, "
                     f"{result['uncertain']} uncertain, {result['changed_predictions']} predictions changed")
        sub = f", {ref['subsample']} subsample of {ref['used']}" if ref.get("subsample") else ""
        lines.append(f"reference: {ref['confident']} confident rows of {ref['source']}{sub}"
                     + (" (none: identity matrix used)" if ref.get("identity_fallback") else ""))
    if "prior" in result:
        values = result["prior"]["values"]
        shown = ", ".join(f"{v:.3g}" for v in values[:8]) + (", ..." if len(values) > 8 else "")
        lines.append(f"prior: {result['prior']['source']} [{shown}]")
    acc = result.get("accuracy")
    if acc:
        lines.append("accuracy      rows   before    after")
        for g in ("overall", "confident", "uncertain"):
            a = acc[g]
            lines.append(f"  {g:<9} {a['rows']:7d}   {percent(a['before'], 8)} {percent(a['after'], 8)}")
    lines += [f"note: {note}" for note in result.get("notes", ())]
    return "\n".join(lines)


def _tune_lines(tune: Dict[str, Any]) -> List[str]:
    rungs = " -> ".join(str(r["trajectories"]) for r in tune["search"]["rungs"])
    lines = [f"tuning on {tune['rows']} labelled rows, {tune['grid_points']} grid points, {tune['search']['method']} "
             f"search ({rungs} trajectories) (accuracy without CAN {percent(tune['baseline'])})",
             "   tau  alpha  iters  k  rule   uncertain  accuracy    gain"]
    for r in tune["top"]:
        lines.append(f"  {r['tau']:4.2f}  {r['alpha']:5.1f}  {r['iterations']:5d}  {r['k']:1d}  {r['rule']:5}  "
                     f"{r['uncertain']:9d}    {percent(r['accuracy'], 8)}  {100 * (r['accuracy'] - tune['baseline']):+6.2f}")
    b = tune["best"]
    lines.append(f"best: tau={b['tau']} alpha={b['alpha']} iterations={b['iterations']} k={b['k']} rule={b['rule']}: "
                 f"{percent(tune['baseline'])} -> {percent(tune['accuracy'])} "
                 f"({100 * tune['gain']:+.2f} points on the tuning rows)")
    cv = tune.get("cv")
    if cv:
        lines.append(cv_line(cv, tune["gain"]))
    lines.append("kept: the best setting" if tune["adopted"] else f"kept: the predictions unchanged ({tune['reason']})")
    return lines

