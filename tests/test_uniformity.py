"""Statistical tests of exact uniformity, with fixed seeds so they are deterministic.

Each test forces the multi-bucket machinery (``buckets=`` or a tiny ``memory=``) on small inputs and
uses a significance level of 1e-4: a correct implementation fails one of them with probability
far below one in a thousand for some unlucky seed set, and since the seeds are fixed, the outcome
never changes between runs. A biased engine (chunk-interleave, content-hash buckets, a bucket
permutation that is not uniform) fails them by many standard deviations.
"""
from __future__ import annotations

import io
import itertools
from collections import Counter

import numpy as np
import pytest
from scipy import stats

import bigshuf
from bigshuf.common.randomness import OrderKeys

ALPHA = 1e-4


def shuffle_lines(data: bytes, **kw):
    out = io.BytesIO()
    bigshuf.shuffle([io.BytesIO(data)], out, progress=False, **kw)
    return out.getvalue().split(b"\n")[:-1]


def _key_order(seed: int, n: int):
    """The order the contract gives n records for a seed: the ranks of their keys (every path
    writes exactly this order: tests/test_reproducible.py checks each against the keys)."""
    return tuple(np.argsort(OrderKeys(seed).range(0, n)).tolist())


def test_every_permutation_of_four_lines_equally_likely():
    """All 24 orders of 4 records, over 4800 seeds (the keys' order), and the same counts
    through the whole shuffle on 300 of them."""
    perms = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.zeros(len(perms))
    for seed in range(4800):
        counts[perms[_key_order(seed, 4)]] += 1
    assert stats.chisquare(counts).pvalue > ALPHA, counts
    for seed in range(300):
        out = shuffle_lines(b"0\n1\n2\n3\n", seed=seed, buckets=2)
        assert tuple(int(x) for x in out) == _key_order(seed, 4)


def _positions(n: int, **kw) -> np.ndarray:
    """pos[i] = output position of input line i, for lines '0'..'n-1'."""
    data = b"".join(b"%d\n" % i for i in range(n))
    out = np.array([int(x) for x in shuffle_lines(data, **kw)])
    assert sorted(out.tolist()) == list(range(n))
    pos = np.empty(n, dtype=np.int64)
    pos[out] = np.arange(n)
    return pos


# One path is enough for the statistics: every path gives the same bytes for a seed (the order
# contract, tests/test_reproducible.py checks each of them against the keys' order).
ENGINE_PATHS = [dict(memory="64M")]


@pytest.mark.parametrize("kw", ENGINE_PATHS, ids=["memory"])
@pytest.mark.parametrize("seed", [1, 2])
def test_input_position_independent_of_output_position(kw, seed):
    """Deciles of input position vs deciles of output position: a 10x10 table with equal
    expected counts, chi-square test of uniformity."""
    n = 200_000
    pos = _positions(n, seed=seed, **kw)
    table = np.zeros((10, 10))
    np.add.at(table, (np.arange(n) * 10 // n, pos * 10 // n), 1)
    assert stats.chisquare(table.ravel()).pvalue > ALPHA, table


@pytest.mark.parametrize("kw", ENGINE_PATHS, ids=["memory"])
def test_input_neighbours_not_kept_together(kw):
    """In a uniform permutation, the number of input neighbours that end up adjacent in the
    output (either order) is about Poisson(2); a chunk-based shuffle keeps thousands."""
    n = 200_000
    pos = _positions(n, seed=3, **kw)
    adjacent = int(np.count_nonzero(np.abs(np.diff(pos)) == 1))
    assert adjacent <= 13, adjacent  # P(Poisson(2) > 13) < 1e-7


def test_first_output_line_uniform_over_inputs():
    """Which of 6 records comes out first, over 6000 seeds (the keys' order)."""
    first = Counter(_key_order(s, 6)[0] for s in range(6000))
    assert stats.chisquare([first[i] for i in range(6)]).pvalue > ALPHA, first


def test_equal_lines_are_not_grouped():
    """Keys come from the record's index, never from its content: 'a' lines then 'b' lines must come
    out well mixed (Wald-Wolfowitz runs test), not in long runs of equal lines."""
    n = 20_000
    data = b"a\n" * n + b"b\n" * n
    out = shuffle_lines(data, seed=5, memory="1M")
    runs = 1 + sum(1 for x, y in zip(out, out[1:]) if x != y)
    mean = 1 + n  # 2*n*n/(2n) + 1
    var = (2 * n * n * (2 * n * n - 2 * n)) / ((2 * n) ** 2 * (2 * n - 1))
    assert abs(runs - mean) / var ** 0.5 < 4.5, runs


def _orders_uniform(n: int, seeds: int) -> None:
    """The keys' orders of ``n`` records over ``seeds`` seeds: every order seen, equally often."""
    counts = Counter(_key_order(seed, n) for seed in range(seeds))
    assert len(counts) == len(list(itertools.permutations(range(n))))
    assert stats.chisquare(list(counts.values())).pvalue > ALPHA, counts


def test_header_mode_orders_the_rest_uniformly():
    """The records after the header come out in the keys' order of those records (exactly, on 200
    seeds), and that order is uniform over the 24 (chi-square, 1200 seeds). This took 1200 whole
    shuffles (~1.4 s); the exact check on 200 fails at once with the records keyed from the
    header's index 1 (OrderKeys.range(first + 1, ...)), which the chi-square cannot see."""
    data = b"H\na\nb\nc\nd\n"
    for seed in range(200):
        out = shuffle_lines(data, seed=seed, header=True, buckets=2)
        assert out[0] == b"H" and out[1:] == [b"abcd"[i:i + 1] for i in _key_order(seed, 4)], seed
    _orders_uniform(4, 1200)


def test_shards_cut_a_uniform_order(tmp_path):
    """Shards (with a header on each) concatenated in order: the keys' order of the records
    (exactly, on 60 seeds; was 600 whole shuffles compared by chi-square), each shard holding
    its quota; and that order is uniform (chi-square over 600 seeds of the keys)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"H\na\nb\nc\n")
    pattern = str(tmp_path / "s.txt")
    for seed in range(60):
        bigshuf.shuffle([str(src)], pattern, seed=seed, shards=2, header=True, buckets=3)
        lines = []
        for i, quota in enumerate((2, 1)):
            shard = (tmp_path / f"s-{i:05d}-of-00002.txt").read_bytes().split(b"\n")[:-1]
            assert shard[0] == b"H" and len(shard) == 1 + quota
            lines += shard[1:]
        assert lines == [b"abc"[i:i + 1] for i in _key_order(seed, 3)], seed
    _orders_uniform(3, 600)
