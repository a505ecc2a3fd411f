"""Tuning CAN's four knobs (and the uncertainty rule) for accuracy on labelled rows.

Why it is fast. A grid point's accuracy only depends on its uncertain rows (confident rows are
unchanged), and ranking grid points does not need exact CAN: with the reference block frozen at
its own trajectory (``adjust_first_order``) every iteration costs O(m) per row instead of two
matrix products against the whole reference set, and the difference is an O(1/n) change of the
column sums. One trajectory per (rule, k, tau, alpha) gives every iteration count at once.
On top of that, successive halving: every trajectory is scored on a nested row subsample (1/16
of the rows, 2 048 reference rows), the best quarter goes on to 4x the rows and reference, and
so on up to all rows and the full (capped) reference. Trajectories run on a thread pool (numpy
releases the GIL in the array work). The cross-validated estimate applies each fold's winner
to its held-out rows the same first-order way. How close is it? On 20 000 generated rows x 40
classes the largest change of a probability was 1e-3 and at most 2 decisions in 20 000 differed
from exact CAN (scripts/bench_predict.py also checks the held-out gain of the winner with exact
CAN on a separate test set). ``search="exhaustive"`` scores every grid point on all rows (first
order); ``search="exact"`` runs exact CAN everywhere (slow; for small data and tests). Rows
written by ``bigshuf can`` (``-o``, ``--params``) always get exact CAN.
"""
from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.common.progress import progress_enabled
from bigshuf.predict.can import (
    CanModel,
    adjust_first_order,
    can_matrix,
    check_prior,
    confident_mask,
    identity_reference,
    reference_column_sums,
    uncertainty,
)
from bigshuf.predict.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_ITERATIONS,
    DEFAULT_K,
    DEFAULT_MAX_REFERENCE,
    DEFAULT_RULE,
    DEFAULT_SEARCH,
    DEFAULT_TAU,
    GRID_ALPHAS,
    GRID_ITERATIONS,
    GRID_KS,
    GRID_RULES,
    GRID_TAUS,
    RULES,
    SEARCHES,
)
from bigshuf.predict.metrics import cv_folds
from bigshuf.predict.priors import frequencies

_FIRST_RUNG_ROWS = 1 / 16     # share of the rows the first rung scores
_FIRST_RUNG_REFERENCE = 2048  # reference rows of the first rung
_ETA = 4                      # rows and reference grow, candidates shrink, by this factor per rung


@dataclass
class CanParams:
    """The CAN knobs."""

    tau: float = DEFAULT_TAU
    alpha: float = DEFAULT_ALPHA
    iterations: int = DEFAULT_ITERATIONS
    k: int = DEFAULT_K
    rule: str = DEFAULT_RULE

    def sort_key(self) -> Tuple[float, ...]:
        """Among equally accurate settings prefer the gentlest: few iterations, alpha near 1, the
        paper's tau and k, and the default rule."""
        return (self.iterations, abs(math.log(self.alpha)), abs(self.tau - DEFAULT_TAU),
                abs(self.k - DEFAULT_K), float(self.rule != DEFAULT_RULE))


@dataclass
class TuneResult:
    """Outcome of ``tune_can``: the winner, the sorted table, and the cross-validated estimate."""

    best: CanParams
    rows: int
    baseline: float                       # accuracy without CAN
    accuracy: float                       # accuracy of the winner on the same data
    table: List[Dict[str, Any]]           # grid points scored on all rows, best first
    cv: Optional[Dict[str, Any]] = None   # held-out estimate, see tune_can
    search: Dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> float:
        return self.accuracy - self.baseline


@dataclass
class _Split:
    """One (rule, k, tau): which rows are confident, and the reference rows in a fixed random
    order (so every rung's reference is a prefix of the next one's)."""

    rule: str
    k: int
    tau: float
    confident: np.ndarray
    reference: np.ndarray


