"""bigshuf shuffle as GNU shuf: the behaviours coreutils' own shuf tests check (written anew here),
plus bigshuf's guarantees on the shuf options (atomic -o, bounded memory, seeds)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest
from helpers import cli_argv, cli_env, invoke, one_line_error, run

import bigshuf


def _lines(data: bytes, sep: bytes = b"\n"):
    return data.split(sep)[:-1]


# -- permutations: files, -i, -e ------------------------------------------------------------------

def test_file_and_range_are_permutations(numbered):
    src = numbered(100)
    for args in ([str(src)], ["-i", "0-99"]):
        p = invoke(["shuffle", *args])
        assert p.returncode == 0
        assert p.stdout != src.read_bytes()            # 1 in 100! to be equal
        assert sorted(_lines(p.stdout), key=int) == _lines(src.read_bytes())


def test_echo_shuffles_the_arguments_and_zero_terminated_range():
    p = invoke(["shuffle", "-e", "a", "b", "c", "d", "-", "--seed", "1"])
    assert sorted(_lines(p.stdout)) == [b"-", b"a", b"b", b"c", b"d"]
    assert invoke(["shuffle", "-e"]).stdout == b""                 # no arguments: no lines
    assert invoke(["shuffle", "-z", "-i", "1-1"]).stdout == b"1\0"
    z = invoke(["shuffle", "-z", "-e", "x y", "a\nb"]).stdout
    assert sorted(z.split(b"\0")[:-1]) == [b"a\nb", b"x y"]
    out = io.BytesIO()
    bigshuf.shuffle(output=out, echo=["p", b"q"], seed=3)
    assert sorted(_lines(out.getvalue())) == [b"p", b"q"]


def test_range_edges_and_empty_range():
    assert invoke(["shuffle", "-i", "5-4"]).stdout == b""
    assert invoke(["shuffle", "-i", "7-7"]).stdout == b"7\n"
    p = invoke(["shuffle", "--input-range=222-233", "--seed", "2"])
    assert sorted(map(int, _lines(p.stdout))) == list(range(222, 234))


def test_small_sample_of_a_huge_range_is_instant():
    t0 = time.perf_counter()
    for rng in ("1-10000000000", f"0-{2**64 - 1}"):
        p = invoke(["shuffle", "-i", rng, "-n", "5", "--seed", "4"])
        got = list(map(int, _lines(p.stdout)))
        lo, hi = map(int, rng.split("-"))
        assert p.returncode == 0 and len(set(got)) == 5 and all(lo <= v <= hi for v in got)
    assert time.perf_counter() - t0 < 5


def test_range_larger_than_memory_goes_through_the_engine(tmp_path):
    """200 000 numbers (1.3 MB) with --memory 1M: scattered to the temporary file, still a
    permutation; -n of most of it too (shuffle and truncate)."""
    out = io.BytesIO()
    stats = bigshuf.shuffle(output=out, input_range=(1, 200_000), memory="1M", seed=5,
                            temp_dir=str(tmp_path))
    assert stats.store == "temporary file"
    assert sorted(map(int, _lines(out.getvalue()))) == list(range(1, 200_001))
    out = io.BytesIO()
    bigshuf.shuffle(output=out, input_range="1-200000", memory="1M", sample=150_000, seed=5)
    got = list(map(int, _lines(out.getvalue())))
    assert len(got) == len(set(got)) == 150_000 and min(got) >= 1 and max(got) <= 200_000


# -- -n --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_in", [0, 1, 5, 1024, 1025, 3073])
def test_reservoir_sizes(n_in):
    """-n from 0, 1, ... 3073 lines: min(n, lines) distinct input lines (shuf's batch edges)."""
    data = b"".join(b"%d\n" % i for i in range(1, n_in + 1))
    for n_out in (0, 1, 5, 1024, 1025, 3073):
        out = io.BytesIO()
        bigshuf.shuffle([io.BytesIO(data)], out, sample=n_out, seed=n_in + n_out)
        got = _lines(out.getvalue())
        assert len(got) == len(set(got)) == min(n_in, n_out)
        assert all(1 <= int(v) <= n_in for v in got)


def test_smallest_n_wins_and_n0_reads_nothing(tmp_path):
    assert len(_lines(invoke(["shuffle", "-n10", "-i0-9", "-n3", "-n20"]).stdout)) == 3
    missing = tmp_path / "missing"
    for args in (["-n0", str(missing)], ["-r", "-n", "0", str(missing)], ["-r", "-n0", "-i0-9"]):
        p = invoke(["shuffle", *args])
        assert p.returncode == 0 and p.stdout == b"", args
    assert invoke(["shuffle", "-n1", str(missing)]).returncode == 2


def test_large_input_sample_through_reservoir(numbered):
    """A 200 000-line input, -n 1000: one pass, distinct input lines."""
    src = numbered(200_000)
    stats = bigshuf.shuffle([str(src)], os.devnull, sample=1000, seed=1)
    assert stats.method == "reservoir" and stats.records_out == 1000


# -- -r ----------------------------------------------------------------------------------------------

def test_repeat_with_count_can_exceed_the_input():
    p = invoke(["shuffle", "--repeat", "-i0-9", "-n1000"])
    assert len(_lines(p.stdout)) == 1000 and sorted(set(map(int, _lines(p.stdout)))) == list(range(10))
    p = invoke(["shuffle", "-r", "-n2000"], input=b"A\nB\nC\nD\nE\n")
    assert len(_lines(p.stdout)) == 2000 and set(_lines(p.stdout)) == {b"A", b"B", b"C", b"D", b"E"}
    for args in (["-r", "-i0-9", "-n0"], ["-r", "-n0"]):
        assert invoke(["shuffle", *args], input=b"A\n").stdout == b""
    p = invoke(["shuffle", "-r", "-n", "50", "-e", "x", "y"])
    assert set(_lines(p.stdout)) == {b"x", b"y"} and len(_lines(p.stdout)) == 50
    z = invoke(["shuffle", "-z", "-r", "-n", "4", "-e", "x", "y"]).stdout
    assert len(z) == 8 and set(z.split(b"\0")[:-1]) <= {b"x", b"y"}
    z = invoke(["shuffle", "-z", "-r", "-n", "4"], input=b"p\0q").stdout
    assert len(z) == 8 and set(z.split(b"\0")[:-1]) <= {b"p", b"q"}


@pytest.mark.parametrize("args,stdin", [
    (["-r", "-i", "0-10"], None),
    (["--rep", "-e", "A", "B", "C", "D"], None),   # a long-option prefix, as getopt_long takes
    (["-r"], b"A\nB\nC\nD\nE\n"),
])
def test_repeat_without_count_is_endless_until_the_pipe_closes(args, stdin):
    """`bigshuf shuffle -r ... | head -n 1000`: 1000 lines, then exit 0 with nothing on stderr."""
    proc = subprocess.Popen(cli_argv(["shuffle", *args]), env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    lines = [proc.stdout.readline() for _ in range(1000)]
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
    assert all(v.endswith(b"\n") for v in lines)


class _HeadReader(io.RawIOBase):
    """A reader that goes away after ``limit`` bytes, as `| head -c` does."""

    def __init__(self, limit: int):
        self.got, self.limit = bytearray(), limit

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if len(self.got) >= self.limit:
            raise BrokenPipeError(32, "Broken pipe")
        self.got += bytes(b)
        return len(memoryview(b).cast("B"))


def test_endless_repeat_rounds_grow_from_one_chunk(tmp_path, monkeypatch):
    """Endless -r of a tiny file: rounds of 4096 draws, then doubling (a full first round of a
    2-line file took 0.65 s of CPU before `| head` was noticed); an input of many lines gets
    full rounds at once (no extra passes). The output is the -n prefix either way."""
    from bigshuf.shuffler.methods import repeat
    sizes = []
    real = repeat._round
    monkeypatch.setattr(repeat, "_round", lambda idx, *a: sizes.append(len(idx)) or real(idx, *a))
    src = tmp_path / "tiny.txt"
    src.write_bytes(b"a\nb\n")
    head = _HeadReader(200_000)
    bigshuf.shuffle([str(src)], head, repeat=True, seed=5)
    assert sizes[:4] == [4096, 8192, 16384, 32768] and sizes[-1] < 1 << 20
    prefix = io.BytesIO()
    bigshuf.shuffle([str(src)], prefix, repeat=True, seed=5, sample=200_000)
    assert bytes(head.got) == prefix.getvalue()[:len(head.got)] and len(head.got) >= 200_000
    sizes.clear()
    many = tmp_path / "many.txt"
    many.write_bytes(b"".join(b"%d\n" % i for i in range(50_000)))
    bigshuf.shuffle([str(many)], _HeadReader(1 << 20), repeat=True, seed=5, memory="16M")
    assert sizes[0] == 4096 and sizes[1] == sizes[2] > 8192


def test_repeat_stops_when_the_file_is_rewritten_in_place(tmp_path, monkeypatch):
    """-r reads its file once a round: a rewrite in place (same size) between rounds is a
    runtime error (exit 1) naming the file, and -o is not published; a file that stays the
    same is read by every round."""
    from bigshuf.shuffler.methods import repeat
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%04d\n" % i for i in range(2000)))
    os.utime(src, ns=(10**18, 10**18))  # an old mtime: the rewrite's shows, whatever the clock
    real, calls = repeat._collect, []

    def rewriting(*args):
        calls.append(1)
        if len(calls) == 2:
            with open(src, "r+b") as f:
                f.write(b"XXXX")
        return real(*args)

    monkeypatch.setattr(repeat, "_collect", rewriting)
    out = tmp_path / "out.txt"
    p = invoke(["shuffle", "-r", "-n", "200000", "-S", "1M", str(src), "-o", str(out)])
    one_line_error(p, 1, "input changed while it was being shuffled")
    assert b"in.txt" in p.stderr and not out.exists() and len(calls) == 2
    calls.clear()
    src.write_bytes(b"".join(b"%04d\n" % i for i in range(2000)))
    monkeypatch.setattr(repeat, "_collect", lambda *a: calls.append(1) or real(*a))
    assert invoke(["shuffle", "-r", "-n", "200000", "-S", "1M", str(src), "-o", str(out)]).returncode == 0
    assert len(calls) > 2


def test_repeat_of_a_file_larger_than_memory_same_output_at_any_memory(tmp_path):
    """Lines of 1 B to 60 KB (so rounds overflow and are halved) in a 4 MB file, --memory 1M:
    draws are input lines, and the same seed gives the same bytes at 1M and 8M."""
    import random
    r = random.Random(7)
    data = b"".join(b"%d:%s\n" % (i, b"x" * r.choice([0, 10, 30_000, 60_000])) for i in range(200))
    src = tmp_path / "big.txt"
    src.write_bytes(data)
    outs = []
    for memory in ("1M", "8M"):
        out = io.BytesIO()
        bigshuf.shuffle([str(src)], out, repeat=True, sample=300, memory=memory, seed=3)
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    got = _lines(outs[0])
    assert len(got) == 300 and set(got) <= set(_lines(data))
    same = run(["shuffle", "-r", "-n", "300", "-S", "1M", "--seed", "3"], input=data)
    assert same.returncode == 0 and same.stdout == outs[0]   # stdin spooled: same draws


def test_repeat_without_lines_is_an_error():
    for args in (["-er"], ["-r", "-i", "5-4"]):
        one_line_error(invoke(["shuffle", *args]), 2, "no lines to repeat")
    one_line_error(invoke(["shuffle", "-r", "-n", "3"], input=b""), 2, "no lines to repeat")


# -- --random-source -------------------------------------------------------------------------------

def test_random_source_same_file_same_output(tmp_path, numbered):
    src = numbered(500)
    key = tmp_path / "key"
    key.write_bytes(bytes(range(40)))
    other = tmp_path / "other"
    other.write_bytes(bytes(range(1, 41)))
    a = invoke(["shuffle", str(src), "--random-source", str(key)]).stdout
    b = invoke(["shuffle", str(src), "--random-source", str(key)]).stdout
    c = invoke(["shuffle", str(src), "--random-source", str(other)]).stdout
    assert a == b != c and sorted(_lines(a), key=int) == _lines(src.read_bytes())
    out = io.BytesIO()
    bigshuf.shuffle([str(src)], out, random_source=str(key))
    assert out.getvalue() == a
    assert invoke(["shuffle", "-i", "1-50", "--random-source", "/dev/zero"]).returncode == 0


def test_random_source_errors(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"x" * 31)
    one_line_error(invoke(["shuffle", "-i", "1-5", "--random-source", str(short)]), 2, "end of file",
                   str(short))
    one_line_error(invoke(["shuffle", "-i", "1-5", "--random-source", str(tmp_path / "nope")]), 2,
                   "no such file")
    one_line_error(invoke(["shuffle", "-i", "1-5", "--random-source", "/dev/zero", "--seed", "1"]),
                   2, "--seed and --random-source")


# -- errors, -o, closed stdin ----------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["-i0-9", "-e", "A", "B"], "cannot combine -e and -i"),
    (["-nA"], "-n"),
    (["-n", "-1", "-i1-3"], "-n must not be negative"),
    (["-i0-9", "-n10", "-i8-90"], "multiple -i options"),
    (["-i1"], "invalid input range"),
    (["-iA"], "invalid input range"),
    (["-i1-"], "invalid input range"),
    (["-i1-A"], "invalid input range"),
    (["-i5-3"], "invalid input range"),
    (["-i0-0", "1"], "extra operand '1'"),
    (["-i0-9", "-o", "A", "-o", "B"], "multiple output files"),
    (["-i0-9", "--random-source", "A", "--random-source", "B"], "multiple random sources"),
    (["-e", "a\nb"], "contains a newline"),
    (["-r", "-i0-9", "-o", "out.txt"], "never ends"),
])
def test_usage_errors_are_one_line_exit_2(args, needle):
    one_line_error(invoke(["shuffle", *args]), 2, needle)


