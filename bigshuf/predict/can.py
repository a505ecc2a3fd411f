"""CAN -- Classification with Alternating Normalization (Jia et al., Findings of EMNLP 2021).

Definition (DESIGN.md section 3). A row p is *uncertain* when its top-k entropy
U = -sum(p~ log p~) / log k, with p~ the k largest entries renormalised, is >= tau. Each uncertain
row b is adjusted independently against the ORIGINAL confident (reference) rows A: stack
L = [A; b] and repeat ``iterations`` times: L = L**alpha; divide each column by its sum and
multiply column j by prior[j]; divide each row by its sum. The last row is the adjusted b.

Fast exact evaluation. A per-row loop costs O(n*m) per uncertain row per iteration (n reference
rows, m classes). Here the confident block is never re-materialised per row: for any b it equals
``diag(x) Lbar_t diag(y)``, where Lbar_t is the trajectory of the reference rows *without* b
(computed once) and x (n), y (m) are per-row correction factors. Proof sketch: if
L_t = X Lbar_t Y then L_t**alpha = X**a Lbar_t**a Y**a, and column/row normalisation only
multiply by diagonal matrices. The column sums the uncertain row needs are
``(x**a @ Lbar_t**a) * y**a``, and the new x is ``1 / (y' @ Lbar_{t+1}.T)`` -- two matrix products
per extra iteration for a whole batch of uncertain rows, done by BLAS. With one iteration, x = y = 1
and every row costs O(m). Factoring relative to the b-free trajectory (instead of relative to the
raw powers A**(alpha**t)) keeps x and y close to 1, so large alpha or many iterations cannot
overflow or underflow where the per-row definition does not. Results equal the per-row
definition (``can_per_row``) to ~1e-12.

Conventions where the definition divides by zero: a column (or row) with zero sum stays zero (this
only happens when the prior gives classes zero weight); an uncertain row whose whole mass sits on
zero-prior classes is left unchanged by ``can``. With no confident rows at all, the identity matrix
serves as reference (as in the paper's code).
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import InputError, UsageError
from bigshuf.common.output import write_json
from bigshuf.predict.formats import (
    LabelMap,
    PredictionFile,
    PredictionWriter,
    read_json,
    read_label_file,
)
from bigshuf.predict.metrics import cv_folds, percent, survival

DEFAULT_TAU = 0.9
DEFAULT_ALPHA = 1.0
DEFAULT_ITERATIONS = 1
DEFAULT_K = 3
DEFAULT_MAX_REFERENCE = 100_000
# The official code's grid: alpha in {0.1 .. 0.9, 1 .. 9}, 1-4 iterations.
GRID_ALPHAS = tuple(round(0.1 * i, 1) for i in range(1, 10)) + tuple(float(i) for i in range(1, 10))
GRID_ITERATIONS = (1, 2, 3, 4)
GRID_TAUS = (0.5, 0.7, 0.8, 0.9, 0.95)
GRID_KS = (2, 3, 5)
SUBSAMPLES = ("uniform", "stratified")
_BATCH_BYTES = 64 << 20  # per-batch working set of the correction factors


# -- the algorithm ---------------------------------------------------------------------------

def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with x/0 := 0 (a zero column or row sum means the column or row is all zero)."""
    num, den = np.broadcast_arrays(num, den)
    out = np.zeros(num.shape)
    # Extreme alpha/iterations can overflow the factored form; such rows come out non-finite
    # and are recomputed with the per-row definition, so the warning would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        np.divide(num, den, out=out, where=den != 0)
    return out


def _row_normalise(x: np.ndarray) -> np.ndarray:
    return _safe_div(x, x.sum(axis=1, keepdims=True))


