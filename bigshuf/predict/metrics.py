"""Classification metrics: one ``Metric`` object per metric, in ``METRICS``; the
cross-validation folds and report helpers both commands share.

Adding a metric touches this module only (plus its tests and docs): a ``Metric`` holds the
binary formula from confusion counts (vectorised, so a threshold sweep evaluates every cut at
once; also the per-label form of multi-label metrics), the multi-class formula from a
``Confusion``, and, optionally, its incremental form for the class-weight line search
(``line``: the metric after each prefix of rows switches class, in O(n)). Without one, the line
search uses the explicit fallback ``line_fallback`` (exact values at up to 256 breakpoints). The
CLI's ``--metric`` choices, the options' checks, the threshold search and the multi-label cuts
all read ``METRICS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from bigshuf.common.errors import UsageError


def _ratio(num: Any, den: Any) -> np.ndarray:
    """num / den with 0/0 (and x/0) defined as 0: a metric over an empty set scores nothing."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass
class Confusion:
    """What multi-class formulas need: per class the gold count, the predicted count and the
    correct count (all over ``n`` rows)."""

    n: int
    true_n: np.ndarray
    pred_n: np.ndarray
    tp: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, preds: np.ndarray, m: int) -> "Confusion":
        labels = np.asarray(labels, dtype=np.int64)
        preds = np.asarray(preds, dtype=np.int64)
        hit = labels == preds
        return cls(labels.size, np.bincount(labels, minlength=m).astype(np.float64),
                   np.bincount(preds, minlength=m).astype(np.float64),
                   np.bincount(labels[hit], minlength=m).astype(np.float64))

    @property
    def present(self) -> np.ndarray:
        return self.true_n > 0


@dataclass
class LineSearch:
    """One coordinate of the class-weight search (``thresholds._Ascent``): rows ``seq`` (in
    breakpoint order) switch, one after another, from class ``other[row]`` to class ``c``,
    starting from predictions ``base``. A metric's ``line`` returns its value after each
    prefix (element 0: before any switch)."""

    y: np.ndarray
    base: np.ndarray
    c: int
    seq: np.ndarray
    other: np.ndarray
    m: int

    def __post_init__(self) -> None:
        self.n = self.y.size
        self.start = Confusion.of(self.y, self.base, self.m)
        self.ys, self.os = self.y[self.seq], self.other[self.seq]
        self.gain = (self.ys == self.c).astype(np.float64)                       # the row becomes correct
        self.loss = (self.ys == self.os).astype(np.float64)                      # the row stops being correct
        self.steps = np.arange(len(self.seq), dtype=np.float64)                  # rows switched before it
        self.moved = group_before(self.os, np.ones(len(self.seq)))               # earlier switches out of its class
        self.correct = self.start.tp.sum() + np.r_[0, np.cumsum(self.gain - self.loss)]


