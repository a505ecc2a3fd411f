"""--mix: quotas (largest remainder, the largest N that repeats no input), the split table, the
radix select, errors, reproducibility, and the statistics of the three steps (which lines,
how often, in which order, which split), with fixed seeds, chi-square at alpha = 1e-4, and the
mutation each statistical test catches.

The statistical trials run the mixture's virtual stream in-process (:func:`_model`: the
blocks a run scatters, ordered by their keys, as the order contract defines the output), which
costs ~1 ms a trial; ``test_model_is_the_output`` checks that real runs write exactly that."""
from __future__ import annotations

import io
import itertools
import random
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pytest
from helpers import invoke, one_line_error
from scipy import stats

import bigshuf
from bigshuf.common.errors import UsageError
from bigshuf.common.randomness import OrderKeys, Purpose
from bigshuf.shuffler import mixture
from bigshuf.shuffler import run as run_module
from bigshuf.shuffler.mixture import (
    Keys,
    MixReader,
    count_inputs,
    largest_remainder,
    largest_total,
    plan_mixture,
    rank_keys,
    split_table,
)
from bigshuf.shuffler.options import parse_mix, parse_split
from bigshuf.shuffler.records import RecordReader
from bigshuf.shuffler.split import split_sizes

ALPHA = 1e-4
F = Fraction


def _lines(tmp_path: Path, name: str, prefix: str, n: int) -> Path:
    p = tmp_path / name
    p.write_bytes(b"".join(f"{prefix}{i}\n".encode() for i in range(n)))
    return p


def _model(paths: Sequence[Path], weights: str, total: Optional[int], seed: int,
           split: Optional[str] = None, label: int = 0, header: bool = False) -> List[bytes]:
    """The mixture's output (or one split's) by definition: its virtual stream's records in
    the order of their keys."""
    reader = RecordReader([str(p) for p in paths], header=header)
    counts = count_inputs(reader, 1 << 16, 1 << 11)
    shares = plan_mixture([str(p) for p in paths], counts, parse_mix(weights), total)
    table = None
    if split is not None:
        sizes = split_sizes(parse_split(split), sum(s.taken for s in shares))
        table = (label, split_table([s.taken for s in shares], sizes, seed))
    mix = MixReader(RecordReader([str(p) for p in paths], header=header), shares, seed, table)
    order = OrderKeys(seed)
    recs, keys = [], []
    for b in mix.blocks(1 << 16, 1 << 11):
        starts = np.concatenate(([0], b.ends[:-1]))
        raw = b.data.tobytes()
        recs += [raw[s:e] for s, e in zip(starts.tolist(), b.ends.tolist())]
        keys += (b.keys if b.keys is not None else order.range(b.first, b.count)).tolist()
    return [recs[i] for i in np.argsort(np.array(keys, np.uint64), kind="stable")]


# -- step 1: quotas ---------------------------------------------------------------------------

@pytest.mark.parametrize("total,weights,parts", [
    (10, [7, 3], [7, 3]),
    (7, [1, 1], [4, 3]),                    # tie: the input named first
    (10, [1, 1, 1], [4, 3, 3]),
    (5, [0, 1], [0, 5]),
    (7, [F(1, 10), F(2, 10), F(7, 10)], [1, 1, 5]),   # 0.7 1.4 4.9
])
def test_largest_remainder(total, weights, parts):
    assert largest_remainder(total, [F(w) for w in weights]) == parts


