"""FileStore.discard punches whole pages only (issue 21's tight-cgroup stall): an unaligned
punch makes ext4 zero a partial block, and thousands of them made the last ftruncate take
seconds. The unaligned tail of a range is punched with the next range of the same run."""
import random

import numpy as np
import pytest

from bigshuf.shuffler.store import _PAGE, FileStore


def _record_punches(store, short=True):
    """The punches (a disk short of room), or the page-cache drops (room to spare)."""
    calls = []
    store._punch = short
    store.file.disk_is_short = lambda: short
    store.file.cache_is_tight = lambda: True
    setattr(store.file, "punch" if short else "drop", lambda off, n: calls.append((off, n)))
    setattr(store.file, "drop" if short else "punch", lambda off, n: 1 / 0)
    return calls


@pytest.mark.parametrize("short", [True, False])
def test_punches_are_page_aligned_and_cover_consumed_data(tmp_path, short):
    store = FileStore(str(tmp_path))
    calls = _record_punches(store, short)
    rng = random.Random(3)
    # two runs (one unaligned start), each consumed front to back in small unaligned spans,
    # the runs' spans interleaved as the gather does
    runs = []
    for base, size in ((0, 50_000), (50_000, 70_001)):
        cuts = sorted(rng.sample(range(1, size), 30))
        edges = [0] + cuts + [size]
        runs.append([(base + a, b - a) for a, b in zip(edges, edges[1:])])
    for spans in zip(*runs):
        for off, n in spans:
            store.discard(off, n)
    store.close()
    assert calls
    assert all(off % _PAGE == 0 and n % _PAGE == 0 for off, n in calls)
    punched = set()
    for off, n in calls:
        assert not punched & set(range(off, off + n, _PAGE))
        punched.update(range(off, off + n, _PAGE))
    # every whole page inside each run's consumed data is punched
    for base, end in ((0, 50_000), (50_000, 120_001)):
        for page in range(-(-base // _PAGE) * _PAGE, end // _PAGE * _PAGE, _PAGE):
            assert page in punched


def test_truncate_forgets_tails_past_the_size(tmp_path):
    store = FileStore(str(tmp_path))
    calls = _record_punches(store)
    store.discard(10_000, 5_000)
    store.truncate(12_000)
    store.discard(15_000, 10_000)  # a new level's data: nothing before 15,000 is freed
    store.close()
    assert all(off >= 15_000 - 15_000 % _PAGE + _PAGE or off < 12_000 for off, _ in calls[1:])


def test_punch_only_when_the_disk_is_short(tmp_path, monkeypatch):
    """With room to spare the data is not punched (ext4 writes a range's dirty pages before
    punching it: ~0.8 s per GB in a 256M cgroup); on a disk short of room it is."""
    from bigshuf.shuffler import store as store_mod
    store = FileStore(str(tmp_path))
    store.write(0, np.zeros(3 * _PAGE, dtype=np.uint8))
    assert not store.file.disk_is_short()  # the test's disk has 1G to spare
    monkeypatch.setattr(store_mod, "free_bytes", lambda d: 2 * _PAGE)
    assert store.file.disk_is_short()
    store.close()


def test_cached_pages_are_left_alone_while_the_cache_has_room(tmp_path, monkeypatch):
    """Dropping consumed temp pages costs ~0.5 s per GB of gather when the page cache could
    hold them anyway: only a tight cache (a small cgroup) drops them."""
    from bigshuf.common.container import MemoryView
    from bigshuf.shuffler import store as store_mod
    store = FileStore(str(tmp_path))
    store.write(0, np.zeros(4 * _PAGE, dtype=np.uint8))
    calls = []
    store.file.drop = lambda off, n: calls.append((off, n))
    store.file.punch = lambda off, n: 1 / 0
    monkeypatch.setattr(store_mod, "memory_view", lambda: MemoryView(None, 64 << 30, 0.0))
    store.discard(0, 2 * _PAGE)
    assert calls == []
    assert not store.file.cache_is_tight()
    monkeypatch.setattr(store_mod, "memory_view", lambda: MemoryView(None, 64 << 20, 0.0))
    assert store.file.cache_is_tight()
    store._drop = None  # the next look
    store.discard(2 * _PAGE, 2 * _PAGE)
    assert calls == [(2 * _PAGE, 2 * _PAGE)]
    store.close()