def uncertainty(probs: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Top-k entropy of each row, in [0, 1] (k is capped at the number of classes)."""
    probs = np.asarray(probs, dtype=np.float64)
    m = probs.shape[1]
    k = min(int(k), m)
    if k < 2:
        raise UsageError("top-k uncertainty needs k >= 2 and at least two classes")
    top = np.partition(probs, m - k, axis=1)[:, m - k:]
    top = _row_normalise(top)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(top > 0, top * np.log(top), 0.0)
    return np.clip(-plogp.sum(axis=1) / math.log(k), 0.0, 1.0)


def confident_mask(probs: np.ndarray, tau: float = DEFAULT_TAU, k: int = DEFAULT_K) -> np.ndarray:
    """True for rows whose top-k uncertainty is below ``tau``."""
    return uncertainty(probs, k) < tau


def _check_prior(prior: Optional[Sequence[float]], m: int) -> np.ndarray:
    if prior is None:
        return np.full(m, 1.0 / m)
    q = np.asarray(prior, dtype=np.float64).reshape(-1)
    if q.size != m:
        raise UsageError(f"the prior has {q.size} values, the predictions have {m} classes")
    if not np.all(np.isfinite(q)) or (q < 0).any() or q.sum() <= 0:
        raise UsageError("the prior must be non-negative finite numbers with a positive sum")
    return q / q.sum()


class CanModel:
    """CAN against one fixed reference set, ready to adjust any number of uncertain rows.

    The reference (confident) rows' own trajectory is computed once here; ``adjust`` then costs
    O(m) per row for one iteration, and 2 matrix products per further iteration per batch.
    """

    def __init__(self, reference: np.ndarray, prior: Optional[Sequence[float]] = None,
                 alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS,
                 batch_bytes: int = _BATCH_BYTES):
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2:
            raise ValueError("reference must be a 2-D array")
        m = reference.shape[1]
        if iterations < 1:
            raise UsageError("iterations must be at least 1")
        if not alpha > 0 or not math.isfinite(alpha):
            raise UsageError("alpha must be a positive number")
        self.identity_fallback = reference.shape[0] == 0
        if self.identity_fallback:
            reference = np.eye(m)
        self.prior = _check_prior(prior, m)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.reference = reference
        self.n_reference = reference.shape[0]
        self.fallback_rows = 0
        self.batch_bytes = batch_bytes
        # Per iteration t: M_t = Lbar_{t-1}**alpha (needed for t >= 1), its column sums, and
        # Lbar_t (needed to update x, except after the last iteration).
        self._steps: List[Tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray]]] = []
        lbar = reference
        for t in range(self.iterations):
            powered = lbar if self.alpha == 1.0 else lbar ** self.alpha
            sbar = powered.sum(axis=0)
            nxt = _row_normalise(powered * _safe_div(self.prior, sbar))
            last = t == self.iterations - 1
            self._steps.append((powered if t > 0 else None, sbar, None if last else nxt))
            lbar = nxt

    def adjust(self, rows: np.ndarray, all_iterations: bool = False) -> "np.ndarray | List[np.ndarray]":
        """Adjusted copies of ``rows`` (each treated as an uncertain row).

        With ``all_iterations``, return a list with the result after 1, 2, ..., ``iterations``
        iterations (one trajectory gives them all; used by the tuner).
        """
        rows = np.asarray(rows, dtype=np.float64)
        n_out = self.iterations if all_iterations else 1
        outs = [np.empty_like(rows) for _ in range(n_out)]
        m = rows.shape[1] if rows.ndim == 2 else 0
        per_row = 8 * (self.n_reference if self.iterations > 1 else 0) + 8 * 4 * max(m, 1)
        batch = max(1, self.batch_bytes // per_row)
        a = self.alpha
        # y is raised to alpha each iteration, so |log y| must stay below this for the powers
        # and products to stay finite and exact. x needs no check of its own: 1/x = y @ Lbar.T
        # is a weighted mean of y (rows of Lbar sum to 1), so x lies within y's range. Rows that
        # leave the range (seen only with tiny reference sets, large alpha and several
        # iterations) are recomputed by the per-row definition.
        log_limit = 600.0 / max(a, 1.0)
        risky = np.zeros(len(rows), dtype=bool)
        for start in range(0, len(rows), batch):
            sl = slice(start, start + batch)
            b = rows[sl]
            xa = y = None  # xa = x**alpha, as the next iteration needs it
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for t, (powered, sbar, nxt) in enumerate(self._steps):
                    if a != 1.0:
                        b = b ** a
                        if y is not None:
                            y = y ** a
                    # column sums of the stacked matrix [confident block; b]
                    s = sbar + b if t == 0 else (xa @ powered) * y + b
                    b = _row_normalise(b * _safe_div(self.prior, s))
                    if all_iterations:
                        outs[t][sl] = b
                    if nxt is not None:
                        ratio = _safe_div(sbar, s)
                        y = ratio if y is None else y * ratio
                        risky[sl] |= _out_of_range(y, log_limit)
                        xa = _inverse_power(y @ nxt.T, a)
            risky[sl] |= ~np.isfinite(b).all(axis=1)
            if not all_iterations:
                outs[0][sl] = b
        self.fallback_rows = int(risky.sum())
        if self.fallback_rows:
            exact = can_per_row(rows[risky], self.reference, self.prior, a, self.iterations,
                                all_iterations=True)
            for t, out in enumerate(outs):
                out[risky] = exact[t if all_iterations else -1]
        return outs if all_iterations else outs[0]


def _inverse_power(d: np.ndarray, alpha: float) -> np.ndarray:
    """d**-alpha in one pass, 0 where d is 0 (an all-zero reference row stays zero)."""
    out = np.zeros(d.shape)
    if alpha == 1.0:
        np.divide(1.0, d, out=out, where=d > 0)
    else:
        np.power(d, -alpha, out=out, where=d > 0)
    return out


def _out_of_range(factors: np.ndarray, log_limit: float) -> np.ndarray:
    """Rows with a non-finite factor, or a non-zero one whose |log| exceeds ``log_limit``.
    (Exact zeros are legitimate: they mark all-zero columns of the reference.)"""
    nonzero = factors != 0
    logs = np.abs(np.log(np.where(nonzero, factors, 1.0)))
    return ~np.isfinite(logs).all(axis=1) | (logs > log_limit).any(axis=1)


def can_adjust(rows: np.ndarray, reference: np.ndarray, prior: Optional[Sequence[float]] = None,
               alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS) -> np.ndarray:
    """Adjust each row of ``rows`` independently against the reference rows (vectorised CAN)."""
    return CanModel(reference, prior, alpha, iterations).adjust(rows)  # type: ignore[return-value]


def can_per_row(rows: np.ndarray, reference: np.ndarray, prior: Optional[Sequence[float]] = None,
                alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS,
                all_iterations: bool = False) -> "np.ndarray | List[np.ndarray]":
    """The literal per-row definition, one stacked matrix per row: slow; the fallback for rows
    the fast path cannot represent, and the yardstick in tests and ``scripts/bench_can.py``."""
    rows = np.asarray(rows, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape[0] == 0:
        reference = np.eye(rows.shape[1])
    q = _check_prior(prior, rows.shape[1])
    outs = [np.empty_like(rows) for _ in range(iterations)]
    for i, b in enumerate(rows):
        stacked = np.vstack([reference, b])
        for t in range(iterations):
            stacked = stacked ** alpha
            stacked = stacked * _safe_div(q, stacked.sum(axis=0))
            stacked = _row_normalise(stacked)
            outs[t][i] = stacked[-1]
    return outs if all_iterations else outs[-1]


def can_matrix(probs: np.ndarray, prior: Optional[Sequence[float]] = None, *, tau: float = DEFAULT_TAU,
               alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS, k: int = DEFAULT_K,
               reference: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """CAN on an in-memory matrix: returns (adjusted probabilities, uncertain-row mask).

    The reference set is the confident rows of ``reference`` if given, else of ``probs``
    itself. Confident rows are returned unchanged.
    """
    probs = np.asarray(probs, dtype=np.float64)
    uncertain = ~confident_mask(probs, tau, k)
    ref_source = probs if reference is None else np.asarray(reference, dtype=np.float64)
    ref = ref_source[confident_mask(ref_source, tau, k)]
    out = probs.copy()
    if uncertain.any():
        adjusted = can_adjust(probs[uncertain], ref, prior, alpha, iterations)
        keep = adjusted.sum(axis=1) > 0  # mass only on zero-prior classes: leave the row as it was
        out[np.flatnonzero(uncertain)[keep]] = adjusted[keep]
    return out, uncertain


# -- tuning ----------------------------------------------------------------------------------

@dataclass
class CanParams:
    """The four CAN knobs."""

    tau: float = DEFAULT_TAU
    alpha: float = DEFAULT_ALPHA
    iterations: int = DEFAULT_ITERATIONS
    k: int = DEFAULT_K

    def sort_key(self) -> Tuple[float, ...]:
        # Among equally accurate settings prefer the gentlest: few iterations, alpha near 1,
        # and the paper's tau and k.
        return (self.iterations, abs(math.log(self.alpha)), abs(self.tau - DEFAULT_TAU), abs(self.k - DEFAULT_K))


@dataclass
class TuneResult:
    """Outcome of ``tune_can``: the winner, the sorted grid, and the cross-validated estimate."""

    best: CanParams
    rows: int
    baseline: float                       # accuracy without CAN
    accuracy: float                       # accuracy of the winner on the same data
    table: List[Dict[str, Any]]           # every grid point, best first
    cv: Optional[Dict[str, Any]] = None   # held-out estimate, see tune_can

    @property
    def gain(self) -> float:
        return self.accuracy - self.baseline


def _subsample_rows(rows: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    if cap and len(rows) > cap:
        return rows[np.sort(rng.choice(len(rows), cap, replace=False))]
    return rows


def _grid(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray, taus: Sequence[float],
          alphas: Sequence[float], iterations: Sequence[int], ks: Sequence[int], max_reference: int,
          rng: np.random.Generator, progress: bool) -> List[Dict[str, Any]]:
    """Correct-prediction counts of every grid point on (probs, labels), transductively."""
    m = probs.shape[1]
    ks = sorted({min(int(k), m) for k in ks})
    max_iter = max(iterations)
    hits = probs.argmax(axis=1) == labels
    points = [(k, tau) for k in ks for tau in taus]
    bar = _progress_bar(len(points) * len(alphas), "tuning CAN", progress)
    table = []
    for k, tau in points:
        conf = uncertainty(probs, k) < tau
        ref = _subsample_rows(probs[conf], max_reference, rng)
        unc_rows, unc_labels = probs[~conf], labels[~conf]
        conf_hits = int(hits[conf].sum())
        for alpha in alphas:
            outs = CanModel(ref, prior, alpha, max_iter).adjust(unc_rows, all_iterations=True)
            for it in iterations:
                correct = conf_hits + int((outs[it - 1].argmax(axis=1) == unc_labels).sum())
                table.append({"tau": float(tau), "alpha": float(alpha), "iterations": int(it), "k": int(k),
                              "correct": correct, "uncertain": int((~conf).sum())})
            bar.update(1)
    bar.close()
    table.sort(key=lambda r: (-r["correct"], CanParams(r["tau"], r["alpha"], r["iterations"], r["k"]).sort_key()))
    return table


def _progress_bar(total: int, desc: str, progress: Optional[bool]):
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr, leave=False)


def _frequencies(labels: np.ndarray, m: int) -> np.ndarray:
    counts = np.bincount(labels[labels >= 0], minlength=m).astype(np.float64)
    if counts.sum() == 0:
        raise UsageError("a prior from labels needs labelled rows")
    return counts / counts.sum()


def tune_can(probs: np.ndarray, labels: np.ndarray, prior: "Sequence[float] | str | None" = None, *,
             taus: Sequence[float] = GRID_TAUS, alphas: Sequence[float] = GRID_ALPHAS,
             iterations: Sequence[int] = GRID_ITERATIONS, ks: Sequence[int] = GRID_KS,
             folds: int = 5, seed: int = 0, max_reference: int = DEFAULT_MAX_REFERENCE,
             progress: Optional[bool] = None) -> TuneResult:
    """Grid-search tau, alpha, iterations and k for accuracy on labelled rows.

    ``prior`` is a vector, None (uniform) or ``"labels"`` (the label frequencies of the rows
    tuned on -- recomputed inside each cross-validation fold, so the estimate does not peek).

    Cross-validation (``folds`` >= 2): for each stratified fold, the grid is searched on the
    other folds, and the winner is applied to the held-out fold with the other folds' confident
    rows as reference (the ``--reference dev`` protocol). The pooled held-out accuracy before and
    after says how much of the in-sample gain is real.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(probs) == 0 or (labels < 0).any():
        raise UsageError("tuning needs a gold label on every row")
    m = probs.shape[1]
    grid_args = dict(taus=taus, alphas=alphas, iterations=iterations, ks=ks, max_reference=max_reference)
    if not all(len(v) for v in (taus, alphas, iterations, ks)):
        raise UsageError("every tuning grid needs at least one value")
    if min(iterations) < 1 or min(alphas) <= 0 or min(ks) < 2:
        raise UsageError("grid values out of range (iterations >= 1, alpha > 0, k >= 2)")

    def prior_for(lab: np.ndarray) -> np.ndarray:
        return _frequencies(lab, m) if isinstance(prior, str) else _check_prior(prior, m)

    rng = np.random.default_rng(seed)
    table = _grid(probs, labels, prior_for(labels), rng=rng, progress=progress, **grid_args)
    top = table[0]
    best = CanParams(top["tau"], top["alpha"], top["iterations"], top["k"])
    n = len(labels)
    for row in table:
        row["accuracy"] = row["correct"] / n
    baseline = float((probs.argmax(axis=1) == labels).mean())
    cv = None
    if folds >= 2:
        cv = _cross_validate(probs, labels, prior_for, folds, seed, grid_args, progress)
    return TuneResult(best, n, baseline, top["accuracy"], table, cv)


def _cross_validate(probs, labels, prior_for, folds, seed, grid_args, progress) -> Dict[str, Any]:
    n = len(labels)
    folds = min(folds, n)
    parts = cv_folds(labels, folds, seed)
    rng = np.random.default_rng(seed + 1)
    before = after = 0
    chosen = []
    for held in parts:
        if held.size == 0:
            continue
        train = np.setdiff1d(np.arange(n), held)
        q = prior_for(labels[train])
        table = _grid(probs[train], labels[train], q, rng=rng, progress=progress, **grid_args)
        p = CanParams(table[0]["tau"], table[0]["alpha"], table[0]["iterations"], table[0]["k"])
        chosen.append(asdict(p))
        train_probs = probs[train]
        ref = _subsample_rows(train_probs[confident_mask(train_probs, p.tau, p.k)],
                              grid_args["max_reference"], rng)
        out, _ = can_matrix(probs[held], q, tau=p.tau, alpha=p.alpha, iterations=p.iterations, k=p.k,
                            reference=ref if len(ref) else np.empty((0, probs.shape[1])))
        before += int((probs[held].argmax(axis=1) == labels[held]).sum())
        after += int((out.argmax(axis=1) == labels[held]).sum())
    return {"folds": len(chosen), "accuracy_before": before / n, "accuracy_after": after / n,
            "gain": (after - before) / n, "chosen": chosen}


# -- priors ----------------------------------------------------------------------------------

def resolve_prior(spec: Any, label_map: LabelMap, reference_labels: Optional[np.ndarray] = None
                  ) -> Tuple[np.ndarray, str]:
    """The class prior and a description of where it came from.

    ``spec``: None or ``"uniform"``; ``"reference"`` (label frequencies of the reference rows);
    a list/array of numbers or a {class: weight} dict; a string holding a comma list or JSON;
    or a file: a JSON list/object of weights, or training labels (one per line, or JSONL with a
    label key) whose frequencies are used.
    """
    m = label_map.n_classes
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "uniform"):
        return np.full(m, 1.0 / m), "uniform" if spec else "uniform (default)"
    if isinstance(spec, str) and spec.strip().lower() == "reference":
        if reference_labels is None or not (reference_labels >= 0).any():
            raise UsageError("--prior reference needs gold labels in the reference rows")
        n = int((reference_labels >= 0).sum())
        return _frequencies(reference_labels, m), f"label frequencies of the {n} labelled reference rows"
    source = "given"
    if isinstance(spec, str):
        import os
        if os.path.isfile(spec) or os.path.isdir(spec):
            weights = _weights_file(spec)
            if weights is None:
                labels = read_label_file(spec, label_map)
                return _frequencies(labels, m), f"label frequencies of {spec} ({len(labels)} labels)"
            spec, source = weights, f"weights from {spec}"
        else:
            spec = _parse_weights(spec)
    if isinstance(spec, dict):
        if not label_map.classes:
            raise UsageError("a prior given by class name needs class names (--classes)")
        unknown = [c for c in spec if c not in label_map.classes]
        if unknown:
            raise UsageError(f"prior names unknown class {unknown[0]!r}")
        spec = [spec.get(c, 0.0) for c in label_map.classes]
    try:
        return _check_prior(spec, m), source
    except (TypeError, ValueError):
        raise UsageError(f"cannot read a prior from {spec!r}") from None


