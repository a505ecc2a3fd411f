"""The issue-12 algorithms against brute force: the official any-k uncertainty rule, multi-label
cuts (per-label, macro and micro F1), the permutation-free accuracy line search, first-order
tuning against exact CAN, and successive halving against the exhaustive grid."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigshuf.predict.can import (
    adjust_first_order,
    can_adjust,
    can_matrix,
    check_prior,
    confident_mask,
    reference_column_sums,
    uncertainty,
)
from bigshuf.predict.multilabel import find_label_cuts, multilabel_metric
from bigshuf.predict.thresholds import _Ascent, find_class_weights
from bigshuf.predict.tune import tune_can

# -- the official uncertainty rule ---------------------------------------------------------------


def official_confused(row, tau):
    """KMnP/can get_confused_instances_topk for one row, written out (without its 1e-16 epsilon)."""
    for k in range(2, len(row) + 1):
        top = sorted(row)[-k:]
        top = [v / sum(top) for v in top]
        ent = -sum(v * math.log(v) / math.log(k) for v in top if v > 0)
        if ent >= tau:
            return True
    return False


def test_any_k_counts_a_tie_as_uncertain_where_top_3_does_not():
    rows = np.array([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.9, 0.05, 0.05]])
    np.testing.assert_allclose(uncertainty(rows, 3), [0.6309, 0.9464, 0.3590], atol=1e-4)
    assert confident_mask(rows, 0.9, 3).tolist() == [True, False, True]           # the tie is "confident"
    assert confident_mask(rows, 0.9, 3, rule="any-k").tolist() == [False, False, True]
    np.testing.assert_allclose(uncertainty(rows, rule="any-k")[:2], [1.0, 0.9464], atol=1e-4)  # k = 2, k = 3


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(2, 7).flatmap(lambda m: st.lists(
    st.lists(st.floats(0, 1), min_size=m, max_size=m).filter(lambda r: sum(r) > 1e-3), min_size=1, max_size=8)),
    st.sampled_from([0.3, 0.6, 0.9]))
def test_any_k_rule_equals_the_official_loop(rows, tau):
    probs = np.array([[v / sum(r) for v in r] for r in rows])
    want = [official_confused(r, tau) for r in probs.tolist()]
    assert (~confident_mask(probs, tau, rule="any-k")).tolist() == want


# -- multi-label cuts ------------------------------------------------------------------------------

def all_cuts(column):
    """Every distinct decision of one label: above the top score, and at each score."""
    return [np.inf, *sorted(set(column.tolist()))]


def test_per_label_f1_cuts_are_exact():
    rng = np.random.default_rng(0)
    probs = rng.random((60, 4))
    targets = rng.random((60, 4)) < probs * 0.8
    cuts, value = find_label_cuts(probs, targets, "f1")
    for j in range(4):
        best = max(multilabel_metric("f1", targets[:, [j]], (probs[:, [j]] >= c)) for c in all_cuts(probs[:, j]))
        assert multilabel_metric("f1", targets[:, [j]], probs[:, [j]] >= cuts[j]) == pytest.approx(best)
    assert value == pytest.approx(multilabel_metric("macro-f1", targets, probs >= cuts))
    assert find_label_cuts(probs, targets, "macro-f1")[1] == pytest.approx(value)  # separable: the same


@pytest.mark.parametrize("seed", range(6))
def test_micro_f1_ascent_is_exact_per_coordinate_and_near_the_global_optimum(seed):
    rng = np.random.default_rng(seed)
    probs = np.round(rng.random((14, 3)), 2)
    targets = rng.random((14, 3)) < probs
    cuts, value = find_label_cuts(probs, targets, "micro-f1")
    assert value == pytest.approx(multilabel_metric("micro-f1", targets, probs >= cuts))
    # no single cut can improve (coordinate-wise exact)
    for j in range(3):
        for c in all_cuts(probs[:, j]):
            trial = cuts.copy()
            trial[j] = c
            assert multilabel_metric("micro-f1", targets, probs >= trial) <= value + 1e-12
    # and brute force over every combination of cuts
    best = max(multilabel_metric("micro-f1", targets, probs >= np.array(c))
               for c in itertools.product(*(all_cuts(probs[:, j]) for j in range(3))))
    assert value >= best - 0.05


# -- the accuracy line search -------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 10_000), st.integers(3, 5))
def test_permutation_free_accuracy_search_finds_the_best_interval(seed, m):
    rng = np.random.default_rng(seed)
    probs = np.round(rng.dirichlet(np.ones(m), size=50), 2) + 1e-3  # rounded: many tied breakpoints
    y = rng.integers(0, m, 50)
    t = rng.uniform(0.3, 1.0, m)
    for c in range(m):
        state = _Ascent(probs, y, t.copy(), "accuracy")
        best = _brute_best(state, c)
        got = state._line_search(c)
        if got is None:
            assert best <= state.value + 1e-12
        else:
            state.set(c, got)
            assert (probs * state.t).argmax(axis=1).tolist() == state.first.tolist()  # top-two kept right
            assert (state.first == y).mean() == pytest.approx(best)


def _brute_best(state: _Ascent, c: int) -> float:
    """Brute force: accuracy at a point inside every interval between breakpoints of t[c]."""
    t = state.t.copy()
    others = np.delete(state.probs * t, c, axis=1).max(axis=1)
    with np.errstate(divide="ignore"):
        breaks = np.unique(others / state.probs[:, c])
    points = np.r_[breaks[0] / 2, (breaks[1:] + breaks[:-1]) / 2, breaks[-1] * 2]
    best = -1.0
    for p in points[np.isfinite(points)]:
        t[c] = p
        best = max(best, float(((state.probs * t).argmax(axis=1) == state.y).mean()))
    return best


def test_class_weights_explored_on_a_subsample_match_the_full_search():
    rng = np.random.default_rng(4)
    m = 6
    prior = np.linspace(1, 4, m) / np.linspace(1, 4, m).sum()
    y = rng.choice(m, 3000, p=prior)
    logits = rng.normal(size=(3000, m)) + 1.2 * np.eye(m)[y] - 0.6 * np.log(prior * m)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    _, full = find_class_weights(probs, y, explore_rows=0)
    t, sub = find_class_weights(probs, y, explore_rows=800)
    assert sub >= full - 0.002 and sub > (probs.argmax(axis=1) == y).mean()
    assert sub == pytest.approx(((probs * t).argmax(axis=1) == y).mean())


# -- tuning --------------------------------------------------------------------------------------------

def test_first_order_can_is_exact_for_one_iteration_and_close_for_more():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(5, 0.6), size=3000)
    conf = confident_mask(probs, 0.8)
    ref, rows = probs[conf], probs[~conf]
    q = check_prior(rng.dirichlet(np.ones(5)), 5)
    for alpha in (0.5, 1.0, 3.0):
        sums = reference_column_sums(ref, q, alpha, 3)
        outs = adjust_first_order(rows, sums, q, alpha)
        np.testing.assert_allclose(outs[0], can_adjust(rows, ref, q, alpha, 1), atol=1e-12)
        exact = can_adjust(rows, ref, q, alpha, 3)
        assert np.abs(outs[2] - exact).max() < 5e-3  # O(1/n): the row's own effect on the column sums
        assert (outs[2].argmax(axis=1) != exact.argmax(axis=1)).mean() < 0.01


def imbalanced(n, m, seed):
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, m + 1)
    prior /= prior.sum()
    y = rng.choice(m, n, p=prior)
    logits = rng.normal(size=(n, m)) * 1.2
    logits[np.arange(n), y] += rng.gamma(2.0, 1.4, n)
    logits -= 0.4 * np.log(prior * m)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), y


def test_halving_lands_near_the_exhaustive_grid_and_the_exact_grid():
    probs, y = imbalanced(40_000, 8, 2)
    grid = dict(taus=[0.7, 0.9], alphas=[0.5, 1.0, 3.0], iterations=[1, 2], ks=[3], folds=0, max_reference=20_000)
    halving = tune_can(probs, y, "labels", search="halving", **grid)
    exhaustive = tune_can(probs, y, "labels", search="exhaustive", **grid)
    assert len(halving.search["rungs"]) > 1 and halving.search["rungs"][0]["rows"] < len(y)
    assert halving.accuracy >= exhaustive.accuracy - 0.002
    assert exhaustive.accuracy == max(r["accuracy"] for r in exhaustive.table)
    # the first-order winner, run exactly, is as good as the exact grid's winner (within noise)
    b = exhaustive.best
    out, _ = can_matrix(probs, np.bincount(y, minlength=8) / len(y), tau=b.tau, alpha=b.alpha,
                        iterations=b.iterations, k=b.k, rule=b.rule)
    small = slice(0, 4000)
    exact = tune_can(probs[small], y[small], "labels", search="exact", **grid)
    assert (out.argmax(axis=1) == y).mean() >= exhaustive.accuracy - 0.002
    assert exact.best.rule in ("top-k", "any-k")


def test_tuning_grid_includes_the_any_k_rule():
    probs, y = imbalanced(600, 5, 3)
    res = tune_can(probs, y, "labels", taus=[0.8], alphas=[1.0], iterations=[1], ks=[2, 3], folds=2)
    assert {(r["rule"], r["k"]) for r in res.table} == {("top-k", 2), ("top-k", 3), ("any-k", 3)}
    assert res.search["grid_points"] == 3 and res.cv is not None and res.cv.folds == 2
