"""Behaviour of bigshuf.shuffle through the Python API: every record kept, reproducibility,
every input/output form, all engine paths (in memory, temporary file, recursive re-scatter)."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from collections import Counter
from pathlib import Path

import pytest
from helpers import invoke
from helpers import numbered_file as _numbered

import bigshuf
from bigshuf.common.errors import BigshufError, InputError, UsageError
from bigshuf.shuffler.writing import shard_paths


def lines_of(data: bytes, sep: bytes = b"\n"):
    parts = data.split(sep)
    assert parts[-1] == b"", "output must end with a terminator"
    return parts[:-1]


def shuffled_bytes(inputs, **kw) -> bytes:
    out = io.BytesIO()
    bigshuf.shuffle(inputs, out, progress=False, **kw)
    return out.getvalue()


# Memory settings that force each engine path on a ~2 MB input: RAM, temporary file, and a
# temporary file whose buckets are too big for a unit (re-scattered one level down).
PATHS = {"memory": dict(memory="64M"), "file": dict(memory="4M"), "recursive": dict(memory="1M")}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_output_is_a_permutation_of_the_input(numbered, path):
    src = numbered(300_000)
    out = shuffled_bytes([str(src)], seed=7, **PATHS[path])
    assert sorted(lines_of(out)) == sorted(lines_of(src.read_bytes()))
    assert out != src.read_bytes()


def test_engine_paths_are_really_taken(numbered):
    src = numbered(300_000)
    stores = {}
    for name, kw in PATHS.items():
        stats = bigshuf.shuffle([str(src)], io.BytesIO(), seed=1, progress=False, **kw)
        stores[name] = (stats.store, stats.levels)
    assert stores["memory"] == ("memory", 1)
    assert stores["file"][0] == "temporary file"
    assert stores["recursive"][0] == "temporary file" and stores["recursive"][1] >= 2


def test_same_seed_same_bytes_whatever_the_workers(numbered):
    src = numbered(300_000)
    for kw in PATHS.values():
        a = shuffled_bytes([str(src)], seed=11, jobs=1, **kw)
        b = shuffled_bytes([str(src)], seed=11, jobs=3, **kw)
        assert a == b
    assert shuffled_bytes([str(src)], seed=12, memory="4M") != shuffled_bytes([str(src)], seed=11, memory="4M")


def test_stdin_stream_and_file_shuffle_identically(numbered):
    src = numbered(300_000)
    for kw in PATHS.values():
        a = shuffled_bytes([str(src)], seed=5, **kw)
        b = shuffled_bytes([io.BytesIO(src.read_bytes())], seed=5, **kw)
        assert a == b


def test_duplicates_and_odd_bytes_pass_through(tmp_path):
    data = b"same\n" * 1000 + b"caf\xc3\xa9\n" + b"\xff\xfe bad utf8\n" + b"crlf\r\n" + b"nul\x00inside\n" + b"\n\n"
    p = tmp_path / "odd.txt"
    p.write_bytes(data)
    for kw in PATHS.values():
        out = shuffled_bytes([str(p)], seed=3, buckets=4, **kw)
        assert Counter(lines_of(out)) == Counter(lines_of(data))


def test_missing_final_newline_gets_one_per_file(tmp_path):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_bytes(b"a1\na2")
    b.write_bytes(b"b1")
    out = shuffled_bytes([str(a), str(b)], seed=1)
    assert sorted(lines_of(out)) == [b"a1", b"a2", b"b1"]


def test_empty_inputs(tmp_path):
    e = tmp_path / "empty.txt"
    e.write_bytes(b"")
    assert shuffled_bytes([str(e)], seed=1) == b""
    assert shuffled_bytes([str(e)], seed=1, memory="1M", buckets=4) == b""
    out = tmp_path / "out.txt"
    bigshuf.shuffle([str(e)], str(out), seed=1)
    assert out.read_bytes() == b""


def test_zero_terminated(tmp_path):
    p = tmp_path / "z.bin"
    recs = [b"rec %d with\nnewline" % i for i in range(5000)]
    p.write_bytes(b"\0".join(recs) + b"\0")
    out = shuffled_bytes([str(p)], seed=2, zero_terminated=True, memory="1M")
    assert sorted(lines_of(out, b"\0")) == sorted(recs)


def test_header_kept_once_on_top(tmp_path):
    a = tmp_path / "a.tsv"
    b = tmp_path / "b.tsv"
    a.write_bytes(b"id\tx\n" + b"".join(b"a%d\t1\n" % i for i in range(3000)))
    b.write_bytes(b"id\tx\n" + b"".join(b"b%d\t2\n" % i for i in range(3000)))
    for kw in PATHS.values():
        out = lines_of(shuffled_bytes([str(a), str(b)], seed=4, header=True, **kw))
        assert out[0] == b"id\tx"
        assert b"id\tx" not in out[1:]
        assert len(out) == 6001


def test_sharded_output_by_count_and_by_lines(tmp_path, numbered):
    src = numbered(10_001)
    base = tmp_path / "out.txt"
    bigshuf.shuffle([str(src)], str(base), seed=1, shards=4, memory="1M")
    names = shard_paths(str(base), 4)
    assert [os.path.basename(n) for n in names] == [f"out-0000{i}-of-00004.txt" for i in range(4)]
    parts = [lines_of(Path(n).read_bytes()) for n in names]
    assert [len(p) for p in parts] == [2501, 2500, 2500, 2500]
    assert sorted(sum(parts, [])) == sorted(lines_of(src.read_bytes()))
    # The concatenated shards are exactly the unsharded shuffle.
    assert b"".join(Path(n).read_bytes() for n in names) == shuffled_bytes([str(src)], seed=1, memory="1M")

    pattern = str(tmp_path / "part-{index:03d}.txt.gz")
    bigshuf.shuffle([str(src)], pattern, seed=1, lines_per_shard=3000)
    files = sorted(tmp_path.glob("part-*.txt.gz"))
    assert [f.name for f in files] == ["part-000.txt.gz", "part-001.txt.gz", "part-002.txt.gz", "part-003.txt.gz"]
    sizes = [len(lines_of(gzip.decompress(f.read_bytes()))) for f in files]
    assert sizes == [3000, 3000, 3000, 1001]


def test_shards_with_header_repeat_it(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"h\n" + b"".join(b"%d\n" % i for i in range(10)))
    bigshuf.shuffle([str(src)], str(tmp_path / "o.csv"), seed=1, shards=3, header=True)
    for n in shard_paths(str(tmp_path / "o.csv"), 3):
        assert Path(n).read_bytes().startswith(b"h\n")


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_compressed_in_and_out(tmp_path, suffix, opener):
    data = b"".join(b"line %d\n" % i for i in range(20_000))
    src = tmp_path / ("in.txt" + suffix)
    with opener(src, "wb") as f:
        f.write(data)
    dst = tmp_path / ("out.txt" + suffix)
    bigshuf.shuffle([str(src)], str(dst), seed=9, memory="1M")
    with opener(dst, "rb") as f:
        out = f.read()
    assert sorted(lines_of(out)) == sorted(lines_of(data))
    # compressed and plain inputs give the same shuffle
    plain = tmp_path / "plain.txt"
    plain.write_bytes(data)
    assert out == shuffled_bytes([str(plain)], seed=9, memory="1M")


def test_zstd_roundtrip(tmp_path):
    zstd = pytest.importorskip("zstandard")
    data = b"".join(b"z %d\n" % i for i in range(5000))
    src = tmp_path / "in.zst"
    src.write_bytes(zstd.ZstdCompressor().compress(data))
    dst = tmp_path / "out.zst"
    bigshuf.shuffle([str(src)], str(dst), seed=1)
    out = zstd.ZstdDecompressor().stream_reader(io.BytesIO(dst.read_bytes())).read()
    assert sorted(lines_of(out)) == sorted(lines_of(data))


def test_shuffle_file_onto_itself(numbered):
    src = numbered(50_000)
    before = src.read_bytes()
    for kw in PATHS.values():
        bigshuf.shuffle([str(src)], str(src), seed=3, **kw)
        after = src.read_bytes()
        assert sorted(lines_of(after)) == sorted(lines_of(before))
    assert after != before
    assert [p.name for p in src.parent.iterdir()] == [src.name]  # no temp file left


def test_sample_is_uniform_subset_in_random_order(numbered):
    src = numbered(20_000)
    all_lines = set(lines_of(src.read_bytes()))
    for kw in ({}, dict(memory="1M", buckets=8)):  # reservoir, then shuffle-and-stop
        out = lines_of(shuffled_bytes([str(src)], seed=1, sample=500, **kw))
        assert len(out) == 500 and len(set(out)) == 500 and set(out) <= all_lines
        assert out != sorted(out, key=int)
    assert len(lines_of(shuffled_bytes([str(src)], seed=1, sample=50_000))) == 20_000
    assert shuffled_bytes([str(src)], seed=1, sample=0) == b""


def test_sample_reproducible_and_header(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"H\n" + b"".join(b"%d\n" % i for i in range(1000)))
    a = shuffled_bytes([str(src)], seed=4, sample=10, header=True)
    assert a == shuffled_bytes([str(src)], seed=4, sample=10, header=True)
    assert a.startswith(b"H\n") and len(lines_of(a)) == 11


def test_bad_usage_raises_usage_errors(tmp_path, numbered):
    src = numbered(10)
    with pytest.raises(UsageError):
        bigshuf.shuffle([str(src)], io.BytesIO(), memory="100K")
    with pytest.raises(UsageError):
        bigshuf.shuffle([str(src)], io.BytesIO(), memory="lots")
    with pytest.raises(UsageError):
        bigshuf.shuffle([str(src)], None, shards=2)
    with pytest.raises(UsageError):
        bigshuf.shuffle([str(src)], str(tmp_path / "o"), shards=2, lines_per_shard=3)
    with pytest.raises(UsageError):
        bigshuf.shuffle([str(src)], str(tmp_path / "no" / "such" / "dir" / "o"))
    with pytest.raises(UsageError):
        bigshuf.shuffle([str(src)], io.BytesIO(), temp_dir=str(tmp_path / "missing"))
    with pytest.raises(InputError, match="no such file"):
        bigshuf.shuffle([str(tmp_path / "missing.txt")], io.BytesIO())
    with pytest.raises(InputError, match="is a directory"):
        bigshuf.shuffle([str(tmp_path)], io.BytesIO())


def test_line_longer_than_the_budget_allows(tmp_path):
    p = tmp_path / "long.txt"
    p.write_bytes(b"short\n" * 10 + b"x" * (200 << 10) + b"\nafter\n")
    with pytest.raises(InputError) as info:
        bigshuf.shuffle([str(p)], io.BytesIO(), memory="1M")
    assert info.value.line == 11 and "raise --memory" in str(info.value)
    # a larger budget handles it
    out = shuffled_bytes([str(p)], memory="8M", seed=1)
    assert len(lines_of(out)) == 12


def test_failed_run_leaves_no_output_and_old_file_intact(tmp_path, numbered, monkeypatch):
    src = numbered(30_000)
    dst = tmp_path / "dst.txt"
    dst.write_bytes(b"old contents\n")
    import bigshuf.shuffler.gather as gather_mod

    def boom(*a, **k):
        raise BigshufError("simulated failure")

    monkeypatch.setattr(gather_mod, "gather_records", boom)
    with pytest.raises(BigshufError, match="simulated"):
        bigshuf.shuffle([str(src)], str(dst), memory="4M", seed=1)
    assert dst.read_bytes() == b"old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.txt", "in.txt"]




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