def _parse_weights(text: str) -> Any:
    import json
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--prior {text!r}: not uniform, reference, a file, a comma list or JSON") from None


def _weights_file(path: str) -> Any:
    """The weights in a JSON prior file, or None if the file is a list of labels."""
    import json

    from bigshuf.predict.formats import _check_readable
    _check_readable(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if isinstance(obj, list) and all(isinstance(v, (int, float)) for v in obj) and len(obj) > 1:
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, (int, float)) for v in obj.values()):
        return obj
    return None


# -- files -----------------------------------------------------------------------------------

class _ReferenceSampler:
    """Collects the reference rows in bounded memory.

    Uniform: the ``cap`` rows with the smallest random keys (one pass, exact uniform subset).
    Stratified (by predicted class, proportional, as in the paper's code): counts per class in
    the first pass, then an exact proportional sample drawn in a second pass.
    """

    def __init__(self, m: int, cap: int, rng: np.random.Generator):
        self.cap = cap
        self.rng = rng
        self.rows: List[np.ndarray] = []
        self.keys: List[np.ndarray] = []
        self.size = 0
        self.seen = 0
        self.per_class = np.zeros(m, dtype=np.int64)

    def add(self, rows: np.ndarray) -> None:
        self.seen += len(rows)
        self.per_class += np.bincount(rows.argmax(axis=1), minlength=len(self.per_class))
        keys = self.rng.random(len(rows))
        self.rows.append(rows)
        self.keys.append(keys)
        self.size += len(rows)
        if self.cap and self.size > 2 * self.cap:
            self._compact()

    def _compact(self) -> None:
        rows, keys = np.concatenate(self.rows), np.concatenate(self.keys)
        if self.cap and len(rows) > self.cap:
            keep = np.sort(np.argpartition(keys, self.cap - 1)[:self.cap])
            rows, keys = rows[keep], keys[keep]
        self.rows, self.keys, self.size = [rows], [keys], len(rows)

    def uniform(self) -> np.ndarray:
        self._compact()
        return self.rows[0] if self.rows else np.empty((0, len(self.per_class)))

    def stratified_plan(self) -> np.ndarray:
        """Sorted codes (class * seen + ordinal within class) of the rows to keep."""
        counts = self.per_class
        share = self.cap * counts / counts.sum()
        quota = np.floor(share).astype(np.int64)
        extra = self.cap - quota.sum()
        quota[np.argsort(-(share - quota), kind="stable")[:extra]] += 1
        codes = [c * self.seen + np.sort(self.rng.choice(counts[c], quota[c], replace=False))
                 for c in np.flatnonzero(quota)]
        return np.sort(np.concatenate(codes)) if codes else np.empty(0, dtype=np.int64)


