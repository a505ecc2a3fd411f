"""Same seed, same input, same --memory: the same bytes, release after release.

The digests were produced by the code before the restructuring into bigshuf/common,
bigshuf/shuffler and bigshuf/predict; a change here means outputs for a given seed changed,
which must be a deliberate, documented decision (README, 'Reproducibility').
"""
from __future__ import annotations

import hashlib

import pytest

import bigshuf

CASES = {
    "memory": (dict(memory="64M"), "68480cc9c219088d"),
    "tempfile": (dict(memory="1M"), "775085cd9c8ea3ed"),
    "buckets": (dict(memory="4M", buckets=7), "7b8c7edabad15b78"),
    "nested": (dict(memory="1M", buckets=2), "b2744c3764d41f75"),
    "header": (dict(memory="4M", header=True), "2fb6f457da85f39b"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_output_bytes_for_a_seed_are_stable(tmp_path, name):
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"line %d %s\n" % (i, b"x" * (i % 37)) for i in range(60000)))
    kw, digest = CASES[name]
    out = tmp_path / "out"
    bigshuf.shuffle([str(src)], str(out), seed=12345, temp_dir=str(tmp_path), **kw)
    assert hashlib.sha256(out.read_bytes()).hexdigest()[:16] == digest
