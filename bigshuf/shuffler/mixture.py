"""``--mix W1,W2,...``: the inputs mixed in given proportions, as one virtual record stream.

A mixture is three independent steps (DESIGN.md section 6):

1. **How many** lines from each input: the quotas ``q_j``, the largest remainder of ``N`` by the
   weights (:func:`largest_remainder`); without ``-n``, ``N`` is the largest total that repeats
   no input (:func:`largest_total`).
2. **Which**: input ``j`` (``n_j`` records) is taken ``c_j = q_j // n_j`` whole times, plus one
   partial copy of ``r_j = q_j % n_j`` records: those whose *selection key* ``G_j(i)`` is among
   the ``r_j`` smallest. ``G_j`` is a bijection of the 64-bit integers keyed by (seed,
   :data:`Purpose.MIX_SELECT`, j), like the order keys, so the ``r_j`` smallest are a uniform
   subset of that size whatever the blocks, ``--memory`` or ``--jobs`` (the threshold is
   found by a radix select over the keys alone, :func:`rank_keys`: no data is read for it).
3. **Order**: every chosen element gets a *virtual index* ``v`` (dense: input ``j``'s elements
   are ``base_j .. base_j + q_j - 1``; copy ``k`` of record ``i`` is ``base_j + k n_j + i``, the
   partial copy's records are numbered by their rank among the selected), and the output is the
   order contract's shuffle of that stream: sorted by ``F_seed(v)``. So ``-n``, shards,
   compression and the engine's every level compose unchanged.

``--split`` is stratified: split ``s`` gets ``q_js`` elements of input ``j``, the table of the
shares ``q_j S_s / N`` rounded up or down so that both the split sizes ``S_s`` and the quotas
add up exactly, each rounded up with probability its fractional part (:func:`split_table`); which elements of input ``j`` go to split ``s`` is decided
by the ranks of a third key ``H_j(u)`` (Purpose.MIX_SPLIT) over the input's elements ``u =
v - base_j``: a uniform partition, independent of the order. Each split is then one run over
the stream, keeping its own elements (with their keys ``F_seed(v)``).

The counts ``n_j`` come from :func:`count_inputs` (one pass of terminator counting): the one
place a stage that changes the records of an input (dedup within each input) would replace.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import BigshufError, InputError, changed
from bigshuf.common.inputs import InputKind
from bigshuf.common.randomness import OrderKeys, Purpose
from bigshuf.shuffler.buffers import BufferPool
from bigshuf.shuffler.records import Block, RecordReader, display_name
from bigshuf.shuffler.segments import gather_records

#: Keys computed per step of a pass over an index range (2 MB of uint64).
KEY_STEP = 1 << 18
#: Keys a radix select collects at most in one bin before it refines by 16 more bits.
COLLECT_CAP = 1 << 20


# -- step 1: how many ---------------------------------------------------------------------------
def largest_remainder(total: int, weights: Sequence[Fraction]) -> List[int]:
    """``total`` cut in proportion to ``weights`` (exact fractions): each part is its share
    rounded down, and the parts with the largest remainders get one more (ties: the input named
    first), so they add up to ``total``."""
    scale = math.lcm(*(Fraction(w).denominator for w in weights))
    ints = [int(w * scale) for w in weights]  # the same proportions, as integers
    whole = sum(ints)
    parts = [total * a // whole for a in ints]
    order = sorted(range(len(parts)), key=lambda j: (-(total * ints[j] % whole), j))
    for j in order[:total - sum(parts)]:
        parts[j] += 1
    return parts


def largest_total(weights: Sequence[Fraction], counts: Sequence[int]) -> int:
    """The largest N whose quotas repeat no input (q_j <= n_j for every j).

    Largest remainder is not monotone in N (the Alabama paradox: a larger N can take a line
    away from one input and give it to another), so this searches down from an upper bound:
    q_j >= floor(N w_j / W) needs N < (n_j + 1) W / w_j; below min_j n_j W / w_j every quota
    fits. The answer lies between the two (a gap of about W / w_j for the input that binds:
    checked in vectorised batches when the numbers fit in 64 bits)."""
    whole = sum(weights)
    active = [j for j, w in enumerate(weights) if w > 0]
    high = min(math.ceil((counts[j] + 1) * whole / weights[j]) for j in active) - 1
    low = max(min(math.ceil(counts[j] * whole / weights[j]) for j in active) - 1, 0)
    scale = math.lcm(*(Fraction(w).denominator for w in weights))
    ints = [int(w * scale) for w in weights]
    if high * max(ints) < 1 << 62 and len(ints) <= 64:
        return _largest_fitting(ints, counts, high, low)
    for total in range(high, low, -1):
        if all(q <= n for q, n in zip(largest_remainder(total, weights), counts)):
            return total
    return low


def _largest_fitting(ints: Sequence[int], counts: Sequence[int], high: int, low: int) -> int:
    """:func:`largest_total`'s search in batches of N (int64 arithmetic: the same quotas as
    :func:`largest_remainder`, ties to the input named first)."""
    a = np.array(ints, np.int64)
    whole = int(a.sum())
    n = np.array(counts, np.int64)
    k = len(a)
    before = np.tri(k, k, -1, dtype=bool).T  # before[i, j]: input i is named before j
    top = high
    while top > low:
        totals = np.arange(top, max(low, top - 4096), -1, dtype=np.int64)
        shares = totals[:, None] * a
        floors, rems = shares // whole, shares % whole
        left = totals - floors.sum(axis=1)
        # Rank of j among the remainders, largest first, ties to the input named first.
        ahead = (rems[:, :, None] > rems[:, None, :]) | \
            ((rems[:, :, None] == rems[:, None, :]) & before[None, :, :])
        rank = ahead.sum(axis=1)
        quotas = floors + (rank < left[:, None])
        fits = np.flatnonzero((quotas <= n).all(axis=1))
        if len(fits):
            return int(totals[fits[0]])
        top -= 4096
    return low


@dataclass
class Share:
    """What one input gives the mixture: its records, its weight and its quota."""

    name: str
    records: int
    weight: Fraction
    taken: int
    base: int = 0  # the virtual index of its first element

    @property
    def copies(self) -> int:
        """Whole copies of the input in the mixture."""
        return self.taken // self.records if self.records else 0

    @property
    def rest(self) -> int:
        """Records of the partial copy (a uniform subset of this size)."""
        return self.taken % self.records if self.records else 0

    def as_dict(self) -> Dict[str, Any]:
        return {"path": self.name, "records": self.records, "weight": _float(self.weight),
                "taken": self.taken, "copies": self.copies, "rest": self.rest}


def _float(w: Fraction) -> float:
    """A weight as a float for reports (never fails: options keep weights within floats)."""
    try:
        return float(w)
    except OverflowError:
        return math.inf if w > 0 else 0.0


def plan_mixture(names: Sequence[str], counts: Sequence[int], weights: Sequence[Fraction],
                 total: Optional[int]) -> List[Share]:
    """Each input's share of a mixture of ``total`` lines (None: the largest that repeats no
    input). An empty input with a weight cannot contribute: an input error naming it."""
    for name, n, w in zip(names, counts, weights):
        if w > 0 and n == 0:
            raise InputError("--mix gives this input a weight, but it holds no records", name)
    if total is None:
        total = largest_total(weights, counts)
    quotas = largest_remainder(total, weights)
    shares, base = [], 0
    for name, n, w, q in zip(names, counts, weights, quotas):
        shares.append(Share(name, n, w, q, base))
        base += q
    return shares


# -- counting: the one place that says how many records each input holds ----------------------
def count_inputs(reader: RecordReader, block_bytes: int, block_records: int) -> List[int]:
    """Records of each input of ``reader`` (headers left out), one terminator-counting pass in
    bounded memory. (A stage that drops records of an input, such as dedup within each input,
    replaces this function: the mixture needs only these counts and the records it is given.)

    Plain files are counted straight from their bytes (a count of terminators, plus a last line
    without one; under --header every input's first line is left out, as the reader does);
    compressed ones through a reader of their own."""
    counts = []
    for path, info in zip(reader.inputs, reader.infos):
        if info is not None and info.kind is InputKind.FILE:
            counts.append(_count_file(info.path, reader.sep, block_bytes, reader.want_header))
            continue
        one = RecordReader([path], reader.sep, header=reader.want_header, warn=lambda m: None)
        pool = BufferPool(block_bytes)
        for block in one.blocks(block_bytes, block_records, pool):
            pool.release(block.data)
        counts.append(one.records)
    return counts


def _count_file(path: str, sep: int, block_bytes: int, header: bool) -> int:
    """Records of a plain file: its terminators, one more for a last line without one."""
    buf = np.empty(max(1 << 16, min(block_bytes, 16 << 20)), np.uint8)
    view = memoryview(buf)  # type: ignore[arg-type]
    count, last = 0, sep
    try:
        with open(path, "rb", buffering=0) as f:
            while True:
                got = f.readinto(view)
                if not got:
                    break
                for a in range(0, got, 1 << 20):
                    count += int(np.count_nonzero(buf[a:min(got, a + (1 << 20))] == sep))
                last = int(buf[got - 1])
    except OSError as exc:
        raise InputError(f"read error: {exc.strerror or exc}", path) from None
    count += last != sep
    return count - 1 if header and count else count


# -- step 2 and the split labels: keyed bijections and a radix select --------------------------
class Keys(OrderKeys):
    """A bijection of the 64-bit integers like the order keys, keyed by ``(purpose, j)``."""

    def __init__(self, seed: int, key: Tuple[int, ...]):  # its own spawn key, not ORDER's
        a, b, c = np.random.SeedSequence(seed, spawn_key=key).generate_state(3, np.uint64)
        self.a, self.b, self.c = np.uint64(a), np.uint64(b), np.uint64(c)


def rank_keys(keys: OrderKeys, n: int, ranks: Sequence[int], cap: int = COLLECT_CAP) -> List[int]:
    """The key of rank ``r`` (0-based, ascending) among ``keys.range(0, n)``, for each ``r``
    in ``ranks``.

    The keys are spread uniformly over the 64-bit integers, so the key of rank r lies within a
    few standard deviations of ``r / n * 2^64``: one pass counts the keys below such a bracket
    and collects those inside it, which gives the exact answer when the bracket holds it (it
    is checked). Otherwise (never seen; a radix select is the fallback) each further pass
    histograms 16 more bits of the keys under a prefix, or collects them when few enough
    (``cap``). Memory: the collected keys (~12 sqrt(n) a rank) plus 512 KB a histogram."""
    found = _bracketed(keys, n, ranks, cap)
    if found is not None:
        return found
    return _radix(keys, n, ranks, cap)


def _bracketed(keys: OrderKeys, n: int, ranks: Sequence[int], cap: int) -> Optional[List[int]]:
    """:func:`rank_keys` in one pass if each rank's key lies in its bracket, else None."""
    span = float(1 << 64)
    brackets = []
    for r in ranks:
        sd = math.sqrt(max(r * (n - r) / n, 1.0)) / n * span
        mid = (r + 0.5) / n * span
        lo, hi = max(0.0, mid - 6 * sd - 2 * span / n), min(span, mid + 6 * sd + 2 * span / n)
        brackets.append((int(lo), min(int(hi), (1 << 64) - 1)))
    if sum(hi - lo for lo, hi in brackets) / span * n > cap * max(1, len(ranks)):
        return None  # wide brackets (small n): the radix select is as cheap
    below = [0] * len(ranks)
    inside: List[List[np.ndarray]] = [[] for _ in ranks]
    buf = np.empty(min(n, KEY_STEP), np.uint64)
    for start in range(0, n, KEY_STEP):
        k = keys.range(start, min(KEY_STEP, n - start), buf)
        for i, (lo, hi) in enumerate(brackets):
            below[i] += int(np.count_nonzero(k < np.uint64(lo)))
            inside[i].append(k[(k >= np.uint64(lo)) & (k < np.uint64(hi))])
    out = []
    for r, b, parts in zip(ranks, below, inside):
        got = np.sort(np.concatenate(parts))
        if not b <= r < b + len(got):
            return None
        out.append(int(got[r - b]))
    return out


def _radix(keys: OrderKeys, n: int, ranks: Sequence[int], cap: int) -> List[int]:
    """:func:`rank_keys` by radix select: 16 bits of the keys a pass."""
    out: List[int] = [0] * len(ranks)
    groups: Dict[Tuple[int, int], List[Tuple[int, int]]] = {(0, 0): list(enumerate(ranks))}
    sizes = {(0, 0): n}
    buf = np.empty(min(n, KEY_STEP), np.uint64)
    while groups:
        collect = {g: [] for g in groups if sizes[g] <= cap}  # type: Dict[Any, List[np.ndarray]]
        hists = {g: np.zeros(1 << 16, np.int64) for g in groups if g not in collect}
        for lo in range(0, n, KEY_STEP):
            k = keys.range(lo, min(KEY_STEP, n - lo), buf)
            for prefix, bits in groups:
                sel = k if bits == 0 else k[(k >> np.uint64(64 - bits)) == np.uint64(prefix)]
                if (prefix, bits) in collect:
                    collect[(prefix, bits)].append(sel.copy())
                else:
                    top = (sel >> np.uint64(48 - bits)) & np.uint64(0xFFFF)
                    hists[(prefix, bits)] += np.bincount(top.astype(np.intp), minlength=1 << 16)
        new: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}
        for g, parts in collect.items():
            found = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.uint64)
            for i, r in groups[g]:
                out[i] = int(found[r])
        for (prefix, bits), hist in hists.items():
            cum = np.cumsum(hist)
            for i, r in groups[(prefix, bits)]:
                b = int(np.searchsorted(cum, r, side="right"))
                child = ((prefix << 16) | b, bits + 16)
                new.setdefault(child, []).append((i, r - (int(cum[b - 1]) if b else 0)))
                sizes[child] = int(hist[b])
        groups = new
    return out


