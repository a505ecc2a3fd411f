"""The reference set of ``bigshuf can``: the confident rows of a file, in bounded memory.

With more confident rows than ``--max-reference``, a seeded subsample is kept: an exactly uniform
one in one pass (the rows with the smallest random keys), or one proportional to the predicted
class (as in the paper's code) drawn in a second pass.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

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


def collect_reference(pf: PredictionFile, params: CanParams, cap: int, subsample: str,
                       rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, Any], np.ndarray]:
    """Reference rows (confident rows of ``pf``, capped), stats, and ``pf``'s label counts."""
    m = pf.layout.width
    sampler = ReferenceSampler(m, cap, rng)
    label_counts = np.zeros(m, dtype=np.int64)
    rows = 0
    for chunk in pf.chunks(cache=True):  # the pass that applies CAN can then replay it
        probs = chunk.values / chunk.values.sum(axis=1, keepdims=True)
        rows += len(probs)
        label_counts += np.bincount(chunk.labels[chunk.labels >= 0], minlength=m)
        sampler.add(probs[confident_mask(probs, params.tau, params.k, params.rule)])
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
