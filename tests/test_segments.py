"""The vectorised record copy kernels against a plain Python reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigshuf.shuffler import segments
from bigshuf.shuffler.segments import gather_records, scatter_records


def _layout(lengths):
    lengths = np.array(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return ends - lengths, lengths


# Each kernel has two implementations (per-byte index, per-record slice copies), chosen by mean
# record length; both are checked by forcing the choice.
KERNELS = pytest.mark.parametrize("loop_mean", [1, 10**9], ids=["slice-loop", "byte-index"])


@KERNELS
@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=200), rnd=st.randoms(use_true_random=False))
def test_gather_matches_reference(loop_mean, lengths, rnd):
    segments.LOOP_MEAN = loop_mean
    starts, lengths = _layout(lengths)
    src = np.frombuffer(bytes(rnd.getrandbits(8) for _ in range(int(lengths.sum()))), np.uint8)
    order = list(range(len(lengths)))
    rnd.shuffle(order)
    out = np.zeros(int(lengths.sum()) + 5, np.uint8)
    end = gather_records(src, starts[order], lengths[order], out, 3)
    expect = b"".join(src[starts[i]:starts[i] + lengths[i]].tobytes() for i in order)
    assert end == 3 + len(expect)
    assert out[3:end].tobytes() == expect


@KERNELS
@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=200), rnd=st.randoms(use_true_random=False))
def test_scatter_matches_reference(loop_mean, lengths, rnd):
    segments.LOOP_MEAN = loop_mean
    starts, lengths = _layout(lengths)
    total = int(lengths.sum())
    src = np.frombuffer(bytes(rnd.getrandbits(8) for _ in range(total)), np.uint8)
    order = list(range(len(lengths)))
    rnd.shuffle(order)
    # destination of record i: its offset when records are laid out in `order`
    dest = np.empty(len(lengths), np.int64)
    pos = 0
    for i in order:
        dest[i] = pos
        pos += lengths[i]
    out = np.zeros(total, np.uint8)
    scatter_records(src, 0, lengths, dest, out)
    expect = b"".join(src[starts[i]:starts[i] + lengths[i]].tobytes() for i in order)
    assert out.tobytes() == expect


@pytest.fixture(autouse=True)
def _restore_loop_mean():
    saved = segments.LOOP_MEAN
    yield
    segments.LOOP_MEAN = saved


@KERNELS
def test_huge_records_are_copied_alone(monkeypatch, loop_mean):
    segments.LOOP_MEAN = loop_mean
    # Shrink the piece size so "huge" records and piece boundaries are exercised cheaply.
    monkeypatch.setattr(segments, "PIECE", 64)
    monkeypatch.setattr(segments, "BIG", 16)
    rng = np.random.default_rng(0)
    lengths = rng.choice([1, 3, 15, 16, 17, 40, 200], size=500)
    starts, lengths = _layout(lengths)
    src = rng.integers(0, 256, int(lengths.sum()), dtype=np.uint8)
    order = rng.permutation(len(lengths))
    out = np.empty_like(src)
    gather_records(src, starts[order], lengths[order], out)
    expect = b"".join(src[starts[i]:starts[i] + lengths[i]].tobytes() for i in order)
    assert out.tobytes() == expect
