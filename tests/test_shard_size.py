"""--shard-size SIZE: shards of at most SIZE plain bytes (the header counted), cut at record ends,
a longer record alone in its shard; the shards together are the unsharded output."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from helpers import invoke, numbered_file, one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bigshuf


def _shards(d: Path, stem: str = "s-") -> list:
    return sorted(p for p in d.iterdir() if p.name.startswith(stem))


def _plain(p: Path) -> bytes:
    return gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()


def _check(shards: list, size: int, whole: bytes, header: bytes = b"") -> None:
    """Each shard within SIZE unless it holds one record; greedy (the next shard's first record
    would not have fit); together the whole output."""
    bodies = []
    for p in shards:
        data = _plain(p)
        assert data.startswith(header)
        body = data[len(header):]
        records = body.splitlines(keepends=True)
        assert len(data) <= size or len(records) == 1, (p.name, len(data))
        bodies.append(body)
    for a, b in zip(bodies, bodies[1:]):
        assert len(header) + len(a) + len(b.splitlines(keepends=True)[0]) > size
    assert b"".join(bodies) == whole


def test_exact_fits_one_byte_and_long_records(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"aaa\n" * 6)
    bigshuf.shuffle(src, tmp_path / "s-{index}.txt", shard_size=8, seed=1)
    assert [p.read_bytes() for p in _shards(tmp_path)] == [b"aaa\naaa\n"] * 3
    src.write_bytes(b"a\n" + b"x" * 50 + b"\nbb\n")
    whole = bigshuf.shuffle(src, tmp_path / "whole.txt", seed=2) and (tmp_path / "whole.txt").read_bytes()
    for size in (1, 3, 4):
        d = tmp_path / f"d{size}"
        d.mkdir()
        r = invoke(["shuffle", src, "--shard-size", str(size), "--seed", "2", "-o", d / "s.txt"])
        assert r.returncode == 0, r.stderr
        names = [p.name for p in _shards(d)]
        assert names[0] == "s-00000.txt"  # -NNNNN before the extension, from 0
        _check(_shards(d), size, whole)
    assert len(_shards(tmp_path / "d1")) == 3  # one record per shard


def test_empty_input_is_one_empty_shard(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"")
    r = invoke(["shuffle", src, "--shard-size", "1K", "-o", tmp_path / "s-{index:03d}.txt"])
    assert r.returncode == 0 and [p.name for p in _shards(tmp_path)] == ["s-000.txt"]
    assert (tmp_path / "s-000.txt").read_bytes() == b""


def test_with_split_header_sample_and_compression(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 400, header=b"id\n")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    r = invoke(["shuffle", src, "--header", "--seed", "4", "--split", "a=0.25,b=rest",
                "--shard-size", "100", "-o", tmp_path / "{split}" / "s.txt.gz"])
    assert r.returncode == 0, r.stderr
    plain = invoke(["shuffle", src, "--header", "--seed", "4", "--split", "a=0.25,b=rest",
                    "-o", tmp_path / "{split}.txt"])
    assert plain.returncode == 0
    for name in ("a", "b"):
        whole = (tmp_path / f"{name}.txt").read_bytes()[3:]
        _check(_shards(tmp_path / name), 100, whole, header=b"id\n")
    (tmp_path / "n").mkdir()
    bigshuf.shuffle(src, tmp_path / "n" / "s-{index}.txt", header=True, seed=4, head_count=30,
                    shard_size=50)
    head = invoke(["shuffle", src, "--header", "--seed", "4", "-n", "30"]).stdout[3:]
    _check(_shards(tmp_path / "n"), 50, head, header=b"id\n")


def test_epochs_continue_one_stream_of_shards(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 100)
    bigshuf.shuffle(src, tmp_path / "s.txt", seed=9, epochs=2, shard_size=64)
    whole = invoke(["shuffle", src, "--seed", "9", "--epochs", "2"]).stdout
    _check(_shards(tmp_path), 64, whole)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(0, 40), max_size=60), size=st.integers(1, 120),
       seed=st.integers(0, 2**32))
def test_any_lengths_and_sizes(tmp_path_factory, lengths, size, seed):
    d = tmp_path_factory.mktemp("prop")
    src = d / "in.txt"
    src.write_bytes(b"".join(b"x" * n + b"\n" for n in lengths))
    bigshuf.shuffle(src, d / "whole.txt", seed=seed)
    bigshuf.shuffle(src, d / "s-{index:04d}.txt", seed=seed, shard_size=size)
    _check(_shards(d), size, (d / "whole.txt").read_bytes())


@pytest.mark.parametrize("args,needle", [
    (["--shard-size", "1K"], "needs -o"),
    (["--shard-size", "1K", "--shards", "2", "-o", "x.txt"], "cannot be used together"),
    (["--shard-size", "1K", "-o", "x-{index}-of-{count}.txt"], "{count} is not known"),
    (["--shard-size", "0", "-o", "x.txt"], "size"),
    (["--shard-size", "1K", "-o", "x-{index:s}.txt"], "integer format"),
])
def test_bad_shard_size_options(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    src = numbered_file(tmp_path / "in.txt", 5)
    one_line_error(invoke(["shuffle", src, *args]), 2, needle)
    assert os.listdir(tmp_path) == ["in.txt"]


def test_too_many_shards_for_the_memory_publishes_nothing(tmp_path):
    """At -S 1M a run keeps track of 256 shards: the 257th is refused mid-run, nothing left."""
    src = numbered_file(tmp_path / "in.txt", 400)
    (tmp_path / "s-00000.txt").write_bytes(b"old\n")
    p = invoke(["shuffle", src, "-S", "1M", "--shard-size", "1", "-o", tmp_path / "s.txt"])
    one_line_error(p, 2, "--shard-size", "raise --memory")
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "s-00000.txt"]
    assert (tmp_path / "s-00000.txt").read_bytes() == b"old\n"
