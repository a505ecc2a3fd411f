"""The input method (shuffler/methods/reread.py): no temporary copy, the inputs read once per window.

Its promise is to be invisible: the same bytes as the engine for every seed, option and input
shape it takes, a fall back to the engine for everything else, and an input that changes between
readings never producing a wrong output.
"""
from __future__ import annotations

import os
import random
from collections import Counter

import numpy as np
import pytest
from helpers import invoke

import bigshuf
from bigshuf.shuffler.methods import reread


def long_lines(n: int, seed: int = 0, width: int = 300, tail: bytes = b"\n") -> bytes:
    """n lines of 100..``width`` bytes (JSON-like: long enough for the input method)."""
    rng = random.Random(seed)
    lines = [b'{"i": %d, "t": "%s"}' % (i, b"x" * rng.randint(80, width)) for i in range(n)]
    return b"\n".join(lines) + tail


def outputs(directory) -> dict:
    return {p: (directory / p).read_bytes() for p in sorted(os.listdir(directory))}


def shuffle_both(monkeypatch, tmp_path, inputs, name, **kw):
    """(stats, files written) of the input method, then of the engine, for the same call."""
    results = []
    for method in ("input", "engine"):
        out = tmp_path / method
        out.mkdir(exist_ok=True)
        with monkeypatch.context() as m:
            if method == "engine":
                m.setattr(reread, "suitable", lambda *a: None)
            stats = bigshuf.shuffle(inputs, str(out / name), **kw)
        assert (stats.method == "input") == (method == "input"), stats.method
        results.append((stats, outputs(out)))
    return results


def append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _change_on_window(monkeypatch, window: int, change) -> None:
    """Run ``change()`` just before the ``window``-th window (0-based) is filled."""
    fill = reread._fill_window
    calls = []

    def hooked(*args, **kw):
        if len(calls) == window:
            change()
        calls.append(1)
        return fill(*args, **kw)

    monkeypatch.setattr(reread, "_fill_window", hooked)


@pytest.mark.parametrize("kw", [
    dict(memory="1M"),
    dict(memory="1M", jobs=1),
    dict(memory="1M", header=True),
    dict(memory="1M", buckets=50),
    dict(memory="1M", sample=1234, buckets=64),  # -n with --buckets: shuffle and stop, not the reservoir
    dict(memory="1M", shards=3),
    dict(memory="1M", zero_terminated=True),
    dict(memory="1M", split="a=0.3,b=rest"),
])
def test_same_bytes_as_the_engine(tmp_path, monkeypatch, kw):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(long_lines(4000, 1))
    b.write_bytes(long_lines(3000, 2, tail=b""))  # last line without a newline
    if kw.get("zero_terminated"):
        for p in (a, b):
            p.write_bytes(p.read_bytes().replace(b"\n", b"\0"))
    name = "{split}.jsonl" if "split" in kw else "out.jsonl"
    for seed in (1, 2):
        (stats, got), (engine_stats, want) = shuffle_both(
            monkeypatch, tmp_path, [str(a), str(b)], name, seed=seed, temp_dir=str(tmp_path), **kw)
        assert got == want and len(got) == (3 if "shards" in kw else 2 if "split" in kw else 1)
        assert (stats.records, stats.records_out) == (engine_stats.records, engine_stats.records_out)


@pytest.mark.parametrize("kw", [dict(), dict(header=True), dict(buckets=50)])
def test_same_bytes_when_blocks_are_read_in_parts(tmp_path, monkeypatch, kw):
    """The passes read blocks in parts cut at record ends (PART_BYTES); a record longer than a
    part is a part of its own, a last line without a newline gets its terminator in its part."""
    monkeypatch.setattr(reread, "PART_BYTES", 5000)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(long_lines(2000, 3) + b"y" * 12000 + b"\n" + long_lines(2000, 4))
    b.write_bytes(long_lines(3000, 5, tail=b""))
    (stats, got), (_, want) = shuffle_both(monkeypatch, tmp_path, [str(a), str(b)], "out.jsonl",
                                           seed=7, memory="1M", **kw)
    assert got == want


