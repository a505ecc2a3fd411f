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
from bigshuf.predict.defaults import DEFAULT_MULTILABEL_METRIC, METRICS, MULTILABEL_METRICS
from bigshuf.predict.metrics import binary_metric
from bigshuf.predict.thresholds import best_cut, find_threshold, sweep


def _check(probs: np.ndarray, targets: np.ndarray, metric: str) -> Tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise UsageError("multi-label search needs an n x m matrix of probabilities and of labels")
    if metric not in MULTILABEL_METRICS:
        raise UsageError(f"unknown multi-label metric {metric!r} (choose from {', '.join(MULTILABEL_METRICS)})")
    return probs, targets


def multilabel_metric(metric: str, targets: np.ndarray, decided: np.ndarray) -> float:
    """``micro-f1`` from pooled counts; otherwise the per-label metric averaged over the labels
    that occur in the gold sets (``f1`` and ``macro-f1`` are the same: macro F1)."""
    y = np.asarray(targets).astype(bool)
    d = np.asarray(decided).astype(bool)
    tp = (y & d).sum(axis=0).astype(np.float64)
    fp = (~y & d).sum(axis=0).astype(np.float64)
    pos = y.sum(axis=0).astype(np.float64)
    if metric == "micro-f1":
        den = 2 * tp.sum() + fp.sum() + (pos - tp).sum()
        return float(2 * tp.sum() / den) if den else 0.0
    base = "f1" if metric == "macro-f1" else metric
    if base not in METRICS:
        raise UsageError(f"unknown multi-label metric {metric!r} (choose from {', '.join(MULTILABEL_METRICS)})")
    present = pos > 0
    if not present.any():
        return 0.0
    values = binary_metric(base, tp, fp, pos, len(y) - pos)
    return float(np.mean(values[present]))


def find_label_cuts(probs: np.ndarray, targets: np.ndarray, metric: str = DEFAULT_MULTILABEL_METRIC, *,
                    max_rounds: int = 50) -> Tuple[np.ndarray, float]:
    """Per-label cuts maximising ``metric``; returns (cuts, metric value). See the module doc."""
    probs, targets = _check(probs, targets, metric)
    base = "f1" if metric in ("macro-f1", "micro-f1") else metric
    cuts = np.array([find_threshold(probs[:, j], targets[:, j], base)[0] for j in range(probs.shape[1])])
    if metric == "micro-f1":
        cuts = _micro_f1_ascent(probs, targets, cuts, max_rounds)
    return cuts, multilabel_metric(metric, targets, probs >= cuts)


def _micro_f1_ascent(probs: np.ndarray, targets: np.ndarray, cuts: np.ndarray, max_rounds: int) -> np.ndarray:
    """Coordinate ascent on micro-F1 with an exact sweep per label."""
    m = probs.shape[1]
    pos = targets.sum(axis=0).astype(np.float64)
    sweeps = [sweep(probs[:, j], targets[:, j]) for j in range(m)]
    decided = probs >= cuts
    tp = (targets & decided).sum(axis=0).astype(np.float64)
    fp = (~targets & decided).sum(axis=0).astype(np.float64)
    value = float(_micro(tp.sum(), fp.sum(), pos.sum()))
    for _ in range(max_rounds):
        improved = False
        for j in range(m):
            c, tpj, fpj = sweeps[j]
            others_tp, others_fp = tp.sum() - tp[j], fp.sum() - fp[j]
            values = _micro(others_tp + tpj, others_fp + fpj, pos.sum())
            g = best_cut(c, values, cuts[j])
            if values[g] > value + 1e-12:
                cuts[j], tp[j], fp[j], value, improved = c[g], tpj[g], fpj[g], float(values[g]), True
        if not improved:
            break
    return cuts


def _micro(tp: Any, fp: Any, positives: float) -> Any:
    """Micro-F1 from pooled counts (vectorised); 0 when nothing is predicted or true."""
    tp = np.asarray(tp, dtype=np.float64)
    den = tp + fp + positives  # 2TP + FP + FN = TP + FP + (TP + FN)
    return np.divide(2 * tp, den, out=np.zeros(np.shape(den)), where=den > 0)


def apply_label_cuts(params: Dict[str, Any], probs: np.ndarray) -> np.ndarray:
    """The decided label sets (boolean n x m) for ``probs`` under saved multi-label params."""
    cuts = np.asarray(params["cuts"], dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != cuts.size:
        width = probs.shape[1] if probs.ndim == 2 else 1
        raise UsageError(f"the params have {cuts.size} label cuts, the rows have {width} values")
    return probs >= cuts
