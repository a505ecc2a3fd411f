"""What an adversarial tester (README only) broke in ``bigshuf can`` / ``bigshuf threshold``, one
test per break (each failed before its fix): outputs checked late or published one by one,
outputs that are one file or an input, CSV quoting, --pred-key over read fields, internal errors
for input errors, the tuning progress bar, write errors naming nothing, stdin given twice,
signals, and a warning about a change that rounds to nothing."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from helpers import invoke, leftovers, one_line_error, run


def _preds(path: Path, n: int = 300, seed: int = 0) -> Path:
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            p = [rnd.random() for _ in range(3)]
            s = sum(p)
            f.write(json.dumps({"id": i, "probs": [x / s for x in p], "label": i % 3}) + "\n")
    return path


def _binary(path: Path, n: int = 200, seed: int = 0) -> Path:
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"score": rnd.random(), "label": i % 2}) + "\n")
    return path


@pytest.fixture
def preds(tmp_path: Path) -> Path:
    return _preds(tmp_path / "preds.jsonl")


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    return _binary(tmp_path / "bin.jsonl")


def _names(d: Path) -> set:
    return set(os.listdir(d))


# -- 1. every destination checked before any work, nothing published unless all succeed --------

@pytest.mark.parametrize("args", [
    ["can", "{preds}", "--prior", "uniform", "-o", "{d}/o.jsonl", "--report", "{d}/nodir/r.json"],
    ["threshold", "{bin}", "--save-params", "{d}/p.json", "--report", "{d}/nodir/r.json"],
    ["threshold", "{bin}", "--report", "{d}/r.json", "-o", "{d}/nodir/o.jsonl"],
    ["can", "{preds}", "--tune", "--taus", "0.5", "--alphas", "1", "--iterations-grid", "1", "--ks", "3",
     "--rules", "top-k", "--save-params", "{d}/c.json", "--report", "{d}/nodir/r.json"],
])
def test_a_bad_secondary_destination_is_refused_before_anything_is_written(tmp_path, preds, binary, args):
    before = _names(tmp_path)
    p = invoke([a.format(preds=preds, bin=binary, d=tmp_path) for a in args] + ["-q"])
    one_line_error(p, 2, "output directory does not exist")
    assert _names(tmp_path) == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["can", "threshold"])
def test_a_failing_report_publishes_no_other_output(tmp_path, preds, binary, command):
    src = preds if command == "can" else binary
    extra = ["--prior", "uniform"] if command == "can" else ["--save-params", str(tmp_path / "p.json")]
    before = _names(tmp_path)
    p = invoke([command, src, *extra, "-o", tmp_path / "o.jsonl", "--report", "/dev/full", "-q"])
    one_line_error(p, 1, "writing /dev/full: no space left on device")
    assert _names(tmp_path) == before and not leftovers(tmp_path)


# -- 2. outputs that are one file, or an input --------------------------------------------------

def test_outputs_that_are_one_file_are_refused(tmp_path, preds, binary):
    out = tmp_path / "out.jsonl"
    one_line_error(invoke(["can", preds, "--prior", "uniform", "-o", out, "--report", out, "-q"]), 2, "same file")
    t = tmp_path / "t.jsonl"
    one_line_error(invoke(["threshold", binary, "-o", t, "--save-params", t, "--report", t, "-q"]), 2, "same file")
    one_line_error(invoke(["can", preds, "--prior", "uniform", "--report", "/dev/stdout", "-q"]), 2,
                   "-o and --report both write to standard output")
    link = tmp_path / "link.json"
    link.symlink_to(out)
    one_line_error(invoke(["can", preds, "--prior", "uniform", "-o", out, "--report", link, "-q"]), 2, "same file")
    assert not out.exists() and not t.exists()


def test_an_output_that_is_an_input_is_refused_but_o_equal_to_input_rewrites_it(tmp_path, preds):
    original = preds.read_bytes()
    p = invoke(["can", preds, "--prior", "uniform", "-o", "/dev/null", "--report", preds, "-q"])
    one_line_error(p, 2, "--report", "input")
    assert preds.read_bytes() == original
    ref = _preds(tmp_path / "ref.jsonl", seed=1)
    p = invoke(["can", preds, "--prior", "uniform", "--reference", ref, "-o", ref, "-q"])
    one_line_error(p, 2, "-o", "input")
    p = invoke(["can", preds, "--prior", "uniform", "-o", preds, "-q"])  # in place, as documented for -o
    assert p.returncode == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 300 and all("pred" in r for r in rows)


# -- 7. write errors name the file -------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_write_error_names_the_destination(preds, binary):
    one_line_error(invoke(["can", preds, "--prior", "uniform", "-o", "/dev/full", "-q"]), 1,
                   "writing /dev/full: no space left on device")
    one_line_error(invoke(["threshold", binary, "-o", "/dev/full", "-q"]), 1, "writing /dev/full")


def test_a_file_size_limit_names_the_output(tmp_path, preds):
    import resource

    def small() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))  # the value cache fits, the rows do not

    p = run(["can", str(preds), "--prior", "uniform", "-o", str(tmp_path / "out.jsonl"), "-q"], preexec=small)
    one_line_error(p, 1, f"writing {tmp_path / 'out.jsonl'}: file too large")
    assert not (tmp_path / "out.jsonl").exists() and not leftovers(tmp_path)


# -- 8. stdin and '-' ------------------------------------------------------------------------------

def test_stdin_given_twice_or_where_it_is_not_read_is_refused(preds, binary):
    data = preds.read_bytes()
    one_line_error(invoke(["can", "-", "--reference", "-", "--prior", "uniform", "-q"], input=data), 2,
                   "more than once")
    one_line_error(invoke(["can", preds, "--labels", "-", "--prior", "uniform", "-q"], input=data), 2,
                   "--labels does not read standard input")
    one_line_error(invoke(["can", preds, "--params", "-", "-q"], input=data), 2, "--params does not read")
    one_line_error(invoke(["threshold", binary, "--params", "-", "-q"], input=b"{}"), 2, "--params does not read")
    with open(preds, "rb") as f:  # stdin redirected from a regular file is read once too
        one_line_error(run(["can", "-", "--reference", "-", "--prior", "uniform", "-q"], stdin=f), 2, "more than once")
    p = invoke(["can", "-", "--reference", preds, "--prior", "uniform", "-q"], input=data)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 300


# -- 3. CSV fields with line breaks are quoted ---------------------------------------------------

@pytest.mark.parametrize("delim", [",", "\t"])
def test_csv_fields_with_line_breaks_round_trip(tmp_path, delim):
    import csv

    ext = "csv" if delim == "," else "tsv"
    src = tmp_path / f"q.{ext}"
    rows = [["id", "prob_a", "prob_b", "label", "note"], ["1", "0.6", "0.4", "a", "two\nlines"],
            ["2", "0.3", "0.7", "b", "cr\rhere"], ["3", "0.5", "0.5", "a", "x\r\ny"], ["4", "0.2", "0.8", "b", "plain"]]
    with open(src, "w", newline="") as f:
        csv.writer(f, delimiter=delim).writerows(rows)
    out = tmp_path / f"out.{ext}"
    assert invoke(["can", src, "--prior", "uniform", "-o", out, "-q"]).returncode == 0
    with open(out, newline="") as f:
        back = list(csv.reader(f, delimiter=delim))
    assert [r[4] for r in back[1:]] == [r[4] for r in rows[1:]] and back[0][-1] == "pred"
    again = tmp_path / f"again.{ext}"
    assert invoke(["can", out, "--prior", "uniform", "-o", again, "-q"]).returncode == 0
    params = tmp_path / "cut.json"
    assert invoke(["threshold", src, "--save-params", params, "-q"]).returncode == 0
    decided = tmp_path / f"decided.{ext}"
    assert invoke(["threshold", src, "--params", params, "-o", decided, "-q"]).returncode == 0
    with open(decided, newline="") as f:
        assert [r[4] for r in list(csv.reader(f, delimiter=delim))[1:]] == [r[4] for r in rows[1:]]


# -- 5. input errors, not internal errors ------------------------------------------------------

def test_empty_vectors_and_list_labels_are_input_errors(tmp_path):
    empty = tmp_path / "z.jsonl"
    empty.write_text('{"logits": []}\n{"logits": []}\n')
    one_line_error(invoke(["threshold", empty, "-q"]), 2, "has no values")
    bare = tmp_path / "bare.jsonl"
    bare.write_text("[]\n[]\n")
    one_line_error(invoke(["threshold", bare, "-q"]), 2, "has no values")
    multi = tmp_path / "ml.jsonl"
    multi.write_text('{"probs": [0.2, 0.3, 0.5], "label": [0, 2]}\n' * 30)
    for args in (["threshold", multi, "-q"], ["can", multi, "--prior", "uniform", "-q"]):
        one_line_error(invoke(args), 2, f"{multi}:1:", "--multi-label")
    late = tmp_path / "late.jsonl"  # the first row of a later chunk is bad
    late.write_text('{"probs": [0.2, 0.8], "label": 1}\n' * 5 + '{"probs": [0.2, 0.8], "label": 9}\n')
    one_line_error(invoke(["can", late, "--prior", "uniform", "-q", "-S", "1M"]), 2, f"{late}:6:")


def test_closed_standard_streams_are_usage_errors(preds, binary):
    def close(fd):
        return lambda: os.close(fd)

    one_line_error(run(["can", "-", "--prior", "uniform", "-q"], preexec=close(0)), 2, "standard input is closed")
    one_line_error(run(["can", str(preds), "--prior", "uniform", "-q"], preexec=close(1)), 2,
                   "standard output is closed")
    one_line_error(run(["threshold", str(binary), "-q"], preexec=close(1)), 2, "standard output is closed")
    one_line_error(run(["threshold", str(binary), "-q", "--report", "-"], preexec=close(1)), 2,
                   "standard output is closed")


# -- 4. --pred-key never replaces a field the run reads ----------------------------------------

def test_pred_key_naming_a_read_field_is_refused(tmp_path, preds, binary):
    for key in ("label", "probs"):
        one_line_error(invoke(["can", preds, "--prior", "uniform", "--pred-key", key, "-q"]), 2, "--pred-key")
    one_line_error(invoke(["threshold", binary, "--pred-key", "score", "-o", tmp_path / "t.jsonl", "-q"]), 2,
                   "--pred-key")
    logits = tmp_path / "logits.jsonl"
    logits.write_text('{"logits": [1.0, 2.0], "label": 0}\n{"logits": [0.5, -1.0], "label": 1}\n')
    one_line_error(invoke(["can", logits, "--prior", "uniform", "--pred-key", "probs", "-q"]), 2, "--pred-key")
    src = tmp_path / "p.tsv"
    src.write_text("id\tprob_a\tprob_b\tlabel\n1\t0.6\t0.4\ta\n2\t0.3\t0.7\tb\n")
    for key in ("label", "prob_a"):
        one_line_error(invoke(["can", src, "--prior", "uniform", "--pred-key", key, "-q"]), 2, "--pred-key")
    params = tmp_path / "cut.json"
    assert invoke(["threshold", src, "--save-params", params, "-q"]).returncode == 0
    one_line_error(invoke(["threshold", src, "--params", params, "--pred-key", "label", "-q"]), 2, "--pred-key")
    p = invoke(["can", src, "--prior", "uniform", "--pred-key", "decision", "-q"])  # a new column is fine
    assert p.returncode == 0 and p.stdout.splitlines()[0] == b"id\tprob_a\tprob_b\tlabel\tdecision"


# -- 10. a lowered metric is shown with the digits that show it, and only when it shows ----------

def test_a_lowered_accuracy_warning_shows_the_change_and_noise_is_no_change():
    from bigshuf.predict.can_command import _warn_if_worse
    from bigshuf.predict.metrics import lowered

    result = {"accuracy": {"overall": {"rows": 20000, "before": 1990 / 20000, "after": 1989 / 20000}},
              "prior": {"source": "given"}, "warnings": []}
    _warn_if_worse(result)
    assert result["lowered_accuracy"] and "9.950% -> 9.945% (1 fewer correct)" in result["warnings"][0]
    assert lowered(0.5, 0.5 - 1e-10) is None and lowered(0.5, 0.5) is None and lowered(0.4, 0.5) is None
    assert lowered(0.61, 0.6) == "61.00% -> 60.00%"


# -- 6. the tuning progress bar ends at its total ----------------------------------------------

def test_the_tuning_progress_bar_ends_at_its_total(preds):
    p = invoke(["can", preds, "--tune", "--progress", "--cv", "3", "--taus", "0.5,0.9", "-q"])
    assert p.returncode == 0
    drawn = [s for s in p.stderr.decode().replace("\n", "\r").split("\r") if "tuning CAN" in s]
    last = drawn[-1]
    done, total = last.split("|")[-1].split()[0].split("/")
    assert "100%" in last and done == total, drawn[-3:]


# -- 9. signals: the first one wins, nothing is left behind ------------------------------------

@pytest.mark.parametrize("command", ["can", "threshold"])
def test_int_then_term_stops_with_int_and_leaves_nothing(tmp_path, preds, binary, command):
    import signal
    import subprocess
    import time

    from helpers import spawn

    fifo = tmp_path / "report.fifo"  # nobody reads it: the run waits there with its rows complete
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    args = ["can", str(preds), "--prior", "uniform"] if command == "can" else \
        ["threshold", str(binary), "--save-params", str(tmp_path / "p.json")]
    proc = spawn([*args, "-o", str(out), "--report", str(fifo), "-q"])
    deadline = time.monotonic() + 60
    while not any(".out.jsonl.bigshuf-" in n for n in os.listdir(tmp_path)):  # its temporary output exists
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    p = subprocess.CompletedProcess(proc.args, proc.returncode, b"", err)
    one_line_error(p, 130, "interrupted by SIGINT")
    assert not out.exists() and not leftovers(tmp_path) and not (tmp_path / "p.json").exists()


def test_a_signal_while_a_stream_output_is_sent_says_it_is_incomplete(tmp_path):
    import signal
    import subprocess

    from helpers import spawn

    src = _preds(tmp_path / "big.jsonl", n=5000)  # rows beyond a pipe's buffer
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    proc = spawn(["can", str(src), "--prior", "uniform", "-o", str(fifo), "--report", str(tmp_path / "r.json"), "-q"])
    reader = os.open(fifo, os.O_RDONLY)  # waits for the run to open it: its rows are complete
    try:
        assert os.read(reader, 1)  # the run is sending; it blocks once the pipe is full
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(reader)
        if proc.poll() is None:
            proc.kill()
    p = subprocess.CompletedProcess(proc.args, proc.returncode, b"", err)
    one_line_error(p, 130, "interrupted by SIGINT", "incomplete")
    assert not (tmp_path / "r.json").exists() and not leftovers(tmp_path)


def test_a_signal_during_threaded_tuning_stops_the_run_with_that_signal(tmp_path):
    import signal
    import time

    from helpers import spawn

    # A regression test for outputs.checkpoint (it also passed before SignalGuard: there the
    # KeyboardInterrupt exited before TERM came); the breaks themselves are the tests above.
    src = _preds(tmp_path / "dev.jsonl", n=20000)
    proc = spawn(["can", str(src), "--tune", "--progress", "--save-params", str(tmp_path / "c.json"),
                  "--report", str(tmp_path / "r.json"), "-o", str(tmp_path / "out.jsonl"), "-q"])
    assert proc.stderr is not None
    seen = b""
    while b"tuning CAN" not in seen:  # the bar is drawn: tuning (worker threads) has started
        more = proc.stderr.read1(4096)  # type: ignore[attr-defined]
        assert more, seen
        seen += more
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)  # as the tester did: TERM 10 ms after INT (the order, not a synchronisation)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in (seen + err).decode().replace("\r", "\n").splitlines() if "bigshuf:" in line]
    assert proc.returncode == 130 and lines == [lines[-1]] and "interrupted by SIGINT" in lines[-1], lines
    assert b"Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["dev.jsonl"]
