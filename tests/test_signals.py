"""Signals and read-once inputs, in real processes (README, 'What happens if …'):
INT/TERM/HUP/USR1 end a run blocked anywhere within about a second, with cleanup and 128+N;
a signal after the outputs are published changes nothing; paths that are not regular files
are read once, in every mode."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_env, invoke, leftovers, one_line_error, run, spawn

from bigshuf.common import output
from bigshuf.shuffler.writing import Sink


def _wait(proc: subprocess.Popen, timeout: float = 10) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _stopped_within(proc: subprocess.Popen, sig: int, seconds: float) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    proc.send_signal(sig)
    p = _wait(proc, timeout=30)
    assert time.monotonic() - t0 < seconds, f"took {time.monotonic() - t0:.2f}s to stop"
    return p


def _wait_blocked_in(pid: int, what: str, channels, timeout: float = 20) -> None:
    """Until a thread of the process sleeps in one of the kernel wait ``channels`` (a suffix
    match: 6.x kernels say ``anon_pipe_read`` where older ones said ``pipe_read``), however slow
    its start-up on a loaded machine: a phase is waited for, never guessed with a delay."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):  # any thread (verify opens in a worker)
                with open(f"/proc/{pid}/task/{task}/wchan") as f:
                    if f.read().strip().endswith(channels):
                        return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"the process never blocked {what}")


def _wait_blocked_opening_a_fifo(pid: int) -> None:
    _wait_blocked_in(pid, "opening the FIFO", ("wait_for_partner", "fifo_open"))


def _wait_blocked_reading(pid: int) -> None:
    """Until the run has taken what was written and waits for more."""
    _wait_blocked_in(pid, "reading a pipe", ("pipe_read",))


def _wait_blocked_writing(pid: int) -> None:
    """Until the output pipe is full and the run's writer waits for its reader."""
    _wait_blocked_in(pid, "writing a pipe", ("pipe_write",))


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    p = tmp_path / "in.txt"
    p.write_bytes(b"".join(b"%d\n" % i for i in range(300_000)))
    return p


