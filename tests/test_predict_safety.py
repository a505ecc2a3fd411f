"""Issue 22: tuning that never quietly hurts, label-shift priors, the memory budget, progress.

The statistical checks use fixed seeds; each names the mutation it was checked against."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bigshuf
from bigshuf.cli import main
from bigshuf.predict import tune as tune_module
from bigshuf.predict.budget import Budget
from bigshuf.predict.can import can_matrix
from bigshuf.predict.metrics import cv_folds
from bigshuf.predict.priors import bbse_prior, em_prior
from bigshuf.predict.safety import CrossValidation, adopt, looks_sorted


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def gaussian_model(n: int, prior: np.ndarray, source: np.ndarray, seed: int, sep: float = 1.2):
    """Rows drawn from classes with ``prior``; posteriors exact for a model trained under
    ``source`` (1-D Gaussians per class, means ``sep`` apart): a calibrated model under shift."""
    rng = np.random.default_rng(seed)
    m = len(prior)
    y = rng.choice(m, n, p=prior)
    x = rng.normal(y * sep, 1.0)
    like = np.exp(-0.5 * (x[:, None] - np.arange(m)[None, :] * sep) ** 2)
    post = like * source
    return post / post.sum(axis=1, keepdims=True), y


def write(path: Path, probs: np.ndarray, y: np.ndarray) -> Path:
    path.write_text("".join(json.dumps({"probs": p.tolist(), "label": int(c)}) + "\n" for p, c in zip(probs, y)))
    return path


SOURCE = np.full(4, 0.25)
TARGET = np.array([0.55, 0.25, 0.15, 0.05])


# -- label shift -----------------------------------------------------------------------------------

def test_em_recovers_a_known_shift():
    """Mutation checked: without the division by the source prior (w = p * prior) the estimate
    no longer finds the truth (checked: this test fails)."""
    source = np.array([0.1, 0.2, 0.3, 0.4])  # the model was trained on these frequencies
    dev, _ = gaussian_model(20_000, source, source, 1)
    test, _ = gaussian_model(20_000, TARGET, source, 2)
    est, iterations, converged = em_prior(test, dev.mean(axis=0))
    assert converged and iterations > 1
    assert np.abs(est - TARGET).max() < 0.02, est


def test_bbse_recovers_a_known_shift():
    dev, y_dev = gaussian_model(20_000, SOURCE, SOURCE, 3)
    test, _ = gaussian_model(20_000, TARGET, SOURCE, 4)
    confusion = np.bincount(dev.argmax(axis=1) * 4 + y_dev, minlength=16).reshape(4, 4)
    est = bbse_prior(confusion, np.bincount(test.argmax(axis=1), minlength=4))
    assert np.abs(est - TARGET).max() < 0.03, est


def test_prior_estimate_end_to_end(tmp_path):
    dev = write(tmp_path / "dev.jsonl", *gaussian_model(3000, SOURCE, SOURCE, 5))
    probs, y = gaussian_model(3000, TARGET, SOURCE, 6)
    test = write(tmp_path / "test.jsonl", probs, y)
    for prior in ("estimate", "estimate-bbse"):
        out = tmp_path / f"out-{prior}.jsonl"
        report = bigshuf.can(test, out, reference=dev, prior=prior)
        assert report.prior is not None
        est = np.array(report.prior.values)
        assert np.abs(est - TARGET).max() < 0.06
        assert report.prior.estimate["method"] == ("em" if prior == "estimate" else "bbse")
        dev_probs = np.array([json.loads(line)["probs"] for line in dev.read_text().splitlines()])
        want, _ = can_matrix(probs, est, reference=dev_probs)  # CAN, with the estimate as its prior
        got = np.array([json.loads(line)["probs"] for line in out.read_text().splitlines()])
        np.testing.assert_allclose(got, want, atol=1e-12)
    res = invoke("can", test, "--reference", dev, "--prior", "estimate", "--method", "prior-shift",
                 "-o", tmp_path / "shift.jsonl", "--report", tmp_path / "r.json")
    assert res.exit_code == 0, res.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    w = np.array(r["prior"]["values"]) / np.array(r["prior"]["estimate"]["start"])
    want = probs * w / (probs * w).sum(axis=1, keepdims=True)
    got = np.array([json.loads(line)["probs"] for line in (tmp_path / "shift.jsonl").read_text().splitlines()])
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert r["accuracy"]["overall"]["after"] > r["accuracy"]["overall"]["before"] + 0.04  # the Bayes correction


@pytest.mark.parametrize("args,message", [
    (["--prior", "estimate"], "--prior estimate needs --reference"),
    (["--method", "prior-shift"], "--method prior-shift needs --reference"),
])
def test_estimates_need_a_reference(tmp_path, args, message):
    src = write(tmp_path / "t.jsonl", *gaussian_model(50, SOURCE, SOURCE, 7))
    res = invoke("can", src, *args)
    assert res.exit_code == 2 and res.stderr.startswith(f"bigshuf: error: {message}") and res.stdout == ""


def test_bbse_needs_reference_labels(tmp_path):
    probs, _ = gaussian_model(50, SOURCE, SOURCE, 8)
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"probs": p.tolist()}) + "\n" for p in probs))
    src = write(tmp_path / "t.jsonl", probs, np.zeros(50, dtype=int))
    res = invoke("can", src, "--reference", ref, "--prior", "estimate-bbse")
    assert res.exit_code == 2 and "needs gold labels in the --reference rows" in res.stderr


def test_bbse_confusion_matrix_is_charged_to_memory(tmp_path):
    """A 4 000-class confusion matrix and its solve were not counted: 6 000 x 4 000 rows peaked at
    490 MiB under --memory 256M. Now it is a usage error before any work when it cannot fit."""
    m = 1200  # 32 B x 1200^2 = 44 MiB, more than half of 64M
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(m), 8)
    np.save(tmp_path / "p.npy", probs)
    np.save(tmp_path / "y.npy", probs.argmax(axis=1))
    args = ["can", tmp_path / "p.npy", "--reference", tmp_path / "p.npy", "--reference-labels", tmp_path / "y.npy",
            "--prior", "estimate-bbse", "-o", tmp_path / "o.npy", "-q"]
    res = invoke(*args, "-S", "64M")
    assert res.exit_code == 2 and "1,200 x 1,200 confusion matrix" in res.stderr and "--prior estimate" in res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "o.npy").exists()


def test_bbse_warns_when_the_confusion_matrix_is_rank_deficient(tmp_path):
    """A reference that never predicts a class leaves BBSE's weights undetermined; the prior was
    returned without a word."""
    probs, y = gaussian_model(300, SOURCE, SOURCE, 9)
    probs = probs[probs.argmax(axis=1) != 3]  # the reference never predicts class 3
    ref = write(tmp_path / "ref.jsonl", probs, y[:len(probs)])
    src = write(tmp_path / "t.jsonl", *gaussian_model(100, SOURCE, SOURCE, 10))
    res = invoke("can", src, "--reference", ref, "--prior", "estimate-bbse", "-o", tmp_path / "o.jsonl", "-q")
    assert res.exit_code == 0, res.stderr
    assert "confusion matrix has rank 3 for 4 classes: the reference never predicts 1 of them" in res.stderr


# -- safe tuning -------------------------------------------------------------------------------------

def imbalanced(n: int, seed: int):
    """A model calibrated for a uniform prior on data where class 0 holds 70%: class weights
    and CAN with the label prior both gain a lot, on any sample."""
    return gaussian_model(n, np.array([0.7, 0.1, 0.1, 0.1]), SOURCE, seed, sep=0.8)


@pytest.mark.parametrize("command", ["can", "threshold"])
def test_a_clear_gain_is_kept(tmp_path, command):
    dev = write(tmp_path / "dev.jsonl", *imbalanced(2000, 9))
    params = tmp_path / "p.json"
    extra = ["--tune", "--taus", "0.5,0.9", "--alphas", "1,2", "--iterations-grid", "1", "--ks", "3"] \
        if command == "can" else []
    res = invoke(command, dev, *extra, "--save-params", params)
    assert res.exit_code == 0, res.stderr
    saved = json.loads(params.read_text())
    assert not saved.get("unchanged") and "keeps" not in res.stderr, res.stderr
    assert saved["cv"]["gain"] > saved["cv"]["noise"] > 0


@pytest.mark.parametrize("command", ["can", "threshold"])
def test_the_head_of_a_label_sorted_file_is_not_tuned_on(tmp_path, command):
    probs, y = imbalanced(4000, 10)
    order = np.argsort(y, kind="stable")[:1000]  # head -n 1000 of the file sorted by label: one class
    dev = write(tmp_path / "dev.jsonl", probs[order], y[order])
    params = tmp_path / "p.json"
    extra = ["--tune", "--taus", "0.5,0.9", "--alphas", "1,2", "--iterations-grid", "1", "--ks", "3"] \
        if command == "can" else []
    res = invoke(command, dev, *extra, "--save-params", params)
    assert res.exit_code == 0, res.stderr
    assert "warning: only 1 of 4 classes have labelled rows" in res.stderr
    assert json.loads(params.read_text())["unchanged"] is True
    test_probs, test_y = imbalanced(300, 11)
    test = write(tmp_path / "test.jsonl", test_probs, test_y)
    out = tmp_path / "out.jsonl"
    res = invoke(command, test, "--params", params, "-o", out)
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pred"] for r in rows] == test_probs.argmax(axis=1).tolist()  # the usual rule, unchanged


@pytest.mark.parametrize("command", ["can", "threshold"])
def test_a_whole_file_sorted_by_label_gets_a_warning(tmp_path, command):
    probs, y = imbalanced(1000, 16)
    order = np.argsort(y, kind="stable")
    dev = write(tmp_path / "dev.jsonl", probs[order], y[order])
    extra = ["--tune", "--taus", "0.9", "--alphas", "1", "--iterations-grid", "1", "--ks", "3"] \
        if command == "can" else []
    res = invoke(command, dev, *extra, "--cv", "2")
    assert res.exit_code == 0, res.stderr
    assert "warning: the labels look sorted" in res.stderr


def test_threshold_apply_warns_when_labels_lose(tmp_path):
    probs, y = imbalanced(400, 12)
    test = write(tmp_path / "test.jsonl", probs, y)
    params = tmp_path / "w.json"
    params.write_text(json.dumps({"bigshuf": "threshold", "mode": "multiclass", "metric": "accuracy",
                                  "weights": [0.01, 1, 1, 1]}))
    res = invoke("threshold", test, "--params", params, "-o", tmp_path / "o.jsonl", "-q")
    assert res.exit_code == 0
    assert res.stderr.startswith("bigshuf: warning: THE SAVED MULTICLASS RULE LOWERED ACCURACY on the 400 labelled")


def test_adopt_needs_a_held_out_gain_above_the_noise():
    steady = CrossValidation(5, 0.70, 0.72, [0.019, 0.021, 0.02, 0.018, 0.022])
    noisy = CrossValidation(5, 0.70, 0.71, [0.09, -0.05, 0.06, -0.04, -0.01])
    assert adopt(0.03, steady, True) == (True, "")
    assert adopt(0.03, noisy, True)[0] is False and noisy.signs_disagree
    assert adopt(0.03, steady, False)[0] is False   # labels cover too few classes
    assert adopt(0.0, steady, True)[0] is False     # nothing gained in-sample
    assert adopt(0.03, None, True)[0] is True       # no CV asked for: the in-sample gain decides


def test_looks_sorted_flags_sorted_files_and_rarely_random_ones():
    """False-alarm rate on random orders (fixed seeds) and detection of sorted ones. Mutation
    checked: a threshold of 1.1 expected changes flags about half of the random orders."""
    rng = np.random.default_rng(13)
    alarms = sum(looks_sorted(rng.choice(5, 200, p=[0.5, 0.2, 0.1, 0.1, 0.1])) for _ in range(500))
    assert alarms == 0
    y = rng.choice(5, 200)
    assert looks_sorted(np.sort(y)) and looks_sorted(np.sort(y)[::-1])
    assert not looks_sorted(np.zeros(100, dtype=int))  # one class: nothing to say about order


def test_cv_folds_are_stratified_and_shuffled():
    """On a label-sorted file every fold gets its share of every class, and each row is equally
    likely to land in each fold (chi-square over 400 seeds). Mutation checked: without the
    per-class permutation, row 0 is always in fold 0 (statistic in the thousands)."""
    y = np.repeat([0, 1, 2], [30, 20, 10])
    folds = cv_folds(y, 5, 0)
    for held in folds:
        assert np.bincount(y[held], minlength=3).tolist() == [6, 4, 2]
    seeds = 400
    counts = np.zeros((len(y), 5))
    for seed in range(seeds):
        for f, held in enumerate(cv_folds(y, 5, seed)):
            counts[held, f] += 1
    expected = seeds / 5
    chi2 = ((counts - expected) ** 2 / expected).sum(axis=1)  # 4 degrees of freedom per row
    assert chi2.mean() < 6 and chi2.max() < 30, (chi2.mean(), chi2.max())


# -- progress and memory --------------------------------------------------------------------------

def test_tuning_progress_is_one_bar_that_reaches_its_total(monkeypatch):
    bars = []

    class Bar:
        def __init__(self, total, desc, enabled, unit="it"):
            self.total, self.done, self.closed = total, 0, False
            bars.append(self)

        def update(self, n=1):
            self.done += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(tune_module, "progress_bar", Bar)
    probs, y = imbalanced(5000, 14)
    tune_module.tune_can(probs, y, "labels", taus=[0.5, 0.9], alphas=[1, 2, 3], iterations=[1, 2], ks=[2, 3],
                         folds=3, progress=True)
    assert len(bars) == 1 and bars[0].closed
    assert bars[0].done == bars[0].total > 0


def test_budget_sizes_rows_by_bytes():
    small, big = Budget("64M").fit(10_000), Budget("1G").fit(10_000)
    assert small.chunk_rows < big.chunk_rows <= 1 << 15
    assert small.reference_rows(100_000, 1) * 10_000 * 8 * 4 <= 32 << 20
    assert Budget("1G").fit(40).chunk_rows > 10_000 and Budget("64G").fit(40).chunk_rows == 1 << 15
    assert not Budget("1G").fit(10_000).identity_fits(1) and Budget("1G").fit(1000).identity_fits(1)


def test_a_search_too_big_for_memory_runs_on_a_sample(tmp_path):
    dev = write(tmp_path / "dev.jsonl", *imbalanced(3000, 15))
    res = invoke("threshold", dev, "--memory", "1M", "--cv", "0")
    assert res.exit_code == 0, res.stderr
    assert "warning: searching on a uniform sample of" in res.stderr and "of 3000 rows" in res.stderr


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_identity_column_sums_without_the_identity(alpha):
    """Tuning never builds the m x m identity reference: its column sums are known."""
    from bigshuf.predict.can import reference_column_sums

    prior = np.array([0.5, 0.0, 0.3, 0.2])
    want = reference_column_sums(np.eye(4), prior, alpha, 4)
    got = tune_module._column_sums(np.empty((0, 4)), prior, alpha, 4)
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b)


# -- found by the adversarial pass --------------------------------------------------------------

def test_sorted_head_covering_most_classes_is_not_tuned_on(tmp_path):
    """The head of a label-sorted file that still covers 5 of 8 classes: a prior from these
    labels and weights fitted to them would favour those 5 classes on test."""
    probs, y = gaussian_model(4000, np.full(8, 1 / 8), np.full(8, 1 / 8), 17, sep=0.7)
    order = np.argsort(y, kind="stable")[:2500]
    assert np.unique(y[order]).size == 5
    dev = write(tmp_path / "dev.jsonl", probs[order], y[order])
    for command, extra in (("threshold", []), ("can", ["--tune", "--taus", "0.9", "--alphas", "1,2",
                                                       "--iterations-grid", "1", "--ks", "3"])):
        res = invoke(command, dev, *extra, "--save-params", tmp_path / f"{command}.json")
        assert res.exit_code == 0, res.stderr
        assert "only 5 of 8 classes have labelled rows and the labels look sorted" in res.stderr
        assert json.loads((tmp_path / f"{command}.json").read_text())["unchanged"] is True


@pytest.mark.parametrize("command", ["can", "threshold"])
def test_tuning_without_cross_validation_says_it_is_unchecked(tmp_path, command):
    dev = write(tmp_path / "dev.jsonl", *imbalanced(400, 18))
    extra = ["--tune", "--taus", "0.9", "--alphas", "1,2", "--iterations-grid", "1", "--ks", "3"] \
        if command == "can" else []
    res = invoke(command, dev, *extra, "--cv", "0", "-q")
    assert res.exit_code == 0
    assert "bigshuf: warning: no cross-validation (--cv 0 or 1): the tuned setting is kept on its gain" in res.stderr


def test_a_vector_of_no_values_is_described_as_such(tmp_path):
    src = tmp_path / "e.jsonl"
    src.write_text('{"probs": [], "label": 0}\n')
    res = invoke("can", src)
    assert res.exit_code == 2 and f"{src}:1: the vector under 'probs' has no values" in res.stderr


def test_a_row_wider_than_the_budget_is_refused(tmp_path):
    src = tmp_path / "wide.jsonl"
    src.write_text(json.dumps({"probs": [1 / 6000] * 6000}) + "\n")
    res = invoke("can", src, "--memory", "1M", "--prior", "uniform")
    assert res.exit_code == 2 and "a row of 6,000 values needs about" in res.stderr and "cannot hold one" in res.stderr


def test_the_search_sample_is_uniform_and_in_file_order():
    """read_all's sample when rows exceed --memory: every row equally likely, file order kept,
    reproducible by seed (chi-square over 1500 seeds, rows added in chunks so compaction runs).
    Mutation checked: keeping the first rows instead of the smallest keys fails (statistic ~1e4)."""
    from bigshuf.predict.reading import _Reservoir

    n, cap, seeds = 60, 12, 1500
    counts = np.zeros(n)
    for seed in range(seeds):
        r = _Reservoir(cap, seed)
        for start in range(0, n, 7):
            rows = np.arange(start, min(start + 7, n))
            r.add(rows.astype(float), rows, rows, None)
        values, labels, lines, targets = r.result()
        assert len(labels) == cap and np.all(np.diff(labels) > 0) and targets is None
        counts[labels] += 1
    expected = seeds * cap / n
    chi2 = float(((counts - expected) ** 2 / (expected * (1 - cap / n))).sum())  # ~ n - 1 = 59 degrees
    assert chi2 < 100, chi2
    again = _Reservoir(cap, 3)
    again.add(np.arange(n, dtype=float), np.arange(n), np.arange(n), None)
    first = _Reservoir(cap, 3)
    first.add(np.arange(n, dtype=float), np.arange(n), np.arange(n), None)
    assert first.result()[1].tolist() == again.result()[1].tolist()


def test_copies_of_a_row_share_a_fold():
    y = np.array([0, 1, 0, 1, 2, 2, 0, 1] * 5)
    groups = np.array([0, 1, 2, 3, 4, 5, 6, 7] * 5)  # 8 distinct rows, each 5 times
    for seed in range(5):
        folds = cv_folds(y, 4, seed, groups)
        assert sorted(np.concatenate(folds).tolist()) == list(range(40))
        for held in folds:
            for g in np.unique(groups[held]):
                assert set(np.flatnonzero(groups == g)) <= set(held.tolist())
    assert [f.tolist() for f in cv_folds(y, 4, 3, np.arange(40))] == [f.tolist() for f in cv_folds(y, 4, 3)]


def test_a_dev_file_of_repeated_rows_is_not_tuned_on(tmp_path):
    """60 distinct rows repeated 25 times: with copies on both sides of a fold the weights looked
    +18 points better held out and lost 3.8 on test (found by the adversarial pass)."""
    rng = np.random.default_rng(20)  # (gaussian_model's rows lie on a curve: two are float16-close)
    probs = rng.dirichlet(np.ones(6), 60)
    y = (probs.cumsum(axis=1) < rng.random((60, 1))).sum(axis=1)  # drawn from the calibrated probs
    rep = np.repeat(np.arange(60), 25)[rng.permutation(1500)]
    dev = write(tmp_path / "dev.jsonl", probs[rep], y[rep])
    res = invoke("threshold", dev, "--save-params", tmp_path / "w.json")
    assert res.exit_code == 0, res.stderr
    assert "1440 of 1500 rows repeat another row" in res.stderr
    assert json.loads((tmp_path / "w.json").read_text())["unchanged"] is True


def test_multilabel_label_files_are_held_as_bits(tmp_path):
    """A 20 000 x 2 000 multi-label .npy label file held as Python lists peaked at 457 MiB under
    --memory 256M (found by the adversarial pass); one bit per label is n x m / 8 bytes."""
    from bigshuf.predict.formats import LabelMap
    from bigshuf.predict.reading import PackedLabels, read_label_file

    rng = np.random.default_rng(21)
    y = rng.random((5000, 13)) < 0.3
    np.save(tmp_path / "y.npy", y.astype(np.int8))
    (tmp_path / "y.txt").write_text("".join(json.dumps(np.flatnonzero(r).tolist()) + "\n" for r in y))
    for name in ("y.npy", "y.txt"):
        packed = read_label_file(str(tmp_path / name), LabelMap(13, None), multi_label=True)
        assert isinstance(packed, PackedLabels) and len(packed) == 5000 and packed.bits.nbytes == 5000 * 2
        assert np.array_equal(packed[0:5000], y) and np.array_equal(packed[4095:4200], y[4095:4200])
    np.save(tmp_path / "bad.npy", np.full((3, 12), 1, dtype=np.int8))
    probs = tmp_path / "p.npy"
    np.save(probs, rng.random((3, 13)))
    res = invoke("threshold", probs, "--labels", tmp_path / "bad.npy", "--multi-label")
    assert res.exit_code == 2 and "expected an n x 13 array of 0/1 labels, found shape (3, 12)" in res.stderr
    np.save(tmp_path / "two.npy", np.full((3, 13), 2, dtype=np.int8))
    res = invoke("threshold", probs, "--labels", tmp_path / "two.npy", "--multi-label")
    assert res.exit_code == 2 and res.stderr.endswith("two.npy:1: multi-label labels in a .npy file must be 0 or 1\n")


def test_unchanged_params_with_an_explicit_prior_run_can_with_default_knobs(tmp_path):
    """Saved "unchanged" answers the dev prior; --prior estimate under label shift is another
    question (found by the adversarial pass: the estimate was computed, then not used)."""
    dev = write(tmp_path / "dev.jsonl", *gaussian_model(600, SOURCE, SOURCE, 22))
    probs, y = gaussian_model(600, TARGET, SOURCE, 23)
    test = write(tmp_path / "test.jsonl", probs, y)
    params = tmp_path / "u.json"
    params.write_text(json.dumps({"bigshuf": "can", "unchanged": True, "prior": [0.25] * 4}))
    kept = bigshuf.can(test, tmp_path / "a.jsonl", params=params, reference=dev)
    assert kept.params == {"unchanged": True}
    moved = bigshuf.can(test, tmp_path / "b.jsonl", params=params, reference=dev, prior="estimate")
    assert moved.params["tau"] == 0.9 and moved.uncertain and moved.uncertain > 0


# -- adversarial review (issue 22, round 2) ---------------------------------------------------------

@pytest.mark.parametrize("spec", ["1_000,1,1", "\u0668,1,1", "1,-1,1"])
def test_prior_numbers_follow_the_csv_decimal_rule(tmp_path, spec):
    """float() reads 1_000 and Arabic-Indic digits; the prior must not (a file names its line)."""
    from bigshuf.common.errors import UsageError
    from bigshuf.predict.formats import LabelMap
    from bigshuf.predict.priors import resolve_prior
    lm = LabelMap(3, None)
    with pytest.raises(UsageError):
        resolve_prior(spec, lm)
    f = tmp_path / "prior.txt"
    f.write_text("# weights\n" * 0 + "\n".join(spec.split(",")) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=rf"{f}:\d+: "):
        resolve_prior(str(f), lm)


def test_a_label_file_of_one_line_per_class_is_not_read_as_weights(tmp_path):
    """m lines of integers < m could be m labels or m counts: refused, exit 2; a 0 entry of an
    explicit prior is warned about."""
    probs = np.array([[0.5, 0.2, 0.3], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5], [0.4, 0.4, 0.2]])
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"probs": p.tolist()}) + "\n" for p in probs))
    lab = tmp_path / "lab3.txt"
    lab.write_text("1\n0\n2\n")
    r = invoke("can", src, "--prior", lab, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "lab3.txt" in r.output and "comma list" in r.output
    r = invoke("can", src, "--prior", "1,0,1", "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0 and "warning:" in r.output and "prior 0" in r.output


def test_near_copies_of_a_row_are_one_group_and_share_a_fold(tmp_path):
    """Copies scaled by 1 + 1e-7 N(0,1) (float noise of a model run twice) evaded the exact
    duplicate rule: 200 dev rows x 5 such copies made threshold adopt weights on a "+9.70"
    held-out gain that lost 2.0 points on test."""
    from bigshuf.predict.safety import duplicate_groups
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(6), 60)
    y = (probs.cumsum(axis=1) < rng.random((60, 1))).sum(axis=1)  # drawn from the calibrated probs
    rep = np.repeat(np.arange(60), 25)[rng.permutation(1500)]
    jittered = np.abs(probs[rep] * (1 + 1e-7 * rng.standard_normal((1500, 6))))
    groups = duplicate_groups(jittered)
    assert np.unique(groups).size == 60
    assert (groups[:, None] == groups[None, :]).sum() == (rep[:, None] == rep[None, :]).sum()
    far = probs * (1 + 1e-2 * rng.standard_normal(probs.shape))  # different rows stay apart
    assert np.unique(duplicate_groups(np.r_[probs, far])).size == 120
    dev = write(tmp_path / "dev.jsonl", jittered, y[rep])
    res = invoke("threshold", dev, "--save-params", tmp_path / "w.json")
    assert "1440 of 1500 rows repeat another row" in res.stderr
    assert json.loads((tmp_path / "w.json").read_text())["unchanged"] is True


@pytest.mark.parametrize("noise", [2e-6, 1e-5, 1e-4])
def test_float16_like_near_copies_are_still_copies(tmp_path, noise):
    """Copies with noise just above the old 1e-6 tolerance (a model run in float16 or in other
    batches) bypassed both the fold grouping and the repeat warning: 60 dev rows x 10 copies at
    2e-6 made threshold keep weights on a "+4.50" held-out gain that lost 6.65 points on test."""
    from bigshuf.predict.safety import distinct_counts, duplicate_groups
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(6), 40)
    y = (probs.cumsum(axis=1) < rng.random((40, 1))).sum(axis=1)
    rep = np.repeat(np.arange(40), 10)[rng.permutation(400)]
    noisy = probs[rep] * (1 + noise * rng.standard_normal((400, 6)))
    noisy /= noisy.sum(axis=1, keepdims=True)
    groups = duplicate_groups(noisy)
    assert np.unique(groups).size == 40
    assert distinct_counts(y[rep], 6, groups).sum() == 40
    res = invoke("threshold", write(tmp_path / "dev.jsonl", noisy, y[rep]), "-q")
    assert "360 of 400 rows repeat another row" in res.stderr


def test_a_dense_binary_file_is_not_one_group():
    """A coarse tolerance links thousands of distinct binary rows into chains; they are cut."""
    from bigshuf.predict.safety import duplicate_groups
    p = np.random.default_rng(0).uniform(size=20000)
    assert np.bincount(duplicate_groups(np.c_[p, 1 - p])).max() < 100


def test_em_on_a_small_or_one_sided_reference_is_floored_and_warned(tmp_path):
    """A 50-row reference took EM 725 iterations to priors like 3e-189 (test 66.5 -> 45.8); a
    reference that never predicts a class gave exactly [0, 0, 1] with no zero-prior warning."""
    m = 8
    source = np.full(m, 1 / m)
    ref, y_ref = gaussian_model(24, source, source, 30, sep=0.6)  # 3 rows a class
    test, y = gaussian_model(400, source, source, 31, sep=0.6)
    start = np.asarray(ref.mean(axis=0))
    est, iterations, _ = em_prior(test, start)
    assert iterations <= 500
    r = write(tmp_path / "ref.jsonl", ref, y_ref)
    t = write(tmp_path / "t.jsonl", test, y)
    res = invoke("can", t, "--reference", r, "--prior", "estimate", "--method", "prior-shift",
                 "-o", tmp_path / "o.jsonl", "--report", tmp_path / "r.json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    est = np.array(rep["prior"]["values"])
    assert est.min() >= 0.1 * np.array(rep["prior"]["estimate"]["start"]).min() * 0.999
    assert "only 24 reference rows" in res.stderr
    one_sided = tmp_path / "ref1.jsonl"  # never predicts classes 0 and 1
    one_sided.write_text("".join(json.dumps({"probs": [0.0, 0.0, 1.0]}) + "\n" for _ in range(30)))
    t3 = tmp_path / "t3.jsonl"
    t3.write_text("".join(json.dumps({"probs": p}) + "\n" for p in ([0.6, 0.3, 0.1], [0.2, 0.5, 0.3]) * 10))
    res = invoke("can", t3, "--reference", one_sided, "--prior", "estimate", "-o", tmp_path / "o3.jsonl",
                 "--report", tmp_path / "r3.json")
    assert res.exit_code == 0, res.stderr
    assert min(json.loads((tmp_path / "r3.json").read_text())["prior"]["values"]) > 0
    assert "floor" in res.stderr


@pytest.mark.parametrize("command", ["threshold", "can"])
def test_a_dev_set_skewed_to_a_few_classes_is_not_tuned_on(tmp_path, command):
    """2 900 rows of 8 classes and 3 rows of each of 32 others: the < 20-per-class check used
    the average (no warning) and tuning lost 6-7 points on test. Here 4 classes x 150 rows and
    3 rows of each of 8 others."""
    m = 12
    probs, y = gaussian_model(6000, np.full(m, 1 / m), np.full(m, 1 / m), 40, sep=0.5)
    rng = np.random.default_rng(41)
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), 150 if c < 4 else 3, replace=False) for c in range(m)])
    pick = pick[rng.permutation(pick.size)]
    dev = write(tmp_path / "dev.jsonl", probs[pick], y[pick])
    extra = ["--tune", "--prior", ",".join(["1"] * m)] if command == "can" else []
    res = invoke(command, dev, *extra, "--save-params", tmp_path / "p.json")
    assert res.exit_code == 0, res.stderr
    assert "8 of 12 classes have fewer than 20 distinct labelled rows" in res.stderr
    assert "not spread like a sample" in res.stderr
    assert json.loads((tmp_path / "p.json").read_text())["unchanged"] is True
    if command == "can":
        assert "far from the model's mean prediction" in res.stderr


def test_classes_with_few_rows_keep_their_untuned_weight(tmp_path):
    """On a 200-row dev file threshold fitted weights of 0.02-0.9 to classes with 1-2 rows and
    adopted them in 3 of 8 fold seeds (test -4.6 points): classes with fewer than 10 distinct
    rows are left out of the search (one shared weight)."""
    m = 6
    probs, y = gaussian_model(3000, np.full(m, 1 / m), np.full(m, 1 / m), 50, sep=0.5)
    rng = np.random.default_rng(51)
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), 30 if c < 3 else 6, replace=False) for c in range(m)])
    dev = write(tmp_path / "dev.jsonl", probs[pick], y[pick])
    res = invoke("threshold", dev, "--cv", "0", "--save-params", tmp_path / "w.json")
    assert res.exit_code == 0, res.stderr
    w = json.loads((tmp_path / "w.json").read_text())["weights"]
    assert w[3] == w[4] == w[5], w
    from bigshuf.predict.thresholds import find_class_weights
    frozen = np.array([False, False, False, True, True, True])
    t, _ = find_class_weights(probs[pick], y[pick], frozen=frozen)
    assert t[3] == t[4] == t[5] and len(set(t[:3])) > 1
    # and a held-out gain above the noise is not enough when one fold loses (sample 11 of 200
    # random rows: CV +2.5, noise 0.79, test -0.4)
    one_fold_loses = CrossValidation(5, 0.70, 0.747, [0.06, 0.06, 0.06, 0.06, -0.005])
    assert one_fold_loses.gain > 2 * one_fold_loses.noise
    assert adopt(0.03, one_fold_loses, True)[0] is False



def test_threshold_search_gives_freed_arrays_back(tmp_path, monkeypatch):
    """What glibc kept of freed arrays (the sample's reservoir and the reading chunks) was not in
    the budget: 150 000 x 200 rows at -S 100M peaked at 168-170 MiB, over the 164 MiB bound (150
    MiB now); .npy 20 000 x 2 000 at 128M 180-199 MiB against 192 (150 now). The pages are handed
    back between the reading pass and the search."""
    from bigshuf.common import heap
    from bigshuf.predict import threshold_command

    calls = []

    class FakeLibc:
        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    real_groups = threshold_command.duplicate_groups

    def groups(values):  # the search's first step after the reading pass
        calls.append(("search",))
        return real_groups(values)

    monkeypatch.setattr(heap, "GLIBC", FakeLibc())
    monkeypatch.setattr(threshold_command, "duplicate_groups", groups)
    probs, y = gaussian_model(200, SOURCE, SOURCE, 12)
    res = invoke("threshold", write(tmp_path / "dev.jsonl", probs, y), "-q")
    assert res.exit_code == 0, res.stderr
    assert calls[:2] == [("trim", 0), ("search",)]
