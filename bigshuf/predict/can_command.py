"""``bigshuf can`` as a library call: options checked once, the reference set, the pass over the
file, the tuning step, and the report (with the warnings that say when CAN is likely to hurt).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import InputError, UsageError
from bigshuf.common.output import write_json
from bigshuf.predict.can import CanModel, confident_mask
from bigshuf.predict.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_ITERATIONS,
    DEFAULT_K,
    DEFAULT_RULE,
    DEFAULT_TAU,
    RULES,
)
from bigshuf.predict.metrics import percent, survival
from bigshuf.predict.options import CanOptions, check_can_params, keywords
from bigshuf.predict.priors import UNIFORM_DEFAULT, frequencies, resolve_prior
from bigshuf.predict.reading import PredictionFile, read_json
from bigshuf.predict.reference import collect_reference
from bigshuf.predict.tune import CanParams, tune_can
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


def _resolve_params(saved: Optional[Dict[str, Any]], opts: CanOptions) -> CanParams:
    """Explicit options win over a saved params file, which wins over the defaults."""
    given = saved or {}

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
        **options: Any) -> Dict[str, Any]:
    """Apply CAN to a prediction file (``bigshuf can``); returns the report as a dict.

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


def run_can(opts: CanOptions) -> Dict[str, Any]:
    """``bigshuf can`` with validated options; returns the report as a dict."""
    saved = load_can_params(opts.params) if opts.params else None
    chosen = _resolve_params(saved, opts)
    result: Dict[str, Any] = {"command": "can", "input": "<stdin>" if opts.input == "-" else opts.input,
                              "output": opts.output or "-", "warnings": []}
    with PredictionFile(opts.input, **opts.read_options()) as pf:
        _check_input(pf, saved, opts)
        prior_vec = None
        if opts.tune:
            chosen = _tune(pf, result, opts)
            prior_vec = np.asarray(result["prior"]["values"])
            if opts.save_params:
                write_json(opts.save_params, _params_document(chosen, result, pf.layout.classes))
            if opts.output is None:
                return _finish(result, opts)
        ref, ref_stats, ref_labels = _reference(pf, chosen, opts)
        if prior_vec is None:
            prior_vec = _prior(pf, opts, saved, ref_labels, result)
        result["params"] = asdict(chosen)
        result["reference"] = ref_stats
        _warn_small_reference(result, len(ref), pf.layout.width)
        model = CanModel(ref, prior_vec, chosen.alpha, chosen.iterations)
        _apply(pf, model, chosen, opts.output, opts.pred_key, result)
    _warn_if_worse(result)
    return _finish(result, opts)


def _check_input(pf: PredictionFile, saved: Optional[Dict[str, Any]], opts: CanOptions) -> None:
    lay = pf.layout
    if lay.scalar or lay.width < 2:
        raise UsageError(f"CAN needs a probability vector of at least two classes per row; "
                         f"{pf.name} has one score per row")
    if saved and saved.get("classes") and lay.classes and saved["classes"] != lay.classes:
        raise UsageError(f"{opts.params} was tuned for classes {saved['classes']}, but {pf.name} has {lay.classes}")


def _reference(pf: PredictionFile, p: CanParams, opts: CanOptions
               ) -> Tuple[np.ndarray, Dict[str, Any], np.ndarray]:
    rng = np.random.default_rng(opts.seed)
    if not opts.reference:
        ref, stats, labels = collect_reference(pf, p, opts.max_reference, opts.subsample, rng)
        stats["source"] = f"{pf.name} (its own confident rows)"
        return ref, stats, labels
    ref_options = dict(opts.read_options(), labels=opts.reference_labels)
    with PredictionFile(opts.reference, **ref_options) as rf:
        if rf.layout.width != pf.layout.width:
            raise UsageError(f"{rf.name} has {rf.layout.width} classes, {pf.name} has {pf.layout.width}")
        return collect_reference(rf, p, opts.max_reference, opts.subsample, rng)


