"""Statistics of every sampling mode (-n), with fixed seeds (alpha = 1e-4 per test).

Each test counts, over many seeds, which subset of the input lines a run keeps (and in which
order) and compares the counts with the uniform distribution by a chi-square test. The last
tests apply mutations a real bug would make (a key that ignores the input's index, a key
without its mixing, a spilled sample read back in file order) and check that the same
statistics catch them.
"""
from __future__ import annotations

import bz2
import gzip
import io
from collections import Counter
from typing import Callable, List, Sequence

import numpy as np
import pytest
from scipy import stats

import bigshuf
from bigshuf.common import randomness
from bigshuf.shuffler.methods import reservoir as sampling

ALPHA = 1e-4
#: Seeds of the keys for the 28 pairs of 8 lines.
RUNS_28 = 700


def _sample(inputs: Callable[[], Sequence], n: int, seed: int, **kw) -> List[bytes]:
    out = io.BytesIO()
    bigshuf.shuffle(inputs(), out, seed=seed, sample=n, **kw)
    return out.getvalue().splitlines()


def _counts(inputs: Callable[[], Sequence], n: int, runs: int, ordered: bool = False, **kw) -> Counter:
    c: Counter = Counter()
    for seed in range(runs):
        got = _sample(inputs, n, seed, **kw)
        c[tuple(got) if ordered else frozenset(got)] += 1
    return c


def _p_uniform(counts: Counter, outcomes: int) -> float:
    """Chi-square p-value of ``counts`` against ``outcomes`` equally likely outcomes (outcomes
    never seen count as zeros)."""
    observed = np.array(list(counts.values()) + [0] * (outcomes - len(counts)), dtype=float)
    return stats.chisquare(observed).pvalue


def _files(*sizes: int) -> Callable[[], list]:
    """Several in-memory inputs of distinct lines (sizes as given)."""
    datas, k = [], 0
    for s in sizes:
        datas.append(b"".join(b"L%d\n" % (k + i) for i in range(s)))
        k += s
    return lambda: [io.BytesIO(d) for d in datas]


def _first_keys(seed: int, n: int, k: int) -> tuple:
    """The indices of the first ``k`` of ``n`` records in the keys' order (the order contract)."""
    return tuple(np.argsort(randomness.OrderKeys(seed).range(0, n), kind="stable")[:k].tolist())


#: Whole runs checked record for record against the keys (the statistics are on the keys).
EXACT_RUNS = 150


def _pairs_are_the_keys(sizes: Sequence[int]) -> None:
    """-n 2 over 8 lines split as ``sizes``: exactly the keys' first pair on EXACT_RUNS runs."""
    make = _files(*sizes)
    for seed in range(EXACT_RUNS):
        assert frozenset(_sample(make, 2, seed)) == {b"L%d" % i for i in _first_keys(seed, 8, 2)}, seed


@pytest.mark.parametrize("sizes", [(4, 4), (2, 3, 3), (1, 7)], ids=["4+4", "2+3+3", "1+7"])
def test_every_pair_equally_likely_over_several_inputs(sizes):
    """-n 2 over 8 lines split over several inputs: 28 pairs, each 1/28 (the inputs reused one
    stream before, and 3 of the 28 pairs never appeared). The runs give the keys' first pair
    exactly (150 runs; it was a chi-square over 700 whole runs, ~0.5 s each size), and the keys'
    pairs are uniform (chi-square over RUNS_28 seeds); the mutation below is caught at once."""
    _pairs_are_the_keys(sizes)
    counts = Counter(frozenset(_first_keys(seed, 8, 2)) for seed in range(RUNS_28))
    assert len(counts) == 28
    assert _p_uniform(counts, 28) > ALPHA


def test_order_of_the_sample_is_uniform_too():
    """-n 2 of 3+2 lines, in order: the first two of the keys' order (the order contract), exactly
    on 300 seeds, and those ordered pairs are uniform over the 20 (chi-square over 2000 seeds of
    the keys). It was a chi-square over 2000 whole runs (~1.3 s); a reservoir that kept the pair
    in file order fails the exact check at once, weak key mixing the chi-square (p ~ 0)."""
    make = _files(3, 2)
    lines = [b"L%d" % i for i in range(5)]

    def first_two(seed: int) -> tuple:
        return tuple(np.argsort(randomness.OrderKeys(seed).range(0, 5), kind="stable")[:2].tolist())

    for seed in range(300):
        assert _sample(make, 2, seed) == [lines[i] for i in first_two(seed)], seed
    counts = Counter(first_two(seed) for seed in range(2000))
    assert len(counts) == 20  # 5*4 ordered pairs
    assert _p_uniform(counts, 20) > ALPHA


