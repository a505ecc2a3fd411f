"""--unique: exactly the distinct records (the first occurrence of each), in the order the
contract gives their dense ranks (== ``awk '!seen[$0]++' | bigshuf shuffle`` with the same seed),
uniform whatever the multiplicities (fixed seeds, chi-square at alpha = 1e-4, with the
multiplicity-weighted mutant caught), in bounded memory (the table spilled to the temporary
file), with stdin, -z, --header, several and compressed inputs, -n, --split, shards."""
from __future__ import annotations

import gzip
import io
import signal
import subprocess
import sys
from collections import Counter
from typing import List

import numpy as np
import pytest
from helpers import cli_env, invoke, one_line_error, run, spawn
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import bigshuf
from bigshuf.common.randomness import OrderKeys
from bigshuf.shuffler.dedup import (
    ContentKey,
    UniqueReader,
    find_distinct,
    first_in_block,
    first_of_each,
    record_hashes128,
)
from bigshuf.shuffler.records import RecordReader, find_record_ends

ALPHA = 1e-4


def _first_occurrences(data: bytes, sep: bytes = b"\n") -> bytes:
    """awk '!seen[$0]++' (a last record without its terminator gets one, as the reader does)."""
    if data and not data.endswith(sep):
        data += sep
    seen, out = set(), []
    for rec in data.split(sep)[:-1]:
        if rec not in seen:
            seen.add(rec)
            out.append(rec + sep)
    return b"".join(out)


def _shuffle(data: bytes, **kw) -> bytes:
    out = io.BytesIO()
    bigshuf.shuffle([io.BytesIO(data)], out, **kw)
    return out.getvalue()


def _corpus(n: int = 20000, vocab: int = 3000, seed: int = 0) -> bytes:
    """Zipf-like duplicates, lengths 0..150 (both hash paths: NH up to 64 bytes, XXH3 above)."""
    rng = np.random.default_rng(seed)
    words = [bytes(rng.integers(97, 123, size=int(rng.integers(0, 150)), dtype=np.uint8))
             for _ in range(vocab)]
    picks = np.minimum(rng.zipf(1.3, size=n) - 1, vocab - 1)
    return b"".join(words[i] + b"\n" for i in picks)


# -- exactness ----------------------------------------------------------------------------------

@pytest.mark.parametrize("memory,jobs", [("1G", 2), ("1M", 1), ("2M", 2)])
def test_equals_first_occurrences_then_shuffle(memory, jobs):
    """The contract: the distinct records keyed by their dense rank, so the bytes are those of
    ``awk '!seen[$0]++' | bigshuf shuffle`` with the same seed, at any --memory and --jobs (1M:
    the table goes to the temporary file, the engine's runs too)."""
    data = _corpus()
    want = _shuffle(_first_occurrences(data), seed=7)
    got = _shuffle(data, seed=7, unique=True, memory=memory, jobs=jobs)
    assert got == want


def test_a_last_line_without_newline_equals_the_same_line_with_it(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"x\ny\nz")          # z without terminator...
    b.write_bytes(b"z\nx\nw\n")        # ...equals z with it
    out = invoke(["shuffle", "-u", "--seed", "3", a, b])
    assert out.returncode == 0 and sorted(out.stdout.splitlines()) == [b"w", b"x", b"y", b"z"]


def test_zero_terminated():
    data = b"a\nb\x00c\x00a\nb\x00a\x00"
    out = _shuffle(data, seed=1, unique=True, zero_terminated=True)
    assert sorted(out.split(b"\x00")[:-1]) == [b"a", b"a\nb", b"c"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([b"", b"a", b"b", b"ab", b"a" * 63, b"a" * 64, b"a" * 65,
                                 b"x" * 64 + b"y", b"x" * 64 + b"z", b"\x00\xff", b"b" * 200]),
                max_size=60), st.integers(0, 3))
def test_output_is_the_set_of_distinct_records(records, seed):
    data = b"".join(r + b"\n" for r in records)
    got = _shuffle(data, seed=seed, unique=True)
    lines = got.splitlines()
    assert len(lines) == len(set(lines)) and set(lines) == set(records)