def _prior(pf: PredictionFile, opts: CanOptions, saved: Optional[Dict[str, Any]], ref_labels: np.ndarray,
           result: Dict[str, Any]) -> np.ndarray:
    """The prior for applying CAN, and a plain warning when it is the uniform default."""
    spec = opts.prior if opts.prior is not None else (saved or {}).get("prior")
    if spec is None and opts.reference and (ref_labels >= 0).any():
        # A separate labelled reference (dev) set: its label frequencies are the natural prior.
        # Never the input's own labels: that would leak test labels.
        spec = "reference"
    vec, source = resolve_prior(spec, pf.label_map, ref_labels)
    if opts.prior is None and saved and saved.get("prior") is not None:
        source = f"saved in {opts.params} ({saved.get('prior_source', 'given')})"
    result["prior"] = {"source": source, "values": vec.tolist()}
    if source == UNIFORM_DEFAULT:
        result["warnings"].append(
            "no --prior given, so CAN uses a uniform prior: it pushes uncertain rows towards equal class "
            "frequencies, which lowers accuracy when the classes are imbalanced. Give the training-label "
            "frequencies with --prior train_labels.txt (one label a line), or weights (--prior 0.5,0.3,0.2)")
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
    if acc and acc["rows"] and acc["after"] < acc["before"]:
        hint = " (with the uniform default prior: give --prior)" if result["prior"]["source"] == UNIFORM_DEFAULT else ""
        result["lowered_accuracy"] = True
        result["warnings"].insert(0, f"CAN LOWERED ACCURACY on the {acc['rows']} labelled rows: "
                                     f"{percent(acc['before'])} -> {percent(acc['after'])}{hint}")


def _finish(result: Dict[str, Any], opts: CanOptions) -> Dict[str, Any]:
    if opts.report:
        write_json(opts.report, result)
    return result


def _apply(pf: PredictionFile, model: CanModel, p: CanParams, output: Optional[str], pred_key: str,
           result: Dict[str, Any]) -> None:
    acc = _Accuracy()
    rows = uncertain_n = changed_n = untouched = 0
    with PredictionWriter(output, pf, pred_key=pred_key) as writer:
        for chunk in pf.replay(1 << 15):
            probs = chunk.values / chunk.values.sum(axis=1, keepdims=True)
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
    if model.identity_fallback:
        result.setdefault("notes", []).append("no confident reference rows: used the identity matrix")


def _tune(pf: PredictionFile, result: Dict[str, Any], opts: CanOptions) -> CanParams:
    data = pf.read_all()
    probs, labels = data.values / data.values.sum(axis=1, keepdims=True), data.labels
    missing = np.flatnonzero(labels < 0)
    if missing.size:
        raise InputError("no gold label on this row (--tune needs labelled rows)", pf.name, int(data.lines[missing[0]]))
    spec = opts.prior
    # Without --prior, tuning uses the label frequencies of the tuning rows (per fold in
    # cross-validation, so held-out labels never leak): a uniform prior would push an imbalanced
    # dev set's uncertain rows towards rare classes, which is rarely what the user wants.
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "reference"):
        prior_arg: Any = "labels"
        source = f"label frequencies of the {len(labels)} tuning rows (per fold in cross-validation)"
        q = frequencies(labels, pf.layout.width)
    else:
        q, source = resolve_prior(spec, pf.label_map)
        prior_arg = q
    result["prior"] = {"source": source, "values": q.tolist()}
    res = tune_can(probs, labels, prior_arg, folds=opts.cv, seed=opts.seed, max_reference=opts.max_reference,
                   search=opts.search, progress=opts.progress, **opts.grid())
    result["tune"] = {"rows": res.rows, "baseline": res.baseline, "accuracy": res.accuracy, "gain": res.gain,
                      "best": asdict(res.best), "grid_points": res.search["grid_points"], "search": res.search,
                      "top": res.table[:10], "cv": res.cv}
    result["params"] = asdict(res.best)
    return res.best


def _params_document(p: CanParams, result: Dict[str, Any], classes: Optional[List[str]]) -> Dict[str, Any]:
    tune = result["tune"]
    return {"bigshuf": "can", "version": 1, **asdict(p),
            "prior": result["prior"]["values"], "prior_source": result["prior"]["source"],
            "classes": classes,
            "dev": {"rows": tune["rows"], "accuracy_before": tune["baseline"], "accuracy_after": tune["accuracy"]},
            "cv": {k: v for k, v in (tune["cv"] or {}).items() if k != "chosen"} or None}


def format_can_report(result: Dict[str, Any]) -> str:
    """The human-readable report ``bigshuf can`` prints on stderr (warnings first)."""
    lines = [f"warning: {w}" for w in result.get("warnings", ())]
    if result.get("tune"):
        lines += _tune_lines(result["tune"])
    if "rows" in result:
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
        lines.append(f"{cv['folds']}-fold cross-validated: {percent(cv['accuracy_before'])} -> "
                     f"{percent(cv['accuracy_after'])} ({100 * cv['gain']:+.2f} points; "
                     f"{survival(tune['gain'], cv['gain'])})")
    return lines