def group_before(keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each position, the sum of ``weights`` at earlier positions with the same key."""
    order = np.argsort(keys, kind="stable")
    k, w = keys[order], weights[order]
    before = np.cumsum(w) - w
    start = np.searchsorted(k, k, side="left")
    out = np.empty(len(keys), dtype=np.float64)
    out[order] = before - before[start]
    return out


@dataclass(frozen=True)
class Metric:
    """One metric in every form the commands use (see the module docstring)."""

    name: str
    help: str
    binary: Callable[..., np.ndarray]            # (tp, fp, positives, negatives) -> values
    multiclass: Callable[[Confusion], float]
    line: Optional[Callable[[LineSearch], np.ndarray]] = None
    pooled: bool = False        # multi-label: pool the counts of all labels (micro) instead of averaging
    single_label: bool = True   # offered without --multi-label


# -- the formulas --------------------------------------------------------------------------------

def _counts(tp: Any, fp: Any, positives: Any, negatives: Any) -> tuple:
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    positives = np.asarray(positives, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    return tp, fp, positives - tp, negatives - fp, positives, negatives


def _accuracy_binary(*counts: Any) -> np.ndarray:
    tp, fp, fn, tn, pos, neg = _counts(*counts)
    return (tp + tn) / np.maximum(pos + neg, 1)


def _f1_binary(*counts: Any) -> np.ndarray:
    tp, fp, fn, tn, pos, neg = _counts(*counts)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _mcc_binary(*counts: Any) -> np.ndarray:
    """0 when undefined (a row or column of the confusion matrix is empty), as is usual."""
    tp, fp, fn, tn, pos, neg = _counts(*counts)
    return _ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))


def _balanced_binary(*counts: Any) -> np.ndarray:
    tp, fp, fn, tn, pos, neg = _counts(*counts)
    present = (pos > 0).astype(np.float64) + (neg > 0)
    return (_ratio(tp, pos) + _ratio(tn, neg)) / np.maximum(present, 1)


def _kappa_binary(*counts: Any) -> np.ndarray:
    """Cohen's kappa: (observed - chance agreement) / (1 - chance), chance from the marginals."""
    tp, fp, fn, tn, pos, neg = _counts(*counts)
    n = pos + neg
    chance = (tp + fp) * pos + (fn + tn) * neg
    return _ratio(n * (tp + tn) - chance, n * n - chance)


def _accuracy(c: Confusion) -> float:
    return float(c.tp.sum() / c.n)


def _macro_f1(c: Confusion) -> float:
    """Macro F1 over the classes present in the gold labels (a class predicted but never true
    does not count: [0,0,1,1] vs [0,2,1,1] scores 5/6)."""
    return float(_ratio(2 * c.tp, c.pred_n + c.true_n)[c.present].mean())


def _mean_recall(c: Confusion) -> float:
    return float((c.tp[c.present] / c.true_n[c.present]).mean())


def _mcc(c: Confusion) -> float:
    """The multi-class (Gorodkin) MCC."""
    n = c.n
    num = c.tp.sum() * n - c.pred_n @ c.true_n
    return float(_ratio(num, np.sqrt((n * n - c.pred_n @ c.pred_n) * (n * n - c.true_n @ c.true_n))))


def _kappa(c: Confusion) -> float:
    n = c.n
    chance = c.pred_n @ c.true_n
    return float(_ratio(c.tp.sum() * n - chance, n * n - chance))


# -- incremental forms for the class-weight line search ---------------------------------------------

def _accuracy_line(s: LineSearch) -> np.ndarray:
    return s.correct / s.n


def _mean_recall_line(s: LineSearch) -> np.ndarray:
    st = s.start
    inv = np.divide(1.0, st.true_n, out=np.zeros(s.m), where=st.present)
    start = (st.tp * inv).sum()
    return (start + np.r_[0, np.cumsum(s.gain * inv[s.c] - s.loss * inv[s.os])]) / max(int(st.present.sum()), 1)


def _f1_parts(tp: Any, pred_n: Any, true_n: Any) -> np.ndarray:
    tp, den = np.broadcast_arrays(np.asarray(tp, float), np.asarray(pred_n + true_n, float))
    out = np.zeros(tp.shape)
    np.divide(2 * tp, den, out=out, where=den != 0)
    return out


def _macro_f1_line(s: LineSearch) -> np.ndarray:
    st, c, os = s.start, s.c, s.os
    present = st.present
    lost = group_before(os, s.loss)                  # earlier correct rows lost by that class
    tp_o, pred_o = st.tp[os] - lost, st.pred_n[os] - s.moved
    delta = (_f1_parts(tp_o - s.loss, pred_o - 1, st.true_n[os]) - _f1_parts(tp_o, pred_o, st.true_n[os])) * present[os]
    others = (_f1_parts(st.tp, st.pred_n, st.true_n) * present).sum() - \
        _f1_parts(st.tp[c], st.pred_n[c], st.true_n[c]) * present[c]
    f1_c = _f1_parts(st.tp[c] + np.r_[0, np.cumsum(s.gain)], st.pred_n[c] + np.r_[0, s.steps + 1], st.true_n[c]) * present[c]
    return (others + np.r_[0, np.cumsum(delta)] + f1_c) / max(int(present.sum()), 1)


def _chance_line(s: LineSearch) -> "tuple[np.ndarray, np.ndarray]":
    """pred_n @ true_n and pred_n @ pred_n after each prefix (MCC's and kappa's marginals)."""
    st, c = s.start, s.c
    pt = st.pred_n @ st.true_n + np.r_[0, np.cumsum(st.true_n[c] - st.true_n[s.os])]
    pp = st.pred_n @ st.pred_n + np.r_[0, np.cumsum(2 * (st.pred_n[c] + s.steps) + 1 - 2 * (st.pred_n[s.os] - s.moved) + 1)]
    return pt, pp


def _mcc_line(s: LineSearch) -> np.ndarray:
    pt, pp = _chance_line(s)
    n, true_n = s.n, s.start.true_n
    den = np.sqrt(np.maximum(n * n - pp, 0) * (n * n - true_n @ true_n))
    num = s.correct * n - pt
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


def _kappa_line(s: LineSearch) -> np.ndarray:
    pt, _ = _chance_line(s)
    num, den = s.correct * s.n - pt, s.n * s.n - pt
    return np.divide(num, den, out=np.zeros(num.shape), where=den != 0)


FALLBACK_POINTS = 256


def line_fallback(metric: Metric, s: LineSearch, ends: np.ndarray) -> np.ndarray:
    """The explicit fallback for a metric without ``line``: the metric recomputed from scratch
    after the prefixes ending at up to ``FALLBACK_POINTS`` of the breakpoint group ``ends``
    (evenly spread), -inf elsewhere so the search never picks an unevaluated point. O(n) each."""
    values = np.full(len(s.seq) + 1, -np.inf)
    pick = ends if len(ends) <= FALLBACK_POINTS else ends[np.linspace(0, len(ends) - 1, FALLBACK_POINTS).astype(int)]
    values[0] = metric.multiclass(s.start)
    for e in pick:
        preds = s.base.copy()
        preds[s.seq[:e + 1]] = s.c
        values[e + 1] = metric.multiclass(Confusion.of(s.y, preds, s.m))
    return values


# -- the registry -------------------------------------------------------------------------------

METRICS: Dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "share of rows decided right", _accuracy_binary, _accuracy, _accuracy_line),
    Metric("f1", "F1 of the positive class (binary), macro F1 over the classes present (multi-class), "
           "per-label F1 averaged (multi-label)", _f1_binary, _macro_f1, _macro_f1_line),
    Metric("mcc", "Matthews correlation (multi-class: Gorodkin's)", _mcc_binary, _mcc, _mcc_line),
    Metric("balanced-accuracy", "mean recall over the classes present", _balanced_binary, _mean_recall,
           _mean_recall_line),
    Metric("kappa", "Cohen's kappa: agreement beyond chance", _kappa_binary, _kappa, _kappa_line),
    Metric("macro-f1", "per-label F1 averaged over the labels present (= f1)", _f1_binary, _macro_f1,
           single_label=False),
    Metric("micro-f1", "F1 of the pooled counts of all labels", _f1_binary, _macro_f1, pooled=True,
           single_label=False),
)}
SINGLE_LABEL_METRICS = tuple(name for name, m in METRICS.items() if m.single_label)
MULTILABEL_METRICS = ("f1", "macro-f1", "micro-f1", *(n for n in SINGLE_LABEL_METRICS if n != "f1"))


