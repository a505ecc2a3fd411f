"""The reference set of ``bigshuf can``: the confident rows of a file, in bounded memory.

With more confident rows than ``--max-reference``, a seeded subsample is kept: an exactly uniform
one in one pass (the rows with the smallest random keys), or one proportional to the predicted
class (as in the paper's code) drawn in a second pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from bigshuf.predict.can import confident_mask
from bigshuf.predict.reading import PredictionFile
from bigshuf.predict.tune import CanParams


class ReferenceSampler:
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
        self.bar = 1.0  # keys are below 1
        self.per_class = np.zeros(m, dtype=np.int64)

    def add(self, rows: np.ndarray) -> None:
        self.seen += len(rows)
        self.per_class += np.bincount(rows.argmax(axis=1), minlength=len(self.per_class))
        keys = self.rng.random(len(rows))
        if self.bar < 1.0:  # a row whose key is above the cap-th smallest so far is never kept
            low = keys <= self.bar
            rows, keys = rows[low], keys[low]
        self.rows.append(rows)
        self.keys.append(keys)
        self.size += len(rows)
        if self.cap and self.size > 2 * self.cap:
            self._compact()

    def _compact(self) -> None:
        """Keep the ``cap`` rows with the smallest keys, in file order; only the key arrays are
        joined to find them, and each block copies just its kept rows."""
        if not self.rows:
            return
        keys = np.concatenate(self.keys)
        if self.cap and len(keys) > self.cap:
            self.bar = float(np.partition(keys, self.cap - 1)[self.cap - 1])
            kept = [(r[k <= self.bar], k[k <= self.bar]) for r, k in zip(self.rows, self.keys)]
            rows, keys = np.concatenate([r for r, _ in kept]), np.concatenate([k for _, k in kept])
            if len(keys) > self.cap:  # equal keys at the bar (never seen in practice)
                keep = np.sort(np.argpartition(keys, self.cap - 1)[:self.cap])
                rows, keys = rows[keep], keys[keep]
        else:
            rows = np.concatenate(self.rows)
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


@dataclass
class Reference:
    """The reference set and what the pass over its file learnt: the confident rows (capped),
    stats for the report, the file's label counts, its mean prediction (the model's effective
    prior, for ``--prior estimate`` and ``--method prior-shift``) and, when asked for, the
    confusion counts of predicted x gold label (for BBSE)."""

    rows: np.ndarray
    stats: Dict[str, Any]
    label_counts: np.ndarray
    mean: np.ndarray
    confusion: Optional[np.ndarray] = None

    @property
    def labels(self) -> np.ndarray:
        """One label per labelled row (the counts expanded), for label-frequency priors."""
        return np.repeat(np.arange(len(self.label_counts)), self.label_counts)


def collect_reference(pf: PredictionFile, params: Optional[CanParams], cap: int, subsample: str,
                      rng: np.random.Generator, confusion: bool = False) -> Reference:
    """One pass over ``pf``: its confident rows under ``params`` (None: no rows kept, CAN is
    not applied), capped at ``cap``, and the statistics of ``Reference``."""
    m = pf.layout.width
    sampler = ReferenceSampler(m, cap, rng)
    label_counts = np.zeros(m, dtype=np.int64)
    total = np.zeros(m)
    joint = np.zeros(m * m, dtype=np.int64) if confusion else None
    rows = 0
    for chunk in pf.chunks(cache=True):  # the pass that applies CAN can then replay it
        probs = chunk.values / chunk.values.sum(axis=1, keepdims=True)
        rows += len(probs)
        total += probs.sum(axis=0)
        has = chunk.labels >= 0
        label_counts += np.bincount(chunk.labels[has], minlength=m)
        if joint is not None:
            np.add.at(joint, probs[has].argmax(axis=1) * m + chunk.labels[has], 1)  # no m x m temporary
        if params is not None:
            sampler.add(probs[confident_mask(probs, params.tau, params.k, params.rule)])
    used_subsample = None
    if params is not None and cap and sampler.seen > cap:
        used_subsample = subsample
        if subsample == "stratified":
            ref = _stratified_pass(pf, params, sampler.stratified_plan(), sampler.seen)
        else:
            ref = sampler.uniform()
    else:
        ref = sampler.uniform()
    stats = {"source": pf.name, "rows": rows, "confident": sampler.seen, "used": len(ref),
             "subsample": used_subsample, "identity_fallback": len(ref) == 0}
    return Reference(ref, stats, label_counts, total / max(rows, 1),
                     None if joint is None else joint.reshape(m, m))


def _stratified_pass(pf: PredictionFile, params: CanParams, plan: np.ndarray, seen: int) -> np.ndarray:
    m = pf.layout.width
    ordinal = np.zeros(m, dtype=np.int64)
    kept = []
    for chunk in pf.chunks():
        probs = chunk.values / chunk.values.sum(axis=1, keepdims=True)
        conf = probs[confident_mask(probs, params.tau, params.k, params.rule)]
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