def test_largest_total_is_the_largest_that_repeats_nothing():
    """Against a brute-force scan, on random small cases (the Alabama paradox included: a
    larger N can fit after a smaller one does not)."""
    rng = random.Random(1)
    paradox = 0
    for _ in range(300):
        k = rng.randint(1, 5)
        weights = [F(rng.choice([0, 1, 2, 3, 5, 7, 8, 11, 20]), rng.choice([1, 1, 3]))
                   for _ in range(k)]
        if not any(weights):
            continue
        counts = [rng.randint(1, 30) for _ in range(k)]
        fits = [all(q <= n for q, n in zip(largest_remainder(t, weights), counts))
                for t in range(0, 200)]
        best = max(t for t, ok in enumerate(fits) if ok)
        assert largest_total(weights, counts) == best
        paradox += any(not fits[t] for t in range(best))
    assert paradox  # some smaller N does not fit: a bisection would miss the largest
    # e.g. weights 5,2,2,8 and 28,7,13,30 lines: N = 63 fits, 62 does not (the second input would give 8 of its 7 lines)
    assert largest_total([F(5), F(2), F(2), F(8)], [28, 7, 13, 30]) == 63
    # A tiny weight on a one-line input: a gap of 10^6 totals to search, in batches
    assert largest_total([F(1, 10**6), F(1)], [1, 10**7]) == 1_500_001
    assert largest_total([F(1, 10**20), F(1)], [5, 5]) == 5   # past int64: Python integers


def test_split_table_keeps_both_margins_and_rounds_each_share():
    rng = random.Random(2)
    for _ in range(300):
        quotas = [rng.randint(0, 50) for _ in range(rng.randint(1, 4))]
        total = sum(quotas)
        cuts = sorted(rng.randint(0, total) for _ in range(rng.randint(0, 3)))
        sizes = [b - a for a, b in zip([0] + cuts, cuts + [total])]
        table = split_table(quotas, sizes, rng.randint(0, 99))
        assert [sum(row) for row in table] == sizes
        assert [sum(col) for col in zip(*table)] == quotas
        for s, row in enumerate(table):
            for j, x in enumerate(row):
                exact = F(quotas[j] * sizes[s], total) if total else 0
                assert x in (int(np.floor(exact)), int(np.ceil(exact)))


