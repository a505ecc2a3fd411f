"""Decision-threshold search (``bigshuf threshold``), tuned on dev data and applied to test data.

Binary (one score per row, or two probabilities: the score is p[positive]): rows with
score >= cut are positive. The metric only changes where the cut crosses an observed score, so
one sort and one sweep over all distinct scores evaluates every possible cut: the exact global
optimum in O(n log n). The reported cut is the midpoint between the two neighbouring distinct
scores (the extremes: just above the highest score, or the lowest score). Among equally good
cuts the one nearest the usual rule (0.5 for probabilities, 0 for other scores) is kept.

Multi-class: a weight vector t > 0, predicting argmax_j p_j * t_j (the blog's fix for class
imbalance). Coordinate ascent with an exact line search: with all other weights fixed, row i
predicts class c exactly when t_c > max_{j != c}(p_ij t_j) / p_ic, so the metric is a step
function of t_c with those n breakpoints; sorting them and updating the confusion counts
incrementally evaluates every interval at once, and t_c moves to the midpoint of the best one.
Rounds repeat until no weight improves the metric. Unlike Powell's method (which the blog used),
this cannot stall on the plateaus of the step function inside a coordinate.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.predict.formats import Layout
from bigshuf.predict.metrics import METRICS, binary_metric, multiclass_metric

_TIE = 1e-12  # metric values closer than this are equal (they are ratios of small integers)


# -- binary ----------------------------------------------------------------------------------

def default_cut(scores: np.ndarray) -> float:
    """The usual decision rule: 0.5 for probabilities, 0 for other scores (logits, margins)."""
    return 0.5 if scores.size and scores.min() >= 0 and scores.max() <= 1 else 0.0


def sweep(scores: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct cut of ``scores`` and its confusion counts: (cuts, tp, fp), candidate g
    predicting the top g distinct scores positive (g = 0: nothing positive). O(n log n)."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if scores.size == 0:
        raise UsageError("threshold search needs at least one row")
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last row of each distinct score
    tp = np.r_[0, np.cumsum(yy)[last]]
    fp = np.r_[0, last + 1] - tp
    distinct = s[last]                                  # descending
    cuts = np.empty(len(tp))
    cuts[0] = np.nextafter(distinct[0], np.inf)
    cuts[-1] = distinct[-1]
    if len(distinct) > 1:
        cuts[1:-1] = _midpoints(distinct[1:], distinct[:-1])
    return cuts, tp, fp


def best_cut(cuts: np.ndarray, values: np.ndarray, near: float) -> int:
    """Index of the best value; among ties (within _TIE) the cut nearest ``near``."""
    best = np.flatnonzero(values >= values.max() - _TIE)
    return int(best[np.argmin(np.abs(cuts[best] - near))])


def find_threshold(scores: np.ndarray, labels: np.ndarray, metric: str = "accuracy") -> Tuple[float, float]:
    """The cut maximising ``metric`` when rows with score >= cut are predicted positive.

    ``labels`` are booleans (or 0/1). Returns (cut, metric value). Exact, O(n log n).
    """
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    cuts, tp, fp = sweep(scores, y)
    positives = int(y.sum())
    values = binary_metric(metric, tp, fp, positives, y.size - positives)
    pick = best_cut(cuts, values, default_cut(scores))
    return float(cuts[pick]), float(values[pick])


def _midpoints(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Midpoints of (low, high) that stay strictly above low, so ``>= cut`` separates them."""
    mid = low + (high - low) / 2
    return np.where(mid > low, mid, high)


# -- multi-class -----------------------------------------------------------------------------

