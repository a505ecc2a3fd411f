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
from typing import Any, List, Literal, Optional, Sequence, Tuple, Union, overload

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.predict.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_ITERATIONS,
    DEFAULT_K,
    DEFAULT_RULE,
    DEFAULT_TAU,
    RULES,
)

Prior = Union[Sequence[float], np.ndarray, None]
"""A class prior: m non-negative weights (normalised here), or None for uniform."""
_BATCH_BYTES = 256 << 20  # per-batch working set of the correction factors (larger: faster BLAS)
_TINY = np.finfo(np.float64).tiny
#: Rows per matrix product with several iterations: one shape whatever the batch (``adjust``).
#: 256: 64-row blocks had made 3 iterations against 31 000 reference rows 2x slower (BLAS packs
#: the reference for every product). Its buffer, 8 x 256 bytes a reference row, is charged in
#: ``Budget.reference_rows``.
BLAS_BLOCK = 256


# -- the algorithm ---------------------------------------------------------------------------

#: The identity reference (no confident rows) is m x m: refused beyond this many bytes.
IDENTITY_LIMIT = 1 << 30


def identity_reference(m: int) -> np.ndarray:
    """The reference set CAN falls back to when no row is confident: the m x m identity (each
    class its own confident row). Its size grows with the square of the class count."""
    if 8 * m * m > IDENTITY_LIMIT:
        raise UsageError(f"no row is confident, and the identity reference CAN falls back to would "
                         f"take {8 * m * m / 2**30:.1f} GiB for {m:,} classes: lower --tau or give "
                         f"a --reference file with confident rows")
    return np.eye(m)


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with x/0 := 0 (a zero column or row sum means the column or row is all zero)."""
    num, den = np.broadcast_arrays(num, den)
    out = np.zeros(num.shape)
    # Extreme alpha/iterations can overflow the factored form; such rows come out non-finite
    # and are recomputed with the per-row definition, so the warning would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        np.divide(num, den, out=out, where=den != 0)
    return out


def row_normalise(x: np.ndarray) -> np.ndarray:
    total = x.sum(axis=1, keepdims=True)
    if (total > 0).all():  # the usual case: a plain division, without safe_div's masks
        with np.errstate(over="ignore", invalid="ignore"):
            return x / total
    return safe_div(x, total)


def uncertainty(probs: np.ndarray, k: int = DEFAULT_K, rule: str = DEFAULT_RULE) -> np.ndarray:
    """Top-k entropy of each row, in [0, 1] (k is capped at the number of classes).

    With ``rule="any-k"``, the largest top-j entropy over j = 2 .. m instead (the official
    code's rule: a row is uncertain when any of them reaches tau)."""
    probs = np.asarray(probs, dtype=np.float64)
    m = probs.shape[1]
    if rule == "any-k":
        if m < 2:
            raise UsageError("top-k uncertainty needs k >= 2 and at least two classes")
        return _any_k_uncertainty(probs)
    if rule != "top-k":
        raise UsageError(f"unknown uncertainty rule {rule!r} (choose from {', '.join(RULES)})")
    k = min(int(k), m)
    if k < 2:
        raise UsageError("top-k uncertainty needs k >= 2 and at least two classes")
    top = np.partition(probs, m - k, axis=1)[:, m - k:]
    top = row_normalise(top)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(top > 0, top * np.log(top), 0.0)
    return np.clip(-plogp.sum(axis=1) / math.log(k), 0.0, 1.0)


def _any_k_uncertainty(probs: np.ndarray) -> np.ndarray:
    """max over j of the top-j entropy, all j at once: with the row sorted descending, S_j the
    sum and C_j the sum of p log p of its first j values, H_j = log S_j - C_j / S_j."""
    m = probs.shape[1]
    p = -np.sort(-probs, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        s = np.cumsum(p, axis=1)[:, 1:]
        c = np.cumsum(plogp, axis=1)[:, 1:]
        h = np.where(s > 0, np.log(np.where(s > 0, s, 1.0)) - c / np.where(s > 0, s, 1.0), 0.0)
    u = h / np.log(np.arange(2, m + 1))
    return np.clip(u.max(axis=1), 0.0, 1.0)


def confident_mask(probs: np.ndarray, tau: float = DEFAULT_TAU, k: int = DEFAULT_K,
                   rule: str = DEFAULT_RULE) -> np.ndarray:
    """True for rows whose uncertainty (``rule``) is below ``tau``."""
    return uncertainty(probs, k, rule) < tau


def check_prior(prior: Prior, m: int) -> np.ndarray:
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

    def __init__(self, reference: np.ndarray, prior: Prior = None,
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
            reference = identity_reference(m)
        self.prior = check_prior(prior, m)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.reference = reference
        self.n_reference = reference.shape[0]
        self.fallback_rows = 0
        self.batch_bytes = batch_bytes
        # Per iteration t: M_t = Lbar_{t-1}**alpha (needed for t >= 1), its column sums,
        # Lbar_t (needed to update x, except after the last iteration), and Lbar_t's all-zero rows.
        self._steps: List[Tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray], np.ndarray]] = []
        lbar = reference
        for t in range(self.iterations):
            powered = lbar if self.alpha == 1.0 else lbar ** self.alpha
            sbar = powered.sum(axis=0)
            nxt = row_normalise(powered * safe_div(self.prior, sbar))
            last = t == self.iterations - 1
            dead = np.flatnonzero(nxt.sum(axis=1) == 0)
            self._steps.append((powered if t > 0 else None, sbar, None if last else nxt, dead))
            lbar = nxt

    @overload
    def adjust(self, rows: np.ndarray, all_iterations: Literal[False] = False) -> np.ndarray: ...

    @overload
    def adjust(self, rows: np.ndarray, all_iterations: Literal[True]) -> List[np.ndarray]: ...

    def adjust(self, rows: np.ndarray, all_iterations: bool = False) -> Any:
        """Adjusted copies of ``rows`` (each treated as an uncertain row).

        With ``all_iterations``, return a list with the result after 1, 2, ..., ``iterations``
        iterations (one trajectory gives them all; used by the tuner).
        """
        rows = np.asarray(rows, dtype=np.float64)
        outs = [np.empty_like(rows) for _ in range(self.iterations if all_iterations else 1)]
        m = rows.shape[1] if rows.ndim == 2 else 0
        if self.iterations > 1:
            # Fixed blocks of BLAS_BLOCK rows, the last one padded with copies of its last row: the
            # matrix products then always have one shape, so a row's bytes do not depend on how
            # many rows come with it (--memory, the chunking and the CPU count had changed ~1e-16
            # in 48 of 300 000 rows; a multiple of 8 rows was not enough for small references).
            batch = BLAS_BLOCK
        else:
            batch = max(1, self.batch_bytes // (8 * 4 * max(m, 1)))
        # one buffer for the n-wide correction factors x of a batch, reused (no page faults
        # from a fresh array per batch and iteration)
        buf = np.empty((batch, self.n_reference)) if self.iterations > 1 else None
        risky = np.zeros(len(rows), dtype=bool)
        for start in range(0, len(rows), batch):
            sl = slice(start, start + batch)
            part = rows[sl]
            real = len(part)
            if buf is not None and real < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - real, axis=0)])
            flags = np.zeros(len(part), dtype=bool)
            trajectory = self._adjust_batch(part, buf, flags)
            risky[sl] = flags[:real]
            for t, out in enumerate(outs):
                out[sl] = trajectory[t if all_iterations else -1][:real]
        for out in outs:  # e.g. subnormal probabilities: 0 * inf in the factored form
            risky |= ~np.isfinite(out).all(axis=1)
        self.fallback_rows = int(risky.sum())
        if self.fallback_rows:
            exact = can_per_row(rows[risky], self.reference, self.prior, self.alpha, self.iterations,
                                all_iterations=True)
            for t, out in enumerate(outs):
                out[risky] = exact[t if all_iterations else -1]
        return outs if all_iterations else outs[0]

    def _adjust_batch(self, b: np.ndarray, buf: Optional[np.ndarray], risky: np.ndarray) -> List[np.ndarray]:
        """One batch through every iteration (the factored form, see the module docstring);
        marks in ``risky`` the rows the per-row definition must redo."""
        a = self.alpha
        # y is raised to alpha each iteration, so |log y| must stay below this for the powers
        # and products to stay finite and exact. x needs no check of its own: 1/x = y @ Lbar.T
        # is a weighted mean of y (rows of Lbar sum to 1), so x lies within y's range. Rows that
        # leave the range (seen only with tiny reference sets, large alpha and several
        # iterations) are recomputed by the per-row definition.
        log_limit = 600.0 / max(a, 1.0)
        xa: Any = None  # x**alpha, as the next iteration needs it
        y: Any = None
        trajectory = []
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for t, (powered, sbar, nxt, dead) in enumerate(self._steps):
                if a != 1.0:
                    b = b ** a
                    if y is not None:
                        y = y ** a
                # column sums of the stacked matrix [confident block; b]
                s = sbar + b if t == 0 else (xa @ powered) * y + b
                b = row_normalise(b * safe_div(self.prior, s))
                trajectory.append(b)
                if nxt is not None:
                    ratio = safe_div(sbar, s)
                    y = ratio if y is None else y * ratio
                    risky |= _out_of_range(y, log_limit)
                    assert buf is not None
                    xa = _inverse_power(np.matmul(y, nxt.T, out=buf[:len(b)]), a, dead)
        risky |= ~np.isfinite(b).all(axis=1)
        return trajectory


