"""Tuning CAN's four knobs (and the uncertainty rule) for accuracy on labelled rows.

Why it is fast. A grid point's accuracy only depends on its uncertain rows (confident rows are
unchanged), and ranking grid points does not need exact CAN: with the reference block frozen at
its own trajectory (``adjust_first_order``) every iteration costs O(m) per row instead of two
matrix products against the whole reference set, and the difference is an O(1/n) change of the
column sums. One trajectory per (rule, k, tau, alpha) gives every iteration count at once.
On top of that, successive halving: every trajectory is scored on a nested row subsample (1/16
of the rows, 2 048 reference rows), the best quarter goes on to 4x the rows and reference, and
so on up to all rows and the full (capped) reference. Two threads share the work (numpy
releases the GIL in the array work): the whole-data search and the cross-validation folds'
searches run side by side, one thread each (a rung's last trajectories no longer leave a thread
idle); a lone search scores its trajectories on both. The cross-validated estimate applies each fold's winner
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
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.common.progress import bar as progress_bar
from bigshuf.predict.can import (
    CanModel,
    adjust_first_order,
    can_matrix,
    check_prior,
    confident_mask,
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
from bigshuf.predict.outputs import checkpoint
from bigshuf.predict.safety import (
    CrossValidation,
    adopt,
    covers_classes,
    cv_warnings,
    dev_warnings,
    duplicate_groups,
    skew,
)

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
    """Outcome of ``tune_can``: the best grid point, the sorted table, the cross-validated
    estimate, and whether the best point is kept (``adopted``) or the predictions are left
    unchanged (``reason`` says why; see ``bigshuf.predict.safety``)."""

    best: CanParams
    rows: int
    baseline: float                       # accuracy without CAN
    accuracy: float                       # accuracy of the best point on the same data
    table: List[Dict[str, Any]]           # grid points scored on all rows, best first
    cv: Optional[CrossValidation] = None  # held-out estimate, see tune_can
    search: Dict[str, Any] = field(default_factory=dict)
    adopted: bool = True
    reason: str = ""
    warnings: List[str] = field(default_factory=list)

    @property
    def gain(self) -> float:
        return self.accuracy - self.baseline

    @property
    def chosen(self) -> Optional[CanParams]:
        """The setting to apply, or None: leave the predictions unchanged."""
        return self.best if self.adopted else None


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
        self._local = threading.local()

    def score(self, split: _Split, alpha: float, rung: _Rung) -> List[int]:
        """Correct predictions among ``rung.rows`` after each iteration count of the grid."""
        base, ref, b, y = self._rows(split, rung)
        if b is None:
            return [base] * len(self.iterations)
        top = self.iterations[-1]
        if self.exact:
            outs = CanModel(ref, self.prior, alpha, top).adjust(b, all_iterations=True)
        else:
            outs = adjust_first_order(b, _column_sums(ref, self.prior, alpha, top), self.prior, alpha)
        return [base + int((outs[it - 1].argmax(axis=1) == y).sum()) for it in self.iterations]

    def _rows(self, split: _Split, rung: _Rung) -> Tuple[int, Any, Any, Any]:
        """(correct confident rows, reference rows, uncertain rows, their labels) of a split on a
        rung: the same for every alpha, so each thread keeps its last one (the searches score a
        split's alphas one after another) instead of copying the rows out again per alpha."""
        last = getattr(self._local, "last", None)
        if last is not None and last[0] is split and last[1] is rung:
            return last[2]
        self._local.last = None  # the old copies go before the new ones are made
        conf = split.confident[rung.rows]
        unc_rows = rung.rows[~conf]
        base = int(self.hits[rung.rows[conf]].sum())
        rows: Tuple[int, Any, Any, Any] = (base, None, None, None)
        if unc_rows.size:
            rows = (base, self.probs[split.reference[:rung.reference]], self.probs[unc_rows], self.labels[unc_rows])
        self._local.last = (split, rung, rows)
        return rows


def _column_sums(ref: np.ndarray, prior: np.ndarray, alpha: float, iterations: int) -> List[np.ndarray]:
    """``reference_column_sums``; with no confident row, those of the identity reference CAN
    falls back to, without building it: the identity's trajectory is itself (each row one class)
    except that rows of zero-prior classes become zero after the first iteration, so the column
    sums are 1, then 1 where the prior is positive (an m x m matrix of 10 000 classes took 5 GB
    over two threads)."""
    if len(ref) == 0:
        return [np.ones(ref.shape[1])] + [(prior > 0).astype(np.float64)] * (iterations - 1)
    return reference_column_sums(ref, prior, alpha, iterations)


def _split_keys(m: int, ks: Sequence[int], rules: Sequence[str]) -> List[Tuple[str, int]]:
    """The (rule, k) pairs of a grid: k matters only to top-k."""
    return [(rule, k) for rule in rules
            for k in (sorted({min(int(k), m) for k in ks}) if rule == "top-k" else [DEFAULT_K])]


def uncertainties(probs: np.ndarray, ks: Sequence[int], rules: Sequence[str]) -> Dict[Tuple[str, int], np.ndarray]:
    """Each row's uncertainty under every (rule, k) of the grid: computed once for all rows, and
    indexed by each cross-validation fold (the any-k rule sorts every row: the costliest step)."""
    return {(rule, k): uncertainty(probs, k, rule) for rule, k in _split_keys(probs.shape[1], ks, rules)}


def _splits(u: Dict[Tuple[str, int], np.ndarray], taus: Sequence[float], max_reference: int,
            rng: np.random.Generator) -> List[_Split]:
    """``reference`` holds row indices (a copy of the confident rows per split cost 20 copies of
    the data: the largest part of --tune's memory)."""
    out = []
    for (rule, k), unc in u.items():
        for tau in taus:
            conf = unc < tau
            idx = np.flatnonzero(conf)
            order = rng.permutation(len(idx))
            if max_reference:
                order = order[:max_reference]
            out.append(_Split(rule, int(k), float(tau), conf, idx[order]))
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


def _rung_count(n: int, max_reference: int, search: str) -> int:
    """How many rungs ``_rungs`` makes for ``n`` rows (without drawing its random order)."""
    if search != "halving":
        return 1
    count, size, ref, cap = 1, max(int(n * _FIRST_RUNG_ROWS), 2048), _FIRST_RUNG_REFERENCE, max_reference or n
    while size < n and ref < cap:
        count, size, ref = count + 1, size * _ETA, ref * _ETA
    return count


def _survivors(units: int, rungs: int) -> List[int]:
    """Trajectories scored on each rung: the best quarter (at least 4) goes on."""
    out = [units]
    for _ in range(rungs - 1):
        out.append(min(max(math.ceil(out[-1] / _ETA), 4), out[-1]))
    return out


def planned_work(n: int, units: int, max_reference: int, search: str) -> int:
    """Trajectories one grid search on ``n`` rows scores: the progress bar's share of it."""
    return sum(_survivors(units, _rung_count(n, max_reference, search)))


def _draws(n: int, grid: Dict[str, Sequence[Any]], u: Dict[Tuple[str, int], np.ndarray], max_reference: int,
           search: str, rng: np.random.Generator) -> Tuple[List[_Split], List[_Rung]]:
    """Everything a search on ``n`` rows draws from ``rng``, in order: the splits, then the rungs."""
    splits = _splits(u, grid["taus"], max_reference, rng)
    return splits, _rungs(n, max_reference, search, rng)


def _search(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray, grid: Dict[str, Sequence[Any]],
            u: Dict[Tuple[str, int], np.ndarray], max_reference: int, search: str, rng: np.random.Generator,
            bar: Any, threads: int = 2) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """The grid's table (points scored on all rows, best first) and what the search did; ``u``
    holds the rows' uncertainties (see ``uncertainties``). ``threads``: trajectories scored at
    once (1 when the searches themselves run side by side, see ``tune_can``)."""
    searcher = _Searcher(probs, labels, prior, grid["iterations"], exact=search == "exact")
    splits, rungs = _draws(len(labels), grid, u, max_reference, search, rng)
    units = [(s, float(a)) for s in splits for a in grid["alphas"]]
    survivors = [len(units)]
    with ThreadPoolExecutor(max_workers=max(1, min(threads, os.cpu_count() or 1))) as pool:
        mapper = pool.map if threads > 1 else map
        for r, rung in enumerate(rungs):
            order = sorted(range(len(units)), key=lambda i: id(units[i][0]))  # a split's alphas in a row
            scored = mapper(searcher.score, [units[i][0] for i in order], [units[i][1] for i in order],
                            [rung] * len(units))
            scores: List[List[int]] = [[] for _ in units]
            for i, counts in zip(order, scored):
                scores[i] = counts
            bar.update(len(units))
            checkpoint()  # a signal that came while waiting on the pool stops the run here
            table = _table(units, scores, searcher.iterations)
            if r == len(rungs) - 1:
                break
            keep = _survivors(len(units), 2)[1]
            ranked = []
            for row in table:  # a trajectory survives on the strength of its best iteration count
                unit = row.pop("_unit")
                if unit not in ranked:
                    ranked.append(unit)
            units = [units[i] for i in ranked[:keep]]
            survivors.append(len(units))
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


def label_prior(labels: np.ndarray, probs: np.ndarray, m: int) -> np.ndarray:
    """The label frequencies of tuning rows; where a class has no row, a pseudo-count of m rows
    spread by the model's mean prediction keeps it above 0 (a zero prior class can never win an
    uncertain row: 19 of 40 classes at 0 from 50 rows cost 3 points of test accuracy)."""
    counts = np.bincount(labels, minlength=m).astype(np.float64)
    if (counts > 0).all():
        return counts / counts.sum()
    smoothed = counts + m * probs.mean(axis=0)
    return smoothed / smoothed.sum()


def tune_can(probs: np.ndarray, labels: np.ndarray, prior: "Sequence[float] | str | None" = None, *,
             taus: Sequence[float] = GRID_TAUS, alphas: Sequence[float] = GRID_ALPHAS,
             iterations: Sequence[int] = GRID_ITERATIONS, ks: Sequence[int] = GRID_KS,
             rules: Sequence[str] = GRID_RULES, folds: int = 5, seed: int = 0,
             max_reference: int = DEFAULT_MAX_REFERENCE, search: str = DEFAULT_SEARCH,
             progress: Optional[bool] = None) -> TuneResult:
    """Search tau, alpha, iterations, k and the uncertainty rule for accuracy on labelled rows.

    ``prior`` is a vector, None (uniform) or ``"labels"`` (``label_prior`` of the rows tuned on
    -- recomputed inside each cross-validation fold, so the estimate does not peek).
    ``search``: ``halving`` (default), ``exhaustive`` or ``exact`` (see the module docstring).

    Cross-validation (``folds`` >= 2): for each stratified, shuffled fold, the grid is searched
    on the other folds, and the winner (or "unchanged", if nothing beat it there) is applied to
    the held-out fold with the other folds' confident rows as reference (the ``--reference dev``
    protocol). The best point is adopted only as ``safety.adopt`` allows.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(probs) == 0 or (labels < 0).any():
        raise UsageError("tuning needs a gold label on every row")
    m = probs.shape[1]
    grid: Dict[str, Sequence[Any]] = {"taus": list(taus), "alphas": list(alphas), "iterations": list(iterations),
                                      "ks": list(ks), "rules": list(rules)}
    _check_grid(grid, search)

    def prior_for(rows: np.ndarray) -> np.ndarray:
        return label_prior(labels[rows], probs[rows], m) if isinstance(prior, str) else check_prior(prior, m)

    n = len(labels)
    groups = duplicate_groups(probs)
    held_out = [h for h in cv_folds(labels, min(folds, n), seed, groups) if h.size] if folds >= 2 and n >= 2 else []
    units = _unit_count(grid, m)
    bar = progress_bar(planned_work(n, units, max_reference, search) +
                       sum(planned_work(n - h.size, units, max_reference, search) for h in held_out),
                       "tuning CAN", progress, unit="trajectory")
    try:
        rng = np.random.default_rng(seed)
        u = uncertainties(probs, grid["ks"], grid["rules"])
        whole = (probs, labels, prior_for(np.arange(n)), grid, u, max_reference, search, rng, bar)
        cv = None
        if held_out and _folds_side_by_side(n, held_out, max_reference):
            # six searches of similar cost, two at a time, each on one thread: no thread waits at
            # the end of a rung for the other's last trajectories (same draws, same results)
            with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
                table_info = pool.submit(_search, *whole, threads=1)
                cv = _cross_validate(probs, labels, prior_for, held_out, seed, grid, u, max_reference, search, bar,
                                     pool)
                table, info = table_info.result()
        else:
            table, info = _search(*whole)
            if held_out:
                cv = _cross_validate(probs, labels, prior_for, held_out, seed, grid, u, max_reference, search, bar)
        if hasattr(bar, "refresh"):
            bar.refresh()  # the last state drawn is the total, not the last time-throttled redraw (99%)
    finally:
        bar.close()
    for row in table:
        row["accuracy"] = row["correct"] / n
    info["grid_points"] = units * len(grid["iterations"])
    baseline = float((probs.argmax(axis=1) == labels).mean())
    res = TuneResult(_params(table[0]), n, baseline, table[0]["accuracy"], table, cv, info)
    res.adopted, res.reason = adopt(res.gain, cv, covers_classes(labels, m), skew(labels, m, groups))
    res.warnings = dev_warnings(labels, m, "tuning", groups) + cv_warnings(cv, res.adopted)
    return res


def _unit_count(grid: Dict[str, Sequence[Any]], m: int) -> int:
    """Trajectories of a grid: one per (rule, k, tau, alpha); every iteration count shares one."""
    splits = len(set(min(int(k), m) for k in grid["ks"])) * ("top-k" in grid["rules"]) + ("any-k" in grid["rules"])
    return splits * len(grid["taus"]) * len(grid["alphas"])


def _folds_side_by_side(n: int, held_out: List[np.ndarray], max_reference: int) -> bool:
    """Can the fold searches run at once with the draws of running them in turn? Yes when no
    fold's winner is applied with a capped (randomly sampled) reference: then a fold's draws are
    its search's alone, and each fold can start from the generator state the previous folds'
    draws leave, drawn ahead in the main thread."""
    return not max_reference or all(n - h.size <= max_reference for h in held_out)


def _cross_validate(probs: np.ndarray, labels: np.ndarray, prior_for: Callable[[np.ndarray], np.ndarray],
                    held_out: List[np.ndarray], seed: int, grid: Dict[str, Sequence[Any]],
                    u: Dict[Tuple[str, int], np.ndarray], max_reference: int, search: str,
                    bar: Any, pool: Optional[ThreadPoolExecutor] = None) -> CrossValidation:
    """Each fold's search and held-out score; on ``pool`` (one thread per fold search) when given,
    else in turn (each search on two threads). Both give the same results: the folds draw from one
    generator in fold order, so with a pool each fold gets the state the earlier folds leave
    (``_folds_side_by_side`` says when that is known ahead)."""
    n = len(labels)
    rng = np.random.default_rng(seed + 1)

    def fold(held: np.ndarray, fold_rng: np.random.Generator, threads: int) -> Tuple[int, int, Dict[str, Any]]:
        train = np.setdiff1d(np.arange(n), held)
        q = prior_for(train)
        u_train = {key: values[train] for key, values in u.items()}
        table, _ = _search(probs[train], labels[train], q, grid, u_train, max_reference, search, fold_rng, bar,
                           threads)
        hits_before = int((probs[held].argmax(axis=1) == labels[held]).sum())
        if table[0]["correct"] > int((probs[train].argmax(axis=1) == labels[train]).sum()):
            p = _params(table[0])
            after_held = _apply_winner(probs[train], probs[held], q, p, max_reference, exact=search == "exact",
                                       rng=fold_rng)
            return hits_before, int((after_held.argmax(axis=1) == labels[held]).sum()), asdict(p)
        return hits_before, hits_before, {"unchanged": True}  # nothing beat "unchanged" on the training folds

    if pool is None:
        results = [fold(held, rng, 2) for held in held_out]
    else:
        futures = []
        for held in held_out:
            fold_rng = np.random.Generator(type(rng.bit_generator)())
            fold_rng.bit_generator.state = rng.bit_generator.state
            train = np.setdiff1d(np.arange(n), held)
            _draws(train.size, grid, {key: values[train] for key, values in u.items()}, max_reference, search, rng)
            futures.append(pool.submit(fold, held, fold_rng, 1))
        results = [f.result() for f in futures]
    before = sum(r[0] for r in results)
    after = sum(r[1] for r in results)
    gains = [(r[1] - r[0]) / held.size for r, held in zip(results, held_out)]
    return CrossValidation(len(held_out), before / n, after / n, gains, [r[2] for r in results])


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
        adjusted = adjust_first_order(held[unc], _column_sums(ref, prior, p.alpha, p.iterations), prior,
                                      p.alpha)[-1]
        keep = adjusted.sum(axis=1) > 0  # mass only on zero-prior classes: leave the row as it was
        out[np.flatnonzero(unc)[keep]] = adjusted[keep]
    return out