def _normalised(values: np.ndarray) -> np.ndarray:
    return values / values.sum(axis=1, keepdims=True)


def _collect_reference(pf: PredictionFile, params: CanParams, cap: int, subsample: str,
                       rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any], np.ndarray]:
    """Reference rows (confident rows of ``pf``, capped), stats, and ``pf``'s label counts."""
    m = pf.layout.width
    sampler = _ReferenceSampler(m, cap, rng)
    label_counts = np.zeros(m, dtype=np.int64)
    rows = 0
    for chunk in pf.chunks():
        probs = _normalised(chunk.values)
        rows += len(probs)
        label_counts += np.bincount(chunk.labels[chunk.labels >= 0], minlength=m)
        sampler.add(probs[confident_mask(probs, params.tau, params.k)])
    used_subsample = None
    if cap and sampler.seen > cap:
        used_subsample = subsample
        if subsample == "stratified":
            ref = _stratified_pass(pf, params, sampler.stratified_plan(), sampler.seen)
        else:
            ref = sampler.uniform()
    else:
        ref = sampler.uniform()
    stats = {"source": pf.name, "rows": rows, "confident": sampler.seen, "used": len(ref),
             "subsample": used_subsample, "identity_fallback": len(ref) == 0}
    labels = np.repeat(np.arange(m), label_counts)
    return ref, stats, labels