@pytest.mark.parametrize("n,cap", [(1, 1), (1000, 1), (5000, 64), (70_000, 1 << 20)])
def test_rank_keys_is_the_sorted_keys(n, cap):
    """The radix select (refining 16 bits a pass when a bin is over ``cap``) against a sort."""
    keys = Keys(3, (Purpose.MIX_SELECT, 0))
    every = np.sort(keys.range(0, n))
    ranks = sorted({0, n // 3, n // 2, n - 1})
    assert rank_keys(keys, n, ranks, cap) == [int(every[r]) for r in ranks]


def test_rank_keys_when_the_bracket_misses(monkeypatch):
    """Keys far from uniform (the index itself): the one-pass bracket misses and the radix
    select still gives the exact ranks."""
    monkeypatch.setattr(Keys, "range", _by_position)
    keys = Keys(3, (Purpose.MIX_SELECT, 0))
    assert mixture._bracketed(keys, 100_000, [500], 1 << 20) is None
    assert rank_keys(keys, 100_000, [500, 99_999]) == [500 << 40, 99_999 << 40]


@pytest.mark.parametrize("header", [False, True])
def test_counts_are_the_readers(tmp_path, header):
    """The fast count of plain files (and the reader's count of compressed ones) equals the
    records a reader yields: a last line without a newline, empty files, header lines."""
    import gzip
    files = {"a.txt": b"x\ny\nz", "b.txt": b"", "c.txt": b"h\n", "d.txt": b"\n\n\n",
             "e.txt.gz": gzip.compress(b"1\n2\n3")}
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    want = [sum(b.count for b in RecordReader([p], header=header).blocks(1 << 16)) for p in paths]
    assert count_inputs(RecordReader(paths, header=header), 1 << 16, 1 << 11) == want


# -- options and errors ----------------------------------------------------------------------

def test_weights_parse_exactly():
    assert parse_mix("7,3") == [7, 3]
    assert parse_mix("0.1, 0.9") == [F(1, 10), F(9, 10)]
    assert parse_mix([0.1, 2, F(1, 3)]) == [F(1, 10), 2, F(1, 3)]


@pytest.mark.parametrize("extra,weights,needle", [
    ([], "1", "one weight per input: 1 weights for 2 inputs"),
    ([], "1,2,3", "3 weights for 2 inputs"),
    ([], "1,-2", "must not be negative"),
    ([], "1,nan", "bad weight"),
    ([], "1,inf", "bad weight"),
    ([], "1,x", "bad weight"),
    ([], "0,0", "add up to 0"),
    ([], "1/2,1", "bad weight '1/2'"),
    ([], "1_000,1", "bad weight '1_000'"),
    ([], "\u0663,1", "bad weight"),          # an Arabic-Indic digit
    ([], "1e309,1", "out of range"),
    ([], "1e400,1", "out of range"),
    ([], "1e999999999999,1", "out of range"),  # refused at once, not 10**exponent computed
    ([], "1e100000000,1", "out of range"),
    ([], "1e-100000000,1", "out of range"),
    ([], "1" * 5000 + ",1", "out of range"),
    (["-r"], "1,1", "not with -e, -i, -r"),
])
def test_bad_weights_are_one_line_usage_errors(tmp_path, extra, weights, needle):
    a, b = _lines(tmp_path, "a.txt", "a", 3), _lines(tmp_path, "b.txt", "b", 3)
    r = invoke(["shuffle", str(a), str(b), "--mix", weights, *extra])
    one_line_error(r, 2, needle)


@pytest.mark.parametrize("mix,needle", [
    ([F(10**400), 1], "out of range"),
    ([Decimal("1E+999999"), 1], "out of range"),
    ([Decimal("1E+999999999999"), 1], "out of range"),
    (["1e309", 1], "out of range"),
    ([1e-320, 1], "out of range"),              # a subnormal float
    ([F(3**700 + 1, 3**700), 1], "out of range"),
    (b"1,1", "not bytes"),
    ({"1": 1, "2": 1}, "not dict"),
    (["1/2", 1], "bad weight"),
])
def test_python_weights_are_checked_like_the_cli(tmp_path, mix, needle):
    """Python's weights follow the CLI's rule; bytes or a dict are refused, not misread."""
    a, b = _lines(tmp_path, "a.txt", "a", 3), _lines(tmp_path, "b.txt", "b", 3)
    out = tmp_path / "out.txt"
    with pytest.raises(UsageError, match=needle):
        bigshuf.shuffle([a, b], out, mix=mix, head_count=10)
    assert not out.exists()


def test_weights_at_the_limits_run_and_report(tmp_path):
    a, b = _lines(tmp_path, "a.txt", "a", 3), _lines(tmp_path, "b.txt", "b", 3)
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle([a, b], out, mix=["1e300", Decimal("1e-300")], head_count=10, seed=1)
    assert [t["taken"] for t in stats.taken] == [10, 0]
    assert [t["weight"] for t in stats.taken] == [1e300, 1e-300]
    assert parse_mix([np.float64(0.5), np.int64(3), Decimal("0.25")]) == [F(1, 2), 3, F(1, 4)]


@pytest.mark.parametrize("change", [+5, -5])
@pytest.mark.parametrize("which", [0, 1])
def test_an_input_changed_after_counting(tmp_path, monkeypatch, change, which):
    """An input that holds more or fewer records than counted (appended to, or truncated, while
    the run went on) is a one-line runtime error naming it (exit 1), and nothing is written."""
    a, b = _lines(tmp_path, "a.txt", "a", 40), _lines(tmp_path, "b.txt", "b", 30)
    real = run_module.count_inputs

    def counted(*args):
        counts = real(*args)
        counts[which] -= change  # the file now holds `change` more records than counted
        return counts
    monkeypatch.setattr(run_module, "count_inputs", counted)
    out = tmp_path / "out.txt"
    r = invoke(["shuffle", str(a), str(b), "--mix", "1,1", "-n", "200", "-S", "1M",
                "-o", str(out)])
    one_line_error(r, 1, f"{[a, b][which].name}: input changed while it was being shuffled")
    assert not out.exists()


def test_the_report_is_made_before_publishing(tmp_path, monkeypatch):
    """What each input gave is worked out before the output is published: a failure there
    (once a float() of a huge weight) leaves no output behind."""
    a, b = _lines(tmp_path, "a.txt", "a", 3), _lines(tmp_path, "b.txt", "b", 3)
    out = tmp_path / "out.txt"

    def fail(self):
        raise RuntimeError("report")
    monkeypatch.setattr(mixture.Share, "as_dict", fail)
    with pytest.raises(RuntimeError):
        bigshuf.shuffle([a, b], out, mix="1,1", head_count=10)
    assert not out.exists()


def test_inputs_read_once_are_copied_first(tmp_path):
    """stdin and caller streams in a mixture (counted, then read again; with --split, once a
    split; with --unique, three times): copied to --temp-dir once, the same bytes as files."""
    a, b = _lines(tmp_path, "a.txt", "a", 30), _lines(tmp_path, "b.txt", "b", 50)
    for extra in ([], ["--split", "x=0.5,y=rest", "-o", str(tmp_path / "{split}.txt")],
                  ["-u", "-o", str(tmp_path / "u.txt")]):
        args = ["shuffle", "--mix", "2,1", "-n", "40", "--seed", "4", *extra]
        files = invoke(args + [str(a), str(b)])
        kept = {f.name: f.read_bytes() for f in tmp_path.glob("[xyu].txt")}
        piped = invoke(args + [str(a), "-"], input=b.read_bytes())
        assert files.returncode == piped.returncode == 0 and files.stdout == piped.stdout
        assert {f.name: f.read_bytes() for f in tmp_path.glob("[xyu].txt")} == kept
    out = io.BytesIO()
    bigshuf.shuffle([a, io.BytesIO(b.read_bytes())], out, mix="2,1", head_count=40, seed=4)
    assert out.getvalue() == invoke(["shuffle", "--mix", "2,1", "-n", "40", "--seed", "4",
                                     str(a), str(b)]).stdout


def test_inputs_read_once_and_empty_inputs(tmp_path):
    a = _lines(tmp_path, "a.txt", "a", 3)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    one_line_error(invoke(["shuffle", str(a), "-", "--mix", "1,1"], input=b""), 2, "<stdin>",
                   "holds no records")
    adir = tmp_path / "adir"
    adir.mkdir()
    r = invoke(["shuffle", str(a), str(adir), "--mix", "1,1"])
    one_line_error(r, 2, f"{adir}: is a directory")
    assert b"only once" not in r.stderr
    one_line_error(invoke(["shuffle", str(a), str(empty), "--mix", "1,1"]), 2, "empty.txt")
    out = io.BytesIO()
    stats = bigshuf.shuffle([a, empty], out, mix=[1, 0], seed=1)   # weight 0: contributes nothing
    assert sorted(out.getvalue().splitlines()) == [b"a0", b"a1", b"a2"]
    assert [t["taken"] for t in stats.taken] == [3, 0]


# -- what a run writes -----------------------------------------------------------------------

def test_quotas_repetitions_stats_and_verbose(tmp_path):
    a, b = _lines(tmp_path, "a.txt", "a", 10), _lines(tmp_path, "b.txt", "b", 3)
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle([a, b], out, mix="7,3", head_count=20, seed=4, memory="1M")
    got = Counter(out.read_bytes().splitlines())
    assert sum(c for line, c in got.items() if line.startswith(b"a")) == 14
    assert sorted(got[b"b%d" % i] for i in range(3)) == [2, 2, 2]
    assert sorted(got[b"a%d" % i] for i in range(10)) == [1] * 6 + [2] * 4   # 14 = 10 + 4
    assert stats.records_out == 20
    assert stats.taken == [
        {"path": str(a), "records": 10, "weight": 7.0, "taken": 14, "copies": 1, "rest": 4},
        {"path": str(b), "records": 3, "weight": 3.0, "taken": 6, "copies": 2, "rest": 0}]
    r = invoke(["shuffle", str(a), str(b), "--mix", "1,1", "-v", "--seed", "1"])
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 7   # 4 + 3: nothing repeated
    assert b"b.txt: 3 records, weight 1 -> 3 taken (all of them)" in r.stderr
    assert b"a.txt: 10 records, weight 1 -> 4 taken (a uniform subset)" in r.stderr


def test_model_is_the_output_at_any_memory_and_jobs(tmp_path):
    """Same seed, same bytes: --memory 1M (several blocks a file) and 16M,
    one or two workers, a .gz input; and they are the model's records in key order."""
    a = _lines(tmp_path, "a.txt", "alpha-", 15_000)
    b = _lines(tmp_path, "b.txt", "b", 5)
    want = b"".join(_model([a, b], "5,1", 20_000, 7))
    for memory, jobs in (("1M", 1), ("1M", 2), ("16M", 2)):
        out = io.BytesIO()
        bigshuf.shuffle([a, b], out, mix="5,1", head_count=20_000, seed=7, memory=memory,
                        jobs=jobs)
        assert out.getvalue() == want, (memory, jobs)
    import gzip
    gz = tmp_path / "a.txt.gz"
    gz.write_bytes(gzip.compress(a.read_bytes()))
    out = io.BytesIO()
    bigshuf.shuffle([gz, b], out, mix="5,1", head_count=20_000, seed=7, memory="1M")
    assert out.getvalue() == want


def test_many_copies_are_packed_into_ordinary_blocks(tmp_path):
    """Heavy repetition (200,000 copies of a one-line input, 10,000 of a 5-line one) is
    scattered in as many runs as an ordinary input of the output's size, not one a copy (that
    grew the run index past --memory and took minutes); the bytes are the model's."""
    one = tmp_path / "one.txt"
    one.write_bytes(b"hello\n")
    out = io.BytesIO()
    stats = bigshuf.shuffle([one], out, mix="1", head_count=200_000, seed=3, memory="4M")
    assert out.getvalue() == b"hello\n" * 200_000
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"hello\n" * 200_000)
    ordinary = bigshuf.shuffle([plain], io.BytesIO(), seed=3, memory="4M")
    assert stats.runs <= 2 * ordinary.runs + 2, (stats.runs, ordinary.runs)
    a, b = _lines(tmp_path, "a.txt", "a", 10), _lines(tmp_path, "b.txt", "b", 5)
    out = io.BytesIO()
    stats = bigshuf.shuffle([a, b], out, mix="1,1", head_count=100_000, seed=3, memory="4M",
                            jobs=2)
    assert stats.runs <= 2 * ordinary.runs + 2, stats.runs
    assert out.getvalue() == b"".join(_model([a, b], "1,1", 100_000, 3))


def test_unique_drops_duplicates_within_each_input(tmp_path):
    """--mix --unique: each input's distinct lines are what its weight shares out; a line in
    two inputs stays in both; at any --memory the same bytes."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"x\ny\nx\nz\nx\n" * 3)
    b.write_bytes(b"x\nq\nq\n")
    outs = []
    for memory in ("1M", "16M"):
        out = io.BytesIO()
        stats = bigshuf.shuffle([a, b], out, mix="3,1", head_count=8, unique=True, seed=2,
                                memory=memory)
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    assert Counter(outs[0].splitlines()) == {b"x": 3, b"y": 2, b"z": 2, b"q": 1}
    assert [(t["records"], t["taken"]) for t in stats.taken] == [(3, 6), (2, 2)]
    assert stats.duplicates == 13


def test_pinned_output_of_a_seed(tmp_path):
    """The mixture's bytes for a seed are part of the contract (selection keys: Purpose 10, split
    keys: 11, order: the order contract): a change here changes users' mixtures."""
    a, b = _lines(tmp_path, "a.txt", "a", 6), _lines(tmp_path, "b.txt", "b", 2)
    out = io.BytesIO()
    bigshuf.shuffle([a, b], out, mix="2,1", head_count=9, seed=1)
    assert out.getvalue() == b"a0\na1\nb1\na5\na4\na2\na3\nb0\nb0\n"


