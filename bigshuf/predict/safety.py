"""Tuning that never quietly makes things worse: when a tuned setting is kept, and the warnings.

Why (issue 22): weights tuned on 50-200 dev rows lowered test accuracy in every try while the
report said "no gain survives" and exited 0 with the params saved; a dev file sorted by label
(``head -n 1000`` of it is one class) gave cross-validated gains of +17 points and test losses of
21-54. So both commands treat *leaving the predictions unchanged* as a grid point that wins unless
a tuned setting beats it on held-out rows by more than the cross-validation noise, refuse to adopt
a setting fitted to a minority of the classes, and say on stderr (one ``warning:`` line each) what
made the dev set weak.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

MIN_ROWS_PER_CLASS = 20
"""Fewer labelled rows per class than this and a tuned setting is mostly fitted to noise."""
NOISE_FACTOR = 2.0
"""A held-out gain must exceed this many standard errors of the per-fold gains (about a 95%
one-sided check with 5 folds; one standard error let a pure-noise gain through 1 time in 6)."""
MIN_ROWS_TO_TUNE = 10
"""A class with fewer distinct labelled rows than this does not drive a search: its class weight
stays at its untuned value, and many such classes beside well-covered ones refuse the setting."""
SKEW_SHARE = 0.1
"""Classes with fewer than ``MIN_ROWS_TO_TUNE`` rows that are at least a quarter of the classes
but hold less than this share of the rows: the dev set is not spread like a sample (2 900 rows
of 8 classes and 3 of each of 32 others lost 6-7 points on test when tuned on)."""
SORTED_RUNS = 0.5
"""A file whose label changes between neighbouring rows are fewer than this share of what a random
order gives looks sorted by label."""


@dataclass
class CrossValidation:
    """Held-out estimate of a tuning procedure: each fold's own winner (which may be "unchanged")
    applied to that fold. ``before``/``after`` pool the held-out rows; ``fold_gains`` are the
    per-fold differences, whose spread is the noise a gain must beat."""

    folds: int
    before: float
    after: float
    fold_gains: List[float]
    chosen: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def gain(self) -> float:
        return self.after - self.before

    @property
    def noise(self) -> float:
        """Standard error of the mean fold gain (inf with one fold: nothing to compare)."""
        g = np.asarray(self.fold_gains, dtype=np.float64)
        return float(g.std(ddof=1) / math.sqrt(g.size)) if g.size > 1 else math.inf

    @property
    def signs_disagree(self) -> bool:
        g = np.asarray(self.fold_gains)
        return bool((g > 1e-12).any() and (g < -1e-12).any())

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.update(gain=self.gain, noise=self.noise if math.isfinite(self.noise) else None,
                   spread=[min(self.fold_gains, default=0.0), max(self.fold_gains, default=0.0)])
        return out


NO_CV_WARNING = ("no cross-validation (--cv 0 or 1): the tuned setting is kept on its gain on the tuning rows "
                 "alone, which is optimistic (on 50-200 dev rows such settings lost up to 5 points on test); "
                 "use --cv 5")


NO_GAIN = "no setting beats leaving the predictions unchanged on the tuning rows"
"""Not a warning: the report already says the usual rule was kept, and nothing was given up."""


def adopt(dev_gain: float, cv: Optional[CrossValidation], labels_ok: bool,
          labels_problem: str = "") -> "tuple[bool, str]":
    """Keep the tuned setting? (and why not, in words). Leaving the predictions unchanged wins
    unless the tuned setting gains on the tuning rows, on held-out rows by more than the fold
    noise (``NOISE_FACTOR`` standard errors) and loses on no held-out fold, and was fitted to labels covering most classes
    (``labels_ok``) spread like a sample (``labels_problem`` empty; see ``skew``)."""
    if not labels_ok:
        return False, "the labels cover too few classes to tune on"
    if labels_problem:
        return False, labels_problem
    if dev_gain <= 0:
        return False, NO_GAIN
    if cv is None:
        return True, ""
    if cv.gain <= NOISE_FACTOR * cv.noise or cv.gain <= 0:
        noise = f"{100 * cv.noise:.2f}" if math.isfinite(cv.noise) else "unknown"
        return False, (f"the held-out gain ({100 * cv.gain:+.2f} points) does not beat twice the cross-validation "
                       f"noise ({noise} points)")
    if min(cv.fold_gains) < -1e-12:
        return False, (f"the tuned setting loses on a held-out fold ({100 * min(cv.fold_gains):+.2f} points) even "
                       f"though it gains {100 * cv.gain:+.2f} overall")
    return True, ""


def covers_classes(labels: np.ndarray, m: int) -> bool:
    """Do the labels look like a sample of every class? Not when they cover fewer than half of
    the classes (or two), nor when they look sorted by label *and* some class has no row: both
    are what ``head`` of a file sorted by label gives, and a setting tuned there is fitted to the
    classes that happen to be in it."""
    y = labels[labels >= 0]
    present = np.unique(y).size
    return present >= max(2, math.ceil(m / 2)) and not (present < m and looks_sorted(y))


def skew(labels: np.ndarray, m: int, groups: Optional[np.ndarray] = None) -> str:
    """Why the labelled rows are too unevenly spread over the classes to tune on, or "": at
    least a quarter of the classes (and two) have fewer than ``MIN_ROWS_TO_TUNE`` distinct rows
    yet hold less than ``SKEW_SHARE`` of the rows. A random sample of a few hundred rows has
    many thin classes too, but they hold most of its rows."""
    counts = distinct_counts(labels, m, groups)
    thin = (counts > 0) & (counts < MIN_ROWS_TO_TUNE)
    share = counts[thin].sum() / max(int(counts.sum()), 1)
    if thin.sum() >= max(2, m / 4) and share < SKEW_SHARE:
        return (f"{int(thin.sum())} of {m} classes have fewer than {MIN_ROWS_TO_TUNE} distinct labelled rows and "
                f"hold only {share:.1%} of them: the rows are not spread like a sample of the data (a setting "
                "tuned on them fits the other classes)")
    return ""


def looks_sorted(labels: np.ndarray) -> bool:
    """True when neighbouring rows change label far less often than in a random order."""
    y = labels[labels >= 0]
    if y.size < 20:
        return False
    q = np.bincount(y) / y.size
    expected = (y.size - 1) * (1 - float(q @ q))
    changes = int((y[1:] != y[:-1]).sum())
    return expected >= 5 and changes < SORTED_RUNS * expected


DUPLICATE_RTOL = 1e-3
"""Rows whose values all agree to this relative tolerance (float16-like) are copies of one row: a
model run twice (or in another batch, or in float16) writes the same row with noise of 1e-7 to
1e-4, and 200 rows x 5 copies at 1e-7 (60 x 10 at 2e-6) made threshold report +9.70 (+4.50)
held-out points for weights that lost 2.0 (6.65) on test. Grouping distinct but close rows only
makes cross-validation more conservative."""

#: Values below this share of the largest absolute value count as zero.
DUPLICATE_FLOOR = 1e-12


def duplicate_groups(values: np.ndarray, rtol: float = DUPLICATE_RTOL) -> np.ndarray:
    """A group id per row: equal ids for rows that are copies of each other -- exactly equal, or
    equal up to ``rtol`` relative in every value (linked transitively, but a chain of close rows
    is cut every few tolerances so a dense low-dimensional file is not one group). Cross-validation
    keeps each group in one fold; the warnings count groups as the distinct rows.

    Values are compared as t = sign(x) log(1 + |x|/f), where a relative difference is a difference
    (f is DUPLICATE_FLOOR of the largest value). Near-copies are found without comparing all pairs:
    rows are sorted by a random positive projection of t (copies land within rtol times the weight
    sum), and only rows that close in that order (and in a second projection) are compared."""
    rows = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(len(values), -1))
    keys = rows.view(np.dtype((np.void, rows.shape[1] * 8))).reshape(-1)
    first, exact = np.unique(keys, return_index=True, return_inverse=True)[1:]
    exact = exact.reshape(-1)
    t = rows[first]  # becomes t in place: one k x m array (a threshold search is in --memory)
    np.nan_to_num(t, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    k = len(t)
    if k < 2 or rtol <= 0:
        return exact
    negative = np.signbit(t)
    np.abs(t, out=t)
    t /= DUPLICATE_FLOOR * max(float(t.max()), 1e-300)
    np.log1p(t, out=t)
    t[negative] *= -1
    del negative
    tol = float(np.log1p(rtol)) * (1 + 1e-9)
    weights = np.random.default_rng(0).uniform(0.5, 1.5, (t.shape[1], 2))
    proj = t @ weights
    reach = tol * weights.sum(axis=0)
    order = np.argsort(proj[:, 0], kind="stable")
    s, s2 = proj[order, 0], proj[order, 1]
    step = max(1, (1 << 17) // t.shape[1])  # pairs compared at once: bounded temporaries
    edges_a, edges_b = [], []
    for d in range(1, k):
        close = np.flatnonzero(s[d:] - s[:-d] <= reach[0])
        if close.size == 0:
            break
        close = close[np.abs(s2[close + d] - s2[close]) <= reach[1]]
        for i in range(0, close.size, step):
            ia, ib = order[close[i:i + step]], order[close[i:i + step] + d]
            same = (np.abs(t[ia] - t[ib]) <= tol).all(axis=1)
            edges_a.append(ia[same])
            edges_b.append(ib[same])
    label = np.arange(k)
    if edges_a:
        ea, eb = np.concatenate(edges_a), np.concatenate(edges_b)
        while ea.size:  # connected components: spread the smallest id along the edges
            low = np.minimum(label[ea], label[eb])
            before = label.copy()
            np.minimum.at(label, ea, low)
            np.minimum.at(label, eb, low)
            label = label[label]
            if np.array_equal(label, before):
                break
        label = _cut_chains(label, t, tol)
    return np.unique(label, return_inverse=True)[1].reshape(-1)[exact]


def _cut_chains(label: np.ndarray, t: np.ndarray, tol: float) -> np.ndarray:
    """A long chain of distinct close rows (thousands of binary rows) is cut into cells 4
    tolerances wide in every value; a group of copies is far shorter and never cut."""
    members = np.flatnonzero(np.bincount(label, minlength=len(label))[label] > 1)
    comp = np.unique(label[members], return_inverse=True)[1].reshape(-1)
    high = np.full((comp.max() + 1, t.shape[1]), -np.inf) if members.size else np.empty((0, t.shape[1]))
    low = np.full(high.shape, np.inf)
    np.maximum.at(high, comp, t[members])
    np.minimum.at(low, comp, t[members])
    cut = members[(high - low).max(axis=1)[comp] > 4 * tol]
    if cut.size:
        key = np.ascontiguousarray(np.c_[label[cut], np.floor(t[cut] / (4 * tol))])
        cells = np.unique(key.view(np.dtype((np.void, key.shape[1] * 8))).reshape(-1), return_inverse=True)[1]
        label = label.copy()
        label[cut] = len(label) + cells.reshape(-1)
    return label


def distinct_counts(labels: np.ndarray, m: int, groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Labelled rows per class, a group of copies counted once (labels < 0 are unlabelled)."""
    keep = labels >= 0
    if groups is None or not len(groups):
        return np.bincount(labels[keep], minlength=m)
    pairs = np.unique(np.stack([groups[keep], labels[keep]], axis=1), axis=0)
    return np.bincount(pairs[:, 1], minlength=m)


