"""Statistics of -r (draws with replacement) and -i (permutations and samples of a range), with
fixed seeds and chi-square tests at alpha = 1e-4; each family ends with a mutation (a bug a real
implementation could have) that the same statistic catches."""
from __future__ import annotations

import io
import itertools
from collections import Counter

import numpy as np
from scipy import stats

import bigshuf
from bigshuf.common.randomness import Streams
from bigshuf.shuffler.methods import direct as sources
from bigshuf.shuffler.methods import repeat
from bigshuf.shuffler.plan import plan

ALPHA = 1e-4
SIX = b"".join(b"L%d\n" % i for i in range(6))


def _draws(seed: int, n: int, **kw) -> list:
    out = io.BytesIO()
    bigshuf.shuffle(output=out, seed=seed, repeat=True, sample=n, **kw)
    return out.getvalue().splitlines()


def _repeat_p_values(draws: list) -> tuple:
    """(counts p, consecutive-pairs p): counts multinomial with equal cells; each draw
    independent of the one before it (6 x 6 table of consecutive pairs, uniform)."""
    counts = Counter(draws)
    p_counts = stats.chisquare([counts[k] for k in sorted(counts)]).pvalue
    pairs = Counter(zip(draws, draws[1:]))
    cells = [pairs[(a, b)] for a in sorted(counts) for b in sorted(counts)]
    return p_counts, stats.chisquare(cells).pvalue, len(counts)


def test_repeat_counts_multinomial_and_order_uniform_from_files_range_and_echo():
    """60 000 draws of 6 lines, from two files (3 + 3 lines, so the indices span inputs), from
    -i 0-5 and from -e: each line ~1/6, each ordered pair of consecutive draws ~1/36."""
    files = lambda: [io.BytesIO(SIX[:9]), io.BytesIO(SIX[9:])]  # noqa: E731
    assert SIX[:9].count(b"\n") == 3
    for kw in (dict(inputs=files()), dict(input_range=(0, 5)),
               dict(echo=[f"e{i}" for i in range(6)])):
        inputs = kw.pop("inputs", None)
        out = io.BytesIO()
        bigshuf.shuffle(inputs if inputs is not None else ("-",), out, seed=11, repeat=True,
                        sample=60_000, **kw)
        p_counts, p_pairs, k = _repeat_p_values(out.getvalue().splitlines())
        assert k == 6 and p_counts > ALPHA and p_pairs > ALPHA, (kw, p_counts, p_pairs)


def test_repeat_uniform_across_rounds_and_halved_rounds(tmp_path, monkeypatch):
    """Five short lines and one of 60 KB with --memory 1M: 12 draws a round (500 passes over
    the file for 6 000 draws), and a round drawing the long line 5 times or more overflows its
    256 KB and is halved; counts and consecutive pairs stay uniform."""
    src = tmp_path / "long.txt"
    src.write_bytes(b"0\n1\n2\n3\n4\n5" + b"x" * 60_000 + b"\n")
    halved = []
    real = repeat._collect

    def spy(*args):
        got = real(*args)
        halved.append(got is None)
        return got

    monkeypatch.setattr(repeat, "_collect", spy)
    out = io.BytesIO()
    bigshuf.shuffle([str(src)], out, seed=5, repeat=True, sample=6000, memory="1M")
    assert any(halved)
    p_counts, p_pairs, k = _repeat_p_values([line[:1] for line in out.getvalue().splitlines()])
    assert k == 6 and p_counts > ALPHA and p_pairs > ALPHA


def test_repeat_draws_are_independent_across_seeds():
    """The first draw over 1 200 seeds: uniform over the 6 lines (a stream shared between runs
    or a fixed first draw would fail)."""
    first = Counter(_draws(s, 1, echo=[f"e{i}" for i in range(6)])[0] for s in range(1200))
    assert len(first) == 6 and stats.chisquare(list(first.values())).pvalue > ALPHA


def test_mutations_of_repeat_are_caught(monkeypatch):
    """(1) off by one: the last line is never drawn; (2) the draws of a chunk come out sorted
    (collected in file order and not put back in draw order)."""
    real = repeat.draws

    def off_by_one(streams, count, total):
        yield from real(streams, count - 1, total)

    monkeypatch.setattr(repeat, "draws", off_by_one)
    p_counts, _, k = _repeat_p_values(_draws(11, 60_000, input_range=(0, 5)))
    assert k == 5 or p_counts < ALPHA

    def sorted_draws(streams, count, total):
        for chunk in real(streams, count, total):
            yield np.sort(chunk)

    monkeypatch.setattr(repeat, "draws", sorted_draws)
    p_counts, p_pairs, _ = _repeat_p_values(_draws(11, 60_000, input_range=(0, 5)))
    assert p_counts > ALPHA and p_pairs < ALPHA


