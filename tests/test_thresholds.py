"""Threshold search: exact binary sweep, multi-class weights vs scipy's Powell, metrics, files."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from bigshuf.common.errors import InputError, UsageError
from bigshuf.predict.metrics import SINGLE_LABEL_METRICS as METRICS
from bigshuf.predict.metrics import binary_metric, cv_folds, multiclass_metric
from bigshuf.predict.threshold_command import threshold
from bigshuf.predict.thresholds import apply_threshold, find_class_weights, find_threshold


def metric_by_definition(metric, y, p):
    """Binary metrics straight from their textbook definitions."""
    tp = sum(a and b for a, b in zip(y, p))
    fp = sum((not a) and b for a, b in zip(y, p))
    fn = sum(a and not b for a, b in zip(y, p))
    tn = len(y) - tp - fp - fn
    if metric == "accuracy":
        return (tp + tn) / len(y)
    if metric == "f1":
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    if metric == "mcc":
        den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return (tp * tn - fp * fn) / den if den else 0.0
    if metric == "kappa":  # (p_o - p_e) / (1 - p_e), 0 when chance agreement is total
        n = len(y)
        p_o = (tp + tn) / n
        p_e = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n / n
        return (p_o - p_e) / (1 - p_e) if p_e != 1 else 0.0
    recalls = [tp / (tp + fn)] if tp + fn else []
    recalls += [tn / (tn + fp)] if tn + fp else []
    return sum(recalls) / len(recalls)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=1, max_size=30),
       st.sampled_from(METRICS))
def test_binary_sweep_is_the_exact_global_optimum(rows, metric):
    scores = np.array([s / 8 for s, _ in rows])  # few distinct values: many ties
    y = np.array([b for _, b in rows])
    cut, value = find_threshold(scores, y, metric)
    # the claimed value is what the cut really achieves ...
    assert value == pytest.approx(metric_by_definition(metric, y, scores >= cut), abs=1e-12)
    # ... and no cut does better (every distinct score, and above all of them)
    best = max(metric_by_definition(metric, y, scores >= c) for c in [*np.unique(scores), np.inf])
    assert value == pytest.approx(best, abs=1e-12)


def test_cut_is_the_midpoint_between_neighbouring_scores():
    scores = np.array([0.1, 0.2, 0.6, 0.9])
    y = np.array([0, 0, 1, 1])
    cut, value = find_threshold(scores, y, "accuracy")
    assert cut == pytest.approx(0.4) and value == 1.0
    # all rows positive, or none: the cut sits on the outermost score
    assert find_threshold(np.array([0.3, 0.7]), np.array([1, 1]), "accuracy")[0] == 0.3
    cut, _ = find_threshold(np.array([0.3, 0.7]), np.array([0, 0]), "accuracy")
    assert cut > 0.7 and (np.array([0.3, 0.7]) >= cut).sum() == 0


def test_ties_prefer_the_cut_nearest_the_usual_rule():
    # every cut between 0.2 and 0.8 is perfect; 0.5 (the midpoint) is the one nearest 0.5
    cut, _ = find_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), "f1")
    assert cut == pytest.approx(0.5)
    # raw scores (not probabilities): nearest 0
    cut, _ = find_threshold(np.array([-3.0, -2.0, 2.0, 3.0]), np.array([0, 0, 1, 1]), "accuracy")
    assert cut == pytest.approx(0.0)


def test_sweep_handles_many_rows_quickly():
    rng = np.random.default_rng(0)
    y = rng.random(200_000) < 0.1
    scores = rng.normal(size=y.size) + y
    cut, value = find_threshold(scores, y, "mcc")
    pred = scores >= cut
    tp, fp = (y & pred).sum(), (~y & pred).sum()
    assert value == pytest.approx(float(binary_metric("mcc", tp, fp, y.sum(), (~y).sum())))


def imbalanced(n, m, seed):
    """Imbalanced classes, and a model whose scores ignore the imbalance."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(m, 0.5))
    y = rng.choice(m, n, p=prior)
    logits = rng.normal(size=(n, m)) * 1.5
    logits[np.arange(n), y] += 1.2
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), y


def powell(probs, y, metric):
    m = probs.shape[1]
    res = minimize(lambda t: -multiclass_metric(metric, y, (probs * np.abs(t)).argmax(axis=1), m),
                   np.ones(m), method="Powell")
    return -res.fun


@pytest.mark.parametrize("seed,m", [(0, 3), (1, 5), (2, 8), (3, 5)])
@pytest.mark.parametrize("metric", METRICS)
def test_multiclass_weights_at_least_as_good_as_powell(seed, m, metric):
    probs, y = imbalanced(1500, m, seed)
    weights, value = find_class_weights(probs, y, metric)
    preds = (probs * weights).argmax(axis=1)
    assert value == pytest.approx(multiclass_metric(metric, y, preds, m), abs=1e-12)
    assert value >= powell(probs, y, metric) - 1e-12
    assert value >= multiclass_metric(metric, y, probs.argmax(axis=1), m)  # never worse than argmax
    assert (weights > 0).all() and weights.max() == pytest.approx(1.0)