def dev_warnings(labels: np.ndarray, m: int, command: str, groups: Optional[np.ndarray] = None) -> List[str]:
    """What makes labelled tuning rows weak, one sentence each."""
    y = labels[labels >= 0]
    counts = np.bincount(y, minlength=m)
    distinct = int(distinct_counts(labels, m, groups).sum())
    out = []
    if groups is not None and len(groups):
        repeats = len(groups) - np.unique(groups).size
        if repeats > 0.25 * len(groups):  # real files repeat some rows (11% of the real-model dev file)
            out.append(f"{repeats} of {len(groups)} rows repeat another row (exactly or to {DUPLICATE_RTOL:g} "
                       "relative): copies are kept in one cross-validation fold, and a tuned setting fits the "
                       "repeated rows")
    if looks_sorted(y):
        out.append("the labels look sorted (neighbouring rows share a label far more often than in a random "
                   "order): if these rows are the head of a sorted file they are not a sample; shuffle first "
                   "(bigshuf shuffle) and tune on a random sample")
    if not covers_classes(y, m):
        sorted_note = " and the labels look sorted" if looks_sorted(y) else ""
        out.append(f"only {int((counts > 0).sum())} of {m} classes have labelled rows{sorted_note}: {command} keeps "
                   "the predictions unchanged rather than fit a setting to those classes")
    else:
        per_class = distinct_counts(labels, m, groups)
        thin = (per_class > 0) & (per_class < MIN_ROWS_PER_CLASS)
        if thin.any():
            out.append(f"{int(thin.sum())} of {m} classes have fewer than {MIN_ROWS_PER_CLASS} distinct labelled rows "
                       f"(the smallest {int(per_class[thin].min())}; {distinct} rows in all): a tuned setting is kept "
                       "only if it beats the cross-validation noise")
    missing = int((counts == 0).sum())
    if missing and covers_classes(y, m):
        out.append(f"{missing} of {m} classes have no labelled row")
    return out


def cv_warnings(cv: Optional[CrossValidation], adopted: bool = False) -> List[str]:
    if cv is None:
        return [NO_CV_WARNING] if adopted else []
    if cv.signs_disagree:
        gains = ", ".join(f"{100 * g:+.1f}" for g in cv.fold_gains)
        return [f"the cross-validated gain changes sign across folds ({gains} points): it is not reliable"]
    return []
