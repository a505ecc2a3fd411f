"""--split: sizes, outputs (shards, header, compression, cluster), errors, and the statistics of
split membership and order (fixed seeds, chi-square at alpha = 1e-4, with mutations caught)."""
from __future__ import annotations

import gzip
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, one_line_error
from scipy import stats

import bigshuf
from bigshuf.common import randomness
from bigshuf.common.errors import UsageError
from bigshuf.shuffler import engine
from bigshuf.shuffler.options import parse_split
from bigshuf.shuffler.split import split_sizes

ALPHA = 1e-4


def _read(p: Path) -> bytes:
    return gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()


# -- sizes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,total,sizes", [
    ("train=0.98,valid=0.01,test=0.01", 1000, [980, 10, 10]),
    ("train=0.98,valid=0.01,test=0.01", 1, [1, 0, 0]),
    ("a=0.5,b=0.5", 3, [2, 1]),                      # tie: the first named
    ("a=0.34,b=0.33,c=0.33", 10, [4, 3, 3]),         # 3.4, 3.3, 3.3 -> largest remainder
    ("a=0.1,b=0.2,c=0.7", 7, [1, 1, 5]),             # 0.7, 1.4, 4.9 -> 0, 1, 4 + 2 by remainder
    ("valid=10000,test=10000,train=rest", 1_000_000, [10000, 10000, 980000]),
    ("valid=10,test=0.1,train=rest", 95, [10, 10, 75]),   # 9.5 -> 10 by remainder vs 75.5
    ("a=5,b=rest", 5, [5, 0]),
    ("a=0.5,b=0.5", 0, [0, 0]),
])
def test_sizes_largest_remainder(spec, total, sizes):
    got = split_sizes(parse_split(spec), total)
    assert got == sizes and sum(got) == total


@pytest.mark.parametrize("spec,needle", [
    ("a=0.5,b=0.4", "add up to 0.9, not 1"),
    ("a=0.7,b=0.7", "more than 1"),
    ("a=10,b=0.5", "needs one split '=rest'"),
    ("a=rest,b=rest", "only one split"),
    ("a=0.5,a=0.5", "distinct"),
    ("a", "not NAME=SIZE"),
    ("a=-1,b=rest", "bad size"),
    ("a=x,b=rest", "bad size"),
    ("a/b=1,c=rest", "bad split name"),
])
def test_bad_split_specs(spec, needle):
    with pytest.raises(UsageError, match=needle):
        parse_split(spec)


# -- outputs --------------------------------------------------------------------------------------

def test_split_cli_gz_verify_and_seed(tmp_path, numbered):
    """Fractions into .gz files; `bigshuf verify IN SPLITS...` passes; the same seed gives the
    same bytes; splits are disjoint."""
    src = numbered(10_000)
    pattern = str(tmp_path / "{split}.txt.gz")
    args = ["shuffle", str(src), "--split", "train=0.98,valid=0.01,test=0.01", "-o", pattern,
            "--seed", "9", "-S", "1M"]
    assert invoke(args).returncode == 0
    files = [tmp_path / f"{n}.txt.gz" for n in ("train", "valid", "test")]
    first = [f.read_bytes() for f in files]
    parts = [_read(f).splitlines() for f in files]
    assert [len(p) for p in parts] == [9800, 100, 100]
    assert len(set().union(*map(set, parts))) == 10_000
    v = invoke(["verify", str(src), *map(str, files)])
    assert v.returncode == 0 and b"same multiset" in v.stdout
    assert invoke(["verify", str(src), *map(str, files[:2])]).returncode == 1
    assert invoke(args).returncode == 0 and [f.read_bytes() for f in files] == first


