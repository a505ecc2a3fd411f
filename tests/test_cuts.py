"""shuffler/cuts.py finds the reader's block cuts by reading only around them: it must give
exactly RecordReader.blocks' blocks (the input method's output depends on them), or None where
the reader would refuse the input."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigshuf.common.errors import InputError
from bigshuf.shuffler import cuts
from bigshuf.shuffler.records import RecordReader


def reader_blocks(path, capacity: int, header: bool):
    """(blocks as (offset, bytes), header) from the reader, or None if it refuses the input."""
    reader = RecordReader([path], 10, header=header)
    try:
        # max_records never binds here: a block has at most `capacity` records.
        blocks = [(b.offset, b.nbytes) for b in reader.blocks(capacity, capacity + 1)]
    except InputError:
        return None
    return blocks, reader.header


def planned(path, capacity: int, header: bool):
    fd = os.open(path, os.O_RDONLY)
    try:
        return cuts.plan_cuts(fd, os.fstat(fd).st_size, capacity, 10, header)
    finally:
        os.close(fd)


lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines=lines, final=st.booleans(), capacity=st.integers(8, 120), header=st.booleans(),
       step=st.sampled_from([1, 3, 64, 1 << 16]))
def test_the_cuts_are_the_readers(tmp_path_factory, monkeypatch_module, lines, final, capacity,
                                  header, step):
    path = tmp_path_factory.mktemp("cuts") / "in.txt"
    data = b"\n".join(lines) + (b"\n" if final and lines else b"")
    path.write_bytes(data)
    monkeypatch_module.setattr(cuts, "STEP", step)
    assert planned(path, capacity, header) == reader_blocks(path, capacity, header)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


@pytest.mark.parametrize("data,capacity", [
    (b"", 16), (b"h\n", 16), (b"h", 16), (b"h\n" + b"x" * 30 + b"\n", 16),  # header-only buffer
    (b"x" * 16 + b"\n", 16), (b"x" * 15 + b"\n", 16), (b"a\n" * 8, 16), (b"a\n" * 8 + b"b", 16),
    (b"x" * 40, 16), (b"h" * 20 + b"\nx\n", 16),
])
@pytest.mark.parametrize("header", [False, True])
def test_edges(tmp_path, data, capacity, header):
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    assert planned(path, capacity, header) == reader_blocks(path, capacity, header)


def test_a_file_shorter_than_its_size_is_moved(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"abc\n" * 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(cuts.Moved):
            cuts.plan_cuts(fd, 400, 16, 10, False)
    finally:
        os.close(fd)
