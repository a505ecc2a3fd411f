"""Prediction files at speed without losing anything: JSONL round trips through orjson (every field
kept, floats exact), the cached second pass, the quote-free CSV path against the csv module, and
`bigshuf threshold --multi-label` end to end."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bigshuf.cli import main
from bigshuf.predict.reading import PredictionFile
from bigshuf.predict.writing import PredictionWriter


def invoke(*args: str, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def awkward_rows(n: int, seed: int) -> list:
    """Rows with every kind of field: unicode, nesting, huge and negative integers, nulls, floats
    that need all 17 digits, subnormals, and an escaped key."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        p = rng.dirichlet(np.full(3, 0.5 if i % 2 else 5.0))
        p[2] = 1.0 - p[0] - p[1] if p[0] + p[1] < 1 else p[2]
        text = "naïve ☃ \"quoted\" \\ back" if i % 3 == 0 else "naïve ☃"  # escapes: rewritten, not spliced
        rows.append({"id": i, "text": text, "meta": {"a": [1, None, True], "b": {}},
                     "big": 2 ** 70 + i, "neg": -i, "tiny": 5e-324, "third": 1 / 3, "\u00e9t\u00e9": i,
                     "probs": p.tolist(), "label": int(rng.integers(0, 3))})
    return rows


def test_jsonl_round_trip_keeps_every_field_and_exact_floats(tmp_path):
    rows = awkward_rows(300, 0)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = invoke("can", src, "-o", out, "--prior", "0.2,0.3,0.5", "-q")
    assert res.exit_code == 0, res.stderr
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    report = invoke("can", src, "-o", tmp_path / "again.jsonl", "--prior", "0.2,0.3,0.5", "--report", "-", "-q")
    uncertain = json.loads(report.stdout)["uncertain"]
    assert 0 < uncertain < 300
    changed = 0
    for before, after in zip(rows, got):
        assert list(after) == list(before) + ["pred"]  # every field, in order, then the class
        assert {k: v for k, v in after.items() if k not in ("probs", "pred")} == \
            {k: v for k, v in before.items() if k != "probs"}
        changed += after["probs"] != before["probs"]
        assert after["pred"] == int(np.argmax(after["probs"]))
    assert changed == uncertain
    # unchanged rows are copied byte for byte, with the class spliced in
    lines_in = src.read_text(encoding="utf-8").splitlines()
    lines_out = out.read_text(encoding="utf-8").splitlines()
    same = [i for i in range(300) if got[i]["probs"] == rows[i]["probs"] and "\\" not in lines_in[i]]
    assert len(same) > 100 and all(lines_out[i] == lines_in[i][:-1] + f',"pred":{got[i]["pred"]}}}' for i in same)


def test_changed_vectors_are_written_exactly(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.dirichlet(np.ones(4), size=200)
    vectors[0] = [5e-324, 1e-300, 0.1 + 0.2, 1 - 1e-16]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"probs": [0.25] * 4}) + "\n" for _ in range(200)))
    out = tmp_path / "out.jsonl"
    with PredictionFile(str(src)) as pf, PredictionWriter(str(out), pf) as w:
        for chunk in pf.chunks(64):
            w.write(chunk, np.zeros(len(chunk), dtype=int), vectors[chunk.lines - 1])
    back = np.array([json.loads(line)["probs"] for line in out.read_text().splitlines()])
    assert np.array_equal(back, vectors)  # bit for bit


def test_rows_with_the_pred_key_or_escapes_are_rewritten_not_spliced(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"probs": [0.9, 0.1], "pred": "old"}\n{"probs": [0.8, 0.2], "p\\u0072ed": 7}\n'
                   '{"probs": [0.95, 0.05]}\n')
    res = invoke("can", src, "--prior", "0.5,0.5", "-q")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["pred"] for r in rows] == [0, 0, 0] and [list(r) for r in rows] == [["probs", "pred"]] * 3


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_replayed_pass_equals_a_parsing_pass(tmp_path, fmt):
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(5), size=1000)
    src = tmp_path / f"p.{fmt}"
    if fmt == "jsonl":
        src.write_text("".join(json.dumps({"i": i, "probs": p.tolist(), "label": i % 5}) + "\n\n"
                               for i, p in enumerate(probs)))
    else:
        src.write_text("i,prob_a,prob_b,prob_c,prob_d,prob_e,label\n" +
                       "".join(f"{i}," + ",".join(map(repr, p)) + f",{'abcde'[i % 5]}\n" for i, p in enumerate(probs.tolist())))
    with PredictionFile(str(src)) as pf:
        first = list(pf.chunks(300, cache=True))
        again = list(pf.replay(300))
        plain = list(pf.chunks(300))
    for a, b, c in zip(first, again, plain):
        assert np.array_equal(a.values, b.values) and np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.lines, b.lines) and np.array_equal(b.values, c.values)
        assert list(b.records) == list(c.records)  # parsed on demand, the same records