def test_every_subset_of_four_lines_equally_likely_single_input():
    """{a,b} etc.: 6 subsets of 2 of 4 lines. A reservoir keeping record i with k/i instead of
    k/(i+1) never draws some of them."""
    counts = _counts(_files(4), 2, 1200)
    assert _p_uniform(counts, 6) > ALPHA and len(counts) == 6


def _many_blocks_pvalue() -> float:
    """Inputs far larger than one block (so draws come from many block streams per input):
    the sample of whole runs is exactly the keys' first n (30 runs), and the chi-square p-value
    of each line's inclusion frequency in the keys' first n against n/N (200 seeds). It was 200
    whole runs (~1.5 s); a key that ignores the input's index fails the exact check at once."""
    sizes = (30000, 10000, 50000)  # ~630 KB: about ten 64 KB blocks at -S 1M
    total, n, runs = sum(sizes), 50, 200
    make = _files(*sizes)

    def first_n(seed: int) -> np.ndarray:
        return np.argpartition(randomness.OrderKeys(seed).range(0, total), n)[:n]

    for seed in range(30):
        assert sorted(_sample(make, n, seed, memory="1M")) == sorted(b"L%d" % i for i in first_n(seed)), seed
    observed = np.zeros(total)
    for seed in range(runs):
        observed[first_n(seed)] += 1
    assert observed.sum() == n * runs
    # Group lines into 90 bins of 1000 consecutive lines: expected n*runs/90 each.
    binned = observed.reshape(90, -1).sum(axis=1)
    return stats.chisquare(binned).pvalue


def test_reservoir_across_many_blocks_and_inputs_is_uniform():
    """Each line's inclusion frequency matches n/N (chi-square over lines)."""
    assert _many_blocks_pvalue() > ALPHA


@pytest.mark.parametrize("codec", ["gz", "bz2"])
def test_compressed_and_plain_inputs_mixed(tmp_path, codec):
    """A compressed input is the same records: the same sample as from the plain bytes (the
    order contract; the statistics above cover the keys themselves)."""
    a = tmp_path / "a.txt"
    a.write_bytes(b"a\nb\nc\n")
    b = tmp_path / f"b.txt.{codec}"
    raw = b"d\ne\nf\n"
    b.write_bytes(gzip.compress(raw) if codec == "gz" else bz2.compress(raw))
    (tmp_path / "b.txt").write_bytes(raw)
    for seed in range(20):
        assert _sample(lambda: [str(a), str(b)], 2, seed) == \
            _sample(lambda: [str(a), str(tmp_path / "b.txt")], 2, seed)


def test_stdin_last_line_without_newline_is_kept(monkeypatch):
    from helpers import invoke

    p = invoke(["shuffle", "--seed", "1"], input=b"a\nb\nc")
    assert sorted(p.stdout.splitlines(keepends=True)) == [b"a\n", b"b\n", b"c\n"]
    p = invoke(["shuffle", "-n", "3", "--seed", "1"], input=b"a\nb\nc")
    assert sorted(p.stdout.splitlines(keepends=True)) == [b"a\n", b"b\n", b"c\n"]


# -- the spilled reservoir -------------------------------------------------------------------------
# Sampled lines longer than the reservoir's memory: its records move to the temporary file, later
# ones are appended there, garbage is compacted, and the sample is read back in pieces
# (shuffler/methods/reservoir.py). Forced here on small inputs, with pieces of 3 records, so all of it runs.

