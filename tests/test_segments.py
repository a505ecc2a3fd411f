"""The window copy kernel against a plain Python reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigshuf.shuffler import segments
from bigshuf.shuffler.scatter import partition
from bigshuf.shuffler.segments import gather_records, window_width


def _layout(lengths):
    lengths = np.array(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return ends - lengths, lengths


def _random_bytes(rnd, size: int) -> np.ndarray:
    """``size`` bytes from one draw of ``rnd`` (a byte a draw overran Hypothesis's buffer on the
    larger examples, and cost ~0.5 s a test); the copy kernels never look at the values."""
    return np.random.default_rng(rnd.getrandbits(64)).integers(0, 256, size, dtype=np.uint8)


def _reference(src, starts, lengths, order):
    return b"".join(src[starts[i]:starts[i] + lengths[i]].tobytes() for i in order)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 700), min_size=1, max_size=150),
       gap=st.integers(0, 40), out_pos=st.integers(0, 9), rnd=st.randoms(use_true_random=False))
def test_gather_matches_reference(lengths, gap, out_pos, rnd):
    starts, lengths = _layout(lengths)
    starts = starts + np.arange(len(starts)) * gap  # records need not be back to back
    size = int(starts[-1] + lengths[-1]) if len(starts) else 0
    src = _random_bytes(rnd, size)
    order = list(range(len(lengths)))
    rnd.shuffle(order)
    expect = _reference(src, starts, lengths, order)
    sentinel = 0xAB
    out = np.full(out_pos + len(expect) + 7, sentinel, np.uint8)
    end = gather_records(src, starts[order], lengths[order], out, out_pos)
    assert end == out_pos + len(expect)
    assert out[out_pos:end].tobytes() == expect
    # Nothing outside the destination range is touched, whatever the windows spill.
    assert (out[:out_pos] == sentinel).all() and (out[end:] == sentinel).all()


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 16), min_size=1, max_size=120), gap=st.integers(0, 3),
       out_pos=st.integers(0, 9), step=st.integers(1, 6), rnd=st.randoms(use_true_random=False))
def test_one_window_each_matches_reference(lengths, gap, out_pos, step, rnd):
    """Short records (none longer than the window): the path without chunks or masks, with
    sources and destinations at both buffers' ends and many steps."""
    starts, lengths = _layout(lengths)
    starts = starts + np.arange(len(starts)) * gap
    size = int(starts[-1] + lengths[-1])
    src = np.frombuffer(bytes(rnd.getrandbits(8) for _ in range(size)), np.uint8)
    order = list(range(len(lengths)))
    rnd.shuffle(order)
    expect = _reference(src, starts, lengths, order)
    out = np.full(out_pos + len(expect) + 5, 0xAB, np.uint8)
    used = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(segments, "STEP_BYTES", step * 16)
        inner = segments._copy_one_window_each
        mp.setattr(segments, "_copy_one_window_each", lambda *a: used.append(1) or inner(*a))
        end = gather_records(src, starts[order], lengths[order], out, out_pos)
    assert used or not expect  # the short path ran
    assert out[out_pos:end].tobytes() == expect
    assert (out[:out_pos] == 0xAB).all() and (out[end:] == 0xAB).all()


@pytest.mark.parametrize("mean", [1, 36, 200, 1000])
def test_every_window_width_and_big_records(monkeypatch, mean):
    monkeypatch.setattr(segments, "BIG", 300)       # records over 300 bytes: exact copies
    monkeypatch.setattr(segments, "STEP_BYTES", 7 * 64)  # many steps
    rng = np.random.default_rng(mean)
    lengths = np.maximum(rng.poisson(mean, 400), 0)
    lengths[::50] = 1000
    starts, lengths = _layout(lengths)
    src = rng.integers(0, 256, int(lengths.sum()), dtype=np.uint8)
    order = rng.permutation(len(lengths))
    out = np.empty_like(src)
    assert gather_records(src, starts[order], lengths[order], out) == len(src)
    assert out.tobytes() == _reference(src, starts, lengths, order)


def test_window_width():
    assert window_width(36) == 64 and window_width(1) == 16 and window_width(1000) == 256


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=200),
       buckets=st.integers(1, 9), rnd=st.randoms(use_true_random=False))
