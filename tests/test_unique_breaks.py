"""--unique against what a reviewer tried (each a regression test): named streams read once,
an input changed between the two readings, small budgets with a compressed output, the
free-space check before the pass, and the --split message."""
from __future__ import annotations

import os
import subprocess
import threading

import pytest
from helpers import cli_argv, cli_env, invoke, one_line_error, run, tmpfs

DATA = b"".join(b"w%d\n" % (i % 37) for i in range(400))


def _expected(tmp_path, *args):
    src = tmp_path / "ref.txt"
    src.write_bytes(DATA)
    res = invoke(["shuffle", *args, src])  # in this process: cheaper than another run
    assert res.returncode == 0, res.stderr
    return res.stdout


def _bash(cmd: str, tmp_path):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, cwd=tmp_path, timeout=60,
                          env=cli_env())


@pytest.mark.parametrize("mode", [["-u"], ["--epochs", "2"], ["-r", "-n", "50"]])
def test_a_fifo_is_read_once_in_every_rereading_mode(tmp_path, mode):
    """A named FIFO given to a mode that reads its input twice: copied once (a second open
    would wait for a writer forever)."""
    fifo = tmp_path / "fi"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(DATA))
    writer.start()
    res = run(["shuffle", *mode, "--seed", "9", fifo], timeout=60)
    writer.join(timeout=5)
    assert res.returncode == 0, res.stderr
    assert res.stdout == _expected(tmp_path, *mode, "--seed", "9")


def test_process_substitutions_and_dev_stdin_under_unique(tmp_path):
    """<(...) (several at once), /dev/stdin and /proc/self/fd/0 are streams: spooled, never
    reported as changed."""
    (tmp_path / "d1.txt").write_bytes(DATA)
    b = " ".join(cli_argv(["shuffle", "-u", "--seed", "9"]))
    res = _bash(f"{b} <(cat d1.txt) <(cat d1.txt)", tmp_path)
    assert res.returncode == 0, res.stderr
    both = invoke(["shuffle", "-u", "--seed", "9", tmp_path / "d1.txt", tmp_path / "d1.txt"])
    assert res.stdout == both.stdout
    for name in ("/dev/stdin", "/proc/self/fd/0"):
        res = _bash(f"cat d1.txt | {b} {name}", tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout == _expected(tmp_path, "-u", "--seed", "9")


@pytest.mark.parametrize("how", ["in place", "mv"])
def test_an_input_changed_between_the_readings_is_never_silently_wrong(tmp_path, monkeypatch, how):
    """Same line count, other bytes: rewritten in place it is an error (exit 1, nothing
    written); replaced by mv, the file held open is read again (the output is the original's)."""
    src, out, new = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "new.txt"
    src.write_bytes(DATA)
    want = invoke(["shuffle", "-u", "--seed", "4", src]).stdout
    from bigshuf.shuffler import dedup
    real = dedup.find_distinct

    def then_change(*a, **k):
        found = real(*a, **k)
        other = DATA.replace(b"w1\n", b"x1\n")
        if how == "in place":
            with open(src, "r+b") as f:
                f.write(other)
        else:
            new.write_bytes(other)
            os.replace(new, src)
        return found
    monkeypatch.setattr("bigshuf.shuffler.run.find_distinct", then_change)
    res = invoke(["shuffle", "-u", "--seed", "4", src, "-o", out])
    if how == "in place":
        one_line_error(res, 1, "input changed")
        assert not out.exists()
    else:
        assert res.returncode == 0, res.stderr
        assert out.read_bytes() == want


@pytest.mark.parametrize("ext", [".gz", ".xz", ".zst", ".bz2"])
def test_unique_with_a_compressed_output_at_the_smallest_budget(tmp_path, ext):
    src, out = tmp_path / "f1", tmp_path / ("x" + ext)
    src.write_bytes(b"a\nb\na\n")
    res = run(["shuffle", "-u", "--seed", "3", "-S", "1M", src, "-o", out])
    assert res.returncode == 0, res.stderr
    assert sorted(invoke(["shuffle", out]).stdout.splitlines()) == [b"a", b"b"]


def test_too_many_records_for_the_budget_names_the_memory_needed(tmp_path):
    src = tmp_path / "many"
    src.write_bytes(b"x\n" * 1_100_000)
    res = run(["shuffle", "-u", "-S", "1M", src, "-o", tmp_path / "x.gz"])
    err = one_line_error(res, 2, "--memory")
    assert "-1" not in err and "--memory 1,048,576" not in err
    assert "--memory 2M" in err, err


def test_free_space_is_checked_before_the_unique_pass(tmp_path):
    small = tmp_path / "small"
    src = tmp_path / "big.txt"
    src.write_bytes(b"".join(b"%08d\n" % i for i in range(700_000)))  # 6.3 MB, all distinct
    with tmpfs(small, "5m"):
        res = run(["shuffle", "-u", "-S", "1M", "-T", small, src, "-o", tmp_path / "d"])
    one_line_error(res, 1, "not enough free space")


def test_split_count_above_the_distinct_records_says_distinct(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\na\nb\n")
    res = invoke(["shuffle", "-u", "--split", "a=3,b=rest", src, "-o", tmp_path / "{split}.txt"])
    err = one_line_error(res, 2, "distinct")
    assert "has 2 distinct" in err, err


def test_a_small_table_keeps_few_partitions():
    """At -S 1M the table (128 KiB) was cut in up to 4096 partitions: each spill wrote pieces of
    a few entries and kept a place for each, a list that outgrew the table (peak RSS of
    800 k records of 120 bytes at -S 1M: 65.2 MiB, 43.3 with the cap; the pass 10x slower)."""
    from bigshuf.shuffler.dedup import ENTRY_BYTES, PIECE_ENTRIES, Table

    def spill():
        raise AssertionError("not used")
    small = Table(128 << 10, 1024, spill)
    assert 2 <= (1 << small.bits) <= max(2, (128 << 10) // (ENTRY_BYTES * PIECE_ENTRIES))
    assert (1 << Table(1 << 30, 4096, spill).bits) == 4096