def test_split_is_stratified_and_header_kept(tmp_path):
    a = _lines(tmp_path, "a.txt", "a", 1000)
    b = _lines(tmp_path, "b.txt", "b", 100)
    for p in (a, b):
        p.write_bytes(b"head\n" + p.read_bytes())
    pattern = str(tmp_path / "{split}.txt")
    r = invoke(["shuffle", str(a), str(b), "--mix", "3,1", "--header", "--split",
                "train=0.8,valid=0.1,test=rest", "-o", pattern, "--seed", "3", "-S", "1M"])
    assert r.returncode == 0, r.stderr
    parts = {n: (tmp_path / f"{n}.txt").read_bytes().splitlines() for n in ("train", "valid", "test")}
    assert all(p[0] == b"head" for p in parts.values())
    counts = {n: (sum(x.startswith(b"a") for x in p[1:]), sum(x.startswith(b"b") for x in p[1:]))
              for n, p in parts.items()}
    assert counts == {"train": (242, 80), "valid": (30, 10), "test": (30, 10)}   # 302 + 100
    seen = [x for p in parts.values() for x in p[1:]]
    assert len(seen) == len(set(seen)) == 402
    assert (tmp_path / "valid.txt").read_bytes() == b"head\n" + b"".join(
        _model([a, b], "3,1", None, 3, "train=0.8,valid=0.1,test=rest", 1, header=True))
    with_n = bigshuf.shuffle([a, b], str(tmp_path / "n-{split}.txt"), mix="1,1", head_count=50,
                             split="x=0.5,y=0.5", seed=1, header=True)
    assert with_n.records_out == 50