def _inverse_power(d: np.ndarray, alpha: float, dead: np.ndarray) -> np.ndarray:
    """d**-alpha in place; 0 for the ``dead`` columns (all-zero reference rows, whose factor
    multiplies zeros). Elsewhere d > 0: it is a weighted mean of positive factors."""
    np.maximum(d, _TINY, out=d)
    if alpha == 1.0:
        np.reciprocal(d, out=d)
    else:  # exp(-alpha log d): 3.5x faster than np.power here (SIMD), within an ulp or two
        np.log(d, out=d)
        d *= -alpha
        np.exp(d, out=d)
    if dead.size:
        d[:, dead] = 0.0
    return d


def _out_of_range(factors: np.ndarray, log_limit: float) -> np.ndarray:
    """Rows with a non-finite factor, or a non-zero one whose |log| exceeds ``log_limit``.
    (Exact zeros are legitimate: they mark all-zero columns of the reference.)"""
    nonzero = factors != 0
    logs = np.abs(np.log(np.where(nonzero, factors, 1.0)))
    return np.asarray(~np.isfinite(logs).all(axis=1) | (logs > log_limit).any(axis=1))


def can_adjust(rows: np.ndarray, reference: np.ndarray, prior: Prior = None,
               alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS) -> np.ndarray:
    """Adjust each row of ``rows`` independently against the reference rows (vectorised CAN)."""
    return CanModel(reference, prior, alpha, iterations).adjust(rows)


