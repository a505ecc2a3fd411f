"""Copying variable-length records between byte buffers, vectorised with fixed-width windows.

Records are never Python objects here: a record is a (start, length) pair in numpy arrays. numpy
has no "copy these N slices" primitive, but it copies fixed-size items fast, and a byte buffer can
be *viewed* (no copy) as overlapping W-byte items, one starting at every byte
(``np.ndarray(dtype=V<W>, strides=(1,))``). A record of length L <= W is then one item: read the
W bytes at its start, write them at its destination. The W - L bytes too many land where the
*next* record goes, and numpy's fancy assignment writes items in index order, so the next record
overwrites them. A longer record is cut into W-byte chunks, the last one spilling the same way.
Chunks too close to a buffer's end to have a whole window, and records longer than ``BIG``, are
copied afterwards with exact slices (one memcpy each).

Measured on the 2-core dev machine, permuting 16 MB units: ~1.2 GB/s for ~36-byte records and ~7
GB/s for ~1 KB records, against ~0.6 and ~3.5 GB/s for the per-byte index this replaced.
pyarrow's ``compute.take`` on a zero-copy ``LargeBinaryArray`` was also measured (~1.5 and ~14
GB/s), but importing it adds ~35 MB of RSS (its shared libraries), which alone breaks the memory
bound at small budgets (``--memory 1M`` allows 65 MiB in all); see README "Benchmarks".
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

#: Records longer than this are copied alone with a slice (memcpy), never cut into windows.
BIG = 1 << 16
#: Bytes of windows per vectorised step: bounds the gathered temporary (and ~40 bytes of index
#: arrays per window) and keeps them in the CPU cache.
STEP_BYTES = 4 << 20


def window_width(mean_length: float) -> int:
    """The window W for records of this mean length. Short records: one window each, the
    smallest power of two >= the mean (64 for ~36-byte lines); long ones: 256-byte chunks
    (measured best for ~1 KB lines: fewer, larger items against bytes copied twice)."""
    if mean_length > 128:
        return 256
    return max(16, 1 << int(np.ceil(np.log2(max(mean_length, 1.0)))))


def _windows(buf: np.ndarray, w: int) -> np.ndarray:
    """``buf`` seen as len(buf)-w+1 overlapping w-byte items, item i starting at byte i."""
    count = max(len(buf) - w + 1, 0)
    return np.ndarray((count,), dtype=np.dtype((np.void, w)), buffer=buf, strides=(1,))


def _chunks(starts: np.ndarray, dests: np.ndarray, lengths: np.ndarray,
            w: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source, destination and length of every w-byte chunk of the records, in order."""
    k = np.maximum((lengths + (w - 1)) // w, 1)
    if int(k.max()) == 1:
        return starts, dests, lengths
    rec = np.repeat(np.arange(len(k)), k)
    within = np.arange(len(rec), dtype=np.int64)
    within -= np.repeat(np.cumsum(k) - k, k)
    within *= w
    return starts[rec] + within, dests[rec] + within, np.minimum(lengths[rec] - within, w)


def copy_records(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray,
                 dests: np.ndarray) -> None:
    """Copy ``src[starts[i]:+lengths[i]]`` to ``out[dests[i]:+lengths[i]]`` for every i, where
    the destinations are increasing and back to back (``dests[i+1] == dests[i] + lengths[i]``).
    The sources may be anywhere in ``src``."""
    n = len(starts)
    if n == 0:
        return
    total = int(lengths.sum())
    w = window_width(total / n)
    if int(lengths.max()) <= w:
        _copy_one_window_each(src, starts, lengths, out, dests, w)
        return
    src_win, out_win = _windows(src, w), _windows(out, w)
    exact: List[Tuple[int, int, int]] = []
    big = lengths > BIG
    if big.any():
        exact.extend(zip(starts[big].tolist(), dests[big].tolist(), lengths[big].tolist()))
        small = ~big
        starts, dests, lengths = starts[small], dests[small], lengths[small]
    per_record = np.maximum((lengths + (w - 1)) // w, 1)
    step = max(1, STEP_BYTES // w)
    cuts = np.searchsorted(np.cumsum(per_record), np.arange(step, int(per_record.sum()), step))
    for a, b in zip([0] + cuts.tolist(), cuts.tolist() + [len(starts)]):
        if b <= a:
            continue
        s, d, ln = _chunks(starts[a:b], dests[a:b], lengths[a:b], w)
        ok = (s < len(src_win)) & (d < len(out_win))
        if not ok.all():
            bad = ~ok
            exact.extend(zip(s[bad].tolist(), d[bad].tolist(), ln[bad].tolist()))
            s, d = s[ok], d[ok]
        out_win[d] = src_win[s]
    # Exact copies last: window copies may have spilled into their bytes, never the reverse.
    _copy_exact(src, out, exact)


def _copy_one_window_each(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                          out: np.ndarray, dests: np.ndarray, w: int) -> None:
    """:func:`copy_records` when no record is longer than ``w`` (short lines: one window
    each). No chunking and no masks: the destinations increase, so those too close to the end
    of ``out`` for a window are a suffix, found by one search; a source too close to the end of
    ``src`` (the last few records of a block, at most) is read from a valid window, its garbage
    overwritten by the next record's window as any spill is, and copied exactly afterwards.
    25 % faster than the general path on ~36-byte lines."""
    src_win, out_win = _windows(src, w), _windows(out, w)
    ns = len(src_win)
    cut = int(np.searchsorted(dests, len(out_win))) if ns > 0 else 0
    bad = np.flatnonzero(starts[:cut] >= ns)
    exact = list(zip(starts[bad].tolist(), dests[bad].tolist(), lengths[bad].tolist()))
    exact.extend(zip(starts[cut:].tolist(), dests[cut:].tolist(), lengths[cut:].tolist()))
    step = max(1, STEP_BYTES // w)
    for a in range(0, cut, step):
        b = min(cut, a + step)
        s = starts[a:b]
        if len(bad) and bad[-1] >= a and bad[0] < b:
            s = np.minimum(s, ns - 1)
        out_win[dests[a:b]] = src_win[s]
    # Exact copies last: window copies may have spilled into their bytes, never the reverse.
    _copy_exact(src, out, exact)


def _copy_exact(src: np.ndarray, out: np.ndarray, copies) -> None:
    """One slice copy (a memcpy) per (start, destination, length)."""
    for s0, d0, n0 in copies:
        out[d0:d0 + n0] = src[s0:s0 + n0]


def gather_records(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                   out: np.ndarray, out_pos: int = 0) -> int:
    """Copy records ``src[starts[i] : starts[i]+lengths[i]]``, in order, contiguously into ``out``
    from ``out_pos``. Returns the position after the last byte written."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(starts) == 0:
        return out_pos
    dests = np.cumsum(lengths)
    end = out_pos + int(dests[-1])
    dests -= lengths
    if out_pos:
        dests += out_pos
    copy_records(src, starts, lengths, out[:end], dests)
    return end


#: Window of :func:`place_records` for records at least this long (measured best for ~1 KB lines).
PLACE_WIDTH = 256


def place_records(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray,
                  dests: np.ndarray) -> None:
    """Copy ``src[starts[i]:+lengths[i]]`` to ``out[dests[i]:+lengths[i]]`` for every i, where
    the destinations are anywhere (not overlapping each other), unlike :func:`copy_records`.

    Exact, with no spill: a record of length L >= W is copied as W-byte windows at 0, W, 2W, ...
    and one more ending exactly at L (overlapping the previous one, with the same bytes); a
    shorter record, as two windows of the largest power of two w <= L, one at each end. A record
    longer than ``BIG`` is one slice copy: its windows would not split across steps, so they
    would gather a temporary the size of the record (16 MB lines broke the memory bound)."""
    w = PLACE_WIDTH
    if not len(lengths):
        return
    if int(lengths.min()) >= w and int(lengths.max()) <= BIG:  # long lines: no masks needed
        _place_long(src, starts, lengths, out, dests, w)
        return
    big = lengths > BIG
    if big.any():
        _copy_exact(src, out, zip(starts[big].tolist(), dests[big].tolist(), lengths[big].tolist()))
    long_ = (lengths >= w) & ~big
    if long_.any():
        _place_long(src, starts[long_], lengths[long_], out, dests[long_], w)
    short = lengths < w
    if short.any():
        s, d, ln = starts[short], dests[short], lengths[short]
        width = np.log2(ln).astype(np.int64)  # floor(log2 L): L >= 1 (a record has its terminator)
        for b in np.unique(width).tolist():
            sel = width == b
            ss, dd, ll = s[sel], d[sel], ln[sel]
            sw, ow = _windows(src, 1 << b), _windows(out, 1 << b)
            ow[dd] = sw[ss]
            ll -= 1 << b
            ow[dd + ll] = sw[ss + ll]


def _place_long(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray,
                dests: np.ndarray, w: int) -> None:
    """Records of W bytes or more, STEP_BYTES of windows at a time: window j of a record at
    ``j*W`` from its start, its last one ending at its end."""
    sw, ow = _windows(src, w), _windows(out, w)
    per_record = (lengths + (w - 1)) // w
    ends = np.cumsum(per_record)
    total, step = int(ends[-1]), max(1, STEP_BYTES // w)
    bounds = [0] if total <= step else \
        [0] + np.searchsorted(ends, np.arange(step, total, step)).tolist()
    for a, b in zip(bounds, bounds[1:] + [len(starts)]):
        if b <= a:
            continue
        k, ln = per_record[a:b], lengths[a:b]
        last = ends[a:b] - (ends[a - 1] if a else 0)  # each record's last window, + 1
        jw = np.arange(int(last[-1]), dtype=np.int64)
        jw *= w
        first_w = (last - k) * w  # where each record's windows start, in jw's units
        d = np.repeat(dests[a:b] - first_w, k)
        d += jw
        sv = np.repeat(starts[a:b] - first_w, k)
        sv += jw
        tail = ln - w  # the last window ends at the record's end
        d[last - 1] = dests[a:b] + tail
        sv[last - 1] = starts[a:b] + tail
        ow[d] = sw[sv]