def test_hash_words_depend_on_content_only():
    """Equal records get equal hashes wherever they sit in a block; records differing in any
    byte (up to 64 and beyond), or only in length, differ."""
    recs = [b"", b"a", b"a\x00", b"ab" * 8, b"ab" * 8 + b"c", b"q" * 63, b"q" * 64,
            b"q" * 65, b"q" * 200, b"q" * 199 + b"r"]
    recs += [bytes([i]) * 40 for i in range(32) if i != 10]
    for n in (15, 31, 63, 70):  # one byte changed at every place (records 16, 32, 64, 71 bytes)
        recs += [b"m" * i + b"M" + b"m" * (n - i - 1) for i in range(n)]
    data = b"".join(r + b"\n" for r in recs)
    ends = find_record_ends(np.frombuffer(data, np.uint8), 10)
    h1, h2 = record_hashes128(np.frombuffer(data, np.uint8), ends, ContentKey.from_seed(1))
    assert len(set(zip(h1.tolist(), h2.tolist()))) == len(recs)
    shifted = b"zz\n" + data  # every record at another offset
    ends2 = find_record_ends(np.frombuffer(shifted, np.uint8), 10)
    g1, g2 = record_hashes128(np.frombuffer(shifted, np.uint8), ends2, ContentKey.from_seed(1))
    assert (g1[1:] == h1).all() and (g2[1:] == h2).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=100).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=40))
def test_a_records_hash_does_not_depend_on_its_block(records):
    """A record hashed inside a block (windows read from the block, or from the padded copy of
    its last 64 bytes) gets the words it gets alone."""
    key = ContentKey.from_seed(2)

    def hashes(recs):
        data = np.frombuffer(b"".join(r + b"\n" for r in recs), np.uint8)
        h1, h2 = record_hashes128(data, find_record_ends(data, 10), key)
        return list(zip(h1.tolist(), h2.tolist()))
    assert hashes(records) == [hashes([r])[0] for r in records]


def test_block_reduction_handles_equal_top_bits():
    """Hashes that agree in the packed top bits but differ below (forced here) take the exact
    path: the same result as the plain reduction."""
    rng = np.random.default_rng(0)
    n = 1000
    h1 = (rng.integers(0, 4, n).astype(np.uint64) << np.uint64(60)) | rng.integers(0, 3, n).astype(np.uint64)
    h2 = rng.integers(0, 2, n).astype(np.uint64)
    entries = np.stack([h1, h2, np.arange(5, 5 + n, dtype=np.uint64)], axis=1)
    a = first_of_each(entries)
    b = first_in_block(h1, h2, 5)
    key = lambda e: sorted(map(tuple, e.tolist()))  # noqa: E731
    assert key(a) == key(b) and len(a) == len({(x, y) for x, y in zip(h1.tolist(), h2.tolist())})


# -- bounded memory -------------------------------------------------------------------------------

def _distinct(data: bytes, memory: int, per_input: bool = False, parts: int = 1):
    inputs = [io.BytesIO(data[i::parts]) for i in range(parts)] if parts > 1 else [io.BytesIO(data)]
    reader = RecordReader(inputs)
    return find_distinct(reader, 64 << 10, 2048, memory, 1, "/tmp", 1, 1000, lambda: None,
                         per_input=per_input)


def test_the_table_spills_to_the_temporary_file_and_gives_the_same_survivors():
    data = b"".join(b"%d\n" % (i % 15000) for i in range(30000))
    small, large = _distinct(data, 1 << 20), _distinct(data, 1 << 30)
    assert small.spilled > 0 and large.spilled == 0
    assert small.distinct == large.distinct == 15000 and small.duplicates == 15000
    assert (small.keep == large.keep).all()
    assert small.kept(0, 15000).all() and not small.kept(15000, 15000).any()