def _top_two(weighted: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = np.arange(len(weighted))
    first = weighted.argmax(axis=1)
    v1 = weighted[rows, first]
    masked = weighted.copy()
    masked[rows, first] = -np.inf
    second = masked.argmax(axis=1)
    return first, v1, second, masked[rows, second]


def _group_before(keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each position, the sum of ``weights`` at earlier positions with the same key."""
    order = np.argsort(keys, kind="stable")
    k, w = keys[order], weights[order]
    before = np.cumsum(w) - w
    start = np.searchsorted(k, k, side="left")
    out = np.empty(len(keys), dtype=np.float64)
    out[order] = before - before[start]
    return out


def _f1(tp, pred_n, true_n):
    tp, den = np.broadcast_arrays(np.asarray(tp, float), np.asarray(pred_n + true_n, float))
    out = np.zeros(tp.shape)
    np.divide(2 * tp, den, out=out, where=den != 0)
    return out


def _coordinate_values(metric: str, y: np.ndarray, base_pred: np.ndarray, c: int, seq: np.ndarray,
                       other: np.ndarray, m: int) -> np.ndarray:
    """Metric after each prefix of ``seq`` (rows in breakpoint order) switches from ``other``
    to class ``c``, starting from predictions ``base_pred``; element 0 is the start."""
    n = y.size
    true_n = np.bincount(y, minlength=m).astype(np.float64)
    pred_n = np.bincount(base_pred, minlength=m).astype(np.float64)
    tp = np.bincount(y[base_pred == y], minlength=m).astype(np.float64)
    ys, os = y[seq], other[seq]
    gain = (ys == c).astype(np.float64)   # the row becomes correct
    loss = (ys == os).astype(np.float64)  # the row stops being correct
    if metric == "accuracy":
        return (tp.sum() + np.r_[0, np.cumsum(gain - loss)]) / n
    present = true_n > 0
    n_present = max(int(present.sum()), 1)
    if metric == "balanced-accuracy":
        inv = np.divide(1.0, true_n, out=np.zeros(m), where=present)
        start = (tp * inv).sum()
        return (start + np.r_[0, np.cumsum(gain * inv[c] - loss * inv[os])]) / n_present
    steps = np.arange(len(seq), dtype=np.float64)       # rows switched before this one
    moved = _group_before(os, np.ones(len(seq)))        # earlier switches out of the same class
    if metric == "f1":
        lost = _group_before(os, loss)                  # earlier correct rows lost by that class
        tp_o, pred_o = tp[os] - lost, pred_n[os] - moved
        delta = (_f1(tp_o - loss, pred_o - 1, true_n[os]) - _f1(tp_o, pred_o, true_n[os])) * present[os]
        others = (_f1(tp, pred_n, true_n) * present).sum() - _f1(tp[c], pred_n[c], true_n[c]) * present[c]
        f1_c = _f1(tp[c] + np.r_[0, np.cumsum(gain)], pred_n[c] + np.r_[0, steps + 1], true_n[c]) * present[c]
        return (others + np.r_[0, np.cumsum(delta)] + f1_c) / n_present
    if metric == "mcc":
        correct = tp.sum() + np.r_[0, np.cumsum(gain - loss)]
        pt = pred_n @ true_n + np.r_[0, np.cumsum(true_n[c] - true_n[os])]
        pp = pred_n @ pred_n + np.r_[0, np.cumsum(2 * (pred_n[c] + steps) + 1 - 2 * (pred_n[os] - moved) + 1)]
        den = np.sqrt(np.maximum(n * n - pp, 0) * (n * n - true_n @ true_n))
        num = correct * n - pt
        return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)
    raise UsageError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")


def _line_search(probs: np.ndarray, y: np.ndarray, t: np.ndarray, c: int, metric: str,
                 current: float) -> Optional[float]:
    """The best value for t[c] with the other weights fixed, or None if none beats ``current``."""
    m = probs.shape[1]
    weighted = probs * t
    first, v1, second, v2 = _top_two(weighted)
    is_c = first == c
    other = np.where(is_c, second, first)
    other_val = np.where(is_c, v2, v1)
    pc = probs[:, c]
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(pc > 0, other_val / pc, np.inf)
    always = (beta <= 0) & (pc > 0)
    base_pred = np.where(always, c, other)
    movable = np.flatnonzero((beta > 0) & np.isfinite(beta))
    if movable.size == 0:
        return None
    seq = movable[np.argsort(beta[movable], kind="stable")]
    values = _coordinate_values(metric, y, base_pred, c, seq, other, m)
    bs = beta[seq]
    ends = np.flatnonzero(np.r_[bs[1:] != bs[:-1], True])  # the last row of each distinct breakpoint
    candidates = np.r_[values[0], values[ends + 1]]
    best = candidates.max()
    if best <= current + _TIE:
        return None
    breaks = bs[ends]
    # interval g lies between breaks[g-1] and breaks[g]; pick the best one nearest the current t_c
    now = np.searchsorted(breaks, t[c])
    good = np.flatnonzero(candidates >= best - _TIE)
    g = int(good[np.argmin(np.abs(good - now))])
    if g == 0:
        return float(breaks[0] / 2)
    if g == len(breaks):
        return float(breaks[-1] * 2)
    return float(_midpoints(breaks[g - 1:g], breaks[g:g + 1])[0])


def _ascend(probs: np.ndarray, y: np.ndarray, t: np.ndarray, metric: str, max_rounds: int
            ) -> Tuple[np.ndarray, float]:
    """Coordinate ascent from ``t`` until no single weight can improve the metric."""
    m = probs.shape[1]
    t = t / t.max()
    value = multiclass_metric(metric, y, (probs * t).argmax(axis=1), m)
    for _ in range(max_rounds):
        improved = False
        for c in range(m):
            new = _line_search(probs, y, t, c, metric, value)
            if new is None:
                continue
            trial = t.copy()
            trial[c] = new
            v = multiclass_metric(metric, y, (probs * trial).argmax(axis=1), m)
            if v > value + _TIE:  # recheck: rounding at a breakpoint must not lose ground
                t, value, improved = trial, v, True
        t = t / t.max()
        if not improved:
            break
    return t, value


def find_class_weights(probs: np.ndarray, labels: np.ndarray, metric: str = "accuracy", *,
                       max_rounds: int = 50, restarts: int = 8, seed: int = 0) -> Tuple[np.ndarray, float]:
    """Weights t (max 1) maximising ``metric`` of argmax(p * t); returns (t, metric value).

    Coordinate ascent with exact line searches from t = 1 (plain argmax), the inverse class
    frequencies and the inverse mean probabilities; then ``restarts`` seeded random
    perturbations of the best point (basin hopping), since a step function has local optima
    that no single-coordinate move escapes. The best end point wins.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    m = probs.shape[1]
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    freq = np.bincount(y, minlength=m).astype(np.float64)
    mean_p = probs.mean(axis=0)
    starts = [np.ones(m), 1.0 / np.maximum(freq, 1.0), 1.0 / np.maximum(mean_p, 1e-12)]
    best_t, best_v = np.ones(m), -np.inf
    for t in starts:
        t, value = _ascend(probs, y, t, metric, max_rounds)
        if value > best_v + _TIE:
            best_t, best_v = t, value
    rng = np.random.default_rng(seed)
    for _ in range(restarts):
        t, value = _ascend(probs, y, best_t * np.exp(rng.normal(0.0, 0.5, m)), metric, max_rounds)
        if value > best_v + _TIE:
            best_t, best_v = t, value
    return best_t, float(best_v)


def binary_scores(values: np.ndarray, layout: Layout, positive: int) -> np.ndarray:
    """The score of each row: the value itself, or p[positive] of a 2-class probability row."""
    if layout.scalar:
        return values
    if layout.width != 2:
        raise UsageError(f"a binary cut needs one score or two probabilities per row, not {layout.width}")
    return values[:, positive]


def apply_threshold(params: Dict[str, Any], values: np.ndarray, layout: Optional[Layout] = None) -> np.ndarray:
    """Predicted class indices for ``values`` (scores, or probability rows) under ``params``."""
    values = np.asarray(values, dtype=np.float64)
    if params.get("mode") == "binary":
        positive = int(params.get("positive", 1))
        lay = layout or Layout("jsonl", width=1 if values.ndim == 1 else values.shape[1], scalar=values.ndim == 1)
        scores = binary_scores(values, lay, positive)
        return np.where(scores >= float(params["cut"]), positive, 1 - positive)
    weights = np.asarray(params["weights"], dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != weights.size:
        width = values.shape[1] if values.ndim == 2 else 1
        raise UsageError(f"the params have {weights.size} class weights, the rows have {width} values")
    return (values * weights).argmax(axis=1)