def test_output_equal_to_the_input(numbered):
    src = numbered(1000)
    before = src.read_bytes()
    for args in ([], ["-n", "10"], ["-r", "-n", "2000"]):
        bigshuf.shuffle([str(src)], str(src), seed=1, **_kw(args))
        got = _lines(src.read_bytes())
        assert set(got) <= set(_lines(before))
        src.write_bytes(before)


def _kw(args):
    kw = {}
    if "-n" in args:
        kw["sample"] = int(args[args.index("-n") + 1])
    if "-r" in args:
        kw["repeat"] = True
    return kw


def test_closed_stdin(numbered):
    """`shuf /dev/null <&-` and `shuf -r -n 0 FILE <&-` work; reading a closed stdin is an error."""
    src = numbered(3)
    close0 = lambda: os.close(0)  # noqa: E731
    for args in (["/dev/null"], ["-r", "-n", "0", str(src)]):
        p = run(["shuffle", *args], preexec=close0)
        assert p.returncode == 0 and p.stderr == b"", (args, p.stderr)
    one_line_error(run(["shuffle"], preexec=close0), 2, "standard input is closed")


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


def test_range_sample_at_the_largest_k_stays_in_its_share(tmp_path):
    import tracemalloc

    import bigshuf
    from bigshuf.shuffler.methods.direct import BYTES_PER_OFFSET

    memory = 32 << 20
    k = memory // 2 // BYTES_PER_OFFSET  # the largest K drawn without the engine
    out = tmp_path / "s.txt"
    tracemalloc.start()
    stats = bigshuf.shuffle([], str(out), input_range=(1, 10 ** 10), sample=k, memory=memory, seed=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats.method == "range" and stats.records_out == k
    assert peak <= memory // 2 + (4 << 20), f"{peak / 2**20:.1f} MiB"  # before: ~2x (ints, strs)
    assert out.stat().st_size > 10 * k


def test_a_range_sample_beyond_memory_never_expands_the_range(tmp_path):
    """-i LO-HI -n K whose K draws do not fit the budget: a one-line usage error naming the
    --memory it needs (its draws never depend on --memory: the order contract), never the
    whole range expanded through the temporary file (before: 'need 101.4G')."""
    out = tmp_path / "s.txt"
    r = invoke(["shuffle", "-i", "1-10000000000", "-n", "20000", "-S", "1M", "--seed", "1", "-o", out])
    assert r.returncode == 2 and b"needs --memory" in r.stderr, r.stderr
    assert not out.exists()
    r = invoke(["shuffle", "-i", "1-10000000000", "-n", "20000", "-S", "4M", "--seed", "1", "-o", out])
    assert r.returncode == 0, r.stderr
    values = [int(v) for v in out.read_bytes().split()]
    assert len(values) == len(set(values)) == 20000 and all(1 <= v <= 10 ** 10 for v in values)
    assert values != sorted(values)