@dataclass
class _Rung:
    rows: np.ndarray      # row indices scored (a prefix of one random order: nested rungs)
    reference: int        # reference rows used (a prefix of each split's order)


class _Searcher:
    """Scores (split, alpha) trajectories on a rung; one per grid search."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, prior: np.ndarray,
                 iterations: Sequence[int], exact: bool):
        self.probs, self.labels, self.prior = probs, labels, prior
        self.hits = probs.argmax(axis=1) == labels
        self.iterations = sorted(set(int(i) for i in iterations))
        self.exact = exact

    def score(self, split: _Split, alpha: float, rung: _Rung) -> List[int]:
        """Correct predictions among ``rung.rows`` after each iteration count of the grid."""
        conf = split.confident[rung.rows]
        unc_rows = rung.rows[~conf]
        base = int(self.hits[rung.rows[conf]].sum())
        if unc_rows.size == 0:
            return [base] * len(self.iterations)
        ref = split.reference[:rung.reference]
        b, y = self.probs[unc_rows], self.labels[unc_rows]
        top = self.iterations[-1]
        if self.exact:
            outs = CanModel(ref, self.prior, alpha, top).adjust(b, all_iterations=True)
        else:
            if len(ref) == 0:
                ref = identity_reference(self.probs.shape[1])
            outs = adjust_first_order(b, reference_column_sums(ref, self.prior, alpha, top), self.prior, alpha)
        return [base + int((outs[it - 1].argmax(axis=1) == y).sum()) for it in self.iterations]


def _splits(probs: np.ndarray, taus: Sequence[float], ks: Sequence[int], rules: Sequence[str],
            max_reference: int, rng: np.random.Generator) -> List[_Split]:
    m = probs.shape[1]
    out = []
    for rule in rules:
        for k in (sorted({min(int(k), m) for k in ks}) if rule == "top-k" else [DEFAULT_K]):
            u = uncertainty(probs, k, rule)
            for tau in taus:
                conf = u < tau
                ref = probs[conf]
                order = rng.permutation(len(ref))
                if max_reference:
                    order = order[:max_reference]
                out.append(_Split(rule, int(k), float(tau), conf, ref[order]))
    return out


def _rungs(n: int, max_reference: int, search: str, rng: np.random.Generator) -> List[_Rung]:
    order = rng.permutation(n)
    cap = max_reference or n
    if search != "halving":
        return [_Rung(np.sort(order), cap)]
    rungs = []
    size, ref = max(int(n * _FIRST_RUNG_ROWS), 2048), _FIRST_RUNG_REFERENCE
    while size < n and ref < cap:
        rungs.append(_Rung(np.sort(order[:size]), ref))
        size, ref = size * _ETA, ref * _ETA
    rungs.append(_Rung(np.sort(order), cap))
    return rungs


def _search(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray, grid: Dict[str, Sequence[Any]],
            max_reference: int, search: str, rng: np.random.Generator,
            progress: Optional[bool]) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """The grid's table (points scored on all rows, best first) and what the search did."""
    searcher = _Searcher(probs, labels, prior, grid["iterations"], exact=search == "exact")
    splits = _splits(probs, grid["taus"], grid["ks"], grid["rules"], max_reference, rng)
    units = [(s, float(a)) for s in splits for a in grid["alphas"]]
    rungs = _rungs(len(labels), max_reference, search, rng)
    survivors = [len(units)]
    bar = _progress_bar(sum(len(units) // _ETA ** i for i in range(len(rungs))), "tuning CAN", progress)
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for r, rung in enumerate(rungs):
            scores = list(pool.map(searcher.score, [u[0] for u in units], [u[1] for u in units],
                                   [rung] * len(units)))
            bar.update(len(units))
            table = _table(units, scores, searcher.iterations)
            if r == len(rungs) - 1:
                break
            keep = max(math.ceil(len(units) / _ETA), 4)
            ranked = []
            for row in table:  # a trajectory survives on the strength of its best iteration count
                unit = row.pop("_unit")
                if unit not in ranked:
                    ranked.append(unit)
            units = [units[i] for i in ranked[:keep]]
            survivors.append(len(units))
    bar.close()
    for row in table:
        row.pop("_unit", None)
    info = {"method": search, "rungs": [{"rows": int(len(g.rows)), "reference_cap": int(g.reference),
                                         "trajectories": s} for g, s in zip(rungs, survivors)]}
    return table, info


def _table(units: List[Tuple[_Split, float]], scores: List[List[int]], iterations: List[int]) -> List[Dict[str, Any]]:
    table: List[Dict[str, Any]] = []
    for i, ((split, alpha), counts) in enumerate(zip(units, scores)):
        uncertain = int((~split.confident).sum())
        for it, correct in zip(iterations, counts):
            table.append({"tau": split.tau, "alpha": alpha, "iterations": it, "k": split.k, "rule": split.rule,
                          "correct": correct, "uncertain": uncertain, "_unit": i})
    table.sort(key=lambda r: (-r["correct"], _params(r).sort_key()))
    return table


def _params(row: Dict[str, Any]) -> CanParams:
    return CanParams(row["tau"], row["alpha"], row["iterations"], row["k"], row.get("rule", DEFAULT_RULE))


def _progress_bar(total: int, desc: str, progress: Optional[bool]) -> Any:
    from tqdm import tqdm  # type: ignore[import-untyped]
    return tqdm(total=total, desc=desc, disable=not progress_enabled(progress), file=sys.stderr, leave=False)


def _check_grid(grid: Dict[str, Sequence[Any]], search: str) -> None:
    if not all(len(v) for v in grid.values()):
        raise UsageError("every tuning grid needs at least one value")
    if min(grid["iterations"]) < 1 or min(grid["alphas"]) <= 0 or min(grid["ks"]) < 2:
        raise UsageError("grid values out of range (iterations >= 1, alpha > 0, k >= 2)")
    if not all(0 <= t <= 1 for t in grid["taus"]):
        raise UsageError("grid values out of range (tau between 0 and 1)")
    unknown = [r for r in grid["rules"] if r not in RULES]
    if unknown:
        raise UsageError(f"unknown uncertainty rule {unknown[0]!r} (choose from {', '.join(RULES)})")
    if search not in SEARCHES:
        raise UsageError(f"unknown search {search!r} (choose from {', '.join(SEARCHES)})")


def tune_can(probs: np.ndarray, labels: np.ndarray, prior: "Sequence[float] | str | None" = None, *,
             taus: Sequence[float] = GRID_TAUS, alphas: Sequence[float] = GRID_ALPHAS,
             iterations: Sequence[int] = GRID_ITERATIONS, ks: Sequence[int] = GRID_KS,
             rules: Sequence[str] = GRID_RULES, folds: int = 5, seed: int = 0,
             max_reference: int = DEFAULT_MAX_REFERENCE, search: str = DEFAULT_SEARCH,
             progress: Optional[bool] = None) -> TuneResult:
    """Search tau, alpha, iterations, k and the uncertainty rule for accuracy on labelled rows.

    ``prior`` is a vector, None (uniform) or ``"labels"`` (the label frequencies of the rows
    tuned on -- recomputed inside each cross-validation fold, so the estimate does not peek).
    ``search``: ``halving`` (default), ``exhaustive`` or ``exact`` (see the module docstring).

    Cross-validation (``folds`` >= 2): for each stratified fold, the grid is searched on the
    other folds, and the winner is applied exactly to the held-out fold with the other folds'
    confident rows as reference (the ``--reference dev`` protocol). The pooled held-out accuracy
    before and after says how much of the in-sample gain is real.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(probs) == 0 or (labels < 0).any():
        raise UsageError("tuning needs a gold label on every row")
    m = probs.shape[1]
    grid: Dict[str, Sequence[Any]] = {"taus": list(taus), "alphas": list(alphas), "iterations": list(iterations), "ks": list(ks),
            "rules": list(rules)}
    _check_grid(grid, search)

    def prior_for(lab: np.ndarray) -> np.ndarray:
        return frequencies(lab, m) if isinstance(prior, str) else check_prior(prior, m)

    rng = np.random.default_rng(seed)
    table, info = _search(probs, labels, prior_for(labels), grid, max_reference, search, rng, progress)
    n = len(labels)
    for row in table:
        row["accuracy"] = row["correct"] / n
    info["grid_points"] = len(grid["taus"]) * len(grid["alphas"]) * len(grid["iterations"]) * \
        (len(set(min(k, m) for k in grid["ks"])) * ("top-k" in grid["rules"]) + ("any-k" in grid["rules"]))
    baseline = float((probs.argmax(axis=1) == labels).mean())
    cv = None
    if folds >= 2 and len(labels) >= 2:  # folds need rows to train on
        cv = _cross_validate(probs, labels, prior_for, folds, seed, grid, max_reference, search, progress)
    return TuneResult(_params(table[0]), n, baseline, table[0]["accuracy"], table, cv, info)


def _cross_validate(probs: np.ndarray, labels: np.ndarray, prior_for: Callable[[np.ndarray], np.ndarray],
                    folds: int, seed: int, grid: Dict[str, Sequence[Any]], max_reference: int, search: str,
                    progress: Optional[bool]) -> Dict[str, Any]:
    n = len(labels)
    folds = min(folds, n)
    rng = np.random.default_rng(seed + 1)
    before = after = 0
    chosen = []
    for held in cv_folds(labels, folds, seed):
        if held.size == 0:
            continue
        train = np.setdiff1d(np.arange(n), held)
        q = prior_for(labels[train])
        table, _ = _search(probs[train], labels[train], q, grid, max_reference, search, rng, progress)
        p = _params(table[0])
        chosen.append(asdict(p))
        after_held = _apply_winner(probs[train], probs[held], q, p, max_reference, exact=search == "exact", rng=rng)
        before += int((probs[held].argmax(axis=1) == labels[held]).sum())
        after += int((after_held.argmax(axis=1) == labels[held]).sum())
    return {"folds": len(chosen), "accuracy_before": before / n, "accuracy_after": after / n,
            "gain": (after - before) / n, "chosen": chosen}


def _apply_winner(train: np.ndarray, held: np.ndarray, prior: np.ndarray, p: CanParams, max_reference: int,
                  exact: bool, rng: np.random.Generator) -> np.ndarray:
    """The held-out rows after CAN with ``p``, the training rows' confident rows as reference
    (capped like ``--max-reference``): exact with ``search="exact"``, else first order (see the
    module docstring: it differs from exact CAN by O(1/n) in the column sums)."""
    ref = train[confident_mask(train, p.tau, p.k, p.rule)]
    if max_reference and len(ref) > max_reference:
        ref = ref[np.sort(rng.choice(len(ref), max_reference, replace=False))]
    if exact:
        out, _ = can_matrix(held, prior, tau=p.tau, alpha=p.alpha, iterations=p.iterations, k=p.k,
                            reference=ref if len(ref) else np.empty((0, held.shape[1])), rule=p.rule)
        return out
    out = held.copy()
    unc = ~confident_mask(held, p.tau, p.k, p.rule)
    if unc.any():
        ref = ref if len(ref) else identity_reference(held.shape[1])
        adjusted = adjust_first_order(held[unc], reference_column_sums(ref, prior, p.alpha, p.iterations),
                                      prior, p.alpha)[-1]
        keep = adjusted.sum(axis=1) > 0  # mass only on zero-prior classes: leave the row as it was
        out[np.flatnonzero(unc)[keep]] = adjusted[keep]
    return out