def test_quote_free_csv_path_writes_what_the_csv_module_path_writes(tmp_path):
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=300)
    header = "id,prob_a,prob_b,prob_c,label,note\n"
    body = [f"{i}," + ",".join(map(repr, p)) + f",{'abc'[i % 3]},n{i}\n" for i, p in enumerate(probs.tolist())]
    plain = tmp_path / "plain.csv"
    plain.write_text(header + "".join(body))
    quoted = tmp_path / "quoted.csv"  # one quoted field: the whole file goes through the csv module
    quoted.write_text(header + '"0",' + body[0].split(",", 1)[1] + "".join(body[1:]))
    for src in (plain, quoted):
        assert invoke("can", src, "-o", tmp_path / f"out-{src.name}", "--prior", "0.2,0.3,0.5", "-q").exit_code == 0
    assert (tmp_path / "out-plain.csv").read_text() == (tmp_path / "out-quoted.csv").read_text()
    lines = (tmp_path / "out-plain.csv").read_text().splitlines()
    assert lines[0] == header.strip() + ",pred" and len(lines) == 301


def test_csv_field_that_needs_quoting_is_quoted(tmp_path):
    src = tmp_path / "p.csv"
    src.write_text("prob_a,prob_b\n0.9,0.1\n0.2,0.8\n")
    res = invoke("can", src, "--classes", "x,y;z", "--prior", "0.5,0.5", "-q")
    assert res.stdout.splitlines()[1:] == ["0.9,0.1,x", "0.2,0.8,y;z"]
    res = invoke("can", src, "--classes", 'a,b"c', "--prior", "0.5,0.5", "-q")
    assert res.stdout.splitlines()[2] == '0.2,0.8,"b""c"'


# -- multi-label ---------------------------------------------------------------------------------------

def multilabel_file(path: Path, n: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 4))
    targets = rng.random((n, 4)) < probs ** 4  # calibrated badly: the best cuts are well above 0.5
    path.write_text("".join(json.dumps({"id": i, "probs": p.tolist(), "labels": np.flatnonzero(t).tolist()}) + "\n"
                            for i, (p, t) in enumerate(zip(probs, targets))))
    return probs, targets


@pytest.mark.parametrize("metric", ["f1", "micro-f1", "macro-f1"])
def test_multilabel_search_save_apply(tmp_path, metric):
    from bigshuf.predict.multilabel import find_label_cuts, multilabel_metric

    probs, targets = multilabel_file(tmp_path / "dev.jsonl", 400, 0)
    params = tmp_path / "cuts.json"
    res = invoke("threshold", tmp_path / "dev.jsonl", "--multi-label", "--metric", metric, "--save-params", params)
    assert res.exit_code == 0, res.stderr
    assert "per-label cuts" in res.stderr and "5-fold cross-validated" in res.stderr
    saved = json.loads(params.read_text())
    cuts, value = find_label_cuts(probs, targets, metric)
    assert saved["mode"] == "multilabel" and saved["cuts"] == cuts.tolist()
    assert saved["dev"]["after"] == pytest.approx(value) and value >= saved["dev"]["before"]
    assert value > multilabel_metric(metric, targets, probs >= 0.5)
    test_probs, _ = multilabel_file(tmp_path / "test.jsonl", 50, 1)
    out = tmp_path / "decided.jsonl"
    res = invoke("threshold", tmp_path / "test.jsonl", "--multi-label", "--params", params, "-o", out)
    assert res.exit_code == 0, res.stderr
    got = [json.loads(line)["pred"] for line in out.read_text().splitlines()]
    assert got == [np.flatnonzero(p >= cuts).tolist() for p in test_probs]
    # the params say what they are: applying them without --multi-label is refused
    res = invoke("threshold", tmp_path / "test.jsonl", "--params", params)
    assert res.exit_code == 2 and "add --multi-label" in res.stderr


def test_multilabel_names_csv_and_npy(tmp_path):
    src = tmp_path / "m.csv"
    src.write_text("prob_cat,prob_dog,prob_eel,labels\n0.9,0.2,0.6,cat;eel\n0.1,0.8,0.3,dog\n0.7,0.7,0.1,\n"
                   "0.2,0.1,0.9,eel\n")
    params = tmp_path / "c.json"
    assert invoke("threshold", src, "--multi-label", "--cv", "0", "--save-params", params).exit_code == 0
    res = invoke("threshold", src, "--multi-label", "--params", params, "-q")
    assert res.stdout.splitlines()[0] == "prob_cat,prob_dog,prob_eel,labels,pred"
    assert res.stdout.splitlines()[1].endswith(",cat;eel")
    out = tmp_path / "d.npy"
    assert invoke("threshold", src, "--multi-label", "--params", params, "-o", out).exit_code == 0
    decided = np.load(out)
    assert decided.dtype == bool and decided.shape == (4, 3) and decided[0].tolist() == [True, False, True]


# -- issue 22 item 5: one rule for a byte-order mark, prior files as documented ----------------

