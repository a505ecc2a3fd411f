"""Decision-threshold search: binary cuts and multi-class weights (the algorithms behind
``bigshuf threshold``; the command is in ``threshold_command.py``, per-label cuts in ``multilabel.py``).

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
this cannot stall on the plateaus of the step function inside a coordinate. Speed (``_Ascent``):
each row's two best weighted classes are kept up to date as one weight moves, accuracy needs no
permutation sort, and basin hopping explores on a subsample before polishing on all rows.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.predict.formats import Layout
from bigshuf.predict.metrics import (
    METRICS,
    LineSearch,
    binary_metric,
    get_metric,
    line_fallback,
    multiclass_metric,
)

_TIE = 1e-12  # metric values closer than this are equal (they are ratios of small integers)
EXPLORE_ROWS = 16_384  # class-weight search: rows the basin hopping explores on before polishing


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
    """Each row's best class and value, and its second. The best entries are masked in place
    and put back (their exact values are kept in ``v1``): no n x m copy, which the ascent's
    column-major copy of the rows needs the room of."""
    rows = np.arange(len(weighted))
    first = weighted.argmax(axis=1)
    v1 = weighted[rows, first]
    weighted[rows, first] = -np.inf
    second = weighted.argmax(axis=1)
    v2 = weighted[rows, second]
    weighted[rows, first] = v1
    return first, v1, second, v2


class _Ascent:
    """Coordinate-ascent state: the weights, the weighted scores and each row's two best classes,
    kept up to date as one weight changes (only rows where that class is or becomes one of the
    two best are recomputed), so a line search costs O(n) plus one sort of its breakpoints."""

    def __init__(self, probs: np.ndarray, y: np.ndarray, t: np.ndarray, metric: str):
        # column-major: every line search and update reads one class's column (4.7 -> 3.7 s CPU
        # for the 100k x 40 weights fit); the values and their argmax ties are the same
        self.probs, self.y, self.metric = np.asfortranarray(probs), y, metric
        self.m = probs.shape[1]
        self.t = t / t.max()
        self.w = probs * self.t
        self.first, self.v1, self.second, self.v2 = _top_two(self.w)
        self.value = self._metric()

    def set(self, c: int, tc: float) -> None:
        self.t[c] = tc
        col = self.probs[:, c] * tc
        self.w[:, c] = col
        rows = np.flatnonzero((self.first == c) | (self.second == c) | (col >= self.v2))
        if rows.size:
            f, v1, s, v2 = _top_two(self.w[rows])
            self.first[rows], self.v1[rows], self.second[rows], self.v2[rows] = f, v1, s, v2

    def _metric(self) -> float:
        if self.metric == "accuracy" and len(self.y):  # Confusion's tp.sum() / n without its three bincounts
            return np.count_nonzero(self.first == self.y) / len(self.y)
        return multiclass_metric(self.metric, self.y, self.first, self.m)

    def try_coordinate(self, c: int) -> bool:
        """Move t[c] to the best point of its exact line search if that improves the metric."""
        new = self._line_search(c)
        if new is None:
            return False
        old = float(self.t[c])
        self.set(c, new)
        v = self._metric()
        if v > self.value + _TIE:  # recheck: rounding at a breakpoint must not lose ground
            self.value = v
            return True
        self.set(c, old)
        return False

    def _line_search(self, c: int) -> Optional[float]:
        """The best value for t[c] with the other weights fixed, or None if none beats the current."""
        is_c = self.first == c
        other = np.where(is_c, self.second, self.first)
        other_val = np.where(is_c, self.v2, self.v1)
        pc = self.probs[:, c]
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(pc > 0, other_val / pc, np.inf)
        always = (beta <= 0) & (pc > 0)
        base_pred = np.where(always, c, other)
        movable = (beta > 0) & np.isfinite(beta)
        if not movable.any():
            return None
        if self.metric == "accuracy":
            return self._accuracy_search(c, beta, movable, base_pred, other)
        rows = np.flatnonzero(movable)
        seq = rows[np.argsort(beta[rows])]  # ties: only group ends are read, any order works
        bs = beta[seq]
        ends = np.flatnonzero(np.r_[bs[1:] != bs[:-1], True])  # the last row of each distinct breakpoint
        line = LineSearch(self.y, base_pred, c, seq, other, self.m)
        metric = METRICS[self.metric]
        values = metric.line(line) if metric.line else line_fallback(metric, line, ends)
        candidates = np.r_[values[0], values[ends + 1]]
        best = candidates.max()
        if best <= self.value + _TIE:
            return None
        return _interval_point(bs[ends], candidates, best, float(self.t[c]))


    def _accuracy_search(self, c: int, beta: np.ndarray, movable: np.ndarray, base_pred: np.ndarray,
                         other: np.ndarray) -> Optional[float]:
        """The accuracy line search without a permutation: a row switching to c at its breakpoint
        gains when its label is c and loses when its label is ``other``; any other row cannot
        change the count. So accuracy only rises right after a gain breakpoint, and it is enough
        to sort the gain and the loss breakpoints (values only) and count losses below each gain."""
        y = self.y
        gains = np.sort(beta[movable & (y == c)])
        losses = np.sort(beta[movable & (y == other) & (y != c)])
        if gains.size == 0:
            return None
        start = int((base_pred == y).sum())  # correct rows with t_c just above 0
        # after the j-th gain breakpoint (all ties at that value included): gains, losses at or below
        last = np.flatnonzero(np.r_[gains[1:] != gains[:-1], True])
        points = gains[last]
        counts = start + (last + 1) - np.searchsorted(losses, points, side="right")
        n = len(y)
        candidates = np.r_[start, counts] / n
        best = candidates.max()
        if best <= self.value + _TIE:
            return None
        breaks = np.unique(np.r_[points, losses])
        values = np.full(len(breaks) + 1, -np.inf)
        values[0] = start / n
        values[np.searchsorted(breaks, points) + 1] = counts / n
        return _interval_point(breaks, values, best, float(self.t[c]))


def _interval_point(breaks: np.ndarray, candidates: np.ndarray, best: float, now_t: float) -> float:
    """A point inside the best interval (interval g lies between breaks[g-1] and breaks[g]);
    among equally good intervals the one nearest the current weight."""
    now = np.searchsorted(breaks, now_t)
    good = np.flatnonzero(candidates >= best - _TIE)
    g = int(good[np.argmin(np.abs(good - now))])
    if g == 0:
        return float(breaks[0] / 2)
    if g == len(breaks):
        return float(breaks[-1] * 2)
    return float(_midpoints(breaks[g - 1:g], breaks[g:g + 1])[0])


def _ascend(probs: np.ndarray, y: np.ndarray, t: np.ndarray, metric: str, max_rounds: int,
            frozen: Optional[np.ndarray] = None) -> Tuple[np.ndarray, float]:
    """Coordinate ascent from ``t`` until no single weight can improve the metric. A coordinate
    is searched again only after some other weight has moved since its last search; ``frozen``
    coordinates are never searched (they keep one shared value, see ``_tie``)."""
    m = probs.shape[1]
    frozen = np.zeros(m, dtype=bool) if frozen is None else frozen
    state = _Ascent(probs, y, _tie(t.astype(np.float64), frozen), metric)
    clean = frozen.copy()  # searched, and nothing moved since
    for _ in range(max_rounds):
        improved = False
        for c in range(m):
            if clean[c]:
                continue
            clean[c] = True
            if state.try_coordinate(c):
                clean[:] = frozen
                clean[c] = True
                improved = True
        if not improved:
            break
    return state.t / state.t.max(), float(state.value)


def _tie(t: np.ndarray, frozen: np.ndarray) -> np.ndarray:
    """``t`` with every frozen class at one shared value (their geometric mean): their weights
    relative to each other stay untuned (argmax among them is unchanged)."""
    if frozen.any():
        t = t.copy()
        t[frozen] = np.exp(np.log(np.maximum(t[frozen], 1e-300)).mean())
    return t


def _starts(probs: np.ndarray, y: np.ndarray) -> List[np.ndarray]:
    """t = 1 (plain argmax), the inverse class frequencies and the inverse mean probabilities."""
    m = probs.shape[1]
    freq = np.bincount(y, minlength=m).astype(np.float64)
    return [np.ones(m), 1.0 / np.maximum(freq, 1.0), 1.0 / np.maximum(probs.mean(axis=0), 1e-12)]


def _basin_hop(probs: np.ndarray, y: np.ndarray, metric: str, starts: List[np.ndarray], restarts: int,
               max_rounds: int, rng: np.random.Generator, frozen: Optional[np.ndarray] = None
               ) -> List[Tuple[float, np.ndarray]]:
    """Ascents from ``starts``, then ``restarts`` random perturbations of the best point so far;
    every end point as (value, weights), best first."""
    ends = [(v, t) for v, t in (_ascend(probs, y, s, metric, max_rounds, frozen)[::-1] for s in starts)]
    best_v, best_t = max(ends, key=lambda e: e[0])
    for _ in range(restarts):
        t, v = _ascend(probs, y, best_t * np.exp(rng.normal(0.0, 0.5, probs.shape[1])), metric, max_rounds,
                       frozen)
        ends.append((v, t))
        if v > best_v + _TIE:
            best_v, best_t = v, t
    ends.sort(key=lambda e: -e[0])
    return ends


def find_class_weights(probs: np.ndarray, labels: np.ndarray, metric: str = "accuracy", *,
                       max_rounds: int = 50, restarts: int = 8, seed: int = 0,
                       explore_rows: int = EXPLORE_ROWS, keep: int = 3,
                       frozen: Optional[np.ndarray] = None) -> Tuple[np.ndarray, float]:
    """Weights t (max 1) maximising ``metric`` of argmax(p * t); returns (t, metric value).

    Coordinate ascent with exact line searches from three starts, then ``restarts`` seeded
    random perturbations of the best point (basin hopping), since a step function has local
    optima that no single-coordinate move escapes. With more than ``explore_rows`` rows, that
    exploration runs on a seeded, label-stratified subsample of ``explore_rows`` rows, and the
    ``keep`` best end points (plus the three starts) are then ascended on all rows, where the
    best end point wins (0: explore on all rows). ``frozen`` (a mask of classes) keeps those
    classes' weights untuned: one shared value, never searched (classes with too few labelled
    rows to fit a weight to; see ``bigshuf.predict.safety.MIN_ROWS_TO_TUNE``).
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    get_metric(metric)
    rng = np.random.default_rng(seed)
    n = len(y)
    if not explore_rows or n <= explore_rows:
        v, t = _basin_hop(probs, y, metric, _starts(probs, y), restarts, max_rounds, rng, frozen)[0]
        return t, float(v)
    sub = _stratified_subsample(y, explore_rows, rng)
    ends = _basin_hop(probs[sub], y[sub], metric, _starts(probs[sub], y[sub]), restarts, max_rounds, rng, frozen)
    best_t, best_v = np.ones(probs.shape[1]), -np.inf
    for t in [t for _, t in ends[:keep]] + _starts(probs, y):
        t, v = _ascend(probs, y, t, metric, max_rounds, frozen)
        if v > best_v + _TIE:
            best_t, best_v = t, v
    return best_t, float(best_v)


def _stratified_subsample(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` row indices, every class kept in proportion (at least one row each)."""
    order = rng.permutation(len(y))
    ranks = np.empty(len(y), dtype=np.int64)
    sorted_y = y[order]
    idx = np.argsort(sorted_y, kind="stable")
    counts = np.bincount(y)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    ranks[order[idx]] = np.arange(len(y)) - np.repeat(starts, counts)
    quota = np.maximum(np.round(counts * size / len(y)), np.minimum(counts, 1))
    return np.sort(np.flatnonzero(ranks < quota[y]))


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
