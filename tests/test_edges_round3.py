"""Issue 23 ("Edges, round three"): each case failed before its fix."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, lines_of


def _numbered(path: Path, n: int, header: bytes = b"") -> Path:
    path.write_bytes(header + b"".join(b"%d\n" % i for i in range(n)))
    return path


# -- item 7: --header with an empty first input ----------------------------------------------

@pytest.mark.parametrize("extra", [[], ["-S", "1M"], ["-n", "3"]], ids=["input-method", "engine", "sample"])
def test_header_comes_from_the_first_non_empty_input(tmp_path, extra):
    empty = tmp_path / "part-00000"
    empty.write_bytes(b"")
    a = _numbered(tmp_path / "part-00001", 20, b"id\n")
    b = _numbered(tmp_path / "part-00002", 20, b"id\n")
    r = invoke(["shuffle", "--header", "--seed", "1", *extra, empty, a, b])
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == b"id" and b"id" not in out[1:] and r.stderr == b""
    assert len(out) == 1 + (3 if "-n" in extra else 40)
    stdin = invoke(["shuffle", "--header", "--seed", "1", *extra, empty, "-"], input=a.read_bytes())
    assert stdin.stdout.splitlines()[0] == b"id"


# -- item 8: -n is not refused for the whole input's size ------------------------------------

def test_a_sample_needs_its_own_room_not_the_inputs(tmp_path, monkeypatch):
    from bigshuf.common import space

    src = tmp_path / "big.txt"
    src.write_bytes((b"x" * 99 + b"\n") * 40_000)  # 4 MB
    monkeypatch.setattr(space, "free_bytes", lambda d: 2 << 20)  # a 2 MiB disk everywhere
    r = invoke(["shuffle", "-n", "5", src, "-o", tmp_path / "s.txt", "--seed", "1"])
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "s.txt").read_bytes().splitlines()) == 5
    full = invoke(["shuffle", src, "-o", tmp_path / "all.txt", "-S", "1M"])
    assert full.returncode == 1 and b"not enough free space" in full.stderr


# -- item 10: bad patterns, drop-box directories, -r spool errors, CPU affinity --------------

@pytest.mark.parametrize("pattern", ["r{index.x}.txt", "r{index[0]}.txt", "r{0}.txt", "r{index!z}.txt",
                                     "r{index:q}.txt", "r{}.txt"])
def test_bad_shard_patterns_are_usage_errors(tmp_path, pattern):
    src = _numbered(tmp_path / "in.txt", 10)
    r = invoke(["shuffle", src, "--shards", "2", "-o", tmp_path / pattern])
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(b"bigshuf: error: ") and r.stderr.count(b"\n") == 1
    assert b"internal error" not in r.stderr and os.listdir(tmp_path) == ["in.txt"]


def test_a_write_only_drop_box_directory_is_an_output_directory(tmp_path):
    """Mode 0733 (write and search, no read: a drop box): shuf -o works there, so must we."""
    from helpers import run, unprivileged

    how = unprivileged(tmp_path)
    base = tmp_path / "pub"
    base.mkdir()
    base.chmod(0o755)
    tmp_path.chmod(0o755)
    src = _numbered(base / "in.txt", 100)
    src.chmod(0o644)
    box = base / "box"
    box.mkdir()
    box.chmod(0o733)
    os.chown(box, 12345, 12345)  # neither the runner (nobody, or root without DAC override)
    for args in (["-o", box / "out.txt"], ["--shards", "2", "-o", box / "s.txt"],
                 ["-n", "3", "--fsync", "-o", box / "n.txt"]):
        p = run(["shuffle", src, *args], prefix=how["prefix"], preexec=how["preexec"])
        assert p.returncode == 0, p.stderr
    box.chmod(0o755)
    assert sorted(os.listdir(box)) == ["n.txt", "out.txt", "s-00000-of-00002.txt", "s-00001-of-00002.txt"]
    assert lines_of((box / "out.txt").read_bytes()) == lines_of(src.read_bytes())


def test_a_full_temp_dir_under_repeat_from_stdin_is_named(tmp_path):
    import resource

    from helpers import limit, run

    temp = tmp_path / "scratch"
    temp.mkdir()
    data = b"".join(b"%06d\n" % i for i in range(100_000))  # 700 KB
    p = run(["shuffle", "-r", "-n", "5", "-T", temp], input=data,
            preexec=limit(resource.RLIMIT_FSIZE, 64 << 10))
    assert p.returncode == 1, p.stderr
    assert p.stderr.decode() == f"bigshuf: error: writing temporary data in {temp}: file too large " \
                                "(file-size limit reached)\n"
    assert os.listdir(temp) == []


def test_default_jobs_follow_cpu_affinity(monkeypatch):
    from bigshuf.shuffler.plan import plan

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert plan(1 << 30).workers(None) == 1  # `taskset -c 0 bigshuf ...`: one worker


# -- item 14: more shards than lines ----------------------------------------------------------

def test_more_shards_than_lines_is_said_once(tmp_path):
    src = _numbered(tmp_path / "in.txt", 5)
    r = invoke(["shuffle", src, "--shards", "10", "-o", tmp_path / "s.txt"])
    assert r.returncode == 0
    assert r.stderr.decode() == (f"bigshuf: warning: --shards 10 for 5 line(s): 5 of the shards of "
                                 f"{tmp_path / 's.txt'} are empty\n")
    assert len(os.listdir(tmp_path)) == 11
    ok = invoke(["shuffle", src, "--shards", "5", "-o", tmp_path / "t.txt"])
    assert ok.returncode == 0 and ok.stderr == b""
    split = invoke(["shuffle", src, "--shards", "3", "--split", "a=0.5,b=rest", "-o", tmp_path / "{split}.txt"])
    assert split.returncode == 0 and split.stderr.count(b"warning") == 1 and b"b.txt are empty" in split.stderr


# -- items 11 and 12 (shuffle and verify side): messages that name the cause, progress ---------

def test_verify_of_header_outputs_without_header_hints_at_it(tmp_path):
    src = _numbered(tmp_path / "in.txt", 30, b"id\n")
    assert invoke(["shuffle", "--header", src, "--shards", "3", "-o", tmp_path / "s.txt"]).returncode == 0
    shards = sorted(str(p) for p in tmp_path.glob("s-*"))
    r = invoke(["verify", src, *shards])
    assert r.returncode == 1 and b"--header" in r.stdout, r.stdout
    assert invoke(["verify", "--header", src, *shards]).returncode == 0
    other = _numbered(tmp_path / "other.txt", 31)
    assert b"--header" not in invoke(["verify", src, other]).stdout  # no hint when unrelated


def test_verify_progress_has_a_total(tmp_path):
    a = _numbered(tmp_path / "a.txt", 1000)
    r = invoke(["verify", "--progress", a, a])
    assert r.returncode == 0 and b"%|" in r.stderr, r.stderr  # a percentage: tqdm knows the total


def test_summary_counts_workers_in_words():
    from bigshuf.shuffler.stats import ShuffleStats

    assert "2 workers" in ShuffleStats(workers=2, levels=1, runs=1).summary()
    one = ShuffleStats(workers=1, levels=1, runs=1).summary()
    assert "1 worker;" in one and "(s)" not in one and "1 run," in one and "1 level," in one


def test_dask_missing_says_how_to_install_from_the_clone(monkeypatch):
    import builtins

    from bigshuf.common.errors import UsageError
    from bigshuf.shuffler.methods import cluster

    real = builtins.__import__

    def no_dask(name, *a, **kw):
        if name.split(".")[0] in ("distributed", "dask"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(UsageError) as e:
        cluster._require()
    assert "'.[dask]'" in str(e.value) and "bigshuf[dask]" not in str(e.value)


def test_a_local_cluster_is_quiet_when_port_8787_is_taken():
    """--scheduler local:N with another cluster's dashboard on 8787: Dask printed a three-line
    warning (the worker count of -v is checked in test_shared_dirs' cluster test)."""
    import socket
    import warnings

    pytest.importorskip("distributed")
    from bigshuf.shuffler.methods.cluster import _client

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", 8787))
            s.listen()
        except OSError:
            pass  # already taken: as good
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            client, cluster = _client("local:1", None)
            client.close()
            cluster.close()
    assert not [w for w in seen if "8787" in str(w.message)], [str(w.message) for w in seen]


# -- item 9: verify's fingerprint is keyed per run ---------------------------------------------

def test_verify_tells_crafted_short_records_apart(tmp_path):
    """A collision of the unkeyed short-record hash (its rounds are invertible, so a second
    16-byte line with the first one's hash can be solved for): different files, said 'same'."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"hello, world!!!\n")
    b.write_bytes(b"Yb({j3h9VH,|54k\n")
    r = invoke(["verify", a, b])
    assert r.returncode == 1 and b"DIFFERENT" in r.stdout, r.stdout


def test_the_key_changes_the_hashes_not_the_verdict(tmp_path):
    from bigshuf.shuffler import verify as v

    src = _numbered(tmp_path / "in.txt", 500)
    lines = src.read_bytes().splitlines(keepends=True)
    other = tmp_path / "rev.txt"
    other.write_bytes(b"".join(reversed(lines)))
    one, two = v.fingerprint(str(src), key=1), v.fingerprint(str(src), key=2)
    assert one.count == two.count and (one.sum1, one.sum2) != (two.sum1, two.sum2)
    assert v.fingerprint(str(other), key=2).same_multiset(two)
    with pytest.raises(ValueError):
        one.same_multiset(two)  # sums under different keys say nothing


# -- item 13: CSV with quoted line breaks ------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["-S", "1M"], ["-n", "2"]], ids=["input-method", "engine", "sample"])
def test_a_quoted_line_break_under_a_csv_header_is_warned(tmp_path, extra):
    src = tmp_path / "data.csv"
    src.write_bytes(b'id,text\n1,"plain"\n2,"two\nlines"\n3,x\n')
    r = invoke(["shuffle", "--header", "--seed", "1", *extra, src])
    assert r.returncode == 0
    assert r.stderr.decode() == (f"bigshuf: warning: {src}:3: a quote is not closed on this line: "
                                 "a quoted CSV field spanning lines is cut into separate records "
                                 "(bigshuf shuffles lines, not CSV records)\n")
    fine = tmp_path / "fine.csv"
    fine.write_bytes(b'id,text\n1,"a, b"\n2,"say ""hi"""\n')
    assert invoke(["shuffle", "--header", *extra, fine]).stderr == b""
    tsv = tmp_path / "quotes.tsv"  # not CSV-like: a lone quote is just a byte
    tsv.write_bytes(b'id\ttext\n1\t5" floppy\n')
    assert invoke(["shuffle", "--header", *extra, tsv]).stderr == b""


@pytest.mark.parametrize("memory", ["1M", "2M", "4M"])  # engine; input method, then engine; input method
def test_a_quoted_line_break_is_warned_once_at_its_line_by_every_method(tmp_path, memory):
    import random

    import bigshuf

    rng = random.Random(0)
    rows = [b'%d,"%s"\n' % (i, b"x" * rng.randint(80, 300)) for i in range(40_000)]
    rows.insert(20_000, b'x,"two\nlines"\n')
    src = tmp_path / "d.csv"
    src.write_bytes(b"id,text\n" + b"".join(rows))
    said: list = []
    bigshuf.shuffle([str(src)], str(tmp_path / "o.csv"), memory=memory, header=True, seed=1,
                    warn=said.append)
    assert len(said) == 1 and said[0].startswith(f"{src}:20002: a quote is not closed"), said


# -- item 6: shards: bounded count, bounded names, one listing per directory, little per shard --

def test_absurd_shard_counts_and_widths_are_refused_at_once(tmp_path):
    import resource

    from helpers import limit, run

    src = _numbered(tmp_path / "in.txt", 10)
    cap = limit(resource.RLIMIT_AS, 2 << 30)  # before: 23 GB, or a 300 MB name, until killed
    for args, needle in ((["--shards", "99999999999999999999", "-o", tmp_path / "s.txt"], b"--shards"),
                         (["--shards", "2", "-o", tmp_path / "r{index:>300000000}.txt"], b"width")):
        p = run(["shuffle", src, *args], preexec=cap, timeout=60)
        assert p.returncode == 2 and needle in p.stderr and len(p.stderr) < 400, p.stderr[:300]
    assert os.listdir(tmp_path) == ["in.txt"]


def test_the_shard_limit_grows_with_memory(tmp_path):
    from bigshuf.shuffler.writing import max_shards

    src = _numbered(tmp_path / "in.txt", 10)
    r = invoke(["shuffle", src, "-S", "1M", "--shards", str(max_shards(1 << 20) + 1), "-o", tmp_path / "s.txt"])
    assert r.returncode == 2 and b"raise --memory" in r.stderr, r.stderr
    assert max_shards(1 << 30) >= 100_000


def test_many_shards_list_each_directory_once_and_cost_little_each(tmp_path, monkeypatch):
    import tracemalloc

    from bigshuf.shuffler.writing import Sink

    old = tmp_path / ".s-00007-of-01000.txt.bigshuf-0123456789ab-1.tmp"
    old.write_bytes(b"stale\n")  # a killed run's: still removed
    import glob

    listings = []
    real_scandir, real_glob, real_listdir = os.scandir, glob.glob, os.listdir
    monkeypatch.setattr(os, "scandir", lambda p=".": listings.append(p) or real_scandir(p))
    monkeypatch.setattr(os, "listdir", lambda p=".": listings.append(p) or real_listdir(p))
    monkeypatch.setattr(glob, "glob", lambda *a, **k: listings.append(a) or real_glob(*a, **k))
    n = 1000
    tracemalloc.start()
    sink = Sink(str(tmp_path / "s.txt"), 10, n, shards=n)
    sink.open()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        sink.write(np.frombuffer(b"%d\n" % i, np.uint8), 1)
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    sink.finish()
    monkeypatch.undo()
    assert len(listings) <= 2, len(listings)
    assert grown / n < 1024, f"{grown / n:.0f} bytes a shard"
    assert len(os.listdir(tmp_path)) == n and not old.exists()


# -- item 4: decoder windows are counted, or refused when they cannot fit ----------------------

def _xz_declaring(data: bytes, dict_bits: int) -> bytes:
    """An .xz stream of ``data`` whose block header declares a 2**(dict_bits//2 + 12)-byte
    dictionary (xz -9: 64 MiB) without the encoder ever allocating one."""
    import lzma
    import zlib

    xz = bytearray(lzma.compress(data, format=lzma.FORMAT_XZ,
                                 filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 16}]))
    size = (xz[12] + 1) * 4
    assert xz[13] == 0 and xz[14:16] == b"\x21\x01"
    xz[16] = dict_bits
    xz[12 + size - 4:12 + size] = zlib.crc32(bytes(xz[12:12 + size - 4])).to_bytes(4, "little")
    return bytes(xz)