def test_the_input_method_gives_the_order_of_the_keys(tmp_path):
    """The input method's bytes for a seed are the order contract's (and so the engine's)."""
    from test_reproducible import expected

    src = tmp_path / "in.jsonl"
    data = long_lines(6000, 5)
    src.write_bytes(data)
    out = tmp_path / "out"
    stats = bigshuf.shuffle([str(src)], str(out), seed=12345, memory="1M")
    assert stats.method == "input"
    assert out.read_bytes() == b"".join(expected(data.splitlines(keepends=True), 12345))


def test_stdout_is_left_to_the_engine(tmp_path):
    """Re-review break: with stdout on a regular file, an input changed after the first window
    failed ('output incomplete') where the engine succeeds. Output written in place cannot be
    taken back, so the input method only writes under temporary names."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(4000, 4))
    res = invoke(["shuffle", str(src), "-S", "1M", "--seed", "5", "-v"])
    assert res.returncode == 0, res.stderr
    assert b"runs in temporary file" in res.stderr
    out = tmp_path / "out"
    bigshuf.shuffle([str(src)], str(out), seed=5, memory="1M")
    assert res.stdout == out.read_bytes()


@pytest.mark.parametrize("content,name", [
    (b"".join(b"%d\n" % i for i in range(200000)), "short.txt"),  # short lines: metadata too big
    (None, "long.jsonl.gz"),                                        # compressed: read once
])
def test_not_used_where_it_does_not_pay(tmp_path, content, name):
    src = tmp_path / name
    if content is None:
        import gzip
        src.write_bytes(gzip.compress(long_lines(4000, 6)))
    else:
        src.write_bytes(content)
    stats = bigshuf.shuffle([str(src)], str(tmp_path / "out.txt"), seed=1, memory="1M")
    assert stats.store == "temporary file"


def test_a_block_at_its_record_limit_goes_the_engine_way(tmp_path, monkeypatch):
    """Pass 0 finds the reader's cuts from the bytes alone; a block the reader would cut by its
    record count instead (a dense stretch of empty lines) is noticed, and the engine, reading
    once, gives the output (same bytes as when the method is off)."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(2000, 8) + b"\n" * 40000 + long_lines(2000, 9))
    outs = []
    for off in (False, True):
        with monkeypatch.context() as m:
            if off:
                m.setattr(reread, "suitable", lambda *a: None)
            out = tmp_path / f"out{off}"
            stats = bigshuf.shuffle([str(src)], str(out), seed=3, memory="1M")
            assert stats.store == "temporary file"
            outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("first", [b"", b"a\nb\n", b"x" * 300 + b"\n"])
