"""-n over a stream gives what the same bytes give as a file (README: "a file and the same bytes
on stdin give the same output"), in each regime of the sampler:

* the reservoir holds the sample in memory;
* the sample's lines are longer than the reservoir's memory allows, so it spills to the temporary
  file (this used to fail on a stream, "the sampled lines of this input need more than ...",
  while a file was re-read by the engine);
* N is too large for a reservoir at this --memory: the engine shuffles and stops after N.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import invoke

import bigshuf


def mixed_lines(count: int, seed: int = 0) -> bytes:
    """Numbered lines of 5-60 bytes, 2% of them 3000 bytes (the long ones make the sample's
    bytes far larger than N times the mean a reservoir plans for)."""
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(count) < 0.02, 3000, rng.integers(5, 60, count))
    return b"".join(b"%07d %s\n" % (i, b"x" * int(n)) for i, n in enumerate(lengths.tolist()))


DATA = mixed_lines(60_000)
TOTAL = DATA.count(b"\n")

# (--memory, -n): in memory / spilled (the old failures) / engine.
CASES = [("1M", 1000), ("1M", 5000), ("1M", 10000), ("4M", 20000), ("1M", 20000)]
IDS = ["memory", "spill-1M-5000", "spill-1M-10000", "spill-4M-20000", "engine"]


def _check_sample(out: bytes, n: int) -> None:
    lines = out.splitlines(keepends=True)
    assert len(lines) == min(n, TOTAL)
    assert len(set(lines)) == len(lines)  # numbered lines: no record twice
    assert set(lines) <= set(DATA.splitlines(keepends=True))


@pytest.mark.parametrize("memory,n", CASES, ids=IDS)
def test_stdin_sample_is_the_file_sample(tmp_path, memory, n):
    src = tmp_path / "in.txt"
    src.write_bytes(DATA)
    args = ["shuffle", "-n", n, "--seed", "1", "-S", memory]
    from_file = invoke([*args, src])
    from_stdin = invoke(args, input=DATA)
    assert from_file.returncode == 0, from_file.stderr
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    _check_sample(from_file.stdout, n)


@pytest.mark.parametrize("memory,n", CASES[1:4], ids=IDS[1:4])
def test_stream_object_sample_is_the_file_sample(tmp_path, memory, n):
    """The same from Python: an open binary stream (read once) against the path."""
    src = tmp_path / "in.txt"
    src.write_bytes(DATA)
    a, b = io.BytesIO(), io.BytesIO()
    bigshuf.shuffle([str(src)], a, seed=7, sample=n, memory=memory)
    bigshuf.shuffle([io.BytesIO(DATA)], b, seed=7, sample=n, memory=memory)
    assert a.getvalue() == b.getvalue()
    _check_sample(a.getvalue(), n)