# -- statistics of the three steps -------------------------------------------------------------

def _selection_p(tmp_path: Path, trials: int) -> float:
    """Step 2: input a (12 lines) gives 5 of them (with b's 5): each line taken with
    probability 5/12."""
    a, b = _lines(tmp_path, "a.txt", "a", 12), _lines(tmp_path, "b.txt", "b", 5)
    got: Counter = Counter()
    for seed in range(trials):
        got.update(x for x in _model([a, b], "1,1", 10, seed) if x.startswith(b"a"))
    counts = [got[b"a%d\n" % i] for i in range(12)]
    return stats.chisquare(counts).pvalue


def _repeat_p(tmp_path: Path, trials: int) -> float:
    """Step 2 with repetition: input a (6 lines) gives 15 = 2 copies + 3: every line 2 or 3
    times, and which ones get the third copy is uniform."""
    a, b = _lines(tmp_path, "a.txt", "a", 6), _lines(tmp_path, "b.txt", "b", 5)
    third: Counter = Counter()
    for seed in range(trials):
        got = Counter(_model([a, b], "3,1", 20, seed))
        assert sorted(got[b"a%d\n" % i] for i in range(6)) == [2, 2, 2, 3, 3, 3]
        third.update(x for x, c in got.items() if c == 3)
    return stats.chisquare([third[b"a%d\n" % i] for i in range(6)]).pvalue