def get_metric(name: str, multi_label: bool = False) -> Metric:
    """The metric called ``name``, or UsageError (exit 2) naming the choices."""
    allowed = MULTILABEL_METRICS if multi_label else SINGLE_LABEL_METRICS
    if name not in allowed:
        kind = "multi-label metric" if multi_label else "metric"
        raise UsageError(f"unknown {kind} {name!r} (choose from {', '.join(allowed)})")
    return METRICS[name]


def binary_metric(metric: str, tp: Any, fp: Any, positives: Any, negatives: Any) -> np.ndarray:
    """Value of ``metric`` for binary confusion counts (vectorised over tp, fp)."""
    return get_metric(metric, multi_label=True).binary(tp, fp, positives, negatives)


def multiclass_metric(metric: str, labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    """Value of ``metric`` for integer predictions (0 for no rows)."""
    m = get_metric(metric)
    if np.asarray(labels).size == 0:
        return 0.0
    return m.multiclass(Confusion.of(labels, preds, n_classes))


def cv_folds(labels: np.ndarray, folds: int, seed: int, groups: Optional[np.ndarray] = None) -> List[np.ndarray]:
    """Stratified folds: row indices of each held-out fold, classes dealt round-robin.

    Stratifying keeps rare classes in every fold, which matters for the imbalanced data that
    threshold tuning and CAN are used on. With ``groups``, rows of one group (e.g. exact
    duplicates) always share a fold: copies of a row on both sides of a split made a file of
    60 rows repeated 30 times report +18 held-out points for weights that lost 3.8 on test.
    Without duplicates the folds are the same as without ``groups``.
    """
    labels = np.asarray(labels)
    if groups is None:
        return _stratified(labels, folds, seed)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")         # groups in order of their first row
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    group_folds = _stratified(labels[first[order]], folds, seed)
    assignment = np.empty(len(order), dtype=np.int64)
    for f, held in enumerate(group_folds):
        assignment[held] = f
    row_fold = assignment[rank[inverse.reshape(-1)]]
    return [np.flatnonzero(row_fold == f) for f in range(folds)]


def _stratified(labels: np.ndarray, folds: int, seed: int) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    assignment = np.empty(labels.size, dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(idx.size)]
        # continue the round-robin where the previous class stopped, so fold sizes stay even
        assignment[idx] = (np.arange(idx.size) + offset) % folds
        offset = (offset + idx.size) % folds
    return [np.flatnonzero(assignment == f) for f in range(folds)]


def percent(value: Optional[float], width: int = 0) -> str:
    """``0.6052`` -> ``60.52%`` (right-aligned to ``width``); ``None`` -> ``-``."""
    text = "-" if value is None else f"{100 * value:.2f}%"
    return text.rjust(width)


#: Most decimals a before -> after percentage pair is shown with: a change that does not show
#: there (float noise) is no change.
MAX_DECIMALS = 6


def percent_pair(before: float, after: float) -> Tuple[str, str]:
    """``before`` and ``after`` as percentages with the fewest decimals (2 to MAX_DECIMALS) that
    tell them apart: ``9.950% -> 9.945%``, never ``9.95% -> 9.95%``."""
    for d in range(2, MAX_DECIMALS + 1):
        b, a = f"{100 * before:.{d}f}%", f"{100 * after:.{d}f}%"
        if b != a:
            break
    return b, a


def lowered(before: float, after: float) -> Optional[str]:
    """``"B% -> A%"`` when ``after`` is lower than ``before`` by a change that shows at
    MAX_DECIMALS decimals; None otherwise (no warning about a change that rounds to nothing)."""
    b, a = percent_pair(before, after)
    return f"{b} -> {a}" if after < before and a != b else None


def cv_line(cv: Dict[str, Any], dev_gain: float) -> str:
    """The report's cross-validation line: pooled held-out before -> after, the gain, the noise
    it must beat and the fold spread."""
    noise = f"noise {100 * cv['noise']:.2f}" if cv.get("noise") is not None else "noise unknown"
    low, high = cv["spread"]
    return (f"{cv['folds']}-fold cross-validated: {percent(cv['before'])} -> {percent(cv['after'])} "
            f"({100 * cv['gain']:+.2f} points, {noise}, folds {100 * low:+.2f} to {100 * high:+.2f}; "
            f"{survival(dev_gain, cv['gain'])})")


def survival(dev_gain: float, cv_gain: float) -> str:
    """How much of an in-sample gain survives cross-validation, in words."""
    if cv_gain <= 0:
        return "no gain survives on held-out rows: the tuned setting does not generalise"
    if dev_gain <= 0:
        return "gain only on held-out rows"
    return f"{min(cv_gain / dev_gain, 1.0):.0%} of the gain survives on held-out rows"