def _zst_declaring(data: bytes, window_log: int) -> bytes:
    """One zstd frame of raw blocks whose header declares a 2**window_log window (--long=27)."""
    blocks = [data[i:i + (1 << 16)] for i in range(0, len(data), 1 << 16)] or [b""]
    out = bytearray(b"\x28\xb5\x2f\xfd\x00" + bytes([(window_log - 10) << 3]))
    for i, b in enumerate(blocks):
        out += ((len(b) << 3) | (i == len(blocks) - 1)).to_bytes(3, "little") + b
    return bytes(out)


@pytest.mark.parametrize("kind", ["xz", "zst"])
def test_a_large_decoder_window_is_refused_when_it_cannot_fit(tmp_path, kind):
    data = b"".join(b"%d\n" % i for i in range(1000))
    big = tmp_path / f"in.{kind}"
    big.write_bytes(_xz_declaring(data, 28) if kind == "xz" else _zst_declaring(data, 27))
    r = invoke(["shuffle", big, "-S", "16M", "-o", tmp_path / "out.txt"])
    assert r.returncode == 2 and b"window" in r.stderr and b"--memory" in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1 and not (tmp_path / "out.txt").exists()
    ok = invoke(["shuffle", big, "-S", "300M", "-o", tmp_path / "out.txt"])
    assert ok.returncode == 0 and lines_of((tmp_path / "out.txt").read_bytes()) == lines_of(data)