def _stratified_pass(pf: PredictionFile, params: CanParams, plan: np.ndarray, seen: int) -> np.ndarray:
    m = pf.layout.width
    ordinal = np.zeros(m, dtype=np.int64)
    kept = []
    for chunk in pf.chunks():
        probs = _normalised(chunk.values)
        conf = probs[confident_mask(probs, params.tau, params.k)]
        cls = conf.argmax(axis=1)
        # ordinal of each row within its class, continuing the running counts of earlier chunks
        order = np.argsort(cls, kind="stable")
        sorted_cls = cls[order]
        starts = np.searchsorted(sorted_cls, sorted_cls, side="left")
        within = np.empty(len(cls), dtype=np.int64)
        within[order] = np.arange(len(cls)) - starts
        codes = cls * seen + ordinal[cls] + within
        kept.append(conf[np.isin(codes, plan)])
        ordinal += np.bincount(cls, minlength=m)
    return np.concatenate(kept) if kept else np.empty((0, m))


def load_can_params(path: str) -> Dict[str, Any]:
    """Read a params file written by ``bigshuf can --tune --save-params``."""
    obj = read_json(path, "CAN params file")
    if obj.get("bigshuf") not in (None, "can"):
        raise InputError(f"is a {obj.get('bigshuf')} params file, not a CAN one", path)
    for name in ("tau", "alpha", "iterations", "k"):
        if name in obj and not isinstance(obj[name], (int, float)):
            raise InputError(f"{name!r} must be a number", path)
    return obj