def test_split_counts_shards_header_python(tmp_path):
    """Counts and rest, --lines-per-shard per split, the header on every file; the shards of
    each split, in order, are that split; every file with the header left out together is the
    input (verify --header)."""
    data = b"id\n" + b"".join(b"r%d\n" % i for i in range(1000))
    src = tmp_path / "in.tsv"
    src.write_bytes(data)
    stats_ = bigshuf.shuffle([str(src)], str(tmp_path / "d-{split}.tsv"), seed=2, header=True,
                             split="valid=100,test=50,train=rest", lines_per_shard=300)
    names = sorted(Path(p).name for p in stats_.outputs)
    assert names == sorted([f"d-{s}-{i:05d}-of-{c:05d}.tsv" for s, c in
                            (("valid", 1), ("test", 1), ("train", 3)) for i in range(c)])
    for p in stats_.outputs:
        assert Path(p).read_bytes().startswith(b"id\n")
    train = b"".join(Path(p).read_bytes()[3:] for p in sorted(stats_.outputs) if "train" in p)
    assert len(train.splitlines()) == 850
    v = invoke(["verify", "--header", str(src), *stats_.outputs])
    assert v.returncode == 0, v.stdout


def test_split_equals_the_unsplit_shuffle_cut(tmp_path, numbered):
    """The splits are the plain shuffle's output cut in order (same seed, same memory)."""
    src = numbered(5000)
    out = io.BytesIO()
    bigshuf.shuffle([str(src)], out, seed=4, memory="1M")
    bigshuf.shuffle([str(src)], str(tmp_path / "{split}"), seed=4, memory="1M",
                    split="a=0.3,b=0.3,c=rest", shards=2)
    cut = b"".join((tmp_path / f"{s}-0000{i}-of-00002").read_bytes()
                   for s in "abc" for i in range(2))
    assert cut == out.getvalue()


@pytest.mark.parametrize("ext", ["gz", "zst"])
def test_one_compressor_at_a_time(tmp_path, numbered, monkeypatch, ext):
    """Review break: every split's output was opened, with its compressor, at the start (8
    .gz splits at --memory 16M peaked at 130 MiB, bound 80). A split's output is opened when
    the stream reaches it and closed when it is full, as shards are."""
    from bigshuf.shuffler import writing

    live, most = [0], [0]
    real = writing.compressor_for

    def counted(path, raw, memory=None):
        comp = real(path, raw, memory)
        close = comp.close
        live[0] += 1
        most[0] = max(most[0], live[0])

        def closed():
            live[0] -= 1
            close()
        comp.close = closed
        return comp

    monkeypatch.setattr(writing, "compressor_for", counted)
    src = numbered(5000)
    stats_ = bigshuf.shuffle([str(src)], str(tmp_path / f"{{split}}.txt.{ext}"), seed=5, memory="1M",
                             split="a=0.2,b=0,c=0.3,d=rest", shards=2)
    assert most[0] == 1 and live[0] == 0
    v = invoke(["verify", str(src), *stats_.outputs])
    assert v.returncode == 0 and len(stats_.outputs) == 8


def test_split_errors_leave_nothing(tmp_path, numbered):
    src = numbered(100)
    one_line_error(invoke(["shuffle", str(src), "--split", "a=200,b=rest", "-o",
                           str(tmp_path / "{split}")]), 2, "needs 200 lines", "has 100")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
    for args, needle in (([], "-o with {split}"), (["-o", str(tmp_path / "x")], "must contain {split}"),
                         (["-o", str(tmp_path / "{split}"), "-n", "5"], "-n"),
                         (["-o", str(tmp_path / "{split}"), "-r"], "-r"),
                         (["-o", str(tmp_path / "{split}" / "x")], "output directory does not exist"),
                         (["-o", str(tmp_path / "{split}-{bad}"), "--shards", "2"], "bad shard pattern")):
        one_line_error(invoke(["shuffle", str(src), "--split", "a=0.5,b=0.5", *args]), 2, needle)


