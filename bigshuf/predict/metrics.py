"""Classification metrics shared by ``bigshuf can`` and ``bigshuf threshold``, plus the
cross-validation folds both use to estimate how much of a dev-set gain survives.

Binary metrics are computed from counts (TP, FP) as numpy arrays, so the threshold sweep can
evaluate every cut point at once. Multi-class metrics are computed from predictions.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from bigshuf.predict.defaults import METRICS


def _ratio(num: Any, den: Any) -> np.ndarray:
    """num / den with 0/0 (and x/0) defined as 0: a metric over an empty set scores nothing."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def binary_metric(metric: str, tp: Any, fp: Any, positives: Any, negatives: Any) -> np.ndarray:
    """Value of ``metric`` for the binary confusion counts (vectorised over tp, fp).

    F1 is the positive class's F1; MCC is 0 when undefined (a row or column of the
    confusion matrix is empty), as is usual.
    """
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    fn = positives - tp
    tn = negatives - fp
    positives = np.asarray(positives, dtype=np.float64)  # per label (multi-label) or one count
    negatives = np.asarray(negatives, dtype=np.float64)
    assert isinstance(positives, np.ndarray) and isinstance(negatives, np.ndarray)
    if metric == "accuracy":
        return (tp + tn) / np.maximum(positives + negatives, 1)
    if metric == "f1":
        return _ratio(2 * tp, 2 * tp + fp + fn)
    if metric == "mcc":
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return _ratio(tp * tn - fp * fn, den)
    if metric == "balanced-accuracy":
        present = (positives > 0).astype(np.float64) + (negatives > 0)
        return (_ratio(tp, positives) + _ratio(tn, negatives)) / np.maximum(present, 1)
    raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")


def multiclass_metric(metric: str, labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    """Value of ``metric`` for integer predictions.

    ``f1`` is the macro average and ``balanced-accuracy`` the mean recall, both over the classes
    present in the gold labels; ``mcc`` is the multi-class (Gorodkin) MCC.
    """
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    n = labels.size
    if n == 0:
        return 0.0
    hit = labels == preds
    if metric == "accuracy":
        return float(hit.mean())
    true_n = np.bincount(labels, minlength=n_classes).astype(np.float64)
    pred_n = np.bincount(preds, minlength=n_classes).astype(np.float64)
    tp = np.bincount(labels[hit], minlength=n_classes).astype(np.float64)
    present = true_n > 0
    if metric == "f1":
        return float(_ratio(2 * tp, pred_n + true_n)[present].mean())
    if metric == "balanced-accuracy":
        return float((tp[present] / true_n[present]).mean())
    if metric == "mcc":
        correct = tp.sum()
        num = correct * n - pred_n @ true_n
        den = np.sqrt((n * n - pred_n @ pred_n) * (n * n - true_n @ true_n))
        return float(_ratio(num, den))
    raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")


def cv_folds(labels: np.ndarray, folds: int, seed: int) -> List[np.ndarray]:
    """Stratified folds: row indices of each held-out fold, classes dealt round-robin.

    Stratifying keeps rare classes in every fold, which matters for the imbalanced data that
    threshold tuning and CAN are used on.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    assignment = np.empty(labels.size, dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(idx.size)]
        # continue the round-robin where the previous class stopped, so fold sizes stay even
        assignment[idx] = (np.arange(idx.size) + offset) % folds
        offset = (offset + idx.size) % folds
    return [np.flatnonzero(assignment == f) for f in range(folds)]


def percent(value: Optional[float], width: int = 0) -> str:
    """``0.6052`` -> ``60.52%`` (right-aligned to ``width``); ``None`` -> ``-``."""
    text = "-" if value is None else f"{100 * value:.2f}%"
    return text.rjust(width)


def cv_line(cv: Dict[str, Any], dev_gain: float) -> str:
    """The report's cross-validation line: pooled held-out before -> after, the gain, the noise
    it must beat and the fold spread."""
    noise = f"noise {100 * cv['noise']:.2f}" if cv.get("noise") is not None else "noise unknown"
    low, high = cv["spread"]
    return (f"{cv['folds']}-fold cross-validated: {percent(cv['before'])} -> {percent(cv['after'])} "
            f"({100 * cv['gain']:+.2f} points, {noise}, folds {100 * low:+.2f} to {100 * high:+.2f}; "
            f"{survival(dev_gain, cv['gain'])})")


def survival(dev_gain: float, cv_gain: float) -> str:
    """How much of an in-sample gain survives cross-validation, in words."""
    if cv_gain <= 0:
        return "no gain survives on held-out rows: the tuned setting does not generalise"
    if dev_gain <= 0:
        return "gain only on held-out rows"
    return f"{min(cv_gain / dev_gain, 1.0):.0%} of the gain survives on held-out rows"