def test_partition_matches_reference(lengths, buckets, rnd):
    starts, lengths = _layout(lengths)
    ends = starts + lengths
    src = _random_bytes(rnd, int(ends[-1]))
    bucket_of = np.array([rnd.randrange(buckets) for _ in lengths], dtype=np.uint16)
    out = np.zeros(len(src), np.uint8)
    keys = np.arange(len(lengths), dtype=np.uint64) * np.uint64(7)
    nbytes, counts, sorted_keys = partition(src, ends, keys, bucket_of, buckets, out)
    order = [i for b in range(buckets) for i in range(len(lengths)) if bucket_of[i] == b]
    assert out.tobytes() == _reference(src, starts, lengths, order)
    assert sorted_keys.tolist() == keys[order].tolist()
    assert nbytes.tolist() == [int(lengths[bucket_of == b].sum()) for b in range(buckets)]
    assert counts.tolist() == [int((bucket_of == b).sum()) for b in range(buckets)]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), limit=st.integers(1, 20), slice_size=st.integers(1, 17))
def test_cut_matches_reference(data, limit, slice_size):
    """The reader's block cut: at most ``limit`` whole records, found by counting per slice."""
    from bigshuf.shuffler import records
    saved, records._SCAN_SLICE = records._SCAN_SLICE, slice_size
    try:
        buf = np.frombuffer(data.replace(b"x", b"\n"), np.uint8)
        ends = [i + 1 for i, b in enumerate(buf.tolist()) if b == 10][:limit]
        assert records._cut(buf, 10, limit) == (len(ends), ends[-1] if ends else 0)
    finally:
        records._SCAN_SLICE = saved


@settings(max_examples=400, deadline=None)
@given(lengths=st.lists(st.one_of(st.integers(0, 7), st.integers(20, 200), st.integers(20, 200)),
                       max_size=300), tail=st.integers(0, 30),
       offset=st.integers(0, 7), sep=st.sampled_from([10, 0]))
def test_find_terminators_is_flatnonzero(lengths, tail, offset, sep):
    """The word-at-a-time newline scan gives exactly np.flatnonzero(data == sep): lines of
    every length (several terminators to a word, none, a tail past the last whole word), at any
    alignment of the slice."""
    from bigshuf.shuffler.records import find_terminators

    rng = np.random.default_rng(len(lengths) + tail)
    body = b"".join(bytes(rng.integers(1, 9, n).tolist()) + bytes([sep]) for n in lengths)
    raw = np.frombuffer(b"x" * offset + body + b"y" * tail, dtype=np.uint8)
    data = raw[offset:]
    assert np.array_equal(find_terminators(data, sep), np.flatnonzero(data == sep))


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 1500), min_size=1, max_size=120),
       big=st.sampled_from([300, 1 << 16]), step=st.sampled_from([7 * 256, 4 << 20]),
       rnd=st.randoms(use_true_random=False))
def test_place_records_matches_reference(lengths, big, step, rnd):
    """Records placed anywhere (the input method's window fill): short, long and BIG ones, in
    one step or many."""
    saved = segments.BIG, segments.STEP_BYTES
    segments.BIG, segments.STEP_BYTES = big, step
    try:
        starts, lengths = _layout(lengths)
        src = _random_bytes(rnd, int(lengths.sum()))
        order = list(range(len(lengths)))
        rnd.shuffle(order)
        expect = _reference(src, starts, lengths, order)
        dests = np.empty(len(order), np.int64)
        dests[order] = np.cumsum(lengths[order]) - lengths[order]
        out = np.zeros(len(src), np.uint8)
        segments.place_records(src, starts, lengths, out, dests)
        assert out.tobytes() == expect
    finally:
        segments.BIG, segments.STEP_BYTES = saved


def test_placing_a_huge_record_allocates_nothing_of_its_size():
    """A 32 MB record is one memcpy: no gathered copy of it, no index per 256-byte window (the
    memory bound counts STEP_BYTES of temporaries per worker, not a record's size)."""
    import tracemalloc

    size = 32 << 20
    src = np.ones(size + 10, np.uint8)
    out = np.zeros(size + 10, np.uint8)
    starts, lengths = np.array([0, size]), np.array([size, 10])
    tracemalloc.start()
    try:
        segments.place_records(src, starts, lengths, out, np.array([10, 0]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out[10:].all() and peak < segments.STEP_BYTES, peak


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5)), max_size=60),
       max_bytes=st.integers(1, 400), max_records=st.integers(1, 40))
def test_units_of_a_level_that_fits_are_the_loops(sizes, max_bytes, max_records):
    """plan_units' one-unit shortcut (a level within both caps) gives what the loop gives."""
    from bigshuf.shuffler.gather import _plan_units_loop, plan_units

    b = np.array([s[0] for s in sizes], dtype=np.int64)
    r = np.array([s[1] for s in sizes], dtype=np.int64)
    assert plan_units(b, r, max_bytes, max_records) == _plan_units_loop(b, r, max_bytes, max_records)
