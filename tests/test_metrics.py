"""Every metric against an independent reference (scikit-learn) on random cases, the issue's
worked examples, and the incremental line-search forms against recomputation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    matthews_corrcoef,
)

from bigshuf.predict.metrics import (
    METRICS,
    Confusion,
    LineSearch,
    Metric,
    line_fallback,
    multiclass_metric,
)
from bigshuf.predict.multilabel import multilabel_metric
from bigshuf.predict.thresholds import find_class_weights


def _cases(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        m = int(rng.integers(2, 6))
        n = int(rng.integers(1, 40))
        y = rng.integers(0, m, n)
        p = np.where(rng.random(n) < 0.6, y, rng.integers(0, m, n))
        yield m, y, p


def _sklearn(name: str, y: np.ndarray, p: np.ndarray) -> float:
    present = np.unique(y)
    if name == "accuracy":
        return float((y == p).mean())
    if name == "f1":  # macro F1 over the classes present in the gold labels
        return float(f1_score(y, p, labels=present, average="macro", zero_division=0))
    if name == "balanced-accuracy":
        return float(balanced_accuracy_score(y, p))
    if name == "mcc":
        return float(matthews_corrcoef(y, p))
    if name == "kappa":
        with np.errstate(invalid="ignore", divide="ignore"):
            k = cohen_kappa_score(y, p)
        return 0.0 if np.isnan(k) else float(k)
    raise AssertionError(name)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@pytest.mark.parametrize("name", ["accuracy", "f1", "balanced-accuracy", "mcc", "kappa"])
def test_multiclass_metrics_match_scikit_learn(name):
    for m, y, p in _cases(150, {"accuracy": 1, "f1": 2, "balanced-accuracy": 3, "mcc": 4, "kappa": 5}[name]):
        assert multiclass_metric(name, y, p, m) == pytest.approx(_sklearn(name, y, p), abs=1e-12), (y, p)


def test_macro_f1_counts_only_the_classes_present():
    # class 2 is predicted once but never true: it is not averaged in (F1s 2/3 and 1 -> 5/6)
    assert multiclass_metric("f1", np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), 3) == pytest.approx(5 / 6)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_multilabel_micro_and_macro_f1_match_scikit_learn():
    rng = np.random.default_rng(7)
    for _ in range(100):
        n, m = int(rng.integers(1, 30)), int(rng.integers(2, 6))  # one column would be binary to sklearn
        y = rng.random((n, m)) < 0.3
        d = np.where(rng.random((n, m)) < 0.7, y, rng.random((n, m)) < 0.3)
        assert multilabel_metric("micro-f1", y, d) == pytest.approx(
            f1_score(y, d, average="micro", zero_division=0), abs=1e-12)
        present = np.flatnonzero(y.any(axis=0))
        want = f1_score(y[:, present], d[:, present], average="macro", zero_division=0) if present.size else 0.0
        assert multilabel_metric("macro-f1", y, d) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("name", [n for n, m in METRICS.items() if m.line is not None])
def test_incremental_line_forms_equal_recomputation(name):
    rng = np.random.default_rng(11)
    metric = METRICS[name]
    for _ in range(30):
        m, n = int(rng.integers(2, 5)), int(rng.integers(2, 40))
        y = rng.integers(0, m, n)
        base = rng.integers(0, m, n)
        c = int(rng.integers(0, m))
        seq = rng.permutation(np.flatnonzero(base != c))
        line = LineSearch(y, base, c, seq, base.copy(), m)
        fast = metric.line(line)
        slow = line_fallback(metric, line, np.arange(len(seq)))
        np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_a_metric_without_a_line_form_uses_the_explicit_fallback():
    """The class-weight search works for a metric that only gives its formulas (what a new metric
    needs at least): kappa without its incremental form finds the same weights' value."""
    spec = METRICS["kappa"]
    rng = np.random.default_rng(3)
    n, m = 300, 4
    y = rng.integers(0, m, n)
    logits = rng.normal(size=(n, m))
    logits[np.arange(n), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    METRICS["kappa"] = Metric(spec.name, spec.help, spec.binary, spec.multiclass)  # no line
    try:
        w_slow, v_slow = find_class_weights(probs, y, "kappa", restarts=2)
    finally:
        METRICS["kappa"] = spec
    w_fast, v_fast = find_class_weights(probs, y, "kappa", restarts=2)
    assert v_slow == pytest.approx(multiclass_metric("kappa", y, (probs * w_slow).argmax(axis=1), m))
    assert v_slow >= multiclass_metric("kappa", y, probs.argmax(axis=1), m)
    assert v_slow == pytest.approx(v_fast, abs=0.02)


def test_confusion_of_empty_classes():
    c = Confusion.of(np.array([0, 0]), np.array([0, 0]), 3)
    assert c.present.tolist() == [True, False, False] and c.tp.tolist() == [2, 0, 0]
