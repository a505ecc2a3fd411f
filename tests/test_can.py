"""CAN: the golden case, the vectorised algorithm against a per-row reference, tuning, priors,
the reference subsample, and the file-level command."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigshuf.common.errors import UsageError
from bigshuf.predict.can import CanModel, can_adjust, can_matrix, can_per_row, confident_mask, uncertainty
from bigshuf.predict.can_command import can
from bigshuf.predict.formats import LabelMap
from bigshuf.predict.priors import resolve_prior
from bigshuf.predict.reference import ReferenceSampler
from bigshuf.predict.tune import tune_can


def reference_can(row, confident, prior, alpha, iterations):
    """DESIGN.md section 3, written out literally with Python loops for one uncertain row."""
    matrix = [list(r) for r in confident] + [list(row)]
    m = len(row)
    for _ in range(iterations):
        matrix = [[v ** alpha for v in r] for r in matrix]
        sums = [sum(r[j] for r in matrix) for j in range(m)]
        matrix = [[r[j] / sums[j] * prior[j] if sums[j] else 0.0 for j in range(m)] for r in matrix]
        matrix = [[v / sum(r) if sum(r) else 0.0 for v in r] for r in matrix]
    return matrix[-1]


def reference_uncertainty(row, k):
    top = sorted(row, reverse=True)[:min(k, len(row))]
    top = [v / sum(top) for v in top]
    return -sum(v * math.log(v) for v in top if v > 0) / math.log(len(top))


def test_golden_case_from_the_paper():
    np.testing.assert_allclose(can_adjust([[0.5, 0.5]], [[0.0, 1.0]], [0.5, 0.5], 1.0, 1), [[0.75, 0.25]])
    out, uncertain = can_matrix(np.array([[0.0, 1.0], [0.5, 0.5]]))
    assert uncertain.tolist() == [False, True]
    np.testing.assert_allclose(out, [[0.0, 1.0], [0.75, 0.25]])


def test_top_k_uncertainty():
    # plain entropy would rank [0.5, 0.25, 0.25] above [0.5, 0.5, 0]; the top-2 form does not
    u = uncertainty(np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]), k=2)
    np.testing.assert_allclose(u, [reference_uncertainty([0.5, 0.25, 0.25], 2), 1.0, 0.0])
    assert u[0] < u[1]
    # k above the class count is capped
    np.testing.assert_allclose(uncertainty(np.array([[0.5, 0.5]]), k=5), [1.0])
    with pytest.raises(UsageError):
        uncertainty(np.array([[1.0]]), k=3)


prob_rows = st.integers(2, 6).flatmap(lambda m: st.tuples(
    st.lists(st.lists(st.floats(0.0, 1.0), min_size=m, max_size=m).filter(lambda r: sum(r) > 1e-3),
             min_size=0, max_size=12),
    st.lists(st.lists(st.floats(0.0, 1.0), min_size=m, max_size=m).filter(lambda r: sum(r) > 1e-3),
             min_size=1, max_size=6),
    st.lists(st.floats(0.05, 1.0), min_size=m, max_size=m),
))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(prob_rows, st.sampled_from([0.1, 0.5, 0.9, 1.0, 2.0, 5.0, 9.0]), st.integers(1, 4))
def test_vectorised_equals_per_row_definition(data, alpha, iterations):
    confident, uncertain, prior = data
    confident = [[v / sum(r) for v in r] for r in confident]
    uncertain = [[v / sum(r) for v in r] for r in uncertain]
    prior = [p / sum(prior) for p in prior]
    reference = confident or np.eye(len(prior)).tolist()  # no confident rows: identity matrix
    got = can_adjust(np.array(uncertain), np.array(confident).reshape(-1, len(prior)), prior, alpha, iterations)
    want = [reference_can(r, reference, prior, alpha, iterations) for r in uncertain]
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 10_000), st.sampled_from([2, 3, 5]), st.sampled_from([0.3, 1.0, 3.0]), st.integers(1, 3))
def test_can_matrix_with_k_equals_definition(seed, k, alpha, iterations):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(6, 0.7), size=25)
    prior = rng.dirichlet(np.ones(6))
    out, uncertain = can_matrix(probs, prior, tau=0.8, alpha=alpha, iterations=iterations, k=k)
    us = [reference_uncertainty(r, k) for r in probs]
    assert uncertain.tolist() == [u >= 0.8 for u in us]
    confident = probs[~uncertain]
    np.testing.assert_array_equal(out[~uncertain], confident)  # confident rows untouched
    reference = confident if len(confident) else np.eye(6)    # none confident: identity matrix
    for i in np.flatnonzero(uncertain):
        np.testing.assert_allclose(out[i], reference_can(probs[i], reference, prior, alpha, iterations), atol=1e-9)


def test_large_realistic_reference_matches_library_per_row_loop():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(1500, 20)) * 2.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    conf = confident_mask(probs)
    model = CanModel(probs[conf], None, 9.0, 4)
    fast = model.adjust(probs[~conf][:40])
    assert model.fallback_rows == 0  # the fast path is exact here without help
    np.testing.assert_allclose(fast, can_per_row(probs[~conf][:40], probs[conf], None, 9.0, 4), atol=1e-9)


def test_fallback_rows_are_exact_when_factors_blow_up():
    # a tiny reference and alpha 9: the correction factors leave the safe range
    ref = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    rows = np.array([[0.3, 0.3, 0.4], [0.1, 0.2, 0.7]])
    model = CanModel(ref, None, 9.0, 4)
    out = model.adjust(rows)
    assert model.fallback_rows > 0
    np.testing.assert_allclose(out, [reference_can(r, ref, [1 / 3] * 3, 9.0, 4) for r in rows], atol=1e-9)


def test_all_iterations_trajectory_matches_separate_runs():
    rng = np.random.default_rng(0)
    ref, rows = rng.dirichlet(np.ones(5), size=30), rng.dirichlet(np.ones(5), size=7)
    outs = CanModel(ref, None, 0.7, 3).adjust(rows, all_iterations=True)
    for t in (1, 2, 3):
        np.testing.assert_allclose(outs[t - 1], can_adjust(rows, ref, None, 0.7, t), atol=1e-12)


def test_small_batches_give_identical_results():
    rng = np.random.default_rng(1)
    ref, rows = rng.dirichlet(np.ones(4), size=50), rng.dirichlet(np.ones(4), size=33)
    big = CanModel(ref, None, 2.0, 3).adjust(rows)
    small = CanModel(ref, None, 2.0, 3, batch_bytes=1).adjust(rows)  # one row per batch
    np.testing.assert_allclose(big, small, atol=1e-14)


def test_prior_pulls_uncertain_rows_towards_frequent_classes():
    ref = np.array([[0.95, 0.05], [0.05, 0.95]])
    row = np.array([[0.5, 0.5]])
    assert can_adjust(row, ref, [0.8, 0.2])[0, 0] > 0.5 > can_adjust(row, ref, [0.2, 0.8])[0, 0]


def test_zero_prior_rows_stay_unchanged_in_can_matrix():
    probs = np.array([[0.98, 0.01, 0.01], [0.0, 0.5, 0.5]])
    out, uncertain = can_matrix(probs, [1.0, 0.0, 0.0], tau=0.5)
    assert uncertain.tolist() == [False, True]
    np.testing.assert_array_equal(out[1], probs[1])  # all its mass is on zero-prior classes


def test_bad_parameters():
    with pytest.raises(UsageError):
        CanModel(np.eye(2), None, 0.0, 1)
    with pytest.raises(UsageError):
        CanModel(np.eye(2), [1.0, -1.0], 1.0, 1)
    with pytest.raises(UsageError, match="2 values"):
        CanModel(np.eye(3), [0.5, 0.5], 1.0, 1)


# -- priors ----------------------------------------------------------------------------------------

def test_resolve_prior_sources(tmp_path):
    lm = LabelMap(3, ["a", "b", "c"])
    assert resolve_prior(None, lm)[1] == "uniform (default)"
    np.testing.assert_allclose(resolve_prior("1,1,2", lm)[0], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(resolve_prior('{"c": 3, "a": 1}', lm)[0], [0.25, 0, 0.75])
    labels = tmp_path / "train.txt"
    labels.write_text("a\nc\nc\n2\n")
    q, source = resolve_prior(str(labels), lm)
    np.testing.assert_allclose(q, [0.25, 0, 0.75])
    assert "train.txt" in source
    jl = tmp_path / "train.jsonl"
    jl.write_text('{"label": "b"}\n{"label": 1}\n')
    np.testing.assert_allclose(resolve_prior(str(jl), lm)[0], [0, 1, 0])
    weights = tmp_path / "prior.json"
    weights.write_text("[1, 1, 2]")
    np.testing.assert_allclose(resolve_prior(str(weights), lm)[0], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(resolve_prior("reference", lm, np.array([0, 0, 1, -1]))[0], [2 / 3, 1 / 3, 0])
    with pytest.raises(UsageError):
        resolve_prior("reference", lm, np.array([-1, -1]))
    with pytest.raises(UsageError):
        resolve_prior("1,2", lm)


# -- reference subsample -----------------------------------------------------------------------------

def test_uniform_sampler_keeps_a_capped_subset_of_real_rows():
    rows = np.arange(1000, dtype=float).reshape(-1, 1) * np.ones((1, 2))
    sampler = ReferenceSampler(2, 100, np.random.default_rng(5))
    for start in range(0, 1000, 64):
        sampler.add(rows[start:start + 64])
    kept = sampler.uniform()
    assert len(kept) == 100 and len(np.unique(kept[:, 0])) == 100
    assert kept[:, 0].min() < 200 and kept[:, 0].max() > 800  # spread over the whole stream
    assert set(kept[:, 0]) <= set(rows[:, 0]) and (kept[:, 0] == kept[:, 1]).all()  # whole rows


def test_stratified_plan_is_proportional():
    sampler = ReferenceSampler(3, 10, np.random.default_rng(0))
    probs = np.zeros((100, 3))
    probs[:70, 0] = probs[70:90, 1] = probs[90:, 2] = 1.0
    sampler.add(probs)
    plan = sampler.stratified_plan()
    assert np.bincount(plan // 100, minlength=3).tolist() == [7, 2, 1]


# -- tuning ------------------------------------------------------------------------------------------

def imbalanced(n, m, seed):
    rng = np.random.default_rng(seed)
    prior = np.linspace(1, 5, m) / np.linspace(1, 5, m).sum()
    y = rng.choice(m, n, p=prior)
    logits = rng.normal(size=(n, m)) * 1.3
    logits[np.arange(n), y] += 1.5
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), y, prior


def test_exact_tune_finds_best_grid_point_and_reports_cv():
    probs, y, prior = imbalanced(300, 5, 0)
    res = tune_can(probs, y, prior, taus=[0.7, 0.9], alphas=[0.5, 1.0, 2.0], iterations=[1, 2], ks=[2, 3],
                   folds=3, seed=0, search="exact")
    assert len(res.table) == 2 * 3 * 2 * (2 + 1)  # k 2 and 3 with the top-k rule, plus the any-k rule
    # every grid point's accuracy is that of a direct run of can_matrix; the winner is the best
    for row in res.table:
        out, _ = can_matrix(probs, prior, tau=row["tau"], alpha=row["alpha"], iterations=row["iterations"],
                            k=row["k"], rule=row["rule"])
        assert row["accuracy"] == pytest.approx(float((out.argmax(axis=1) == y).mean()))
    assert res.accuracy == max(r["accuracy"] for r in res.table)
    assert res.baseline == pytest.approx(float((probs.argmax(axis=1) == y).mean()))
    assert res.cv is not None and res.cv.folds == 3 and len(res.cv.chosen) == 3
    assert res.cv.before == pytest.approx(res.baseline)


def test_tune_is_deterministic_and_needs_labels():
    probs, y, prior = imbalanced(120, 4, 1)
    args = dict(taus=[0.9], alphas=[1.0, 3.0], iterations=[1, 2], ks=[3], folds=2, seed=7)
    assert tune_can(probs, y, prior, **args).cv == tune_can(probs, y, prior, **args).cv
    with pytest.raises(UsageError):
        tune_can(probs, np.r_[y[:-1], -1], prior, **args)


# -- file-level command ---------------------------------------------------------------------------------

def write_rows(path, probs, labels=None):
    with open(path, "w") as f:
        for i, p in enumerate(probs):
            row = {"id": i, "probs": p.tolist()}
            if labels is not None:
                row["label"] = int(labels[i])
            f.write(json.dumps(row) + "\n")
    return str(path)


def test_can_file_matches_can_matrix_and_reports(tmp_path):
    probs, y, prior = imbalanced(200, 4, 2)
    src = write_rows(tmp_path / "dev.jsonl", probs, y)
    report = can(src, str(tmp_path / "out.jsonl"), prior=",".join(map(str, prior)), iterations=2, alpha=2.0)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    out, uncertain = can_matrix(probs, prior, iterations=2, alpha=2.0)
    np.testing.assert_allclose([r["probs"] for r in rows], out, atol=1e-12)
    assert [r["pred"] for r in rows] == out.argmax(axis=1).tolist()
    assert report.uncertain == int(uncertain.sum()) and report.rows == 200
    acc = report.accuracy
    assert acc is not None
    assert acc["overall"].after == pytest.approx(float((out.argmax(axis=1) == y).mean()))
    assert acc["confident"].before == acc["confident"].after
    assert report.prior is not None and report.prior.source == "given"


def test_reference_file_and_cap(tmp_path):
    dev, ydev, prior = imbalanced(300, 4, 3)
    test, _, _ = imbalanced(100, 4, 4)
    ref = write_rows(tmp_path / "dev.jsonl", dev, ydev)
    src = write_rows(tmp_path / "test.jsonl", test)
    report = can(src, str(tmp_path / "out.jsonl"), reference=ref, prior="reference")
    out, _ = can_matrix(test, np.bincount(ydev, minlength=4) / 300, reference=dev)
    got = [json.loads(line)["probs"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(got, out, atol=1e-12)
    assert report.accuracy is None  # the test rows have no labels
    capped = can(src, str(tmp_path / "c.jsonl"), reference=ref, max_reference=20, subsample="stratified")
    assert capped.reference is not None and capped.reference["used"] == 20 and capped.reference["subsample"] == "stratified"
    can(src, str(tmp_path / "d.jsonl"), reference=ref, max_reference=20, subsample="stratified")
    assert (tmp_path / "c.jsonl").read_text() == (tmp_path / "d.jsonl").read_text()  # seeded


def test_tune_then_apply_saved_params(tmp_path):
    probs, y, prior = imbalanced(200, 4, 5)
    src = write_rows(tmp_path / "dev.jsonl", probs, y)
    params = tmp_path / "can.json"
    report = can(src, tune=True, save_params=str(params), prior=",".join(map(str, prior)), folds=2,
                 grid={"taus": [0.8, 0.9], "alphas": [1.0, 2.0], "iterations": [1, 2], "ks": [3]}, search="exact")
    saved = json.loads(params.read_text())
    assert {k: saved[k] for k in ("tau", "alpha", "iterations", "k", "rule")} == report.tune["best"]
    np.testing.assert_allclose(saved["prior"], prior)
    applied = can(src, str(tmp_path / "out.jsonl"), params=str(params))
    assert report.tune is not None and applied.params == report.tune["best"]
    assert applied.accuracy is not None and applied.accuracy["overall"].after == pytest.approx(report.tune["accuracy"])
    assert applied.prior is not None and "saved in" in applied.prior.source
    override = can(src, str(tmp_path / "o.jsonl"), params=str(params), tau=0.5)
    assert override.params["tau"] == 0.5


def test_scores_are_rejected_for_can(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"score": 0.3}\n')
    with pytest.raises(UsageError, match="probability vector"):
        can(str(path), str(tmp_path / "o.jsonl"))


def test_subnormal_probabilities_do_not_give_nan():
    """A probability of 5e-324 once made both paths compute 0 * inf: the result was NaN."""
    got = can_adjust(np.array([[0.0, 5e-324, 1.0]]), np.array([[0.0, 0.0, 1.0]]), [1 / 3] * 3, 1.0, 1)
    np.testing.assert_allclose(got, [[0.0, 2 / 3, 1 / 3]], atol=1e-12)


def test_rows_are_the_same_bytes_however_they_are_batched():
    """With several iterations the matrix products' shape followed the batch (--memory, chunking,
    CPU count), and ~1e-16 differences changed 48 of 300 000 output rows; now every product has
    one shape (fixed blocks, the last padded)."""
    rng = np.random.default_rng(8)
    ref, rows = rng.dirichlet(np.ones(40) * 0.3, size=700), rng.dirichlet(np.ones(40), size=300)
    model = CanModel(ref, None, 2.0, 3)
    whole = model.adjust(rows)
    for pieces in ([1, 6, 293], [100, 200], [63, 65, 172]):
        parts = np.split(rows, np.cumsum(pieces)[:-1])
        assert np.array_equal(np.concatenate([model.adjust(p) for p in parts]), whole)
    for batch_bytes in (1, 1 << 16):
        assert np.array_equal(CanModel(ref, None, 2.0, 3, batch_bytes=batch_bytes).adjust(rows), whole)


def test_same_bytes_at_any_memory_and_no_cap_note_when_it_does_not_bite(tmp_path):
    from click.testing import CliRunner

    from bigshuf.cli import main
    probs, _, _ = imbalanced(3000, 40, 9)
    src = write_rows(tmp_path / "p.jsonl", probs)
    outs = []
    for memory in ("12M", "1G"):
        res = CliRunner().invoke(main, ["can", src, "--iterations", "2", "--prior", "uniform", "-S", memory,
                                        "-o", str(tmp_path / f"{memory}.jsonl")], catch_exceptions=False)
        assert res.exit_code == 0, res.stderr
        assert "capped" not in res.stderr  # the cap (thousands of rows) is above the reference's size
        outs.append((tmp_path / f"{memory}.jsonl").read_bytes())
    assert outs[0] == outs[1]
