"""The shuffle and verify commands end to end (in-process; real processes where pipes matter): files, exit statuses and
one-line errors."""
from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_env, invoke, one_line_error, run, spawn

import bigshuf
from bigshuf.common.errors import UsageError


def test_stdin_to_stdout_and_dash(numbered):
    src = numbered(1000)
    data = src.read_bytes()
    a = run(["shuffle", "--seed", "3"], input=data)  # real stdin/stdout descriptors
    b = invoke(["shuffle", "-", "--seed", "3"], input=data)
    c = invoke(["shuffle", str(src), "--seed", "3"])
    assert a.returncode == b.returncode == c.returncode == 0
    assert a.stdout == b.stdout == c.stdout
    assert sorted(a.stdout.splitlines()) == sorted(data.splitlines())
    assert a.stderr == b""


def test_file_to_file_many_inputs_and_python_m(tmp_path, numbered):
    a = numbered(500, "a.txt")
    b = numbered(700, "b.txt")
    out = tmp_path / "out.txt"
    p = run(["shuffle", str(a), str(b), "-o", str(out), "-S", "1M", "--seed", "1",
             "-T", str(tmp_path), "-j", "2", "-v"])  # a real `python -m bigshuf` once
    assert p.returncode == 0, p.stderr
    assert b"records" in p.stderr and p.stdout == b""
    assert sorted(out.read_bytes().splitlines()) == sorted((a.read_bytes() + b.read_bytes()).splitlines())
    v = invoke(["verify", str(out), str(a), ])
    assert v.returncode == 1 and b"DIFFERENT" in v.stdout
    cat = tmp_path / "cat.txt"
    cat.write_bytes(a.read_bytes() + b.read_bytes())
    v = invoke(["verify", str(cat), str(out)])
    assert v.returncode == 0 and b"same multiset" in v.stdout, v.stdout


def test_fsync_output_and_sample(tmp_path, numbered, monkeypatch):
    """--fsync flushes data and directory before/after the rename (checked by counting calls
    in-process) and still writes the right thing."""
    src = numbered(3000)
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    out = tmp_path / "o.txt"
    bigshuf.shuffle([str(src)], str(out), seed=1, fsync=True)
    assert sorted(out.read_bytes().splitlines()) == sorted(src.read_bytes().splitlines())
    assert len(calls) == 2  # the file, then its directory
    bigshuf.shuffle([str(src)], str(out), seed=1, sample=10, fsync=True)
    assert len(out.read_bytes().splitlines()) == 10 and len(calls) == 4
    p = invoke(["shuffle", str(src), "-o", str(out), "--fsync", "--seed", "2"])
    assert p.returncode == 0 and len(out.read_bytes().splitlines()) == 3000


def test_verify_detects_changes(tmp_path, numbered):
    src = numbered(2000)
    out = tmp_path / "o.txt.gz"
    assert invoke(["shuffle", str(src), "-o", str(out), "--seed", "1"]).returncode == 0
    assert invoke(["verify", str(src), str(out)]).returncode == 0
    lines = gzip.decompress(out.read_bytes()).splitlines(keepends=True)
    swapped = tmp_path / "swapped.txt"
    swapped.write_bytes(b"".join(lines[:-1] + [lines[0]]))  # one line lost, one duplicated
    p = invoke(["verify", str(src), str(swapped)])
    assert p.returncode == 1 and b"different contents" in p.stdout


def test_sample_and_shards_from_cli(tmp_path, numbered):
    src = numbered(1000)
    p = invoke(["shuffle", str(src), "-n", "10", "--seed", "2"])
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 10
    p = invoke(["shuffle", str(src), "--shards", "3", "-o", str(tmp_path / "s.txt"), "--seed", "2"])
    assert p.returncode == 0, p.stderr
    names = sorted(x.name for x in tmp_path.glob("s-*.txt"))
    assert names == ["s-00000-of-00003.txt", "s-00001-of-00003.txt", "s-00002-of-00003.txt"]


def test_broken_pipe_is_quiet(numbered):
    src = numbered(200_000)
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    p = subprocess.run(f"{sys.executable} -m bigshuf shuffle {src} --seed 1 | head -n 2",
                       shell=True, capture_output=True, env=env)
    assert len(p.stdout.splitlines()) == 2
    assert b"Traceback" not in p.stderr and b"Error" not in p.stderr, p.stderr