def _resolve_params(params: Optional[Dict[str, Any]], tau, alpha, iterations, k) -> CanParams:
    given = params or {}
    p = CanParams(
        tau=float(tau if tau is not None else given.get("tau", DEFAULT_TAU)),
        alpha=float(alpha if alpha is not None else given.get("alpha", DEFAULT_ALPHA)),
        iterations=int(iterations if iterations is not None else given.get("iterations", DEFAULT_ITERATIONS)),
        k=int(k if k is not None else given.get("k", DEFAULT_K)),
    )
    if not 0 <= p.tau <= 1:
        raise UsageError(f"tau must be between 0 and 1, got {p.tau}")
    if not p.alpha > 0 or p.iterations < 1 or p.k < 2:
        raise UsageError("alpha must be > 0, iterations >= 1 and k >= 2")
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


def can(input: str, output: Optional[str] = None, *, reference: Optional[str] = None,
        prior: Any = None, tau: Optional[float] = None, alpha: Optional[float] = None,
        iterations: Optional[int] = None, k: Optional[int] = None, params: Optional[str] = None,
        tune: bool = False, save_params: Optional[str] = None, folds: int = 5,
        grid: Optional[Dict[str, Sequence[float]]] = None, max_reference: int = DEFAULT_MAX_REFERENCE,
        subsample: str = "uniform", seed: int = 0, report: Optional[str] = None,
        pred_key: str = "pred", reference_labels: Optional[str] = None,
        progress: Optional[bool] = None, **read_options: Any) -> Dict[str, Any]:
    """Apply CAN to a prediction file (``bigshuf can``); returns the report as a dict.

    Without ``tune``: adjusts the uncertain rows of ``input`` and writes every row to ``output``
    (None or ``-``: stdout), with the parameters from the arguments, else from ``params`` (a
    saved params file), else the defaults. The reference set is the confident rows of
    ``reference`` (read first, so ``input`` is streamed once) or of ``input`` itself (read
    twice), capped at ``max_reference`` rows by a ``subsample`` ("uniform" or "stratified").

    With ``tune``: grid-searches the parameters on the labelled ``input`` (``grid`` may give
    ``taus``, ``alphas``, ``iterations``, ``ks``), saves them to ``save_params``, and writes the
    adjusted rows only if ``output`` is given. ``read_options`` (fmt, key, label_key, labels,
    classes, logits) say how to read the files. ``report`` also writes the report as JSON.
    """
    if subsample not in SUBSAMPLES:
        raise UsageError(f"--subsample must be one of {', '.join(SUBSAMPLES)}")
    if max_reference < 0:
        raise UsageError("--max-reference must be >= 0 (0: no cap)")
    saved = load_can_params(params) if params else None
    chosen = _resolve_params(saved, tau, alpha, iterations, k)
    rng = np.random.default_rng(seed)
    result: Dict[str, Any] = {"command": "can", "input": "<stdin>" if input == "-" else input,
                              "output": output or "-"}
    with PredictionFile(input, **read_options) as pf:
        lay = pf.layout
        if lay.scalar or lay.width < 2:
            raise UsageError(f"CAN needs a probability vector of at least two classes per row; "
                             f"{pf.name} has one score per row")
        if saved and saved.get("classes") and lay.classes and saved["classes"] != lay.classes:
            raise UsageError(f"{params} was tuned for classes {saved['classes']}, "
                             f"but {pf.name} has {lay.classes}")
        prior_spec = prior if prior is not None else (saved or {}).get("prior")
        if tune:
            chosen = _tune(pf, result, prior_spec, folds, grid or {}, max_reference, seed, progress)
            prior_vec = np.asarray(result["prior"]["values"])
            if save_params:
                write_json(save_params, _params_document(chosen, result, lay.classes))
            if output is None:
                _finish_report(result, report)
                return result
            ref_stats = None
        else:
            prior_vec = None
        ref_labels = None
        if reference:
            ref_options = dict(read_options, labels=reference_labels)
            with PredictionFile(reference, **ref_options) as rf:
                if rf.layout.width != lay.width:
                    raise UsageError(f"{rf.name} has {rf.layout.width} classes, {pf.name} has {lay.width}")
                ref, ref_stats, ref_labels = _collect_reference(rf, chosen, max_reference, subsample, rng)
        else:
            ref, ref_stats, ref_labels = _collect_reference(pf, chosen, max_reference, subsample, rng)
            ref_stats["source"] = f"{pf.name} (its own confident rows)"
        if prior_vec is None:
            if prior_spec is None and reference and ref_labels is not None and (ref_labels >= 0).any():
                # A separate labelled reference (dev) set: its label frequencies are the natural
                # prior. Never the input's own labels: that would leak test labels.
                prior_spec = "reference"
            prior_vec, source = resolve_prior(prior_spec, pf.label_map, ref_labels)
            if prior is None and saved and saved.get("prior") is not None:
                source = f"saved in {params} ({saved.get('prior_source', 'given')})"
            result["prior"] = {"source": source, "values": prior_vec.tolist()}
        result["params"] = asdict(chosen)
        result["reference"] = ref_stats
        model = CanModel(ref, prior_vec, chosen.alpha, chosen.iterations)
        _apply(pf, model, chosen, output, pred_key, result)
    _finish_report(result, report)
    return result