def _joint_p(tmp_path: Path, trials: int) -> float:
    """Steps 2 and 3 together: one input of 4 lines, 2 taken; the 12 ordered pairs (which two,
    in which order) equally likely only if the subset is uniform, the order uniform and the
    two independent."""
    a = _lines(tmp_path, "a.txt", "a", 4)
    pairs = Counter(tuple(_model([a], "1", 2, seed)) for seed in range(trials))
    every = list(itertools.permutations([b"a%d\n" % i for i in range(4)], 2))
    assert set(pairs) <= set(every)
    return stats.chisquare([pairs[p] for p in every]).pvalue


def _order_p(tmp_path: Path, trials: int) -> float:
    """Step 3 over inputs and copies: a (3 lines, all taken twice) and b (3 lines): the
    position of b0 among the 9 outputs is uniform."""
    a, b = _lines(tmp_path, "a.txt", "a", 3), _lines(tmp_path, "b.txt", "b", 3)
    where = Counter(_model([a, b], "2,1", 9, seed).index(b"b0\n") for seed in range(trials))
    return stats.chisquare([where[i] for i in range(9)]).pvalue


def _split_p(tmp_path: Path, trials: int) -> float:
    """--split: which of a's 8 lines (all taken) land in split y (2 of them) is uniform."""
    a, b = _lines(tmp_path, "a.txt", "a", 8), _lines(tmp_path, "b.txt", "b", 8)
    got: Counter = Counter()
    for seed in range(trials):
        got.update(x for x in _model([a, b], "1,1", 16, seed, "x=0.75,y=0.25", 1)
                   if x.startswith(b"a"))
    return stats.chisquare([got[b"a%d\n" % i] for i in range(8)]).pvalue