def test_sigterm_while_opening_a_fifo_nobody_writes(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    proc = spawn(["shuffle", fifo, "-o", tmp_path / "out.txt"])
    _wait_blocked_opening_a_fifo(proc.pid)
    p = _stopped_within(proc, signal.SIGTERM, 1.5)
    one_line_error(p, 143, "SIGTERM")
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_sigint_while_the_stdout_reader_stalls(numbers, tmp_path):
    proc = spawn(["shuffle", numbers, "-S", "4M"])
    proc.stdout.read(10)  # started writing; now nobody reads: the pipe fills and the writer blocks
    _wait_blocked_writing(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    while proc.poll() is None and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    assert proc.returncode == 130 and time.monotonic() - t0 < 1.5
    assert b"SIGINT" in proc.stderr.read()


@pytest.mark.parametrize("sig,code", [(signal.SIGHUP, 129), (signal.SIGUSR1, 138)], ids=["HUP", "USR1"])
def test_hup_and_usr1_clean_up_like_term(numbers, tmp_path, sig, code):
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    dest = tmp_path / "out.txt"
    proc = spawn(["shuffle", fifo, "-o", dest, "-T", tmp_path])
    with open(fifo, "wb") as w:
        w.write(numbers.read_bytes()[:100_000])  # part of the input: the run waits for more
        w.flush()
        _wait_blocked_reading(proc.pid)
        p = _stopped_within(proc, sig, 1.5)
    one_line_error(p, code, signal.Signals(sig).name)
    assert leftovers(tmp_path) == [] and not dest.exists()


def test_int_then_term_reports_the_first(numbers, tmp_path):
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    proc = spawn(["shuffle", fifo, "-o", tmp_path / "out.txt"])
    with open(fifo, "wb") as w:
        w.write(b"a\nb\n")
        w.flush()
        _wait_blocked_reading(proc.pid)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        p = _wait(proc)
    one_line_error(p, 130, "SIGINT")


_AFTER_PUBLISH = r"""
import os, signal, sys
import bigshuf.shuffler.writing as w
real = w.Sink.finish
SIG = int(sys.argv[1])
def finish(self, before_publish=None):
    real(self, before_publish)
    os.kill(os.getpid(), SIG)  # the outputs have their names now
w.Sink.finish = finish
sys.argv = ["bigshuf", *sys.argv[2:]]
from bigshuf.cli import main
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_a_signal_after_the_outputs_are_published_changes_nothing(numbers, tmp_path, sig):
    dest = tmp_path / "out.txt"
    p = subprocess.run([sys.executable, "-c", _AFTER_PUBLISH, str(int(sig)), "shuffle", str(numbers),
                        "-o", str(dest), "-S", "4M"], capture_output=True, env=cli_env(), timeout=60)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert len(dest.read_bytes().splitlines()) == 300_000


@pytest.mark.parametrize("how", ["dev-stdin", "fifo", "proc-fd", "stdin-pipe"])
def test_sample_of_a_read_once_input_never_reads_it_twice(tmp_path, how):
    """-n whose sample outgrows the reservoir's memory: the reservoir spills to the temporary
    file and the input is still read once, so a stream gives exactly what the same bytes give
    as a regular file (it used to fail with 'raise --memory' while the file succeeded)."""
    data = b"".join(b"%06d %s\n" % (i, b"x" * 300) for i in range(20_000))  # ~6 MB
    args = ["-n", "5000", "-S", "1M", "--seed", "1"]
    src = tmp_path / "in.txt"
    src.write_bytes(data)
    from_file = run(["shuffle", src, *args])
    assert from_file.returncode == 0, from_file.stderr
    if how == "fifo":
        fifo = tmp_path / "p"
        os.mkfifo(fifo)
        proc = spawn(["shuffle", fifo, *args])
        with open(fifo, "wb") as w:
            try:
                w.write(data)
            except BrokenPipeError:  # it stopped reading: the checks below say why
                pass
        p = _wait(proc, 60)
    elif how == "stdin-pipe":
        p = run(["shuffle", *args], input=data)
    else:
        path = "/dev/stdin" if how == "dev-stdin" else "/proc/self/fd/0"
        p = run(["shuffle", path, *args], input=data)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert p.stdout == from_file.stdout
    lines = p.stdout.splitlines()
    assert len(lines) == len(set(lines)) == 5000 and set(lines) <= set(data.splitlines())


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT], ids=["nohup-HUP", "background-INT"])
def test_signals_ignored_at_start_stay_ignored(tmp_path, sig):
    """Review break: under nohup (SIGHUP ignored) a SIGHUP killed the run with exit 129 and the
    output was lost; a shell's background job (SIGINT ignored) likewise. Like sort, bigshuf
    leaves a signal it was started with ignored."""
    fifo = tmp_path / "in"
    os.mkfifo(fifo)
    out = tmp_path / "out.txt"
    proc = spawn(["shuffle", str(fifo), "-o", str(out), "--seed", "1"],
                 preexec=lambda: signal.signal(sig, signal.SIG_IGN))
    with open(fifo, "wb") as w:  # returns once bigshuf has opened the FIFO: inside its run
        proc.send_signal(sig)
        w.write(b"a\nb\nc\n")
    p = _wait(proc)
    assert p.returncode == 0, p.stderr
    assert sorted(out.read_bytes().split()) == [b"a", b"b", b"c"]


def test_verify_stops_on_the_first_signal_while_blocked_on_a_fifo(tmp_path):
    """Review break: verify blocked opening a FIFO nobody writes ignored SIGINT for minutes,
    and SIGINT then SIGTERM reported SIGTERM. The first signal wins, at once."""
    src = tmp_path / "a.txt"
    src.write_bytes(b"1\n2\n")
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    proc = spawn(["verify", str(src), str(fifo)])
    try:
        _wait_blocked_opening_a_fifo(proc.pid)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        one_line_error(_wait(proc, 10), 130, "SIGINT")
    finally:
        proc.kill()  # never left behind blocked on the FIFO, whatever failed
        proc.wait()


def test_verify_refuses_stdin_twice():
    """Review break: `verify - - < file` read the one stdin twice and said DIFFERENT."""

    one_line_error(invoke(["verify", "-", "-"], input=b"a\n"), 2, "more than once")


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


def test_interrupting_a_stream_output_says_it_is_incomplete(tmp_path):
    numbers = tmp_path / "n.txt"
    numbers.write_bytes(b"".join(b"%d\n" % i for i in range(300_000)))
    proc = spawn(["shuffle", numbers, "-S", "4M"])
    proc.stdout.read(10)
    _wait_blocked_writing(proc.pid)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read().decode()
    proc.wait(10)
    assert proc.returncode == 130 and "incomplete" in err, err
