"""`bigshuf can` and `bigshuf threshold` from the command line: the issue's examples, pipes,
reports, and one-line errors that leave the destination untouched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_clean_error, run_cli

from bigshuf.cli import main
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
    res = invoke("threshold", files["dev"], "-q")
    assert res.exit_code == 0 and res.stderr == ""
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


def test_subprocess_threshold_round_trip(files):
    cut = files["dir"] / "cut.json"
    assert run_cli(["threshold", files["bin"], "--metric", "mcc", "--save-params", str(cut), "-q"]).returncode == 0
    proc = run_cli(["threshold", files["bin"], "--params", str(cut)])
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 200
    assert b"mcc on the 200 labelled rows" in proc.stderr


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


# -- errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,needle", [
    ('{"probs": [0.5, 0.5]}\n{"probs": [0.5, 0.5\n', "bad.jsonl:2: invalid JSON"),
    ('{"probs": [0.5, 0.5]}\n{"probs": [NaN, 0.5]}\n', "bad.jsonl:2: value is not a finite number"),
    ('{"probs": [0.5, 0.5]}\n{"probs": [0.5, 0.5, 0.1]}\n', "bad.jsonl:2: row has 3 values"),
    ('{"probs": [0.5, 0.5], "label": 7}\n', "bad.jsonl:1: label 7 is outside"),
    ("", "bad.jsonl: empty file"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, content, needle):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    dest = tmp_path / "out.jsonl"
    dest.write_text("keep me")
    for command in (["can", str(bad), "-o", str(dest)], ["threshold", str(bad), "-o", str(dest)]):
        proc = run_cli(command)
        assert_clean_error(proc, 2, needle)
        assert dest.read_text() == "keep me"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "out.jsonl"]


def test_bad_row_late_in_stdin_writes_nothing_to_stdout(tmp_path):
    data = b'{"probs": [0.9, 0.1]}\n' * 5000 + b'{"probs": [-1, 2]}\n'
    proc = run_cli(["can", "-"], input=data)
    assert_clean_error(proc, 2, "<stdin>:5001: negative probability")
    assert proc.stdout == b""


def test_missing_file_and_directory(tmp_path):
    assert_clean_error(run_cli(["can", str(tmp_path / "none.jsonl")]), 2, "no such file")
    assert_clean_error(run_cli(["threshold", str(tmp_path)]), 2, "is a directory")


@pytest.mark.parametrize("args,needle", [
    (["can", "{dev}", "--save-params", "x.json"], "--save-params needs --tune"),
    (["can", "{dev}", "--tune", "--params", "x.json"], "cannot also read them"),
    (["can", "{dev}", "--taus", "0.5"], "need --tune"),
    (["can", "{dev}", "--tau", "1.5"], "tau must be between 0 and 1"),
    (["threshold", "{dev}", "--params", "a.json", "--save-params", "b.json"], "use one"),
    (["can", "{bin}"], "probability vector"),
])
def test_usage_errors_exit_2(files, args, needle):
    args = [a.format(**files) for a in args]
    proc = run_cli(args, cwd=files["dir"])
    assert proc.returncode == 2, proc.stderr
    assert needle.encode() in proc.stderr and b"Traceback" not in proc.stderr
