"""shuffler/heap.py: glibc's malloc keeps freed arrays while an engine runs, and is put back."""
from __future__ import annotations

from bigshuf.shuffler import heap
from bigshuf.shuffler.heap import M_MMAP_THRESHOLD, M_TOP_PAD, M_TRIM_THRESHOLD, roomy_heap, top_pad


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1

    def trim(self, pad):
        self.calls.append(("trim", pad))
        return 1


def test_set_on_entry_and_defaults_back_on_exit():
    libc = FakeLibc()
    with roomy_heap(16 << 20, (libc.mallopt, libc.trim)) as pad:
        assert pad == 8 << 20
        assert libc.calls == [(M_MMAP_THRESHOLD, 32 << 20), (M_TOP_PAD, 8 << 20),
                              (M_TRIM_THRESHOLD, 32 << 20)]
    # The pad back to glibc's default; the thresholds where glibc's dynamic rule leaves them.
    assert libc.calls[3:] == [(M_TOP_PAD, heap.DEFAULT_TOP_PAD), (M_TRIM_THRESHOLD, 64 << 20),
                              ("trim", 0)]


def test_nested_uses_keep_the_first_settings_and_the_last_restores():
    libc = FakeLibc()
    calls = (libc.mallopt, libc.trim)
    with roomy_heap(1 << 20, calls):
        with roomy_heap(1 << 30, calls):
            pass
        assert len(libc.calls) == 3  # the inner one changed nothing, nor put anything back
    assert libc.calls[-1] == ("trim", 0)


def test_restored_after_an_error():
    libc = FakeLibc()
    try:
        with roomy_heap(1 << 20, (libc.mallopt, libc.trim)):
            raise ValueError
    except ValueError:
        pass
    assert libc.calls[-1] == ("trim", 0) and heap._users == 0


def test_pad_follows_the_block_within_bounds():
    assert top_pad(64 << 10) == heap.MIN_PAD       # --memory 1M
    assert top_pad(16 << 20) == 8 << 20            # --memory 256M
    assert top_pad(1 << 30) == heap.MAX_PAD        # --memory 16G


def test_the_engine_phases_hold_it(tmp_path, monkeypatch):
    """Held while the engine scatters and gathers (not by the input method, which has
    phases of its own), and let go after each."""
    from bigshuf.common.progress import Progress
    from bigshuf.common.randomness import Streams
    from bigshuf.shuffler.engine import Engine
    from bigshuf.shuffler.plan import plan
    from bigshuf.shuffler.records import RecordReader
    from bigshuf.shuffler.scatter import KeyRange
    from bigshuf.shuffler.stats import ShuffleStats

    libc = FakeLibc()
    monkeypatch.setattr(heap, "_mallopt", (libc.mallopt, libc.trim))
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\nc\n")
    geo = plan(16 << 20)
    engine = Engine(geo, 1, Streams(1), 10, None, Progress(False, None), ShuffleStats(seed=1))
    seen = []
    try:
        assert heap._users == 0
        blocks = RecordReader([str(src)]).blocks(geo.block_bytes, geo.block_records, engine.pool)
        engine.scatter(blocks, KeyRange(), 6, None, lambda b: seen.append(heap._users))
        assert heap._users == 0 and seen == [1]
        assert (M_TOP_PAD, top_pad(1 << 20)) in libc.calls and libc.calls[-1] == ("trim", 0)
    finally:
        engine.close()


def test_real_glibc_calls_do_not_fail():
    """On the machine's own libc (glibc on Linux; nothing elsewhere)."""
    with roomy_heap(1 << 20) as pad:
        assert pad in (None, 512 << 10)
    assert heap._users == 0