@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_byte_order_mark_is_dropped_in_every_format(tmp_path, fmt):
    rows = [([0.7, 0.2, 0.1], 0), ([0.2, 0.5, 0.3], 1), ([0.1, 0.3, 0.6], 2), ([0.4, 0.4, 0.2], 0)]
    if fmt == "jsonl":
        text = "".join(json.dumps({"probs": p, "label": y}) + "\n" for p, y in rows)
    else:
        text = "prob_a,prob_b,prob_c,label\n" + "".join(",".join(map(str, p)) + f",{y}\n" for p, y in rows)
    plain, marked = tmp_path / f"plain.{fmt}", tmp_path / f"bom.{fmt}"
    plain.write_text(text)
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    outs = []
    for src in (plain, marked):
        res = invoke("can", src, "-o", tmp_path / f"out-{src.name}", "--prior", "uniform", "-q")
        assert res.exit_code == 0, res.stderr
        outs.append((tmp_path / f"out-{src.name}").read_bytes())
    assert outs[0] == outs[1] and not outs[1].startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize("command,text", [
    ("can", '{"probs":[0.2,0.8],"label":1}\n{"probs":[0.3,0.7],"label":0}\n'),
    ("threshold", '{"probs":[0.2,0.8],"label":1}\n{"probs":[0.6,0.4],"label":0}\n'),
    ("can", "[0.2,0.8]\n[0.3,0.7]\n"),  # bare-array rows
])
def test_byte_order_mark_before_jsonl_on_stdin(command, text):
    """Sniffed stdin saw the mark before '{' and took the JSONL for CSV (exit 2, "no probability
    columns"), while the same bytes in a .jsonl file worked."""
    extra = ["--prior", "uniform"] if command == "can" else []
    plain = invoke(command, "-", "-q", *extra, input=text.encode())
    marked = invoke(command, "-", "-q", *extra, input=b"\xef\xbb\xbf" + text.encode())
    assert plain.exit_code == 0 and marked.exit_code == 0, marked.stderr
    assert marked.stdout == plain.stdout


@pytest.mark.parametrize("content,values", [
    ("0.5,0.3,0.2\n", [0.5, 0.3, 0.2]),          # a comma list, as documented
    ("50\n30\n20\n", [0.5, 0.3, 0.2]),           # one count per class
    ("[5, 3, 2]\n", [0.5, 0.3, 0.2]),            # JSON
    ("0\n1\n1\n2\n0\n0\n", [0.5, 1 / 3, 1 / 6]),  # training labels
])
def test_prior_files(tmp_path, content, values):
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"probs": p}) + "\n" for p in ([0.7, 0.2, 0.1], [0.4, 0.35, 0.25])))
    (tmp_path / "prior.txt").write_text(content)
    res = invoke("can", src, "-o", tmp_path / "out.jsonl", "--prior", tmp_path / "prior.txt",
                 "--report", tmp_path / "r.json", "-q")
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(json.loads((tmp_path / "r.json").read_text())["prior"]["values"], values)


def test_missing_prior_file_says_so(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"probs": [0.7, 0.2, 0.1]}) + "\n")
    res = CliRunner().invoke(main, ["can", str(src), "--prior", "train.txt"])
    assert res.exit_code == 2
    assert res.stderr == "bigshuf: error: --prior train.txt: no such file (nor uniform, reference, estimate, " \
                         "a comma list or JSON)\n"


def test_spooled_stdin_has_no_name_while_it_is_read(tmp_path):
    """Standard input was copied to a named $TMPDIR/bigshuf-stdin-*.tmp that ``kill -9`` left
    behind (a full copy of private data). Now the copy is unlinked from the start: while the
    run is reading, it holds a temporary file open that no directory lists."""
    import subprocess
    import time

    from helpers import cli_argv, cli_env
    temp = tmp_path / "t"
    temp.mkdir()
    proc = subprocess.Popen(cli_argv(["can", "-", "--prior", "uniform", "-q", "-o", tmp_path / "o.jsonl"]),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=cli_env({"TMPDIR": str(temp)}))
    assert proc.stdin is not None
    data = b'{"probs":[0.2,0.8],"pad":"' + b"x" * (3 << 19) + b'"}\n' + b'{"probs":[0.2,0.8]}\n' * 999  # > the copy's 1 MiB buffer
    proc.stdin.write(data)
    proc.stdin.flush()
    spool = None
    deadline = time.monotonic() + 60
    while spool is None and time.monotonic() < deadline:  # until the copy has written to the spool
        for fd in os.listdir(f"/proc/{proc.pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                if target.startswith(str(temp)) and os.stat(f"/proc/{proc.pid}/fd/{fd}").st_size > 0:
                    spool = target
        time.sleep(0.01)
    try:
        assert spool is not None and spool.endswith(" (deleted)"), spool
        assert os.listdir(temp) == []
    finally:
        proc.stdin.close()
        assert proc.wait(60) == 0
    assert (tmp_path / "o.jsonl").read_bytes().count(b"\n") == 1000 and os.listdir(temp) == []