class Cuts:
    """Labels of the elements ``0 .. n-1`` by the ranks of their keys: element ``u`` gets label
    ``s`` when its key's rank lies in ``[cuts[s-1], cuts[s])`` (``cuts`` increasing, the last
    one ``n``): a uniformly random partition of the elements into groups of those sizes."""

    def __init__(self, keys: OrderKeys, n: int, cuts: Sequence[int]):
        self.keys = keys
        inner = [c for c in cuts[:-1]]
        known = rank_keys(keys, n, [c for c in inner if 0 < c < n]) if n else []
        it = iter(known)
        # Threshold per cut: an element is past cut s when its key >= the key of rank cuts[s];
        # rank 0: every element is past it; rank n: none is (None).
        self.limits: List[Optional[int]] = [0 if c <= 0 else None if c >= n else next(it)
                                            for c in inner]

    def labels(self, first: int, count: int) -> np.ndarray:
        """The labels of elements ``first .. first + count - 1``."""
        k = self.keys.range(first, count)
        out = np.zeros(count, np.int64)
        for limit in self.limits:
            if limit is not None:
                out += k >= np.uint64(limit)
        return out


# -- the virtual stream ---------------------------------------------------------------------------
class MixReader:
    """The mixture as a record reader: the base reader's blocks, each re-emitted once per whole
    copy of its input and once filtered to the partial copy's records, with ``Block.first`` the
    virtual index. With ``label``, only the elements of that split are kept, with their keys
    (``Block.keys``: their virtual indices are no longer consecutive).

    Anything else a method asks of a reader (header, warnings, bytes read) is the base reader's.
    """

    def __init__(self, base: RecordReader, shares: Sequence[Share], seed: int,
                 split: Optional[Tuple[int, List[List[int]]]] = None):
        self.base = base
        self.shares = list(shares)
        self.records = 0   # virtual records emitted so far
        self.payload = 0
        self._seed = seed
        self._order = OrderKeys(seed)
        self._split = split

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    @property
    def inputs(self) -> List[Any]:
        return self.base.inputs

    def known_size(self) -> Optional[int]:
        return None  # which records a partial copy takes is known only as they are read

    def plain_files(self) -> bool:
        return False  # the input method re-reads records by position: not a virtual stream

    def rereadable(self) -> bool:
        return False

    def estimated_size(self) -> Optional[int]:
        size = self.base.estimated_size()
        records = sum(s.records for s in self.shares) or 1
        taken = sum(s.taken for s in self.shares)
        return None if size is None else size * taken // records + taken

    def estimated_records(self, sample: int = 1 << 16) -> int:
        return sum(s.taken for s in self.shares)

    def blocks(self, capacity: int, max_records: Optional[int] = None,
               pool: Any = None) -> Iterator[Block]:
        starts = np.cumsum([0] + [s.records for s in self.shares]).tolist()
        select = [self._selector(s, j) for j, s in enumerate(self.shares)]
        labels = [self._labeler(s, j) for j, s in enumerate(self.shares)]
        seen = [0] * len(self.shares)
        chosen = [0] * len(self.shares)  # records of the partial copy so far
        for block in self.base.blocks(capacity, max_records, pool):
            j = block.source
            share = self.shares[j]
            first = block.first - starts[j]
            self._check_position(j, first, block.count, seen)
            seen[j] += block.count
            # Whole copies: a block that is the whole input is packed ``times`` copies to a
            # block (their virtual indices are contiguous), so the engine sees as many blocks
            # as for an ordinary input of the output's size, whatever the copy count.
            times = _pack(block, share.records, capacity, max_records)
            copies: List[Tuple[int, Optional[np.ndarray], int]] = [
                (share.base + k * share.records + first, None, min(times, share.copies - k))
                for k in range(0, share.copies, times)]
            if share.rest:
                picked = np.flatnonzero(select[j].range(first, block.count) < select[j].limit)
                copies.append((share.base + share.copies * share.records + chosen[j], picked, 1))
                chosen[j] += len(picked)
            for n, (v, rows, m) in enumerate(copies):
                last = n == len(copies) - 1
                out = self._emit(block, v, rows, labels[j], share.base, pool, last, m)
                if out is not None:
                    self.records += out.count
                    self.payload += out.nbytes
                    yield out
            if not copies and pool is not None:
                pool.release(block.data)
        for share, n in zip(self.shares, seen):
            if n != share.records:
                raise BigshufError(changed(share.name))

    def _check_position(self, j: int, first: int, count: int, seen: List[int]) -> None:
        """A block of input j must continue it where the last one ended, within its count, after
        every earlier input has given all its records: else an input grew or shrank since it was
        counted (a truncated input would shift the positions of the next)."""
        short = [i for i in range(j) if seen[i] != self.shares[i].records]
        moved = short[0] if short else j
        if short or first != seen[j] or seen[j] + count > self.shares[j].records:
            raise BigshufError(changed(self.shares[moved].name))

    def _selector(self, share: Share, j: int) -> Any:
        """Input j's selection keys, with ``limit``: the partial copy is the records whose
        key is below it (the ``rest`` smallest)."""
        if not share.rest:
            return None
        keys = Keys(self._seed, (Purpose.MIX_SELECT, j))
        keys.limit = np.uint64(rank_keys(keys, share.records, [share.rest])[0])  # type: ignore[attr-defined]
        return keys

    def _labeler(self, share: Share, j: int) -> Optional[Cuts]:
        if self._split is None or not share.taken:
            return None
        table = self._split[1]
        cuts = np.cumsum([row[j] for row in table]).tolist()
        return Cuts(Keys(self._seed, (Purpose.MIX_SPLIT, j)), share.taken, cuts)

    def _emit(self, block: Block, v: int, keep: Optional[np.ndarray], labels: Optional[Cuts],
              base: int, pool: Any, last: bool, times: int = 1) -> Optional[Block]:
        """One copy of ``block``: its records ``keep`` (all if None) numbered from ``v``; with a
        split, only its elements. The block's own buffer goes to the last copy. ``times`` > 1
        (whole copies only): that many consecutive copies of it in one block."""
        if times > 1:  # a buffer of its own: the block's goes back if this was its last use
            tiled = _tiled(block, times, pool)
            if last and pool is not None:
                pool.release(block.data)
            block, last = tiled, True
        count = block.count if keep is None else len(keep)
        keys = None
        if labels is not None:
            mine = np.flatnonzero(labels.labels(v - base, count) == self._split[0])  # type: ignore[index]
            keys = self._order.of(v + mine)
            keep = mine if keep is None else keep[mine]
            count = len(keep)
        if count == 0:
            if last and pool is not None:
                pool.release(block.data)
            return None
        if keep is None or count == block.count:
            data = block.data if last else _copy(block.data, pool)
            ends = block._ends if last else None
            return Block(block.index, data, ends, block.source, block.sep, block.count,
                         block.offset, v, keys)
        ends = block.ends
        starts = np.concatenate(([0], ends[:-1]))[keep]
        lengths = ends[keep] - starts
        data = pool.get() if pool is not None else np.empty(block.nbytes, np.uint8)
        used = gather_records(block.data, starts, lengths, data)
        if last and pool is not None:
            pool.release(block.data)
        return Block(block.index, data[:used], None, block.source, block.sep, count,
                     block.offset, v, keys)