def _apply(pf: PredictionFile, model: CanModel, p: CanParams, output: Optional[str], pred_key: str,
           result: Dict[str, Any]) -> None:
    acc = _Accuracy()
    rows = uncertain_n = changed_n = untouched = 0
    with PredictionWriter(output, pf, pred_key=pred_key) as writer:
        for chunk in pf.chunks():
            probs = _normalised(chunk.values)
            uncertain = ~confident_mask(probs, p.tau, p.k)
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


def _tune(pf: PredictionFile, result: Dict[str, Any], prior_spec: Any, folds: int,
          grid: Dict[str, Sequence[float]], max_reference: int, seed: int,
          progress: Optional[bool]) -> CanParams:
    data = pf.read_all()
    probs, labels = _normalised(data.values), data.labels
    missing = np.flatnonzero(labels < 0)
    if missing.size:
        raise InputError("no gold label on this row (--tune needs labelled rows)", pf.name,
                         int(data.lines[missing[0]]))
    # Without --prior, tuning uses the label frequencies of the tuning rows (per fold in
    # cross-validation, so held-out labels never leak): a uniform prior would push an imbalanced
    # dev set's uncertain rows towards rare classes, which is rarely what the user wants.
    if prior_spec is None or (isinstance(prior_spec, str) and prior_spec.strip().lower() == "reference"):
        prior_arg: Any = "labels"
        source = f"label frequencies of the {len(labels)} tuning rows (per fold in cross-validation)"
        q = _frequencies(labels, pf.layout.width)
    else:
        q, source = resolve_prior(prior_spec, pf.label_map)
        prior_arg = q
    result["prior"] = {"source": source, "values": q.tolist()}
    res = tune_can(probs, labels, prior_arg, folds=folds, seed=seed, max_reference=max_reference,
                   progress=progress, **{name: grid[name] for name in ("taus", "alphas", "iterations", "ks")
                                         if grid.get(name)})
    result["tune"] = {"rows": res.rows, "baseline": res.baseline, "accuracy": res.accuracy, "gain": res.gain,
                      "best": asdict(res.best), "grid_points": len(res.table), "top": res.table[:10], "cv": res.cv}
    result["params"] = asdict(res.best)
    return res.best


