"""Issue 23 ("Edges, round three"): each case failed before its fix."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import invoke, lines_of


def _numbered(path: Path, n: int, header: bytes = b"") -> Path:
    path.write_bytes(header + b"".join(b"%d\n" % i for i in range(n)))
    return path


# -- item 7: --header with an empty first input ----------------------------------------------

@pytest.mark.parametrize("extra", [[], ["-S", "1M"], ["-n", "3"]], ids=["input-method", "engine", "sample"])
def test_header_comes_from_the_first_non_empty_input(tmp_path, extra):
    empty = tmp_path / "part-00000"
    empty.write_bytes(b"")
    a = _numbered(tmp_path / "part-00001", 20, b"id\n")
    b = _numbered(tmp_path / "part-00002", 20, b"id\n")
    r = invoke(["shuffle", "--header", "--seed", "1", *extra, empty, a, b])
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == b"id" and b"id" not in out[1:] and r.stderr == b""
    assert len(out) == 1 + (3 if "-n" in extra else 40)
    stdin = invoke(["shuffle", "--header", "--seed", "1", *extra, empty, "-"], input=a.read_bytes())
    assert stdin.stdout.splitlines()[0] == b"id"


# -- item 8: -n is not refused for the whole input's size ------------------------------------

def test_a_sample_needs_its_own_room_not_the_inputs(tmp_path, monkeypatch):
    from bigshuf.common import space

    src = tmp_path / "big.txt"
    src.write_bytes((b"x" * 99 + b"\n") * 40_000)  # 4 MB
    monkeypatch.setattr(space, "free_bytes", lambda d: 2 << 20)  # a 2 MiB disk everywhere
    r = invoke(["shuffle", "-n", "5", src, "-o", tmp_path / "s.txt", "--seed", "1"])
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "s.txt").read_bytes().splitlines()) == 5
    full = invoke(["shuffle", src, "-o", tmp_path / "all.txt", "-S", "1M"])
    assert full.returncode == 1 and b"not enough free space" in full.stderr
