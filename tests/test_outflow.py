"""The gather's writer thread (issue 21): sorted units are handed to one thread that writes them
in unit order while the workers go on. Same bytes as before (file or stream, nested levels,
the write-behind of a tight page cache), bounded hand-over, and a failure or a stop in the
writer tears the run down without hanging. No sleeps: every wait is on an event."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from bigshuf.common.progress import Progress
from bigshuf.common.randomness import Streams
from bigshuf.shuffler import store as store_mod
from bigshuf.shuffler.engine import Cancelled, Engine
from bigshuf.shuffler.outflow import ReadAhead, UnitWriter, WriteBehind
from bigshuf.shuffler.plan import plan
from bigshuf.shuffler.records import RecordReader
from bigshuf.shuffler.scatter import KeyRange
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import Sink


class ListSink:
    """A stream sink that keeps what it gets (optionally failing or stopping on a write)."""

    positional = False
    full = False

    def __init__(self, on_write=None):
        self.parts = []
        self.on_write = on_write

    def write(self, data, records):
        if self.on_write is not None:
            self.on_write(len(self.parts))
        self.parts.append(bytes(data))


def _lines(n=6000):
    return b"".join(b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(n))


def _gather(tmp_path, src, make_sink, jobs=2, buckets=64, engine_hook=None):
    geo = plan(1 << 20)  # 64 KiB units: several units, and oversized buckets with 2 buckets
    engine = Engine(geo, jobs, Streams(11), 10, str(tmp_path), Progress(False, None),
                    ShuffleStats(seed=11))
    try:
        reader = RecordReader([str(src)])
        level = engine.scatter(reader.blocks(geo.block_bytes, geo.block_records, engine.pool),
                               KeyRange(), 1 << 40, buckets, lambda b: None)  # the temp file
        sink = make_sink(engine, reader)
        if engine_hook is not None:
            engine_hook(engine)
        engine.gather(level, sink)
        return sink
    finally:
        engine.close()


@pytest.mark.parametrize("buckets", [64, 2])  # 2: oversized buckets gathered a level down
def test_file_and_stream_get_the_same_bytes_through_the_writer(tmp_path, monkeypatch, buckets):
    lines = _lines()
    src = tmp_path / "in.txt"
    src.write_bytes(lines)
    stream = _gather(tmp_path, src, lambda e, r: ListSink(), buckets=buckets)
    expected = b"".join(stream.parts)
    assert sorted(expected.splitlines()) == sorted(lines.splitlines())

    # the same into a file, with a tight page cache: the written ranges go to the disk at
    # once and are dropped a little later, in file order, each byte once
    monkeypatch.setattr(store_mod._TempFile, "cache_is_tight", lambda self: True)
    started, dropped = [], []
    out = tmp_path / "out.txt"

    def file_sink(engine, reader):
        sink = Sink(str(out), 10, len(lines.splitlines()))
        sink.open()
        real_start, real_forget = sink.start_writeback, sink.forget
        sink.start_writeback = lambda o, n: (started.append((o, n)), real_start(o, n))
        sink.forget = lambda o, n: (dropped.append((o, n)), real_forget(o, n))
        return sink

    for jobs in (1, 2):
        started.clear()
        dropped.clear()
        sink = _gather(tmp_path, src, file_sink, jobs=jobs, buckets=buckets)
        sink.finish()
        assert out.read_bytes() == expected
        assert dropped == started[:len(dropped)]
        if buckets == 64:  # one level in the temp file: the whole file, front to back
            assert dropped  # (the nested levels of 2 buckets fit in RAM: nothing dropped)
            ends = [o + n for o, n in started]
            assert [o for o, _ in started] == [0] + ends[:-1] and ends[-1] == len(lines)


def test_units_are_written_in_order_and_the_writer_holds_at_most_depth():
    written, most = [], [0]
    stop = threading.Event()
    writer = None

    def write(item):
        most[0] = max(most[0], len(writer.held) + 1)
        written.append(item)

    writer = UnitWriter(write, 2, stop.is_set)
    order = list(range(40))
    order.reverse()  # the latest first: each waits until it is within 2 of the writer
    threads = [threading.Thread(target=writer.put, args=(i, i)) for i in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.finish()
    assert written == list(range(40)) and most[0] <= 2
    assert not writer.thread.is_alive()


def test_an_error_in_the_writer_reaches_the_workers_and_the_driver(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(_lines())

    def fail_third(k):
        if k == 2:
            raise OSError(28, "No space left on device")

    before = set(threading.enumerate())
    with pytest.raises(OSError, match="No space"):
        _gather(tmp_path, src, lambda e, r: ListSink(fail_third))
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and t.name.startswith("bigshuf-writer")]
    assert not leftover
    assert not list(tmp_path.glob("*.tmp"))


def test_a_stop_during_a_write_tears_the_gather_down(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(_lines())
    engines = []

    def stop_on_second(k):
        if k == 1:
            engines[0].stop()  # what the signal handler does: sets a flag, nothing else

    before = set(threading.enumerate())
    with pytest.raises(Cancelled):
        _gather(tmp_path, src, lambda e, r: ListSink(stop_on_second),
                engine_hook=engines.append)
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and t.name.startswith("bigshuf-writer")]
    assert not leftover


def test_a_stopped_writer_refuses_more_units():
    stop = threading.Event()
    got = []
    writer = UnitWriter(got.append, 1, stop.is_set)
    writer.put(0, "a")
    writer.drain()
    stop.set()
    with pytest.raises(Cancelled):
        writer.put(1, "b")
    writer.stop()
    assert got == ["a"] and not writer.thread.is_alive()


def test_write_behind_drops_ranges_once_lag_bytes_follow():
    started, dropped = [], []
    wb = WriteBehind(lambda o, n: started.append((o, n)), lambda o, n: dropped.append((o, n)),
                     lag=100)
    for o in range(0, 500, 50):
        wb.written(o, 50)
    assert started == [(o, 50) for o in range(0, 500, 50)]
    # a range is dropped once 100 bytes were written after it
    assert dropped == [(o, 50) for o in range(0, 400, 50)]
    wb.written(500, 0)
    assert len(started) == 10


def test_the_writer_unit_takes_the_scatter_readers_place_in_the_budget():
    geo = plan(512 << 20)
    assert geo.writer_units * geo.unit_bytes <= geo.block_bytes
    assert geo.fixed_bytes() + geo.max_workers * geo.worker_bytes <= geo.memory
    assert np.isfinite(geo.fixed_bytes())


def test_read_ahead_asks_units_in_order_within_the_window_of_the_readers():
    from types import SimpleNamespace
    units = [SimpleNamespace(out_offset=10 * k, nbytes=10) for k in range(8)]
    asked = []
    seen, all_asked = threading.Event(), threading.Event()
    frontier = [0]

    def ask(u):
        # never more than the window (25 bytes) past the furthest unit being read
        assert u.out_offset < frontier[0] + 25
        asked.append(u.out_offset)
        if len(asked) == 3:
            seen.set()
        if len(asked) == 8:
            all_asked.set()

    ahead = ReadAhead(units, ask, 25, lambda: False)
    seen.wait(5)  # units at 0, 10, 20 start within 25 bytes of offset 0 ...
    assert asked == [0, 10, 20]
    frontier[0] = 50
    ahead.reading(40, 10)  # ... then the rest, once a worker reads the unit at 40
    assert all_asked.wait(5)
    assert asked == [0, 10, 20, 30, 40, 50, 60, 70]
    ahead.stop()


@pytest.mark.parametrize("tight", [True, False])
def test_the_temp_file_hands_its_runs_to_the_disk_once_the_cache_is_tight(tmp_path, monkeypatch,
                                                                          tight):
    monkeypatch.setattr(store_mod, "LOOK_EVERY", 1000)
    monkeypatch.setattr(store_mod._TempFile, "cache_is_tight", lambda self: tight)
    started = []
    monkeypatch.setattr(store_mod._TempFile, "start_writeback",
                        lambda self, o, n: started.append((o, n)))
    fs = store_mod.FileStore(str(tmp_path))
    for k in range(5):
        fs.write(400 * k, np.zeros(400, dtype=np.uint8))
    fs.close()
    # tight: nothing until 1000 bytes were written, then all so far, then each run
    assert started == ([(0, 1200), (1200, 400), (1600, 400)] if tight else [])


def test_a_tight_cache_writes_runs_and_units_in_big_calls(tmp_path, monkeypatch):
    """Large folios: in a tight cgroup, whole runs and units per write call (issue 21)."""
    from bigshuf.common import output
    monkeypatch.setattr(store_mod, "LOOK_EVERY", 1000)
    monkeypatch.setattr(store_mod._TempFile, "cache_is_tight", lambda self: True)
    calls = []
    real = output.os.pwrite
    monkeypatch.setattr(output.os, "pwrite", lambda fd, b, o: (calls.append(len(b)), real(fd, b, o))[1])
    fs = store_mod.FileStore(str(tmp_path))
    for k in range(3):
        fs.write(200_000 * k, np.zeros(200_000, dtype=np.uint8))
    fs.close()
    # before the first look (1000 bytes): 64 KiB calls; then one call a run
    assert calls == [65536, 65536, 65536, 200_000 - 3 * 65536, 200_000, 200_000]


@pytest.mark.parametrize("tight", [False, True])
def test_a_file_with_oversized_buckets_is_written_whatever_the_cache(tmp_path, monkeypatch, tight):
    """With room in the page cache the workers write a file's units themselves; an oversized
    bucket gathered one level down must not wait for the (idle) writer."""
    lines = _lines()
    src = tmp_path / "in.txt"
    src.write_bytes(lines)
    expected = b"".join(_gather(tmp_path, src, lambda e, r: ListSink(), buckets=2).parts)
    monkeypatch.setattr(store_mod._TempFile, "cache_is_tight", lambda self: tight)
    out = tmp_path / "out.txt"

    def file_sink(engine, reader):
        sink = Sink(str(out), 10, len(lines.splitlines()))
        sink.open()
        return sink

    _gather(tmp_path, src, file_sink, buckets=2).finish()
    assert out.read_bytes() == expected