def can_per_row(rows: np.ndarray, reference: np.ndarray, prior: Prior = None,
                alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS,
                all_iterations: bool = False) -> "np.ndarray | List[np.ndarray]":
    """The literal per-row definition, one stacked matrix per row: slow; the fallback for rows
    the fast path cannot represent, and the yardstick in tests and ``scripts/bench_can.py``."""
    rows = np.asarray(rows, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape[0] == 0:
        reference = identity_reference(rows.shape[1])
    q = check_prior(prior, rows.shape[1])
    outs = [np.empty_like(rows) for _ in range(iterations)]
    for i, b in enumerate(rows):
        stacked = np.vstack([reference, b])
        for t in range(iterations):
            stacked = stacked ** alpha
            # columns normalised first, then weighted: q / (a tiny column sum) would overflow
            stacked = safe_div(stacked, stacked.sum(axis=0, keepdims=True)) * q
            stacked = row_normalise(stacked)
            outs[t][i] = stacked[-1]
    return outs if all_iterations else outs[-1]


def can_matrix(probs: np.ndarray, prior: Prior = None, *, tau: float = DEFAULT_TAU,
               alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS, k: int = DEFAULT_K,
               reference: Optional[np.ndarray] = None, rule: str = DEFAULT_RULE) -> Tuple[np.ndarray, np.ndarray]:
    """CAN on an in-memory matrix: returns (adjusted probabilities, uncertain-row mask).

    The reference set is the confident rows of ``reference`` if given, else of ``probs``
    itself. Confident rows are returned unchanged.
    """
    probs = np.asarray(probs, dtype=np.float64)
    uncertain = ~confident_mask(probs, tau, k, rule)
    ref_source = probs if reference is None else np.asarray(reference, dtype=np.float64)
    ref = ref_source[confident_mask(ref_source, tau, k, rule)] if len(ref_source) else ref_source
    out = probs.copy()
    if uncertain.any():
        adjusted = can_adjust(probs[uncertain], ref, prior, alpha, iterations)
        keep = adjusted.sum(axis=1) > 0  # mass only on zero-prior classes: leave the row as it was
        out[np.flatnonzero(uncertain)[keep]] = adjusted[keep]
    return out, uncertain


# -- first-order (frozen reference) CAN, for ranking a tuning grid -------------------------------

def fast_power(x: np.ndarray, alpha: float) -> np.ndarray:
    """x ** alpha for x >= 0 as exp(alpha log x): numpy's exp and log are vectorised (SIMD) where
    power is not, 3-4x faster; within an ulp or two, which ranking grid points tolerates (the rows
    ``bigshuf can`` writes use exact powers)."""
    if alpha == 2.0:
        return np.square(x)
    with np.errstate(divide="ignore"):
        out = np.log(x)
    out *= alpha
    return np.exp(out, out=out)


def reference_column_sums(reference: np.ndarray, prior: np.ndarray, alpha: float,
                          iterations: int) -> List[np.ndarray]:
    """Column sums of ``Lbar_{t-1} ** alpha`` for t = 1 .. iterations, where Lbar is the
    reference rows' own CAN trajectory (without any uncertain row). Each step works in place on
    its own power (same values as ``row_normalise(powered * w)``, without two n x m temporaries:
    a tuning search does this 2 000 times)."""
    sums = []
    lbar = reference
    for t in range(iterations):
        powered = lbar if alpha == 1.0 else fast_power(lbar, alpha)
        sbar = powered.sum(axis=0)
        sums.append(sbar)
        if t < iterations - 1:
            weights = safe_div(prior, sbar)
            if powered is reference:  # never write into the caller's array
                powered = powered * weights
            else:
                powered *= weights
            lbar = _row_normalise_in_place(powered)
    return sums


def _row_normalise_in_place(x: np.ndarray) -> np.ndarray:
    """``row_normalise(x)``, dividing ``x`` itself in the usual case (every row sum positive)."""
    total = x.sum(axis=1, keepdims=True)
    if (total > 0).all():
        with np.errstate(over="ignore", invalid="ignore"):
            x /= total
        return x
    return safe_div(x, total)


def adjust_first_order(rows: np.ndarray, column_sums: Sequence[np.ndarray], prior: np.ndarray,
                       alpha: float) -> List[np.ndarray]:
    """CAN with the reference block frozen at its own trajectory: each iteration costs O(m) per
    row. Exact for one iteration; for more, the uncertain row's effect on the n reference rows
    is left out, an O(1/n) relative change of the column sums (tiny for reference sets of
    thousands of rows). Used to rank grid points; results after 1, 2, ... iterations. One new
    n x m array per iteration (the result), the rest in place: the same values as
    ``row_normalise(b * (prior / (sbar + b)))``."""
    outs = []
    b = rows
    for sbar in column_sums:
        if alpha != 1.0:
            b = fast_power(b, alpha)
        den = np.add(sbar, b)
        if (den > 0).all():  # the usual case: plain division, 3x faster than safe_div's masks
            np.divide(prior, den, out=den)
        else:
            den = safe_div(prior, den)
        den *= b
        b = _row_normalise_in_place(den)
        outs.append(b)
    return outs
