"""The gather reads units ahead (issue 21): when the page cache cannot hold the temporary file,
the next unit's pieces are asked for (``fadvise WILLNEED``: one range of records and one of keys
per run) before a worker reads them; with the file cached nothing is asked. A hint only: the
output is the same either way."""
from __future__ import annotations

import numpy as np
import pytest

from bigshuf.common.progress import Progress
from bigshuf.common.randomness import Streams
from bigshuf.shuffler import store as store_mod
from bigshuf.shuffler.engine import Engine
from bigshuf.shuffler.gather import BucketReader
from bigshuf.shuffler.plan import plan
from bigshuf.shuffler.records import RecordReader
from bigshuf.shuffler.scatter import KeyRange
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.store import FileRegion, FileStore


class ListSink:
    """A stream sink that keeps what it gets."""

    positional = False
    full = False

    def __init__(self):
        self.parts = []

    def write(self, data, records):
        self.parts.append(bytes(data[:len(data)]))


@pytest.mark.parametrize("tight", [True, False])
def test_file_store_asks_ahead_only_when_the_cache_is_tight(tmp_path, tight, monkeypatch):
    asked = []
    monkeypatch.setattr(store_mod._TempFile, "cache_is_tight", lambda self: tight)
    monkeypatch.setattr(store_mod._TempFile, "will_need", lambda self, o, n: asked.append((o, n)))
    fs = FileStore(str(tmp_path))
    region = FileRegion(fs, 1000)
    region.prefetch([(0, 10), (50, 5)])
    fs.close()
    assert asked == ([(1000, 10), (1050, 5)] if tight else [])


def test_will_need_on_a_real_file(tmp_path):
    fs = FileStore(str(tmp_path))
    fs.write(0, np.arange(100, dtype=np.uint8))
    fs.file.will_need(0, 100)  # the real fadvise call: no error
    fs.close()


def test_bucket_reader_asks_one_range_of_records_and_one_of_keys_per_run():
    # 3 runs x 4 buckets; run 1 has nothing in buckets 1-2
    piece_bytes = np.array([[5, 7, 3, 2], [4, 0, 0, 9], [1, 2, 3, 4]], dtype=np.int64)
    piece_records = np.array([[1, 2, 1, 1], [1, 0, 0, 2], [1, 1, 1, 1]], dtype=np.int64)
    offsets = np.array([0, 100, 200], dtype=np.int64)

    class Recorder:
        def __init__(self):
            self.asked = []

        def prefetch(self, ranges):
            self.asked.extend(ranges)

    rec = Recorder()
    reader = BucketReader(rec, offsets, piece_bytes, piece_records)  # type: ignore[arg-type]
    reader.prefetch(1, 3)
    # run 0: records at 5 (7+3 bytes), keys after its 17 bytes and 1 key; run 1: nothing
    assert rec.asked == [(5, 10), (201, 5), (17 + 8, 8 * 3), (200 + 10 + 8, 8 * 2)]


def test_the_gather_asks_every_unit_once_ahead_and_writes_the_same(tmp_path, monkeypatch):
    lines = b"".join(b"line %d\n" % i for i in range(3000))
    src = tmp_path / "in.txt"
    src.write_bytes(lines)

    def shuffle(tight):
        asked = []
        monkeypatch.setattr(store_mod._TempFile, "cache_is_tight", lambda self: tight)
        monkeypatch.setattr(store_mod._TempFile, "will_need",
                            lambda self, o, n: asked.append((o, n)))
        geo = plan(1 << 20)
        engine = Engine(geo, 2, Streams(7), 10, str(tmp_path), Progress(False, None),
                        ShuffleStats(seed=7))
        try:
            reader = RecordReader([str(src)])
            level = engine.scatter(reader.blocks(geo.block_bytes, geo.block_records, engine.pool),
                                   KeyRange(), 1 << 40, 64, lambda b: None)  # to the temp file
            sink = ListSink()
            engine.gather(level, sink)
        finally:
            engine.close()
        return b"".join(sink.parts), asked

    out_tight, asked = shuffle(True)
    out_roomy, none = shuffle(False)
    assert out_tight == out_roomy and sorted(out_tight.splitlines()) == sorted(lines.splitlines())
    assert asked and not none
    assert len(asked) == len(set(asked))  # each range once