def test_a_window_that_fits_is_set_aside_from_the_budget(tmp_path):
    from bigshuf.shuffler.options import ShuffleOptions
    from bigshuf.shuffler.run import plan_run

    big = tmp_path / "in.xz"
    big.write_bytes(_xz_declaring(b"a\nb\n", 28))  # 64 MiB
    assert plan_run(ShuffleOptions(inputs=[str(big)], memory="256M")).reserved >= 64 << 20


def test_a_later_stream_beyond_the_limit_is_a_clean_input_error(tmp_path):
    import lzma

    data = b"".join(b"%d\n" % i for i in range(1000))
    src = tmp_path / "in.xz"  # the first stream is small; the second declares 64 MiB
    src.write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ) + _xz_declaring(data, 28))
    r = invoke(["shuffle", src, "-S", "16M", "-o", tmp_path / "out.txt"])
    assert r.returncode == 2 and r.stderr.startswith(f"bigshuf: error: {src}: decompressing needs".encode())
    assert r.stderr.count(b"\n") == 1 and not (tmp_path / "out.txt").exists()


# -- item 5: -i LO-HI -n K holds no Python object per number -----------------------------------

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


def test_too_many_lines_per_shard_files_are_refused_before_any_bookkeeping(tmp_path):
    import tracemalloc

    from bigshuf.common.errors import UsageError
    from bigshuf.shuffler.writing import Sink

    tracemalloc.start()
    with pytest.raises(UsageError, match="raise --memory"):
        Sink(str(tmp_path / "s.txt"), 10, 10 ** 7, lines_per_shard=1, memory=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, f"{peak / 2**20:.0f} MiB"  # before: a list of ten million line counts


def test_enomem_from_the_system_reads_as_out_of_memory(tmp_path, monkeypatch):
    """Under `prlimit --as` a thread or a mapping fails with ENOMEM (an OSError, not a
    MemoryError): the same one line as a MemoryError, not a bare 'Cannot allocate memory'."""
    import errno

    from bigshuf.shuffler import run as run_module

    def no_memory(opts):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(run_module, "run", no_memory)
    r = invoke(["shuffle", _numbered(tmp_path / "in.txt", 3)])
    assert r.returncode == 1 and r.stderr == (b"bigshuf: error: out of memory; lower --memory or "
                                              b"raise the process memory limit\n"), r.stderr


def test_shard_bookkeeping_of_all_splits_together_is_bounded(tmp_path):
    from bigshuf.shuffler.writing import max_shards

    src = _numbered(tmp_path / "in.txt", 10)
    per = max_shards(1 << 20) // 2 + 1  # each split within the bound, the two together over it
    r = invoke(["shuffle", src, "-S", "1M", "--split", "a=0.5,b=rest", "--shards", str(per),
                "-o", tmp_path / "{split}.txt"])
    assert r.returncode == 2 and b"raise --memory" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == ["in.txt"]


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