@pytest.mark.parametrize("args,needle", [
    (["shuffle", "{missing}"], "no such file"),
    (["shuffle", "{dir}"], "is a directory"),
    (["shuffle", "{src}", "--memory", "12X"], "invalid size"),
    (["shuffle", "{src}", "--memory", "100K"], "at least 1M"),
    (["shuffle", "{src}", "--shards", "0", "-o", "{dir}/x"], "--shards"),
    (["shuffle", "{src}", "--shards", "2"], "needs -o"),
    (["shuffle", "{src}", "--shards", "2", "--lines-per-shard", "5", "-o", "{dir}/x"], "together"),
    (["shuffle", "{src}", "-o", "{dir}/no/such/out.txt"], "does not exist"),
    (["shuffle", "{src}", "-T", "{dir}/nope"], "does not exist"),
    (["shuffle", "-", "-"], "more than once"),
    (["verify", "{src}", "{missing}"], "no such file"),
    (["shuffle", "{src}", "--bogus"], "No such option"),
    (["frobnicate"], "No such command"),
])
def test_usage_and_input_errors_exit_2_with_one_line(tmp_path, numbered, args, needle):
    src = numbered(10)
    fmt = dict(src=str(src), missing=str(tmp_path / "missing.txt"), dir=str(tmp_path))
    p = invoke([a.format(**fmt) for a in args], input=b"")
    one_line_error(p, 2, needle)


def test_line_too_long_names_file_and_line(tmp_path):
    p = tmp_path / "long.txt"
    p.write_bytes(b"ok\n" * 5 + b"x" * (100 << 10) + b"\n")
    proc = invoke(["shuffle", str(p), "-S", "1M"])
    one_line_error(proc, 2, f"{p}:6:", "raise --memory")


def test_help_and_version():
    p = invoke(["shuffle", "--help"])
    assert p.returncode == 0 and b"--memory" in p.stdout and b"--seed" in p.stdout
    assert invoke(["--version"]).returncode == 0


def test_a_read_once_input_named_twice_is_refused():
    for args in (["verify", "/dev/stdin", "/dev/stdin"], ["shuffle", "-", "/dev/stdin"]):
        p = run(args, input=b"a\nb\n")
        one_line_error(p, 2, "more than once")


@pytest.mark.parametrize("mode", [[], ["-u"], ["--epochs", "2"], ["-r", "-n", "3"],
                                  ["--mix", "1,1"], ["--mix", "1,0"]])
def test_stdin_twice_is_refused_in_every_mode(mode):
    """The modes that copy stdin before reading it (-u, --epochs, -r, --mix) read the second
    "-" as empty, silently: the rule is now checked with the options, for every mode."""
    one_line_error(invoke(["shuffle", *mode, "--seed", "1", "-", "-"], input=b"1\n2\n"), 2,
                   "-: an input that can be read only once", "more than once")
    stream = io.BytesIO(b"a\n")
    with pytest.raises(UsageError, match="given more than once"):
        bigshuf.shuffle([stream, stream], io.BytesIO(), **({"mix": "1,1"} if "--mix" in mode else {}))


@pytest.mark.parametrize("mode", [{}, {"mix": "1,1"}, {"unique": True}, {"epochs": 2}])
def test_a_text_stream_is_an_input_error_in_every_mode(tmp_path, mode):
    """A text stream (io.StringIO) given to the library: the reader's InputError naming it,
    also where the stream is copied first (a bare TypeError there before)."""
    src = tmp_path / "a.txt"
    src.write_bytes(b"x\n")
    from bigshuf.common.errors import InputError
    with pytest.raises(InputError, match="<stream>: read error"):
        bigshuf.shuffle([io.StringIO("a\n"), str(src)], io.BytesIO(), **mode)


def test_prediction_inputs_that_are_pipes_are_read_once(tmp_path):
    rows = b'{"score":0.2,"label":0}\n{"score":0.7,"label":1}\n'
    p = subprocess.run(["bash", "-c", f'"{sys.executable}" -m bigshuf threshold <(printf \'%s\' \'{rows.decode()}\') '
                       "--format jsonl -q --cv 0"], capture_output=True, env=cli_env(), timeout=60)
    assert p.returncode == 0 and b'"mode": "binary"' in p.stdout, p.stderr
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    proc = spawn(["threshold", fifo, "--format", "jsonl", "-q", "--cv", "0"])
    with open(fifo, "wb") as w:
        w.write(rows)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b'"mode": "binary"' in out, err


def test_default_jobs_follow_cpu_affinity(monkeypatch):
    from bigshuf.shuffler.plan import plan

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert plan(1 << 30).workers(None) == 1  # `taskset -c 0 bigshuf ...`: one worker


def test_summary_counts_workers_in_words():
    from bigshuf.shuffler.stats import ShuffleStats

    assert "2 workers" in ShuffleStats(workers=2, levels=1, runs=1).summary()
    one = ShuffleStats(workers=1, levels=1, runs=1).summary()
    assert "1 worker;" in one and "(s)" not in one and "1 run," in one and "1 level," in one