def test_peak_rss_with_the_table_on_disk(tmp_path):
    """-S 1M on 100 000 distinct short lines (2.4 MB of table): within the budget + 64 MiB."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%07d\n" % i for i in range(100000)) + b"0000001\n")
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    p = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "bigshuf", "shuffle", "-u",
                        "-S", "1M", str(src), "-o", str(tmp_path / "out.txt"), "-v"],
                       capture_output=True, env=cli_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert b"dropped 1 duplicates" in p.stderr
    assert int(p.stdout.split()[-1]) / 1024 <= 1 + 64


def test_per_input_counts_for_a_mixture():
    """per_input: copies in different inputs are not duplicates; each input's distinct count."""
    data = b"a\nb\na\nc\n"
    d = find_distinct(RecordReader([io.BytesIO(data), io.BytesIO(b"a\na\nz\n")]), 64 << 10, 2048,
                      1 << 30, 1, "/tmp", 1, 10, lambda: None, per_input=True)
    assert d.input_records == [4, 3] and d.input_distinct == [3, 2] and d.distinct == 5
    assert d.input_start == [0, 4]
    g = find_distinct(RecordReader([io.BytesIO(data), io.BytesIO(b"a\na\nz\n")]), 64 << 10, 2048,
                      1 << 30, 1, "/tmp", 1, 10, lambda: None)
    assert g.input_distinct == [3, 1] and g.distinct == 4


# -- uniformity ---------------------------------------------------------------------------------

#: One record with 12 copies (scattered), three singletons: 4 distinct records.
HEAVY = [b"H", b"a", b"H", b"H", b"b", b"H", b"H", b"H", b"c", b"H", b"H", b"H", b"H", b"H"]


def _unique_order(records: List[bytes], seed: int) -> List[bytes]:
    """--unique's order through the library's own pieces: the pass, the filter (dense ranks),
    the contract's keys (the engine sorts by them: tests/test_reproducible.py)."""
    data = b"".join(r + b"\n" for r in records)
    distinct = find_distinct(RecordReader([io.BytesIO(data)]), 64 << 10, 2048, 1 << 30, 1, "/tmp",
                             seed, 16, lambda: None)
    reader = UniqueReader(distinct, [io.BytesIO(data)])
    ranks, recs = [], []
    for block in reader.blocks(64 << 10):
        starts = [0, *block.ends[:-1].tolist()]
        raw = block.data.tobytes()
        recs += [raw[s:e - 1] for s, e in zip(starts, block.ends.tolist())]
        ranks += range(block.first, block.first + block.count)
    keys = OrderKeys(seed).of(np.array(ranks))
    return [recs[i] for i in np.argsort(keys)]


def _mutant_weighted(records: List[bytes], seed: int) -> List[bytes]:
    """The mutant: shuffle every copy, then keep each record's first place (shuf | awk)."""
    keys = OrderKeys(seed).of(np.arange(len(records)))
    seen: dict = {}
    for i in np.argsort(keys).tolist():
        seen.setdefault(records[i], i)
    return list(seen)


def _position_and_sample_p(order_of, seeds: int = 400):
    """p-values: the heavy record's place uniform over the 4 places, and its inclusion in a
    2-sample (the first 2 places: -n 2 is the head of the order) at rate 1/2."""
    places = Counter(order_of(HEAVY, s).index(b"H") for s in range(seeds))
    p_place = stats.chisquare([places[k] for k in range(4)]).pvalue
    p_sample = stats.binomtest(places[0] + places[1], seeds, 0.5).pvalue
    return p_place, p_sample


def test_each_distinct_record_is_equally_likely_anywhere_whatever_its_copies():
    p_place, p_sample = _position_and_sample_p(_unique_order)
    assert p_place > ALPHA and p_sample > ALPHA
    # The test's power: weighting by multiplicity puts H first ~12/15 of the time.
    m_place, m_sample = _position_and_sample_p(_mutant_weighted)
    assert m_place < ALPHA and m_sample < ALPHA


def test_sample_is_the_head_of_the_unique_shuffle():
    data = _corpus(3000, 400)
    full = _shuffle(data, seed=4, unique=True).splitlines(keepends=True)
    assert _shuffle(data, seed=4, unique=True, head_count=50) == b"".join(full[:50])


# -- the modes --------------------------------------------------------------------------------------

def test_stdin_is_read_once_and_gives_the_files_bytes(tmp_path):
    data = _corpus(5000, 500)
    src = tmp_path / "in.txt"
    src.write_bytes(data)
    from_file = run(["shuffle", "-u", "--seed", "9", str(src)])
    from_stdin = run(["shuffle", "-u", "--seed", "9", "-S", "1M"], input=data)
    assert from_file.returncode == from_stdin.returncode == 0
    assert from_file.stdout == from_stdin.stdout == _shuffle(_first_occurrences(data), seed=9)


