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
import os

import numpy as np
import pytest
from helpers import invoke

import bigshuf
from bigshuf.shuffler.methods import reservoir as sampling


def mixed_lines(count: int, seed: int = 0) -> bytes:
    """Numbered lines of 5-60 bytes, 2% of them 3000 bytes (the long ones make the sample's
    bytes far larger than N times the mean a reservoir plans for)."""
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(count) < 0.02, 3000, rng.integers(5, 60, count))
    return b"".join(b"%07d %s\n" % (i, b"x" * int(n)) for i, n in enumerate(lengths.tolist()))


DATA = mixed_lines(60_000)
TOTAL = DATA.count(b"\n")

# (--memory, -n): in memory / spilled (the old failures) / engine.
CASES = [("1M", 1000), ("1M", 5000), ("1M", 9000), ("4M", 20000), ("1M", 20000)]
IDS = ["memory", "spill-1M-5000", "spill-1M-9000", "spill-4M-20000", "engine"]


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


@pytest.mark.parametrize("memory,n", CASES, ids=IDS)
def test_stream_object_sample_is_the_file_sample(tmp_path, memory, n):
    """The same from Python: an open binary stream (read once) against the path; and each case
    is in the regime its name says."""
    src = tmp_path / "in.txt"
    src.write_bytes(DATA)
    a, b = io.BytesIO(), io.BytesIO()
    from_file = bigshuf.shuffle([str(src)], a, seed=7, sample=n, memory=memory)
    from_stream = bigshuf.shuffle([io.BytesIO(DATA)], b, seed=7, sample=n, memory=memory)
    assert a.getvalue() == b.getvalue()
    _check_sample(a.getvalue(), n)
    for stats in (from_file, from_stream):
        regime = "engine" if stats.method != "reservoir" else "spill" if stats.spilled else "memory"
        assert IDS[CASES.index((memory, n))].startswith(regime)


def test_verbose_says_the_reservoir_spilled():
    p = invoke(["shuffle", "-n", 5000, "--seed", "1", "-S", "1M", "-v", "-o", "/dev/null"], input=DATA)
    assert p.returncode == 0
    assert b"sampled in one pass (reservoir, spilled " in p.stderr
    assert b"to the temporary file" in p.stderr


# -- the spilled reservoir writes what the reservoir would have written from memory -----------------

def _sample_with(monkeypatch, budget=None, pieces=None, gap=None, data=DATA, **kw) -> bytes:
    """-n from a stream with the reservoir's memory (bytes of records), the pieces it reads back
    (bytes, records) and the read gap forced."""
    with monkeypatch.context() as m:
        if budget is not None:
            m.setattr(sampling, "data_budget", lambda sample, geo: budget)
        if pieces is not None:
            m.setattr(sampling, "piece_sizes", lambda room, longest: (max(pieces[0], longest), pieces[1]))
        if gap is not None:
            m.setattr(sampling, "READ_GAP", gap)
        out = io.BytesIO()
        stats = bigshuf.shuffle([io.BytesIO(data)], out, **kw)
        assert stats.method == "reservoir"
        if budget == 0:
            assert stats.spilled > 0
        elif budget is not None and budget >= 1 << 40:
            assert stats.spilled == 0
        return out.getvalue()


@pytest.mark.parametrize("n,memory", [(1, "1M"), (7, "1M"), (3000, "1M"), (9000, "1M"), (20000, "4M")])
def test_spilled_sample_is_the_in_memory_sample(monkeypatch, n, memory):
    """Where the reservoir keeps its bytes never changes which records it keeps nor their order:
    spilled at the first block, at a later one, with pieces of a few records and reads of one
    record or of whole windows, the output is the in-memory reservoir's."""
    kw = dict(seed=n, sample=n, memory=memory)
    expected = _sample_with(monkeypatch, budget=1 << 50, **kw)
    assert expected.count(b"\n") == n
    few = max(2, n // 100)  # records a piece: ~100 pieces at most
    for budget in (0, 1000, None) if n < 9000 else (0,):  # large n: spilled while filling
        for pieces, gap in ((None, None), ((0, few), 0), ((0, few + 1), 1 << 40), ((1 << 20, 1000), 64)):
            assert _sample_with(monkeypatch, budget, pieces, gap, **kw) == expected, (budget, pieces, gap)


@pytest.mark.parametrize("kw", [dict(header=True), dict(zero_terminated=True), dict(shards=3), dict(output="x.txt.gz")],
                         ids=["header", "zero-terminated", "shards", "gz"])
def test_spilled_sample_with_output_options(tmp_path, monkeypatch, kw):
    """Header, -z, shards, a compressed output: spilled and in-memory reservoirs agree."""
    data = DATA.replace(b"\n", b"\0") if kw.get("zero_terminated") else DATA
    outs = []
    for budget in (1 << 50, 0):
        d = tmp_path / str(budget)
        d.mkdir()
        opts = dict(kw, output=str(d / kw.get("output", "out.txt")))
        with monkeypatch.context() as m:
            m.setattr(sampling, "data_budget", lambda sample, geo, budget=budget: budget)
            m.setattr(sampling, "piece_sizes", lambda room, longest: (longest, 5))
            stats = bigshuf.shuffle([io.BytesIO(data)], seed=3, sample=4000, memory="1M", **opts)
        assert (stats.spilled > 0) == (budget == 0)
        outs.append({p.name: p.read_bytes() for p in d.iterdir()})
    assert outs[0] == outs[1] and len(outs[0]) == kw.get("shards", 1)


def test_spilled_file_stays_within_twice_the_sample(monkeypatch):
    """Replaced records leave garbage in the temporary file; compaction keeps the file at most
    twice the live sample (or one piece), however long the stream goes on."""
    rng = np.random.default_rng(2)
    data = b"".join(b"%07d %s\n" % (i, b"z" * n) for i, n in enumerate(rng.integers(500, 3000, 20_000).tolist()))
    seen = {"compactions": 0, "puts": 0}
    real_put, real_compact = sampling._Reservoir.put, sampling._Reservoir._compact_file

    def put(self, *args):
        real_put(self, *args)
        if self.file is not None:
            seen["puts"] += 1
            assert self.end <= max(2 * self.live, self.piece_bytes)
            assert os.fstat(self.file.fd).st_size <= max(2 * self.live, self.piece_bytes)

    def compact(self):
        seen["compactions"] += 1
        real_compact(self)
        assert self.end == self.live == int(self.length[:self.filled].sum())

    monkeypatch.setattr(sampling._Reservoir, "put", put)
    monkeypatch.setattr(sampling._Reservoir, "_compact_file", compact)
    out = io.BytesIO()
    stats = bigshuf.shuffle([io.BytesIO(data)], out, seed=1, sample=300, memory="1M")
    assert stats.spilled > len(data) // 100 and seen["compactions"] >= 3 and seen["puts"] > 50
    lines = out.getvalue().splitlines(keepends=True)
    assert len(lines) == len(set(lines)) == 300 and set(lines) <= set(data.splitlines(keepends=True))