def _pack(block: Block, records: int, capacity: int, max_records: Optional[int]) -> int:
    """Whole copies of an input to put in one block: as many as fit the block size when
    ``block`` is the whole input, else 1."""
    if block.count != records or not block.nbytes:
        return 1
    times = capacity // block.nbytes
    if max_records:
        times = min(times, max_records // block.count)
    return max(1, times)


def _tiled(block: Block, times: int, pool: Any) -> Block:
    """``times`` consecutive copies of ``block``'s records as one block (in a pool buffer)."""
    size = block.nbytes
    out = pool.get()[:size * times] if pool is not None else np.empty(size * times, np.uint8)
    out.reshape(times, size)[:] = block.data
    ends = (block.ends[None, :] + np.arange(times, dtype=np.int64)[:, None] * size).ravel()
    return Block(block.index, out, ends, block.source, block.sep, block.count * times,
                 block.offset, block.first)


def _copy(data: np.ndarray, pool: Any) -> np.ndarray:
    """``data`` copied into a buffer of the pool (the engine gives every block's buffer back)."""
    out = pool.get()[:len(data)] if pool is not None else np.empty(len(data), np.uint8)
    out[:] = data
    return out


# -- --split: stratified by input --------------------------------------------------------------
def split_table(quotas: Sequence[int], sizes: Sequence[int], seed: int = 0) -> List[List[int]]:
    """``table[s][j]``: elements of input ``j`` in split ``s``. Each entry is its share
    ``q_j S_s / N`` rounded down or up, the rows add up to the split sizes and the columns to the
    quotas, and each entry is rounded up with probability its fractional part (dependent
    rounding of a bipartite graph, Gandhi et al. 2006: seeded by ``seed``, Purpose.MIX_ROUND),
    so no input is favoured by its position."""
    total = sum(quotas)
    m, k = len(sizes), len(quotas)
    if total == 0:
        return [[0] * k for _ in range(m)]
    exact = [[Fraction(q * s, total) for q in quotas] for s in sizes]
    table = [[math.floor(x) for x in row] for row in exact]
    frac = {(s, j): exact[s][j] - table[s][j] for s in range(m) for j in range(k)
            if exact[s][j] != table[s][j]}
    rng = _rounding_draws(seed)
    while frac:
        cycle = _cycle(frac)
        plus, minus = cycle[0::2], cycle[1::2]   # alternate cells: every row and column on the
        up = min([1 - frac[c] for c in plus] + [frac[c] for c in minus])    # cycle has one of each
        down = min([frac[c] for c in plus] + [1 - frac[c] for c in minus])
        step = up if rng.random() < float(down / (up + down)) else -down   # mean shift 0
        for cells, sign in ((plus, 1), (minus, -1)):
            for c in cells:
                frac[c] += sign * step
                if frac[c] in (0, 1):
                    table[c[0]][c[1]] += int(frac.pop(c))
    return table


def _rounding_draws(seed: int) -> np.random.Generator:
    """The draws of :func:`split_table`'s rounding (their own stream of the seed)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        seed, spawn_key=(Purpose.MIX_ROUND,))))


def _cycle(frac: Dict[Tuple[int, int], Fraction]) -> List[Tuple[int, int]]:
    """A cycle of cells with fractional parts, as its cells in order (even length: it alternates
    rows and columns). Every row and column with such a cell has two (its sum is whole)."""
    rows: Dict[int, List[int]] = {}
    cols: Dict[int, List[int]] = {}
    for s, j in sorted(frac):
        rows.setdefault(s, []).append(j)
        cols.setdefault(j, []).append(s)
    node, seen, path = ("r", min(rows)), {}, []  # type: Tuple[str, int], Dict[Any, int], List[Tuple[int, int]]
    while node not in seen:
        seen[node] = len(path)
        side, x = node
        last = path[-1] if path else None
        if side == "r":
            cell = next((x, j) for j in rows[x] if (x, j) != last)
            node = ("c", cell[1])
        else:
            cell = next((s, x) for s in cols[x] if (s, x) != last)
            node = ("r", cell[0])
        path.append(cell)
    return path[seen[node]:]


def input_names(inputs: Sequence[Any]) -> List[str]:
    return [display_name(os.fspath(p)) if isinstance(p, (str, os.PathLike)) else repr(p)
            for p in inputs]