def test_multiclass_metrics_match_definitions():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    assert multiclass_metric("accuracy", y, p, 3) == pytest.approx(4 / 6)
    f1 = [2 * 1 / (2 + 2), 2 * 1 / (2 + 1), 2 * 2 / (2 + 3)]  # per class 2TP/(pred+true)
    assert multiclass_metric("f1", y, p, 3) == pytest.approx(np.mean(f1))
    assert multiclass_metric("balanced-accuracy", y, p, 3) == pytest.approx(np.mean([1 / 2, 1, 2 / 3]))
    # binary MCC equals the two-class case of the multi-class formula
    yb, pb = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    assert multiclass_metric("mcc", yb, pb, 2) == pytest.approx(metric_by_definition("mcc", yb == 1, pb == 1))


def test_cv_folds_are_stratified_partitions():
    y = np.array([0] * 20 + [1] * 5)
    folds = cv_folds(y, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(25))
    assert all((y[f] == 1).sum() == 1 for f in folds)  # the rare class is in every fold
    assert [f.tolist() for f in folds] == [f.tolist() for f in cv_folds(y, 5, seed=0)]


def test_apply_threshold_modes():
    assert apply_threshold({"mode": "binary", "cut": 0.5, "positive": 1}, np.array([0.2, 0.5, 0.9])).tolist() == [0, 1, 1]
    assert apply_threshold({"mode": "binary", "cut": 0.5, "positive": 0}, np.array([[0.6, 0.4]])).tolist() == [0]
    probs = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]])
    assert apply_threshold({"mode": "multiclass", "weights": [1.0, 2.0, 1.0]}, probs).tolist() == [1, 1]
    with pytest.raises(UsageError):
        apply_threshold({"mode": "multiclass", "weights": [1.0, 2.0]}, probs)


# -- files -------------------------------------------------------------------------------------------

def write_binary(path, n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 2.0)))  # the usual 0.5 cut is far off: tuning gains
    path.write_text("".join(json.dumps({"id": i, "score": float(s[i]), "label": int(y[i])}) + "\n" for i in range(n)))
    return str(path), s, y


def test_search_save_and_apply_binary(tmp_path):
    dev, s, y = write_binary(tmp_path / "dev.jsonl", 300, 0)
    test, ts, ty = write_binary(tmp_path / "test.jsonl", 200, 1)
    result = threshold(dev, metric="f1", save_params=str(tmp_path / "cut.json"))
    saved = json.loads((tmp_path / "cut.json").read_text())
    assert saved["mode"] == "binary" and saved["metric"] == "f1"
    assert saved["cut"] == pytest.approx(find_threshold(s, y, "f1")[0])
    assert result.dev is not None and result.dev.after >= result.dev.before
    assert result.cv is not None and set(result.cv) >= {"folds", "before", "after", "gain", "noise"}
    applied = threshold(test, str(tmp_path / "out.jsonl"), params=str(tmp_path / "cut.json"))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["pred"] for r in rows] == (ts >= saved["cut"]).astype(int).tolist()
    assert list(rows[0]) == ["id", "score", "label", "pred"]
    assert applied.metric == "f1"  # the metric saved with the params


def test_search_multiclass_file(tmp_path):
    probs, y = imbalanced(400, 4, 5)
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps({"p": p.tolist(), "y": int(c)}) + "\n" for p, c in zip(probs, y)))
    result = threshold(str(path), str(tmp_path / "out.jsonl"), metric="balanced-accuracy", folds=3)
    weights = np.array(result.params["weights"])
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["pred"] for r in rows] == (probs * weights).argmax(axis=1).tolist()
    assert result.dev is not None and result.dev.after == pytest.approx(
        multiclass_metric("balanced-accuracy", y, (probs * weights).argmax(axis=1), 4))


def test_search_needs_labels_and_params_must_fit(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"probs": [0.2, 0.8], "label": 1}\n{"probs": [0.4, 0.6]}\n')
    with pytest.raises(InputError, match=r"p.jsonl:2: no gold label"):
        threshold(str(path))
    params = tmp_path / "w.json"
    params.write_text(json.dumps({"bigshuf": "threshold", "mode": "multiclass", "weights": [1, 1, 1]}))
    with pytest.raises(UsageError, match="3 class weights"):
        threshold(str(path), str(tmp_path / "o.jsonl"), params=str(params))
    assert not (tmp_path / "o.jsonl").exists()
    params.write_text('{"bigshuf": "can", "tau": 0.9}')
    with pytest.raises(InputError, match="not a threshold one"):
        threshold(str(path), params=str(params))