@pytest.fixture
def spill(monkeypatch):
    """``spill(at)``: every reservoir spills, through the real overflow path, at its ``at``-th
    block with kept records (0: while it fills; later: once full, in the replacement phase),
    and reads back 3 records (64 bytes) at a time."""
    def force(at: int) -> None:
        real = sampling._Reservoir.put

        def put(self, *args):
            self.puts = getattr(self, "puts", 0) + 1
            if self.puts > at and self.file is None:
                self.budget = 0                      # nothing more fits in memory...
                self.data = self.data[:self.used]    # ...and the buffer is full: it overflows
            real(self, *args)
            assert (self.file is not None) == (self.puts > at)

        monkeypatch.setattr(sampling._Reservoir, "put", put)
        monkeypatch.setattr(sampling, "piece_sizes", lambda room, longest: (64, 3))

    return force


def _spilled_is_in_memory(spill, at: int, seeds: int = 30) -> bool:
    """Does the reservoir, forced to spill at its ``at``-th block, write exactly what it writes
    from memory? (Which records are kept never depends on where their bytes are.) 40 inputs,
    so 40 blocks: the later ones replace kept records."""
    data = [b"".join(b"L%d.%d %s\n" % (j, i, b"x" * (i % 13)) for i in range(10)) for j in range(40)]

    def run(seed: int):
        out = io.BytesIO()
        stats = bigshuf.shuffle([io.BytesIO(d) for d in data], out, seed=seed, sample=37, memory="1M")
        return out.getvalue(), stats.spilled

    plain = [run(s) for s in range(seeds)]
    spill(at)
    spilled = [run(s) for s in range(seeds)]
    assert all(n == 0 for _, n in plain) and all(n > 0 for _, n in spilled)
    return [b for b, _ in plain] == [b for b, _ in spilled]


@pytest.mark.parametrize("at", [0, 1, 20], ids=["filling", "second", "late"])
def test_a_spilled_sample_is_the_in_memory_sample(spill, at):
    assert _spilled_is_in_memory(spill, at)


def test_mutation_a_key_that_ignores_the_inputs_index_is_caught(monkeypatch):
    """Keys computed from the position inside each block instead of the index in the whole
    input: records at the same place of two inputs share a key (the bug the order contract's
    keys must never have)."""
    real = randomness.OrderKeys.range
    monkeypatch.setattr(randomness.OrderKeys, "range", lambda self, first, count: real(self, 0, count))
    with pytest.raises(AssertionError):
        _pairs_are_the_keys((4, 4))
    counts = _counts(_files(4, 4), 2, 150)  # and the statistics of whole runs see it too
    assert len(counts) < 28 or _p_uniform(counts, 28) < ALPHA


def test_mutation_a_key_without_its_mixing_is_caught(monkeypatch):
    """A key that only offsets and multiplies the index (no finaliser): a bijection still, but
    its order is a fixed pattern that the seed barely moves."""
    def weak(self, x):
        x += self.a
        x *= np.uint64(0x9E3779B97F4A7C15)

    monkeypatch.setattr(randomness.OrderKeys, "_mix", weak)
    counts = _counts(_files(4), 2, 300, ordered=True)  # 1200 before; 300 still see 4 pairs of 12
    assert len(counts) < 12 or _p_uniform(counts, 12) < ALPHA, counts


def test_mutation_spilled_sample_written_in_file_order_is_caught(spill, monkeypatch):
    """A spilled reservoir reading each piece back in file order (the order records reached the
    temporary file) instead of key order."""
    real = sampling._Reservoir.read
    monkeypatch.setattr(sampling._Reservoir, "read",
                        lambda self, idx: real(self, idx[np.argsort(self.start[idx], kind="stable")]))
    assert not _spilled_is_in_memory(spill, 0)


def test_mutation_spill_losing_the_block_that_overflowed_is_caught(spill, monkeypatch):
    """The block whose records overflowed the memory is dropped when the reservoir spills
    (the slots keep their old records): that block's lines are never sampled."""
    forced = sampling._Reservoir.put

    def put(self, slots, src, starts, lengths):
        if self.file is not None:
            return forced(self, slots, src, starts, lengths)
        before = self.start.copy(), self.length.copy(), self.key.copy(), self.live, self.filled
        self._compact_file = lambda: None  # the offsets in `before` must stay valid
        forced(self, slots, src, starts, lengths)
        del self._compact_file
        if self.file is not None:  # it spilled: forget what this block stored
            self.start[:], self.length[:], self.key[:], self.live, self.filled = before

    monkeypatch.setattr(sampling._Reservoir, "put", put)
    assert not _spilled_is_in_memory(spill, 1)
