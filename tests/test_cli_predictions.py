"""`bigshuf can` and `bigshuf threshold` from the command line: the issue's examples, pipes,
reports, and one-line errors that leave the destination untouched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_cli
from helpers import invoke as invoke_cli
from helpers import one_line_error, run

import bigshuf
from bigshuf.cli import main
from bigshuf.common.errors import UsageError
from bigshuf.predict.can import can_matrix


def invoke(*args: str, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def predictions(n: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    prior = np.linspace(1, 3, m) / np.linspace(1, 3, m).sum()
    y = rng.choice(m, n, p=prior)
    logits = rng.normal(size=(n, m)) * 1.3
    logits[np.arange(n), y] += 1.5
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), y


@pytest.fixture
def files(tmp_path: Path):
    """dev/test prediction files (labelled), training labels, and a binary score file."""
    out = {}
    for name, n, seed in (("dev", 240, 1), ("test", 160, 2)):
        probs, y = predictions(n, 5, seed)
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": i, "probs": p.tolist(), "label": int(c)}) + "\n"
                                for i, (p, c) in enumerate(zip(probs, y))))
        out[name], out[name + "_probs"], out[name + "_y"] = str(path), probs, y
    _, train_y = predictions(1000, 5, 3)
    (tmp_path / "train_labels.txt").write_text("\n".join(map(str, train_y)) + "\n")
    out["train"] = str(tmp_path / "train_labels.txt")
    out["prior"] = np.bincount(train_y, minlength=5) / 1000
    rng = np.random.default_rng(4)
    yb = (rng.random(200) < 0.3).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(size=200) + 1.5 * yb - 1)))
    (tmp_path / "bin.jsonl").write_text("".join(json.dumps({"score": float(a), "label": int(b)}) + "\n"
                                                for a, b in zip(s, yb)))
    out["bin"] = str(tmp_path / "bin.jsonl")
    out["dir"] = tmp_path
    return out


def read_rows(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# -- the examples -------------------------------------------------------------------------

def test_can_with_training_prior(files):
    out = files["dir"] / "fixed.jsonl"
    res = invoke("can", files["dev"], "-o", str(out), "--prior", files["train"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""  # rows went to the file; the report to stderr
    expected, _ = can_matrix(files["dev_probs"], files["prior"])
    np.testing.assert_allclose([r["probs"] for r in read_rows(out)], expected, atol=1e-12)
    assert "label frequencies of" in res.stderr and "uncertain" in res.stderr
    assert "accuracy" in res.stderr and "overall" in res.stderr


def test_tune_save_then_apply_to_test_with_dev_reference(files):
    params = files["dir"] / "can.json"
    res = invoke("can", files["dev"], "--tune", "--save-params", str(params), "--prior", files["train"],
                 "--taus", "0.8,0.9", "--alphas", "0.5,1,2", "--iterations-grid", "1,2", "--ks", "3", "--cv", "3")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""  # tuning writes no rows without -o
    assert "tau  alpha  iters" in res.stderr and "best:" in res.stderr and "cross-validated" in res.stderr
    saved = json.loads(params.read_text())
    assert saved["bigshuf"] == "can" and saved["cv"]["folds"] == 3
    out = files["dir"] / "fixed.jsonl"
    res = invoke("can", files["test"], "--params", str(params), "--reference", files["dev"], "-o", str(out))
    assert res.exit_code == 0, res.stderr
    if saved.get("unchanged"):  # 240 rows: the gain did not beat the fold noise
        assert "CAN not applied" in res.stderr
        expected = files["test_probs"]
    else:
        expected, _ = can_matrix(files["test_probs"], saved["prior"], tau=saved["tau"], alpha=saved["alpha"],
                                 iterations=saved["iterations"], k=saved["k"], reference=files["dev_probs"],
                                 rule=saved["rule"])
    np.testing.assert_allclose([r["probs"] for r in read_rows(out)], expected, atol=1e-12)


def test_threshold_search_and_apply(files):
    cut = files["dir"] / "cut.json"
    res = invoke("threshold", files["bin"], "--metric", "f1", "--save-params", str(cut))
    assert res.exit_code == 0, res.stderr
    assert "binary cut" in res.stderr
    assert "of the gain survives" in res.stderr or "no gain survives" in res.stderr
    decided = files["dir"] / "decided.jsonl"
    res = invoke("threshold", files["bin"], "--params", str(cut), "-o", str(decided))
    assert res.exit_code == 0, res.stderr
    c = json.loads(cut.read_text())["cut"]
    assert all(r["pred"] == int(r["score"] >= c) for r in read_rows(decided))
    # per-class weights for multi-class data; params on stdout when not saved
    res = invoke("threshold", files["dev"], "-q")  # one class has 17 rows: only that warning
    assert res.exit_code == 0 and all("fewer than 20 distinct labelled rows" in x for x in res.stderr.splitlines())
    assert json.loads(res.stdout)["mode"] == "multiclass"


def test_pipe_through_stdin_and_stdout(files):
    text = Path(files["dev"]).read_text()
    res = invoke("can", "-", "-q", input=text)
    assert res.exit_code == 0
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    expected, _ = can_matrix(files["dev_probs"])
    np.testing.assert_allclose([r["probs"] for r in rows], expected, atol=1e-12)
    assert [r["id"] for r in rows] == list(range(240))


def test_subprocess_pipe_and_report(files):
    report = files["dir"] / "report.json"
    proc = run_cli(["can", "-", "--prior", "uniform", "--report", str(report)],
                   input=Path(files["dev"]).read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 240
    rep = json.loads(report.read_text())
    assert rep["rows"] == 240 and rep["confident"] + rep["uncertain"] == 240
    assert rep["prior"]["source"] == "uniform"
    assert set(rep["accuracy"]) == {"overall", "confident", "uncertain"}
    assert b"accuracy" in proc.stderr


def test_threshold_round_trip_scores_with_the_saved_metric(files):
    cut = files["dir"] / "cut.json"
    assert invoke("threshold", files["bin"], "--metric", "mcc", "--save-params", str(cut), "-q").exit_code == 0
    res = invoke("threshold", files["bin"], "--params", str(cut))
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 200
    assert "mcc on the 200 labelled rows" in res.stderr


def test_csv_round_trip(files):
    path = files["dir"] / "p.csv"
    probs = files["dev_probs"][:20]
    header = "id,prob_a,prob_b,prob_c,prob_d,prob_e,label\n"
    path.write_text(header + "".join(f"{i}," + ",".join(repr(float(v)) for v in p) + f",{'abcde'[c]}\n"
                                     for i, (p, c) in enumerate(zip(probs, files["dev_y"][:20]))))
    out = files["dir"] / "out.csv"
    assert invoke("can", str(path), "-o", str(out), "-q").exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == header.strip() + ",pred"
    expected, _ = can_matrix(probs)
    got = np.array([[float(v) for v in line.split(",")[1:6]] for line in lines[1:]])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert [line.split(",")[-1] for line in lines[1:]] == ["abcde"[i] for i in expected.argmax(axis=1)]


# -- errors: options (bad rows: the table in test_reliability_predictions.py) ----------------------

def test_missing_file_and_directory(tmp_path):
    res = invoke("can", str(tmp_path / "none.jsonl"))
    assert res.exit_code == 2 and "none.jsonl: no such file" in res.stderr
    res = invoke("threshold", str(tmp_path))
    assert res.exit_code == 2 and "is a directory" in res.stderr


OPTION_CONFLICTS = [
    ("can", {"save_params": "x.json"}, ["--save-params", "x.json"], "--save-params needs --tune"),
    ("can", {"tune": True, "params": "x.json"}, ["--tune", "--params", "x.json"],
     "--tune searches the parameters; it cannot also read them with --params"),
    ("can", {"taus": [0.5]}, ["--taus", "0.5"], "need --tune (got --taus)"),
    ("can", {"rules": ["any-k"]}, ["--rules", "any-k"], "need --tune (got --rules)"),
    ("can", {"tau": 1.5}, ["--tau", "1.5"], "tau must be between 0 and 1, got 1.5"),
    ("can", {"iterations": 0}, ["--iterations", "0"], "alpha must be > 0, iterations >= 1 and k >= 2"),
    ("can", {"max_reference": -1}, ["--max-reference", "-1"], "--max-reference must be >= 0"),
    ("threshold", {"params": "a.json", "save_params": "b.json"}, ["--params", "a.json", "--save-params", "b.json"],
     "--params applies saved params; --save-params saves searched ones: use one"),
    ("threshold", {"params": "a.json", "positive": "1"}, ["--params", "a.json", "--positive", "1"],
     "--positive is fixed by the params file"),
    ("threshold", {"multi_label": True, "positive": "1"}, ["--multi-label", "--positive", "1"],
     "--positive is for binary data, not --multi-label"),
    ("threshold", {"metric": "micro-f1"}, ["--metric", "micro-f1"],
     "--metric micro-f1 is for multi-label data: add --multi-label"),
    ("threshold", {"metric": "macro-f1"}, ["--metric", "macro-f1"],
     "--metric macro-f1 is for multi-label data: add --multi-label"),
    ("can", {"cv": -1}, ["--cv", "-1"], "--cv must be >= 0"),
    ("can", {"memory": "0"}, ["--memory", "0"], "size must be at least one byte"),
    ("threshold", {"memory": "lots"}, ["--memory", "lots"], "invalid size 'lots'"),
    ("can", {"method": "prior-shift", "tune": True}, ["--method", "prior-shift", "--tune"],
     "--tune searches CAN's knobs; --method prior-shift has none"),
]


@pytest.mark.parametrize("command,keywords,flags,message", OPTION_CONFLICTS)
def test_option_rules_live_in_the_library_and_the_cli_says_the_same(files, command, keywords, flags, message):

    run = {"can": bigshuf.can, "threshold": bigshuf.threshold}[command]
    res = invoke(command, files["dev"], *flags)
    assert res.exit_code == 2, res.stderr
    with pytest.raises(UsageError) as err:
        run(files["dev"], **keywords)
    assert message in str(err.value)
    assert res.stderr == f"bigshuf: error: {err.value}\n"


def test_scores_are_not_probability_vectors(files):
    res = invoke("can", files["bin"])
    assert res.exit_code == 2 and "probability vector" in res.stderr


# -- what the user is told ----------------------------------------------------------------------------

def test_default_prior_is_named_with_its_risk_on_stderr(files):
    res = invoke("can", files["dev"], "-o", str(files["dir"] / "o.jsonl"))
    assert res.exit_code == 0
    warning = next(line for line in res.stderr.splitlines() if "uniform prior" in line)
    assert warning.startswith("bigshuf: warning: no --prior given") and "--prior train_labels.txt" in warning
    # -q keeps the warnings (in the same form, as bigshuf shuffle prints its own), drops the report
    res = invoke("can", files["dev"], "-o", str(files["dir"] / "o.jsonl"), "-q")
    assert "uniform prior" in res.stderr and "accuracy      rows" not in res.stderr
    assert next(line for line in res.stderr.splitlines() if "uniform prior" in line) == warning
    # with a prior there is no such warning
    res = invoke("can", files["dev"], "-o", str(files["dir"] / "o.jsonl"), "--prior", files["train"])
    assert "uniform prior" not in res.stderr


def test_lowered_accuracy_is_the_first_line(tmp_path):
    # confident rows all say class 0, uncertain ones lean to class 0 and are class 0: a prior
    # that favours class 1 pushes them over, and accuracy drops
    rows = [{"probs": [0.97, 0.02, 0.01], "label": 0}] * 40 + [{"probs": [0.4, 0.35, 0.25], "label": 0}] * 10
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = invoke("can", str(src), "-o", str(tmp_path / "o.jsonl"), "--prior", "0.1,0.8,0.1")
    assert res.exit_code == 0
    first = res.stderr.splitlines()[0]
    assert first.startswith("bigshuf: warning: CAN LOWERED ACCURACY on the 50 labelled rows: 100.00% -> ")
    report = bigshuf_can(str(src), str(tmp_path / "o.jsonl"), prior="0.1,0.8,0.1").to_dict()
    assert report["lowered_accuracy"] is True and report["warnings"][0].startswith("CAN LOWERED ACCURACY")


def test_small_reference_set_is_warned_about(files):
    # 240 rows, 5 classes: far fewer confident rows than the official max(5 x classes, 1000)
    res = invoke("can", files["dev"], "-o", str(files["dir"] / "o.jsonl"), "--prior", files["train"])
    assert "max(5 x classes, 1000) = 1000" in res.stderr


def test_any_k_rule_from_the_command_line(files):
    out = files["dir"] / "fixed.jsonl"
    res = invoke("can", files["dev"], "-o", str(out), "--prior", files["train"], "--uncertainty", "any-k", "-q")
    assert res.exit_code == 0
    expected, _ = can_matrix(files["dev_probs"], files["prior"], rule="any-k")
    np.testing.assert_allclose([r["probs"] for r in read_rows(out)], expected, atol=1e-12)


def bigshuf_can(*args, **kwargs):

    return bigshuf.can(*args, **kwargs)


@pytest.mark.parametrize("metric", ["accuracy", "balanced-accuracy"])
def test_multi_label_accuracy_metrics_work(tmp_path, metric):
    f = tmp_path / "m.jsonl"
    f.write_text('{"probs":[0.9,0.2],"labels":[0]}\n{"probs":[0.3,0.8],"labels":[1]}\n'
                 '{"probs":[0.6,0.7],"labels":[0,1]}\n')
    p = invoke_cli(["threshold", f, "--multi-label", "--metric", metric, "--cv", "0", "-q"])
    assert p.returncode == 0, p.stderr
    assert b'"mode": "multilabel"' in p.stdout


def test_no_confident_row_with_many_classes_is_a_clean_error(tmp_path):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    f = tmp_path / "w.jsonl"
    f.write_text("".join(json.dumps({"probs": rng.dirichlet(np.ones(12000)).tolist()}) + "\n" for _ in range(2)))
    one_line_error(invoke_cli(["can", f, "-q", "-o", tmp_path / "o.jsonl"]), 2, "identity reference")


def test_numerical_warnings_do_not_leak(tmp_path):
    f = tmp_path / "mll.csv"
    f.write_text("id,logit_cat,logit_dog,labels\n1,3,-2,cat\n2,-1e300,1e300,dog\n")
    p = run(["threshold", f, "--multi-label", "--cv", "0", "-q"])
    assert p.returncode == 0 and p.stderr == b"", p.stderr


def test_one_labelled_row_with_default_cross_validation(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text('{"score":0.3,"label":1}\n')
    assert invoke_cli(["threshold", one, "-q"]).returncode == 0
    three = tmp_path / "one3.jsonl"
    three.write_text('{"probs":[0.2,0.3,0.5],"label":1}\n')
    assert invoke_cli(["can", three, "-q", "--tune"]).returncode == 0