# -- -i -------------------------------------------------------------------------------------------

def _range(seed: int, spec, n=None) -> tuple:
    out = io.BytesIO()
    bigshuf.shuffle(output=out, seed=seed, input_range=spec, sample=n)
    return tuple(int(v) for v in out.getvalue().splitlines())


def test_range_permutation_all_orders_equally_likely():
    """-i 1-3 through the engine: the keys' order of its 3 records (exactly, 60 seeds), and over
    240 seeds of the keys each of the 6 orders ~40 times. (240 whole runs took ~1.2 s; with the
    engine's keys taken from index + 1 the exact check fails at once, which the counts cannot
    see; weak key mixing fails the counts.)"""
    from bigshuf.common.randomness import OrderKeys

    def order(seed: int) -> tuple:
        return tuple(int(i) + 1 for i in np.argsort(OrderKeys(seed).range(0, 3)))

    for s in range(60):
        assert _range(s, "1-3") == order(s), s
    counts = Counter(order(s) for s in range(240))
    assert len(counts) == 6 and stats.chisquare(list(counts.values())).pvalue > ALPHA


def test_range_permutation_position_independent_of_value():
    """-i 0-999, 20 seeds: value decile x output decile, a 10 x 10 table, uniform."""
    table = np.zeros((10, 10))
    for s in range(20):
        perm = _range(s, "0-999")
        for pos, v in enumerate(perm):
            table[v // 100, pos // 100] += 1
    assert stats.chisquare(table.ravel()).pvalue > ALPHA


def test_range_samples_uniform_dense_and_sparse():
    """-i 1-4 -n 2 (a permutation cut: 12 ordered pairs) and -i 1-6 -n 2 (rejection of
    repeats: 30 ordered pairs), through the CLI's code path."""
    for spec, n, outcomes, runs in (("1-4", 2, 12, 600), ("1-6", 2, 30, 900)):
        counts = Counter(_range(s, spec, n) for s in range(runs))
        assert len(counts) == outcomes
        assert stats.chisquare(list(counts.values())).pvalue > ALPHA, spec


def _offsets(seed: int, count: int, k: int) -> np.ndarray:
    """What -i LO-HI -n K draws (offsets from LO), without writing them."""
    return sources.sample_offsets(count, k, Streams(seed), plan(1 << 30))


def test_sparse_range_sample_of_a_huge_range():
    """-i 0-(10**12-1) -n 4 over 2 000 seeds: the decile of each of the 4 draws is uniform and
    the deciles of draws 1 and 2 are independent (10 x 10 table); the 4 are distinct."""
    got = np.array([_offsets(s, 10**12, 4) for s in range(2000)])
    assert all(len(set(row)) == 4 for row in got.tolist())
    deciles = (got // np.uint64(10**11)).astype(np.int64)
    assert all(stats.chisquare(np.bincount(deciles[:, j], minlength=10)).pvalue > ALPHA
               for j in range(4))
    pairs = np.bincount(deciles[:, 0] * 10 + deciles[:, 1], minlength=100)
    assert stats.chisquare(pairs).pvalue > ALPHA


def test_mutation_of_range_sample_is_caught(monkeypatch):
    """A sampler returning its K values in increasing order (np.unique's order instead of the
    order of first draw) keeps every subset equally likely but not every order: half the
    ordered pairs never appear."""
    real = sources.sample_offsets

    def ordered(count, k, streams: Streams, geo):
        got = real(count, k, streams, geo)
        return None if got is None else np.sort(got)

    monkeypatch.setattr(sources, "sample_offsets", ordered)
    counts = Counter(_range(s, "1-6", 2) for s in range(300))
    observed = [counts.get(p, 0) for p in itertools.permutations(range(1, 7), 2)]
    assert stats.chisquare(observed).pvalue < ALPHA


def test_range_sample_never_depends_on_memory():
    """The order contract for -i LO-HI -n K: its draws depend on the seed, the range and K, not
    --memory: K beyond the budget is a usage error, never another sample; and K more than half
    the range is the head of -i LO-HI's own order (the engine's, cut after K)."""
    import io

    import pytest

    import bigshuf
    from bigshuf.common.errors import UsageError

    def run(**kw):
        out = io.BytesIO()
        bigshuf.shuffle([], out, seed=4, **kw)
        return out.getvalue()

    assert run(input_range="1-10000000", sample=1000, memory="1M") == \
        run(input_range="1-10000000", sample=1000, memory="1G")
    with pytest.raises(UsageError, match="needs --memory"):
        run(input_range="1-10000000", sample=100000, memory="1M")
    assert run(input_range="1-100", sample=80, memory="1M") == \
        b"".join(run(input_range="1-100", memory="64M").splitlines(keepends=True)[:80])
