"""What an adversarial review (README only, no code) broke, one test per break (each failed
before its fix): read-once inputs named twice, sockets, planted temp names, link loops,
multi-line messages, early signals, signals during output creation, the free-space check,
inputs without a final newline, huge budgets, cluster inputs that are pipes, messages."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import cli_env, invoke, one_line_error, run, spawn

import bigshuf
from bigshuf.common import output
from bigshuf.shuffler.writing import Sink

DATA = b"".join(b"%d\n" % i for i in range(5000))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "in.txt"
    p.write_bytes(DATA)
    return p


def test_a_read_once_input_named_twice_is_refused():
    for args in (["verify", "/dev/stdin", "/dev/stdin"], ["shuffle", "-", "/dev/stdin"]):
        p = run(args, input=b"a\nb\n")
        one_line_error(p, 2, "more than once")


def test_a_unix_socket_destination_is_connected_and_written(tmp_path, src):
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got = bytearray()

    def serve() -> None:
        conn, _ = server.accept()
        while chunk := conn.recv(1 << 16):
            got.extend(chunk)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    assert invoke(["shuffle", src, "-o", path]).returncode == 0
    t.join(10)
    server.close()
    assert sorted(bytes(got).splitlines()) == sorted(DATA.splitlines())


def test_a_fifo_planted_under_a_temporary_name_does_not_hang_the_next_run(tmp_path, src):
    os.mkfifo(tmp_path / ".out.txt.bigshuf-a-1.tmp")
    p = run(["shuffle", src, "-o", tmp_path / "out.txt"], timeout=30)
    assert p.returncode == 0 and (tmp_path / ".out.txt.bigshuf-a-1.tmp").exists()


def test_link_loops_and_link_targets_are_checked_before_any_work(tmp_path, src):
    (tmp_path / "la").symlink_to("lb")
    (tmp_path / "lb").symlink_to("la")
    one_line_error(invoke(["shuffle", src, "-o", tmp_path / "la"]), 2, "symbolic links")
    (tmp_path / "l1").symlink_to(tmp_path / "nodir" / "x")
    one_line_error(invoke(["shuffle", src, "-o", tmp_path / "l1"]), 2, f"{tmp_path}/nodir (the target of")


def test_a_file_name_with_a_line_break_gives_a_one_line_error(tmp_path):
    one_line_error(invoke(["shuffle", str(tmp_path / "bad\nname")]), 2, "bad\\nname")


def _caught(pid: int, sig: int) -> bool:
    """Has bigshuf installed its handlers (/proc/PID/status SigCgt)? All of them go in at once,
    at its first instruction; SIGINT does not tell (Python catches it from its own start), so
    the others are looked at."""
    from bigshuf.common.signals import STOPPING

    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return all(mask >> (s - 1) & 1 for s in STOPPING if s != signal.SIGINT)


def _opening_fifo(pid: int, sig: int) -> bool:
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip() in ("wait_for_partner", "fifo_open")
    except OSError:
        return False


@pytest.mark.parametrize("moment", [_caught, _opening_fifo], ids=["imports", "opening"])
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGHUP, 129)], ids=["INT", "HUP"])
def test_a_signal_while_the_command_starts_gives_one_line(tmp_path, moment, sig, code):
    """Any moment after bigshuf's first instruction: as soon as its handler is installed
    (imports still under way), or blocked opening the input (a FIFO nobody writes, so the run
    cannot finish first). Synchronised on those events, not on a delay: under load a fixed
    delay ended inside the interpreter's own start-up, before any bigshuf code, where a signal
    still gets Python's default."""
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    proc = spawn(["shuffle", fifo, "-o", tmp_path / "o.txt"])
    deadline = time.monotonic() + 60
    while not moment(proc.pid, sig):
        assert proc.poll() is None and time.monotonic() < deadline, "the moment never came"
        time.sleep(0.001)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    one_line_error(p, code, signal.Signals(sig).name)
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_a_signal_while_an_output_is_being_created_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The signal lands after the temporary file exists but before anything knows about it."""
    import fcntl
    import stat

    from bigshuf.common.errors import Interrupted

    real = fcntl.flock

    def interrupted(fd, op):
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the new temporary file (not a directory lock)
            raise Interrupted(signal.SIGHUP, "SIGHUP")
        return real(fd, op)

    monkeypatch.setattr(output.fcntl, "flock", interrupted)
    sink = Sink(str(tmp_path / "out.txt"), 10, 3)
    with pytest.raises(Interrupted):
        sink.open()
    assert os.listdir(tmp_path) == []


def test_free_space_check_counts_what_it_says_and_not_compressed_outputs(tmp_path, monkeypatch, src):
    from bigshuf.common import space

    monkeypatch.setattr(space, "free_bytes", lambda d: 1 << 20)
    p = invoke(["shuffle", src, "-o", tmp_path / "o.txt"])
    one_line_error(p, 1, "+ 1M margin")  # 'need' includes the margin it compares with
    assert invoke(["shuffle", src, "-o", tmp_path / "o.txt.gz"]).returncode == 0


def test_an_input_without_a_final_newline_still_fits_in_memory(tmp_path):
    src = tmp_path / "nonl.txt"
    src.write_bytes(DATA[:-1])
    missing = tmp_path / "no-temp-dir-needed"
    missing.mkdir()
    missing.chmod(0o500)  # a temp file would fail (when permissions apply)
    stats = bigshuf.shuffle([str(src)], str(tmp_path / "o.txt"), temp_dir=str(missing), seed=1)
    assert stats.store == "memory" and stats.records == 5000


def test_a_budget_larger_than_the_machine_on_a_few_lines_of_stdin():
    p = run(["shuffle", "-S", "100T"], input=b"a\nb\nc\n")
    assert p.returncode == 0 and sorted(p.stdout.splitlines()) == [b"a", b"b", b"c"]


def test_the_cluster_refuses_pipes_before_starting(tmp_path):
    pytest.importorskip("distributed")
    p = run(["shuffle", "/dev/stdin", "--scheduler", "local:1", "-o", tmp_path / "o.txt"], input=b"a\n")
    one_line_error(p, 2, "not pipes")


def test_interrupting_a_stream_output_says_it_is_incomplete(tmp_path):
    numbers = tmp_path / "n.txt"
    numbers.write_bytes(b"".join(b"%d\n" % i for i in range(300_000)))
    proc = subprocess.Popen([sys.executable, "-m", "bigshuf", "shuffle", str(numbers), "-S", "4M"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    proc.stdout.read(10)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read().decode()
    proc.wait(10)
    assert proc.returncode == 130 and "incomplete" in err, err


# -- from the review of the shuf interface ---------------------------------------------------

@pytest.mark.parametrize("args", [["-i", "١-٣"], ["-i", " 1 - 3 "], ["-n", "1_0", "-i", "1-30"],
                                  ["-n", "１", "-i", "1-3"]])
def test_numbers_shuf_rejects_are_rejected(args):
    one_line_error(invoke(["shuffle", *args]), 2)


def test_a_plus_sign_is_accepted_like_shuf():
    assert sorted(invoke(["shuffle", "-i", "+1-3"]).stdout.split()) == [b"1", b"2", b"3"]


def test_the_same_random_source_twice_is_fine(tmp_path):
    key = tmp_path / "k"
    key.write_bytes(bytes(range(64)))
    a = invoke(["shuffle", "-i", "1-9", "--random-source", key, "--random-source", key])
    b = invoke(["shuffle", "-i", "1-9", "--random-source", key])
    assert a.returncode == 0 and a.stdout == b.stdout


def test_endless_repeat_to_dev_stdout_is_written_through(tmp_path):
    p = subprocess.run(["bash", "-c", f'"{sys.executable}" -m bigshuf shuffle -r -i 1-3 -o /dev/stdout | head -2'],
                       capture_output=True, env=cli_env(), timeout=60)
    assert p.stdout.count(b"\n") == 2 and p.stderr == b""


def test_split_given_twice_and_shard_fields_without_shards_are_refused(tmp_path, src):
    one_line_error(invoke(["shuffle", src, "--split", "a=0.5,b=rest", "--split", "c=rest",
                           "-o", f"{tmp_path}/{{split}}.txt"]), 2, "more than once")
    one_line_error(invoke(["shuffle", src, "-o", f"{tmp_path}/x{{index}}.txt"]), 2, "--shards")
    one_line_error(invoke(["shuffle", src, "--split", "a=0.5,b=rest",
                           "-o", f"{tmp_path}/{{split}}-{{index}}.txt"]), 2, "--shards")


# -- from the review of can/threshold --------------------------------------------------------

@pytest.mark.parametrize("metric", ["accuracy", "balanced-accuracy"])
def test_multi_label_accuracy_metrics_work(tmp_path, metric):
    f = tmp_path / "m.jsonl"
    f.write_text('{"probs":[0.9,0.2],"labels":[0]}\n{"probs":[0.3,0.8],"labels":[1]}\n'
                 '{"probs":[0.6,0.7],"labels":[0,1]}\n')
    p = invoke(["threshold", f, "--multi-label", "--metric", metric, "--cv", "0", "-q"])
    assert p.returncode == 0, p.stderr
    assert b'"mode": "multilabel"' in p.stdout


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


def test_no_confident_row_with_many_classes_is_a_clean_error(tmp_path):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    f = tmp_path / "w.jsonl"
    f.write_text("".join(json.dumps({"probs": rng.dirichlet(np.ones(12000)).tolist()}) + "\n" for _ in range(2)))
    one_line_error(invoke(["can", f, "-q", "-o", tmp_path / "o.jsonl"]), 2, "identity reference")


def test_numerical_warnings_do_not_leak(tmp_path):
    f = tmp_path / "mll.csv"
    f.write_text("id,logit_cat,logit_dog,labels\n1,3,-2,cat\n2,-1e300,1e300,dog\n")
    p = run(["threshold", f, "--multi-label", "--cv", "0", "-q"])
    assert p.returncode == 0 and p.stderr == b"", p.stderr


def test_one_labelled_row_with_default_cross_validation(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text('{"score":0.3,"label":1}\n')
    assert invoke(["threshold", one, "-q"]).returncode == 0
    three = tmp_path / "one3.jsonl"
    three.write_text('{"probs":[0.2,0.3,0.5],"label":1}\n')
    assert invoke(["can", three, "-q", "--tune"]).returncode == 0
