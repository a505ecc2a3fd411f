"""Bad prediction files for ``bigshuf can`` and ``bigshuf threshold``: the one table of bad rows.

Every bad row kind (invalid JSON or UTF-8, NaN/inf, negative values, wrong width and rows of mixed
width, unknown labels, labels outside the class range, non-numbers, empty files; multi-label:
labels outside the range, probabilities outside [0, 1]) in every format (JSONL, CSV/TSV, .npy, a
separate label file, --reference, --prior, stdin) must give: exit 2, one line
``bigshuf: error: FILE:LINE: reason`` (just ``FILE: reason`` when the file has no rows at all),
nothing on stdout, the ``-o`` destination untouched and no new file in its directory.

The CLI runs in-process (click's CliRunner); one test runs a real process, to check that nothing
at all reaches a real stdout.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke as run
from helpers import one_line_error, sha256
from helpers import run as run_process

OLD = b"old destination content\n"
BOTH = ("can", "threshold")


def _row(i, probs=(0.2, 0.5, 0.3), label=1, key="probs"):
    return json.dumps({"id": i, key: list(probs), "label": label})


GOOD = [_row(0, (0.7, 0.2, 0.1), 0), _row(1, (0.2, 0.5, 0.3), 1), _row(2, (0.1, 0.3, 0.6), 2),
        _row(3, (0.4, 0.35, 0.25), 1)]


def jsonl(*bad_rows, at=2):
    """GOOD rows with ``bad_rows`` inserted so the first bad one is on line ``at``."""
    rows = GOOD[:at - 1] + list(bad_rows) + GOOD[at - 1:]
    return ("\n".join(r if isinstance(r, str) else r.decode("latin-1") for r in rows) + "\n").encode("latin-1")


ML_GOOD = b'{"probs": [0.9, 0.2, 0.7], "labels": [0, 2]}\n{"probs": [0.1, 0.8, 0.3], "labels": [1]}\n'
HEADER = "id,prob_a,prob_b,prob_c,label\n"
CSV_GOOD = ["1,0.7,0.2,0.1,a", "2,0.2,0.5,0.3,b", "3,0.1,0.3,0.6,c"]


def csv(bad: bytes, header: str = HEADER, sep: str = ",") -> bytes:
    """Header, one good row (line 2), the bad row (line 3), more good rows."""
    good = [r.replace(",", sep) for r in CSV_GOOD]
    return (header.replace(",", sep) + good[0] + "\n").encode() + bad + b"\n" + \
        ("\n".join(good[1:]) + "\n").encode()


# (id, file name, content, line of the error or None, text in the message, commands, extra args)
CASES = [
    # JSONL, every kind through both commands
    ("invalid JSON", "p.jsonl", jsonl(GOOD[1], '{"id": 9, "probs": [0.1, 0.2,', at=2), 3, "invalid JSON", BOTH, []),
    ("NaN", "p.jsonl", jsonl('{"id": 9, "probs": [NaN, 0.5, 0.5], "label": 0}'), 2, "not a finite number", BOTH, []),
    ("Infinity", "p.jsonl", jsonl('{"id": 9, "probs": [0.5, Infinity, 0.5], "label": 0}'), 2, "not a finite number", BOTH, []),
    ("overflow to inf", "p.jsonl", jsonl('{"id": 9, "probs": [1e999, 0.5, 0.5], "label": 0}'), 2, "not a finite number", BOTH, []),
    ("negative", "p.jsonl", jsonl(_row(9, (-0.1, 0.6, 0.5), 0)), 2, "negative probability -0.1", BOTH, []),
    ("too few values", "p.jsonl", jsonl(GOOD[1], _row(9, (0.5, 0.5), 0), at=2), 3, "row has 2 values, but the first row has 3", BOTH, []),
    ("too many values", "p.jsonl", jsonl(_row(9, (0.25, 0.25, 0.25, 0.25), 0), at=4), 4, "row has 4 values", BOTH, []),
    ("mixed width bare arrays", "p.jsonl", b"[0.2, 0.8]\n[0.5, 0.5]\n[0.1, 0.2, 0.7]\n[0.3, 0.7]\n", 3, "row has 3 values, but the first row has 2", BOTH, []),
    ("unknown label", "p.jsonl", jsonl(_row(9, label="zebra")), 2, "unknown label 'zebra'", BOTH, []),
    ("unknown label name", "p.jsonl", jsonl(_row(9, label="zebra")), 2, "unknown label 'zebra' (classes: a, b, c)", BOTH, ["--classes", "a,b,c"]),
    ("label above the class range", "p.jsonl", jsonl(_row(9, label=3)), 2, "label 3 is outside the class range 0..2", BOTH, []),
    ("negative label", "p.jsonl", jsonl(_row(9, label=-1)), 2, "label -1 is outside the class range 0..2", BOTH, []),
    ("binary label outside 0..1", "s.jsonl", b'{"score": 0.2, "label": 0}\n{"score": 0.9, "label": 2}\n', 2, "label 2 is outside the class range 0..1", ("threshold",), []),
    ("binary score NaN", "s.jsonl", b'{"score": 0.2, "label": 0}\n{"score": 0.9, "label": 1}\n{"score": NaN, "label": 1}\n', 3, "not a finite number", ("threshold",), []),
    ("empty file", "p.jsonl", b"", None, "empty file", BOTH, []),
    ("only blank lines", "p.jsonl", b"\n\n  \n", None, "empty file", BOTH, []),
    # JSONL, more kinds (one command each, alternating)
    ("non-integer label", "p.jsonl", jsonl(_row(9, label=1.5)), 2, "label 1.5 is neither a class index nor a class name", ("can",), []),
    ("string in vector", "p.jsonl", jsonl('{"id": 9, "probs": [0.5, "x", 0.5], "label": 0}'), 2, "value is not a number", ("threshold",), []),
    ("vector not a list", "p.jsonl", jsonl('{"id": 9, "probs": "0.5", "label": 0}'), 2, "value under 'probs' is not a vector", ("can",), []),
    ("all zero", "p.jsonl", jsonl(_row(9, (0, 0, 0), 0)), 2, "probabilities are all zero", ("threshold",), []),
    ("missing key", "p.jsonl", jsonl('{"id": 9, "label": 0}'), 2, "missing key 'probs'", ("can",), []),
    ("not an object", "p.jsonl", jsonl("null", at=3), 3, "expected a JSON object", ("threshold",), []),
    ("class missing from dict vector", "d.jsonl", b'{"probs": {"a": 0.2, "b": 0.8}, "label": "a"}\n{"probs": {"a": 0.2, "c": 0.8}, "label": "a"}\n', 2, "class 'b' is missing", ("can",), []),
    ("invalid UTF-8", "p.jsonl", jsonl(GOOD[1], b'{"id": 9, "probs": [0.2, 0.5, 0.3], "label": "\xff"}', at=3), 4, "not valid UTF-8", ("threshold",), []),
    ("earliest bad row wins", "p.jsonl", jsonl('{"id": 9, "probs": [NaN, 0.5, 0.5], "label": 0}', b'{"probs": [0.2, 0.5, 0.3], "label": "\xff"}', at=2), 2, "not a finite number", ("can",), []),
    ("logits NaN", "l.jsonl", b'{"logits": [1.0, -2.0, 0.5], "label": 0}\n{"logits": [NaN, 1.0, 0.0], "label": 1}\n', 2, "not a finite number", ("can",), []),
    # CSV / TSV
    ("csv not a number", "p.csv", csv(b"9,abc,0.5,0.3,b"), 3, "value is not a number", BOTH, []),
    ("csv empty cell", "p.csv", csv(b"9,,0.5,0.3,b"), 3, "value is not a number", ("can",), []),
    ("csv NaN", "p.csv", csv(b"9,nan,0.5,0.3,b"), 3, "not a finite number", ("threshold",), []),
    ("csv inf", "p.csv", csv(b"9,0.1,inf,0.3,b"), 3, "not a finite number", ("threshold",), []),
    ("csv negative", "p.csv", csv(b"9,0.5,-1,0.3,b"), 3, "negative probability -1.0", BOTH, []),
    ("csv too few fields", "p.csv", csv(b"9,0.5,0.3,b"), 3, "row has 4 fields, the header has 5", BOTH, []),
    ("csv too many fields", "p.csv", csv(b"9,0.5,0.2,0.3,b,extra"), 3, "row has 6 fields, the header has 5", BOTH, []),
    ("csv unknown label", "p.csv", csv(b"9,0.2,0.5,0.3,zebra"), 3, "unknown label 'zebra' (classes: a, b, c)", BOTH, []),
    ("csv label outside class range", "p.csv", csv(b"9,0.2,0.5,0.3,5"), 3, "label 5 is outside the class range 0..2", BOTH, []),
    ("csv empty file", "p.csv", b"", None, "empty file", BOTH, []),
    ("csv header only", "p.csv", HEADER.encode(), None, "empty file", BOTH, []),
    ("csv invalid UTF-8", "p.csv", csv(b"9,0.2,0.5,0.3,\xff"), 3, "not valid UTF-8", ("can",), []),
    ("tsv negative", "p.tsv", csv(b"9\t0.5\t-2\t0.3\tb", sep="\t"), 3, "negative probability -2.0", ("threshold",), []),
    ("csv no probability columns", "p.csv", b"a,b\n1,2\n", 1, "no probability columns", BOTH, []),
    ("csv quoted not a number", "p.csv", csv(b'9,"0.2",x,0.3,b'), 3, "value is not a number", ("threshold",), []),
    ("bare array after an object", "p.jsonl", jsonl("[0.2, 0.5, 0.3]", at=3), 3, "expected a JSON object", ("can",), []),
    # multi-label: label lists, one probability per label
    ("multi-label label outside the range", "m.jsonl", ML_GOOD + b'{"probs": [0.2, 0.9, 0.1], "labels": [1, 3]}\n', 3,
     "label 3 is outside the class range 0..2", ("threshold",), ["--multi-label"]),
    ("multi-label probability above 1", "m.jsonl", ML_GOOD + b'{"probs": [0.2, 1.5, 0.1], "labels": [1]}\n', 3,
     "probability 1.5 is outside [0, 1]", ("threshold",), ["--multi-label"]),
    ("multi-label negative probability", "m.jsonl", ML_GOOD + b'{"probs": [-0.2, 0.5, 0.1], "labels": []}\n', 3,
     "probability -0.2 is outside [0, 1]", ("threshold",), ["--multi-label"]),
    ("multi-label unknown label name", "m.jsonl", ML_GOOD + b'{"probs": [0.2, 0.5, 0.1], "labels": ["zebra"]}\n', 3,
     "unknown label 'zebra'", ("threshold",), ["--multi-label"]),
    ("multi-label csv label outside the range", "m.csv", b"prob_a,prob_b,prob_c,labels\n0.1,0.9,0.2,b\n0.3,0.2,0.8,a;7\n",
     3, "label 7 is outside the class range 0..2", ("threshold",), ["--multi-label"]),
    # issue 22: values float() would take but that are not JSON/decimal numbers; sums that overflow
    ("numeric string in a vector", "p.jsonl", jsonl('{"id": 9, "probs": ["0.5", 0.3, 0.2], "label": 0}'), 2,
     "value is not a number", BOTH, []),
    ("boolean in a vector", "p.jsonl", jsonl('{"id": 9, "probs": [true, 0.3, 0.2], "label": 0}'), 2,
     "value is not a number", BOTH, []),
    ("boolean as a score", "s.jsonl", b'{"score": 0.2, "label": 0}\n{"score": true, "label": 1}\n', 2,
     "value under 'score' is not a number", ("threshold",), []),
    ("csv underscore digits", "p.csv", csv(b"9,0_8,0.1,0.1,a"), 3, "value is not a number", BOTH, []),
    ("csv thousands underscore", "p.csv", csv(b"9,1_000,0.1,0.1,a"), 3, "value is not a number", BOTH, []),
    ("csv arabic-indic digit", "p.csv", csv("9,\u0668,0.1,0.1,a".encode()), 3, "value is not a number", BOTH, []),
    ("csv score underscore", "s.csv", b"score,label\n0.5,1\n0_8,0\n", 3, "value is not a number",
     ("threshold",), []),
    ("row sum overflows", "p.jsonl", jsonl('{"id": 9, "probs": [1e308, 1e308, 0.1], "label": 0}'), 2,
     "probabilities sum beyond the largest 64-bit float", BOTH, []),
    ("duplicate class columns", "p.csv", b"prob_a,prob_a,label\n0.5,0.5,0\n", 1,
     "column 'prob_a' appears twice", BOTH, []),
    ("label list without --multi-label", "p.jsonl", jsonl('{"id": 9, "probs": [0.5, 0.3, 0.2], "label": [0, 1]}'),
     2, "label [0, 1] is a list: multi-label data needs bigshuf threshold --multi-label", BOTH, []),
    ("multi-label NaN", "m.jsonl", ML_GOOD + b'{"probs": [NaN, 0.5, 0.1], "labels": [0]}\n', 3,
     "not a finite number", ("threshold",), ["--multi-label"]),
]


def _npy_cases():
    a = np.full((5, 3), 1 / 3)
    nan = a.copy()
    nan[3, 1] = np.nan
    neg = a.copy()
    neg[1, 0] = -0.5
    return [
        ("npy NaN", nan, None, 4, "not a finite number", BOTH),
        ("npy negative", neg, None, 2, "negative probability -0.5", ("can",)),
        ("npy empty", np.zeros((0, 3)), None, None, "empty file", ("threshold",)),
        ("npy labels outside class range", a, "0\n1\n2\n7\n1\n", 4, "label 7 is outside the class range 0..2", BOTH),
        ("npy labels unknown", a, "0\n1\nzebra\n1\n1\n", 3, "unknown label 'zebra'", ("can",)),
    ]


def _params():
    out = []
    for case_id, name, content, line, needle, commands, extra in CASES:
        for cmd in commands:
            out.append(pytest.param(cmd, name, content, line, needle, extra, id=f"{cmd}-{case_id}"))
    return out


def check_rejected(proc, where: str, line, needle: str, dest: Path, listing, inputs) -> None:
    msg = one_line_error(proc, 2, needle)
    prefix = f"bigshuf: error: {where}:{line}: " if line is not None else f"bigshuf: error: {where}: "
    assert msg.startswith(prefix), (prefix, msg)
    assert proc.stdout == b"", proc.stdout
    if dest is not None:
        assert dest.read_bytes() == OLD
        assert sorted(os.listdir(dest.parent)) == listing, "a file was left behind"
    for path, digest in inputs:
        assert sha256(path) == digest


@pytest.mark.parametrize("cmd,name,content,line,needle,extra", _params())
def test_bad_rows(tmp_path, cmd, name, content, line, needle, extra):
    src = tmp_path / name
    src.write_bytes(content)
    dest = tmp_path / ("out" + os.path.splitext(name)[1])
    dest.write_bytes(OLD)
    listing = sorted(os.listdir(tmp_path))
    p = run([cmd, src, "-o", dest, "-q", *extra])
    check_rejected(p, str(src), line, needle, dest, listing, [(src, sha256(src))])


@pytest.mark.parametrize("case", _npy_cases(), ids=lambda c: c[0])
def test_bad_npy_and_label_files(tmp_path, case):
    case_id, arr, labels, line, needle, commands = case
    src = tmp_path / "p.npy"
    np.save(src, arr)
    extra, where = [], str(src)
    if labels is not None:
        lab = tmp_path / "labels.txt"
        lab.write_text(labels)
        extra, where = ["--labels", str(lab)], str(lab)
    elif "threshold" in commands:
        lab = tmp_path / "labels.txt"
        lab.write_text("0\n1\n2\n0\n1\n")
        extra = ["--labels", str(lab)]
    dest = tmp_path / "out.npy"
    dest.write_bytes(OLD)
    listing = sorted(os.listdir(tmp_path))
    for cmd in commands:
        p = run([cmd, src, "-o", dest, "-q", *extra])
        check_rejected(p, where, line, needle, dest, listing, [(src, sha256(src))])


# -- a bad row far into a file: nothing is written, even though earlier chunks were fine ---------

@pytest.fixture
def late_bad(tmp_path):
    rows = [_row(i, (0.5, 0.45, 0.05) if i % 3 == 0 else (0.1, 0.3, 0.6), i % 3) for i in range(10_000)]
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(rows) + "\n")
    rows[9000] = '{"id": 9000, "probs": [0.1, NaN, 0.6], "label": 0}'
    bad = tmp_path / "late.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    return good, bad


@pytest.mark.parametrize("cmd", BOTH)
def test_late_bad_row_to_file(tmp_path, late_bad, cmd):
    good, bad = late_bad
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dest = out_dir / "out.jsonl"
    dest.write_bytes(OLD)
    p = run([cmd, bad, "-o", dest, "-q"])
    check_rejected(p, str(bad), 9001, "not a finite number", dest, ["out.jsonl"], [(bad, sha256(bad))])


@pytest.mark.parametrize("cmd", BOTH)
def test_late_bad_row_to_stdout_writes_nothing(late_bad, cmd):
    """A real process: not a byte reaches the real stdout (output is held until complete)."""
    _, bad = late_bad
    p = run_process([cmd, bad, "-q"])
    check_rejected(p, str(bad), 9001, "not a finite number", None, None, [])


@pytest.mark.parametrize("cmd", BOTH)
def test_bad_row_on_stdin(tmp_path, late_bad, cmd):
    _, bad = late_bad
    dest = tmp_path / "o" / "out.jsonl"
    dest.parent.mkdir()
    dest.write_bytes(OLD)
    p = run([cmd, "-", "-o", dest, "-q"], input=bad.read_bytes())
    check_rejected(p, "<stdin>", 9001, "not a finite number", dest, ["out.jsonl"], [])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_invalid_utf8_far_into_the_file_names_its_line(tmp_path, fmt, stdin):
    """The decoder reads ahead in 8 KB chunks; the line reported must still be the bad one."""
    if fmt == "jsonl":
        rows = [_row(i).encode() for i in range(5000)]
        rows[3000] = b'{"id": 3000, "probs": [0.2, 0.5, 0.3], "label": "\xff"}'
        bad_line = 3001
    else:
        rows = [HEADER.strip().encode()] + [b"%d,0.2,0.5,0.3,b" % i for i in range(5000)]
        rows[3001] = b"3000,0.2,0.5,0.3,\xff"
        bad_line = 3002
    src = tmp_path / f"p.{fmt}"
    src.write_bytes(b"\n".join(rows) + b"\n")
    dest = tmp_path / "o" / f"out.{fmt}"
    dest.parent.mkdir()
    dest.write_bytes(OLD)
    if stdin:
        p = run(["can", "-", "--format", fmt, "-o", dest, "-q"], input=src.read_bytes())
        where = "<stdin>"
    else:
        p = run(["can", src, "-o", dest, "-q"])
        where = str(src)
    check_rejected(p, where, bad_line, "not valid UTF-8", dest, [dest.name], [])


def test_streamed_input_with_reference_bad_row_late(tmp_path, late_bad):
    """With --reference, INPUT is streamed and written chunk by chunk: a bad row after the first
    chunks were written must still leave the destination untouched."""
    good, bad = late_bad
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dest = out_dir / "out.jsonl"
    dest.write_bytes(OLD)
    p = run(["can", bad, "--reference", good, "-o", dest, "-q"])
    check_rejected(p, str(bad), 9001, "not a finite number", dest, ["out.jsonl"], [(bad, sha256(bad))])


def test_bad_reference_file(tmp_path, late_bad):
    good, bad = late_bad
    dest = tmp_path / "o" / "out.jsonl"
    dest.parent.mkdir()
    dest.write_bytes(OLD)
    p = run(["can", good, "--reference", bad, "-o", dest, "-q"])
    check_rejected(p, str(bad), 9001, "not a finite number", dest, ["out.jsonl"], [])


def test_bad_prior_file(tmp_path, late_bad):
    good, _ = late_bad
    prior = tmp_path / "train_labels.txt"
    prior.write_text("0\n1\n2\n1\nzebra\n0\n")
    dest = tmp_path / "o" / "out.jsonl"
    dest.parent.mkdir()
    dest.write_bytes(OLD)
    p = run(["can", good, "--prior", prior, "-o", dest, "-q"])
    check_rejected(p, str(prior), 5, "unknown label 'zebra'", dest, ["out.jsonl"], [])


def test_good_file_still_works(tmp_path, late_bad):
    """The control: the same commands on the good file succeed and replace the destination."""
    good, _ = late_bad
    for cmd in BOTH:
        dest = tmp_path / f"{cmd}.jsonl"
        dest.write_bytes(OLD)
        p = run([cmd, good, "-o", dest, "-q"])
        assert p.returncode == 0, p.stderr
        rows = dest.read_text().splitlines()
        assert len(rows) == 10_000 and all("pred" in json.loads(r) for r in rows[:10])
