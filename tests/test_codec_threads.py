"""A compressed output opened by one thread and closed by another after the first has ended
(a shard opened by a gather worker, closed at the end of the run) must still close."""
from __future__ import annotations

import gzip
import io
import threading
import time

import pytest

from bigshuf.common.codecs import compressor_for


@pytest.mark.parametrize("name", ["x.gz", "x.zst", "x.bz2", "x.xz"])
def test_closing_after_the_opening_thread_ended(name):
    buf = io.BytesIO()
    made = {}

    def open_and_write() -> None:
        made["c"] = compressor_for(name, buf)
        made["c"].write(b"hello\n" * 200_000)

    t = threading.Thread(target=open_and_write)
    t.start()
    t.join()
    time.sleep(0.3)  # long past the writer threads' idle checks
    closed = threading.Event()
    threading.Thread(target=lambda: (made["c"].close(), closed.set()), daemon=True).start()
    assert closed.wait(10), "close() hung"
    if name.endswith(".gz"):
        assert gzip.decompress(buf.getvalue()) == b"hello\n" * 200_000