def test_the_record_estimate_looks_at_every_input(tmp_path, monkeypatch, first):
    """Review break: an empty or tiny first input stood for all of them (a short-line estimate
    over 1 MB of JSONL), so the method was not used where its conditions hold."""
    (tmp_path / "a.txt").write_bytes(first)
    (tmp_path / "b.jsonl").write_bytes(long_lines(4000, 10))
    inputs = [str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")]
    (stats, mine), (_, theirs) = shuffle_both(monkeypatch, tmp_path, inputs, "out", seed=2,
                                              memory="1M")
    assert mine == theirs


def test_not_used_when_it_would_take_too_many_passes(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(30000, 7))  # ~6 MB at --memory 1M: more than MAX_PASSES windows
    stats = bigshuf.shuffle([str(src)], str(tmp_path / "out"), seed=1, memory="1M")
    assert stats.store == "temporary file"


def test_positions_are_uniform(tmp_path):
    """Every record is equally likely at every place (chi-square over deciles, fixed seeds)."""
    n, runs = 3000, 60
    src = tmp_path / "in.jsonl"
    data = long_lines(n, 8, width=260)
    src.write_bytes(data)
    lines = data.splitlines()
    watched = {lines[i]: i for i in (0, 1, n // 2, n - 1)}
    counts = Counter()
    out = tmp_path / "out"
    for seed in range(runs):
        stats = bigshuf.shuffle([str(src)], str(out), seed=seed, memory="1M")
        assert stats.method == "input"
        for pos, line in enumerate(out.read_bytes().splitlines()):
            if line in watched:
                counts[(watched[line], pos * 10 // n)] += 1
    table = np.array([[counts[(i, d)] for d in range(10)] for i in watched.values()], float)
    expected = runs / 10
    chi2 = ((table - expected) ** 2 / expected).sum()
    # 4 records x 9 degrees of freedom = 36: P(chi2 > 67) < 0.001
    assert chi2 < 67, table


def test_an_input_changed_between_passes_starts_over_the_engine_way(tmp_path, monkeypatch):
    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(4000, 9))
    _change_on_window(monkeypatch, 0, lambda: append(src, b'{"appended": true}\n'))
    out = tmp_path / "out"
    stats = bigshuf.shuffle([str(src)], str(out), seed=3, memory="1M")
    assert stats.store == "temporary file"  # the second attempt
    assert sorted(out.read_bytes().splitlines()) == sorted(src.read_bytes().splitlines())
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_restart_starts_with_the_first_attempts_memory_freed(tmp_path, monkeypatch):
    """Review break: after an input changed, the engine's run began while the first attempt's
    window buffer, index and read buffers were still alive (the exception's traceback held
    them): 365 MiB at --memory 256M, over the bound. Python-traced memory (numpy's buffers
    included) at the start of each attempt must be the same."""
    import tracemalloc

    from bigshuf.shuffler.engine import Engine

    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(4000, 9))
    bigshuf.shuffle([str(src)], str(tmp_path / "out"), seed=3, memory="1M")  # imports done
    _change_on_window(monkeypatch, 1, lambda: append(src, b'{"appended": true}\n'))
    at_start = []
    build, scatter = reread.build_index, Engine.scatter
    monkeypatch.setattr(reread, "build_index",
                        lambda *a, **k: at_start.append(tracemalloc.get_traced_memory()[0]) or build(*a, **k))
    monkeypatch.setattr(Engine, "scatter",
                        lambda *a, **k: at_start.append(tracemalloc.get_traced_memory()[0]) or scatter(*a, **k))
    tracemalloc.start()
    try:
        stats = bigshuf.shuffle([str(src)], str(tmp_path / "out"), seed=3, memory="1M")
    finally:
        tracemalloc.stop()
    assert stats.store == "temporary file" and len(at_start) == 2
    assert at_start[1] - at_start[0] < 100_000, at_start  # the window alone is ~600 KB


@pytest.mark.parametrize("rewrite", ["shifted", "letters"])
def test_a_change_that_leaves_size_and_times_alone_is_caught(tmp_path, monkeypatch, rewrite):
    """Review break: on tmpfs a write through a shared mapping changes neither size nor times;
    new line breaks inside records, or other letters, made a wrong output with exit 0. Every
    block read again must have pass 0's xxh3 digest."""
    src = tmp_path / "in.jsonl"
    data = long_lines(4000, 10)
    src.write_bytes(data)
    monkeypatch.setattr(reread._Input, "check", lambda self: None)  # as if times were unchanged
    new = b"x" + data[:-1] if rewrite == "shifted" else data.replace(b"xxxx", b"yyyy")

    def rewrite_in_place():
        with open(src, "r+b") as f:
            f.write(new)

    _change_on_window(monkeypatch, 1, rewrite_in_place)
    out = tmp_path / "out"
    stats = bigshuf.shuffle([str(src)], str(out), seed=3, memory="1M")
    assert stats.store == "temporary file"
    assert sorted(out.read_bytes().splitlines()) == sorted(new.splitlines())


def test_index_memory_is_bounded_by_giving_up(tmp_path):
    """Lines long at first and short later: pass 0 stops at its record cap, the engine runs."""
    src = tmp_path / "in.txt"
    src.write_bytes(long_lines(300, 12) + b"".join(b"%d\n" % i for i in range(400000)))
    stats = bigshuf.shuffle([str(src)], str(tmp_path / "out"), seed=1, memory="1M")
    assert stats.store == "temporary file"
    assert stats.records == 300 + 400000


def test_too_few_descriptors_for_the_inputs_means_the_engine(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        p = tmp_path / f"in{i}.jsonl"
        p.write_bytes(long_lines(1500, 20 + i))
        paths.append(str(p))
    real_open = os.open
    opened = []

    def limited(path, flags, *a):
        if str(path) in paths:
            opened.append(path)
            if len(opened) == 2:
                raise OSError(24, "Too many open files")
        return real_open(path, flags, *a)

    monkeypatch.setattr(reread.os, "open", limited)
    stats = bigshuf.shuffle(paths, str(tmp_path / "out"), seed=1, memory="1M")
    assert stats.store == "temporary file"
    assert sorted((tmp_path / "out").read_bytes().splitlines()) == sorted(
        b"".join(open(p, "rb").read() for p in paths).splitlines())


def test_a_change_after_the_first_window_of_a_file_output_starts_over(tmp_path, monkeypatch):
    """Review break: -o FILE only went to a temporary name, so the run restarts (it used to fail
    with 'output incomplete', asked after the temporary file was taken back)."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(5000, 13))
    _change_on_window(monkeypatch, 1, lambda: append(src, b'{"new": 1}\n'))
    out = tmp_path / "out"
    stats = bigshuf.shuffle([str(src)], str(out), seed=2, memory="1M")
    assert stats.store == "temporary file"
    assert sorted(out.read_bytes().splitlines()) == sorted(src.read_bytes().splitlines())


def test_a_signal_during_a_window_of_a_file_output_says_nothing_was_written(tmp_path, monkeypatch):
    import signal

    from bigshuf.common.errors import Interrupted

    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(5000, 14))
    out = tmp_path / "out"
    out.write_bytes(b"OLD\n")
    _change_on_window(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(Interrupted) as info:
        bigshuf.shuffle([str(src)], str(out), seed=2, memory="1M")
    assert "no output written" in str(info.value)
    assert out.read_bytes() == b"OLD\n"
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out"]


def test_a_removed_or_replaced_input_is_read_again_from_the_open_file(tmp_path, monkeypatch):
    """Review: the restart reopened inputs by name ('no such file'; a FIFO moved over the input
    blocked it). It reads the file being shuffled, from the descriptor held since pass 0."""
    src = tmp_path / "in.jsonl"
    data = long_lines(5000, 15)
    src.write_bytes(data)

    def replace():
        src.unlink()
        os.mkfifo(src)

    _change_on_window(monkeypatch, 1, replace)
    out = tmp_path / "out"
    stats = bigshuf.shuffle([str(src)], str(out), seed=2, memory="1M")
    assert stats.store == "temporary file"
    assert sorted(out.read_bytes().splitlines()) == sorted(data.splitlines())


def test_stdout_appending_to_the_input_is_left_to_the_engine(tmp_path):
    """Review break: `bigshuf shuffle f >> f` changed f between readings (exit 1, f damaged).
    The engine reads f whole before writing: f followed by its shuffle, like shuf."""
    import subprocess
    import sys

    from helpers import cli_env

    src = tmp_path / "in.jsonl"
    data = long_lines(5000, 16)
    src.write_bytes(data)
    with open(src, "ab") as f:
        p = subprocess.run([sys.executable, "-m", "bigshuf", "shuffle", str(src), "-S", "1M",
                            "--seed", "1", "-v"], stdout=f, stderr=subprocess.PIPE, env=cli_env())
    assert p.returncode == 0, p.stderr
    assert b"runs in temporary file" in p.stderr
    got = src.read_bytes()
    assert got[:len(data)] == data and sorted(got[len(data):].splitlines()) == sorted(data.splitlines())


def test_fd_aliases_are_read_once(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(5000, 17))
    with open(src, "rb") as f:
        import subprocess
        import sys

        from helpers import cli_env

        p = subprocess.run([sys.executable, "-m", "bigshuf", "shuffle", "/dev/stdin", "-S", "1M",
                            "-v", "-o", str(tmp_path / "out")], stdin=f, capture_output=True,
                           env=cli_env())
    assert p.returncode == 0 and b"runs in temporary file" in p.stderr, p.stderr


def test_no_temporary_space_is_asked_for(tmp_path):
    """Review: the free-space check wanted room for a temporary copy the method never makes."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(long_lines(5000, 18))
    res = invoke(["shuffle", str(src), "-S", "1M", "-T", "/proc", "-o", str(tmp_path / "out"), "-v"])
    assert res.returncode == 0, res.stderr
    assert b"no temporary copy" in res.stderr


def test_many_inputs_under_a_low_descriptor_limit(tmp_path):
    """Review break: 60 inputs under `ulimit -n 64` were all held open, and the reader then had
    no descriptor left ('Too many open files', exit 2). The engine takes them now."""
    import resource

    from helpers import run

    paths = []
    for i in range(60):
        p = tmp_path / f"p{i:03d}.jsonl"
        p.write_bytes(long_lines(100, 100 + i))
        paths.append(str(p))

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    p = run(["shuffle", *paths, "-S", "1M", "-o", tmp_path / "out", "-v"], preexec=limit)
    assert p.returncode == 0, p.stderr
    assert sorted((tmp_path / "out").read_bytes().splitlines()) == sorted(
        b"".join(open(x, "rb").read() for x in paths).splitlines())


def test_verbose_says_why_the_input_method_was_declined(tmp_path):
    """Review break (issue 21): at the capped default budget -v said only "method: engine",
    not why the input was not read again."""
    import gzip
    big, packed = tmp_path / "in.jsonl", tmp_path / "in.jsonl.gz"
    big.write_bytes(long_lines(30000, 7))  # ~6 MB at --memory 1M: too many windows
    packed.write_bytes(gzip.compress(long_lines(4000, 6)))
    for src, why in ((big, b"windows"), (packed, b"size unknown")):
        res = invoke(["shuffle", str(src), "-S", "1M", "--seed", "1", "-v",
                      "-o", str(tmp_path / "out")])
        assert res.returncode == 0, res.stderr
        assert why in res.stderr, res.stderr


def test_probe_samples_every_input_by_its_share(tmp_path, monkeypatch):
    """The cache probe reads every input by its share of the bytes: timing only the largest
    (cached) one chose the input method for smaller inputs on a 200 MB/s disk, 1.5x slower than
    the engine (adversarial review, issue 21)."""
    from bigshuf.shuffler.methods import reread
    paths = []
    for name, size in (("a", 4 << 20), ("b", 3 << 20), ("c", 3 << 20)):
        p = tmp_path / name
        p.write_bytes(b"x\n" * (size // 2))
        paths.append(str(p))
    seen = []
    real = os.preadv

    def preadv(fd, bufs, offset):
        seen.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return real(fd, bufs, offset)

    monkeypatch.setattr(reread.os, "preadv", preadv)
    assert reread.probe_read_rate(paths) > 0
    assert len(seen) == reread.PROBE_READS
    assert {name: seen.count(name) for name in "abc"} == {"a": 3, "b": 3, "c": 2}  # samples at 1/16, 3/16, ... of 10M