def test_the_three_steps_are_uniform_and_independent(tmp_path):
    assert _selection_p(tmp_path, 200) > ALPHA
    assert _repeat_p(tmp_path, 150) > ALPHA
    assert _joint_p(tmp_path, 480) > ALPHA
    assert _order_p(tmp_path, 270) > ALPHA
    assert _split_p(tmp_path, 200) > ALPHA


def _by_position(self, first, n, out=None):
    """A mutation: keys that follow the index (the first records have the smallest)."""
    return np.arange(first, first + n, dtype=np.uint64) << np.uint64(40)


def _rounding_p(tmp_path: Path, trials: int) -> float:
    """--split's rounding: 3 inputs give 1 line each, split 50/50 of 3 lines: which input gives
    the split of one line is uniform over the 3 (it was always the same input); and the table's
    cells are rounded up with probability their fractional part (quotas 5,3,2 in sizes 4,6)."""
    paths = [_lines(tmp_path, f"{x}.txt", x, 2) for x in "abc"]
    sizes = split_sizes(parse_split("x=0.5,y=0.5"), 3)
    single = sizes.index(1)
    got: Counter = Counter()
    for seed in range(trials):
        (line,) = _model(paths, "1,1,1", 3, seed, "x=0.5,y=0.5", single)
        got[line[:1]] += 1
    p_which = stats.chisquare([got[x] for x in (b"a", b"b", b"c")]).pvalue
    ups = np.array([split_table([5, 3, 2], [4, 6], seed)[0] for seed in range(trials)])
    want = np.array([5 * 4 / 10, 3 * 4 / 10, 2 * 4 / 10])   # 2, 1.2, 0.8: floor + P(up)
    rounded_up = (ups - np.floor(want)).sum(axis=0)[1:]     # cells (0,1) and (0,2)
    p_cells = stats.binomtest(int(rounded_up[0]), trials, 0.2).pvalue
    return min(p_which, p_cells)


def test_split_rounding_is_random_and_unbiased(tmp_path):
    assert _rounding_p(tmp_path, 300) > ALPHA


def test_mutations_of_the_steps_are_caught(tmp_path, monkeypatch):
    """(1) selection keys that follow the position (the first r records taken): selection and
    repetition tests fail; (2) order keys that follow the virtual index: the order test fails;
    (3) the order key of an element taken from its selection key (steps 2 and 3 coupled): the
    joint test fails; (4) split keys that follow the position: the split test fails; (5) split
    rounding without draws: the rounding test fails."""
    monkeypatch.setattr(Keys, "range", _by_position)
    assert _selection_p(tmp_path, 60) < ALPHA
    assert _repeat_p(tmp_path, 60) < ALPHA
    assert _split_p(tmp_path, 60) < ALPHA
    monkeypatch.undo()
    monkeypatch.setattr(OrderKeys, "range", _by_position)
    assert _order_p(tmp_path, 90) < ALPHA
    monkeypatch.undo()

    real = mixture.MixReader._selector

    def coupled(self, share, j):   # the order keys pick the subset too
        keys = real(self, share, j)
        if keys is not None:
            keys.a, keys.b, keys.c = self._order.a, self._order.b, self._order.c
            keys.limit = np.uint64(rank_keys(keys, share.records, [share.rest])[0])
        return keys

    monkeypatch.setattr(mixture.MixReader, "_selector", coupled)
    assert _joint_p(tmp_path, 480) < ALPHA
    monkeypatch.undo()

    class Fixed:   # (5) the rounding's draws always the same: one input always rounded up
        def random(self):
            return 0.5
    monkeypatch.setattr(mixture, "_rounding_draws", lambda seed: Fixed())
    assert _rounding_p(tmp_path, 300) < ALPHA