def test_split_on_cluster_identical_to_local(tmp_path, numbered):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("fsspec")
    src = numbered(20_000)
    local, remote, temp = tmp_path / "l", tmp_path / "r", tmp_path / "t"
    for d in (local, remote, temp):
        d.mkdir()
    kw = dict(seed=5, split="a=0.2,b=rest", shards=2, memory="1M")
    bigshuf.shuffle([str(src)], str(local / "{split}.txt.gz"), **kw)
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        bigshuf.shuffle([str(src)], str(remote / "{split}.txt.gz"), scheduler=client,
                        temp_dir=str(temp), **kw)
    names = sorted(p.name for p in local.iterdir())
    assert len(names) == 4 and names == sorted(p.name for p in remote.iterdir())
    assert all((local / n).read_bytes() == (remote / n).read_bytes() for n in names)


# -- statistics -----------------------------------------------------------------------------------

N, SPEC, SIZES = 20, "a=0.5,b=0.3,c=0.2", (10, 6, 4)


def _split_runs(tmp_path: Path, runs: int, buckets=None):
    """For each run, the split of every input line and its rank inside its split."""
    data = b"".join(b"%d\n" % i for i in range(N))
    member = np.zeros((runs, N), dtype=np.int64)
    rank = np.zeros((runs, N), dtype=np.int64)
    for s in range(runs):
        bigshuf.shuffle([io.BytesIO(data)], str(tmp_path / "{split}"), seed=s, split=SPEC,
                        buckets=buckets)
        for j, name in enumerate("abc"):
            for r, line in enumerate((tmp_path / name).read_bytes().splitlines()):
                member[s, int(line)] = j
                rank[s, int(line)] = r
    return member, rank


def _membership_p(member: np.ndarray) -> float:
    """Each line in each split with probability size/N: a 20 x 3 table against its expectation."""
    runs = len(member)
    table = np.stack([(member == j).sum(axis=0) for j in range(3)], axis=1)
    expected = np.outer(np.ones(N), np.array(SIZES) / N) * runs
    return stats.chisquare(table.ravel(), expected.ravel()).pvalue


def _position_p(member: np.ndarray) -> float:
    """Split membership independent of input position: input quarter x split, contingency."""
    table = np.zeros((4, 3))
    for j in range(3):
        table[:, j] = (member == j).reshape(len(member), 4, N // 4).sum(axis=(0, 2))
    return stats.chi2_contingency(table).pvalue


def _order_p(member: np.ndarray, rank: np.ndarray) -> float:
    """Inside split a (10 lines), the rank of its smallest input line is uniform over 0..9."""
    firsts = [rank[s, np.flatnonzero(member[s] == 0)[0]] for s in range(len(member))]
    return stats.chisquare(np.bincount(firsts, minlength=SIZES[0])).pvalue


def test_split_membership_position_and_order_are_uniform(tmp_path):
    member, rank = _split_runs(tmp_path, 150)
    assert (np.stack([(member == j).sum(axis=1) for j in range(3)], axis=1) == SIZES).all()
    assert _membership_p(member) > ALPHA
    assert _position_p(member) > ALPHA
    assert _order_p(member, rank) > ALPHA


def test_mutations_of_split_are_caught(tmp_path, monkeypatch):
    """(1) keys that follow the position (chunk-then-shuffle): membership follows input
    position; (2) units not sorted by key (records keep input order inside a unit): order
    inside a split follows input order."""
    monkeypatch.setattr(randomness.OrderKeys, "range",
                        lambda self, first, n, out=None: np.arange(first, first + n, dtype=np.uint64)
                        << np.uint64(40))
    member, rank = _split_runs(tmp_path, 60)
    assert _position_p(member) < ALPHA
    monkeypatch.undo()

    def keep_order(buf, total, keys, sep, out, scratch=None):
        out[:total] = buf[:total]
        return int(np.count_nonzero(buf[:total] == sep))

    monkeypatch.setattr(engine, "order_unit", keep_order)
    member, rank = _split_runs(tmp_path, 60, buckets=2)
    assert _order_p(member, rank) < ALPHA
    assert Counter(member.ravel().tolist())[0] == 60 * SIZES[0]
