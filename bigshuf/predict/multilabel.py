"""Per-label cuts for multi-label predictions (independent sigmoid outputs, labels as sets).

Row i gets label j when p_ij >= t_j. A per-label metric (F1, accuracy, MCC, balanced accuracy
of label j's own yes/no decisions) depends on t_j alone, so each label's cut is found exactly by
the binary sort and sweep; the macro average of a per-label metric is separable, so the same
cuts are its exact optimum (``macro-f1`` is ``f1``). Micro-F1 pools the counts of all labels:
2 TP / (2 TP + FP + FN). With the other cuts fixed, label j's counts are the only ones that
move, so one sweep over label j's distinct scores evaluates every cut of that coordinate
exactly; coordinate ascent repeats over all labels until no cut improves micro-F1. It starts
from the per-label F1 cuts, which are usually close.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.predict.defaults import DEFAULT_MULTILABEL_METRIC
from bigshuf.predict.metrics import METRICS, Metric, get_metric
from bigshuf.predict.thresholds import best_cut, default_cut, sweep


def _check(probs: np.ndarray, targets: np.ndarray, metric: str) -> Tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise UsageError("multi-label search needs an n x m matrix of probabilities and of labels")
    get_metric(metric, multi_label=True)
    return probs, targets


def multilabel_metric(metric: str, targets: np.ndarray, decided: np.ndarray) -> float:
    """A pooled metric (``micro-f1``) from the counts of all labels together; otherwise the
    per-label metric averaged over the labels that occur in the gold sets (``f1`` and
    ``macro-f1`` are the same: macro F1)."""
    y = np.asarray(targets).astype(bool)
    d = np.asarray(decided).astype(bool)
    return multilabel_value(metric, len(y), (y & d).sum(axis=0), (~y & d).sum(axis=0), y.sum(axis=0))


def multilabel_value(metric: str, n: int, tp: np.ndarray, fp: np.ndarray, pos: np.ndarray) -> float:
    """``multilabel_metric`` from per-label counts over ``n`` rows (they add up over chunks)."""
    spec = get_metric(metric, multi_label=True)
    tp, fp, pos = (np.asarray(a, dtype=np.float64) for a in (tp, fp, pos))
    if spec.pooled:
        return float(spec.binary(tp.sum(), fp.sum(), pos.sum(), n * len(pos) - pos.sum()))
    present = pos > 0
    if not present.any():
        return 0.0
    return float(np.mean(spec.binary(tp, fp, pos, n - pos)[present]))


def find_label_cuts(probs: np.ndarray, targets: np.ndarray, metric: str = DEFAULT_MULTILABEL_METRIC, *,
                    max_rounds: int = 50) -> Tuple[np.ndarray, float]:
    """Per-label cuts maximising ``metric``; returns (cuts, metric value). See the module doc."""
    probs, targets = _check(probs, targets, metric)
    spec = METRICS[metric]
    cuts = np.array([_best_label_cut(probs[:, j], targets[:, j], spec) for j in range(probs.shape[1])])
    if spec.pooled:
        cuts = _pooled_ascent(probs, targets, cuts, spec, max_rounds)
    return cuts, multilabel_metric(metric, targets, probs >= cuts)


def _best_label_cut(scores: np.ndarray, target: np.ndarray, spec: Metric) -> float:
    """The exact best cut of one label for the per-label metric (ties: nearest the usual rule)."""
    cuts, tp, fp = sweep(scores, target)
    positives = int(target.sum())
    return float(cuts[best_cut(cuts, spec.binary(tp, fp, positives, target.size - positives), default_cut(scores))])


def _pooled_ascent(probs: np.ndarray, targets: np.ndarray, cuts: np.ndarray, spec: Metric,
                   max_rounds: int) -> np.ndarray:
    """Coordinate ascent on a pooled metric with an exact sweep per label: with the other cuts
    fixed, only label j's counts move, so one sweep evaluates every cut of that coordinate."""
    m = probs.shape[1]
    pos = float(targets.sum())
    neg = float(targets.size) - pos
    sweeps = [sweep(probs[:, j], targets[:, j]) for j in range(m)]
    decided = probs >= cuts
    tp = (targets & decided).sum(axis=0).astype(np.float64)
    fp = (~targets & decided).sum(axis=0).astype(np.float64)
    value = float(spec.binary(tp.sum(), fp.sum(), pos, neg))
    for _ in range(max_rounds):
        improved = False
        for j in range(m):
            c, tpj, fpj = sweeps[j]
            values = spec.binary(tp.sum() - tp[j] + tpj, fp.sum() - fp[j] + fpj, pos, neg)
            g = best_cut(c, values, cuts[j])
            if values[g] > value + 1e-12:
                cuts[j], tp[j], fp[j], value, improved = c[g], tpj[g], fpj[g], float(values[g]), True
        if not improved:
            break
    return cuts


def apply_label_cuts(params: Dict[str, Any], probs: np.ndarray) -> np.ndarray:
    """The decided label sets (boolean n x m) for ``probs`` under saved multi-label params."""
    cuts = np.asarray(params["cuts"], dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != cuts.size:
        width = probs.shape[1] if probs.ndim == 2 else 1
        raise UsageError(f"the params have {cuts.size} label cuts, the rows have {width} values")
    return probs >= cuts