def _params_document(p: CanParams, result: Dict[str, Any], classes: Optional[List[str]]) -> Dict[str, Any]:
    tune = result["tune"]
    return {"bigshuf": "can", "version": 1, **asdict(p),
            "prior": result["prior"]["values"], "prior_source": result["prior"]["source"],
            "classes": classes,
            "dev": {"rows": tune["rows"], "accuracy_before": tune["baseline"], "accuracy_after": tune["accuracy"]},
            "cv": {k: v for k, v in (tune["cv"] or {}).items() if k != "chosen"} or None}


def _finish_report(result: Dict[str, Any], report: Optional[str]) -> None:
    if report:
        write_json(report, result)


def format_can_report(result: Dict[str, Any]) -> str:
    """The human-readable report ``bigshuf can`` prints on stderr."""
    lines = []
    tune = result.get("tune")
    if tune:
        lines.append(f"tuning on {tune['rows']} labelled rows, {tune['grid_points']} grid points "
                     f"(accuracy without CAN {percent(tune['baseline'])})")
        lines.append("   tau  alpha  iters  k  uncertain  accuracy    gain")
        for r in tune["top"]:
            lines.append(f"  {r['tau']:4.2f}  {r['alpha']:5.1f}  {r['iterations']:5d}  {r['k']:1d}  "
                         f"{r['uncertain']:9d}    {percent(r['accuracy'], 8)}  {100 * (r['accuracy'] - tune['baseline']):+6.2f}")
        b = tune["best"]
        lines.append(f"best: tau={b['tau']} alpha={b['alpha']} iterations={b['iterations']} k={b['k']}: "
                     f"{percent(tune['baseline'])} -> {percent(tune['accuracy'])} "
                     f"({100 * tune['gain']:+.2f} points on the tuning rows)")
        cv = tune.get("cv")
        if cv:
            lines.append(f"{cv['folds']}-fold cross-validated: {percent(cv['accuracy_before'])} -> "
                         f"{percent(cv['accuracy_after'])} ({100 * cv['gain']:+.2f} points; "
                         f"{survival(tune['gain'], cv['gain'])})")
    if "rows" in result:
        p = result["params"]
        ref = result["reference"]
        lines.append(f"CAN tau={p['tau']} alpha={p['alpha']} iterations={p['iterations']} k={p['k']}: "
                     f"{result['rows']} rows, {result['confident']} confident, {result['uncertain']} uncertain, "
                     f"{result['changed_predictions']} predictions changed")
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
    for note in result.get("notes", ()):
        lines.append(f"note: {note}")
    return "\n".join(lines)