def test_header_several_compressed_inputs_shards_and_compression(tmp_path):
    a, b = tmp_path / "a.csv.gz", tmp_path / "b.csv"
    a.write_bytes(gzip.compress(b"h,x\n1,a\n2,b\n1,a\n"))
    b.write_bytes(b"h,x\n2,b\n3,c\n")
    bigshuf.shuffle([a, b], tmp_path / "out.csv.gz", unique=True, header=True, shards=2, seed=2)
    outs = sorted(tmp_path.glob("out-*.csv.gz"))
    assert len(outs) == 2
    lines = [gzip.decompress(p.read_bytes()).splitlines() for p in outs]
    assert all(part[0] == b"h,x" for part in lines)
    assert sorted(x for part in lines for x in part[1:]) == [b"1,a", b"2,b", b"3,c"]


def test_split_puts_no_record_in_two_splits(tmp_path):
    data = _corpus(4000, 300)
    stats_ = bigshuf.shuffle([io.BytesIO(data)], str(tmp_path / "{split}.txt"), unique=True,
                             split="a=0.5,b=0.3,c=rest", seed=5)
    parts = [(tmp_path / f"{s}.txt").read_bytes().splitlines() for s in "abc"]
    every = [x for p in parts for x in p]
    assert len(every) == len(set(every)) == stats_.records
    assert set(every) == set(data.splitlines())
    assert stats_.duplicates == len(data.splitlines()) - len(every)


def test_echo_and_range():
    assert sorted(invoke(["shuffle", "-u", "-e", "a", "b", "a"]).stdout.split()) == [b"a", b"b"]
    assert sorted(invoke(["shuffle", "-u", "-i", "1-5"]).stdout.split(), key=int) == \
        [b"1", b"2", b"3", b"4", b"5"]


def test_verbose_reports_the_duplicates(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\na\na\n")
    out = invoke(["shuffle", "-u", "-v", src])
    assert out.returncode == 0 and b"--unique dropped 2 duplicates" in out.stderr


@pytest.mark.parametrize("args", [["-r"], ["--aligned", "-o", "x/{name}"],
                                  ["--scheduler", "local:1", "-o", "x.txt"]])
def test_refused_where_it_cannot_apply(tmp_path, args):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\n")
    out = invoke(["shuffle", "-u", *args, src])
    one_line_error(out, 2, "--unique is not available")


def test_a_signal_while_stdin_is_copied_stops_cleanly(tmp_path):
    """SIGTERM while --unique copies an unfinished stdin: exit 143, one line, nothing written.
    (Writing 1 MB through the pipe returns only once the process has read most of it.)"""
    out = tmp_path / "out.txt"
    proc = spawn(["shuffle", "-u", "-o", out], stdin=subprocess.PIPE)
    proc.stdin.write(b"x\ny\n" * (1 << 18))
    proc.stdin.flush()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and b"interrupted by SIGTERM" in err and not out.exists()


def test_more_records_than_bytes_of_memory_is_refused(tmp_path):
    """The bitmap takes a bit a record, within an eighth of --memory: 1.2 M empty lines at -S
    1M are refused (exit 2, one line, nothing written) as soon as they are counted."""
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(b"\n" * 1_200_000)
    res = invoke(["shuffle", "-u", "-S", "1M", src, "-o", out])
    one_line_error(res, 2, "raise --memory")
    assert not out.exists()


def test_an_input_that_changes_between_the_readings_is_an_error(tmp_path, monkeypatch):
    """The second reading must hold the records the first counted: a file that grew in
    between is a one-line error (exit 1), nothing written."""
    from bigshuf.shuffler import dedup

    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(b"a\nb\na\n")
    real = dedup.find_distinct

    def then_grow(*a, **k):
        found = real(*a, **k)
        src.write_bytes(b"a\nb\na\nc\nd\n")
        return found
    monkeypatch.setattr("bigshuf.shuffler.run.find_distinct", then_grow)
    res = invoke(["shuffle", "-u", src, "-o", out])
    one_line_error(res, 1, "input changed")
    assert not out.exists()
