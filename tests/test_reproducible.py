"""The order contract (version 1): the output is the records sorted by a key that depends on the
seed and the record's index only, so no setting but the seed changes the bytes.

The key function is written here a second time, in plain Python integers, from its
documentation (README, "The order contract"): the library's vectorised numpy code must agree
with it, and the pinned values below must never change without a new contract version
(README, "Changelog").
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from helpers import invoke

import bigshuf
from bigshuf.common.randomness import OrderKeys

MASK = (1 << 64) - 1


def _fmix(x: int) -> int:
    x ^= x >> 33
    x = x * 0xFF51AFD7ED558CCD & MASK
    x ^= x >> 33
    x = x * 0xC4CEB9FE1A85EC53 & MASK
    return x ^ (x >> 33)


def reference_keys(seed: int, n: int, first: int = 0):
    """F_seed(i) for i in first..first+n-1, as the README defines it."""
    a, b, c = (int(v) for v in np.random.SeedSequence(seed, spawn_key=(7,)).generate_state(3, np.uint64))
    out = []
    for i in range(first, first + n):
        x = (i + a) * 0x9E3779B97F4A7C15 & MASK
        x = _fmix(x ^ b)
        out.append(_fmix((x + c) & MASK))
    return out


def expected(records, seed):
    """The shuffle of ``records`` for ``seed`` by definition: sorted by their keys."""
    keys = reference_keys(seed, len(records))
    return [r for _, r in sorted(zip(keys, records))]


def test_pinned_keys_of_version_1():
    assert [hex(k) for k in reference_keys(1, 3)] == \
        ["0x2ccbae0de236ca44", "0x5722ebe878c42e54", "0x9d828723b4bcddff"]
    assert [hex(k) for k in reference_keys(2 ** 200 + 5, 2, 10 ** 12)] == \
        ["0x77a7d66238c4484", "0x403287df64024e63"]


@pytest.mark.parametrize("seed,first", [(0, 0), (7, 1 << 40), (2 ** 255 + 3, (1 << 64) - 300)])
def test_vectorised_keys_are_the_reference(seed, first):
    n = 300 if first > (1 << 63) else 70000  # crosses KEY_CHUNK; the last wraps modulo 2^64
    got = OrderKeys(seed).range(first, n)
    assert got.tolist() == reference_keys(seed, n, first)
    idx = np.array([first + 5, first + 1, first + 5], dtype=np.uint64)
    assert OrderKeys(seed).of(idx).tolist() == [got[5], got[1], got[5]]


LINES = [b"line %d %s\n" % (i, b"x" * (i % 37)) for i in range(60000)]
SETTINGS = {
    "memory": dict(memory="64M"),
    "tempfile": dict(memory="1M"),
    "buckets": dict(memory="4M", buckets=7),
    "nested": dict(memory="1M", buckets=2),
    "one-job": dict(memory="2M", jobs=1),
}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("order") / "in.txt"
    path.write_bytes(b"".join(LINES))
    return path


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_setting_gives_the_order_of_the_keys(tmp_path, src, name):
    out = tmp_path / "out"
    stats = bigshuf.shuffle([str(src)], str(out), seed=12345, temp_dir=str(tmp_path), **SETTINGS[name])
    assert out.read_bytes() == b"".join(expected(LINES, 12345))
    if name == "nested":
        assert stats.levels >= 2


GOLDEN = "27d50b6bec36d48f"  # version 1 of the order contract


def test_golden_digest_of_version_1(src, tmp_path):
    out = tmp_path / "out"
    bigshuf.shuffle([src], out, seed=12345, memory="4M")
    assert hashlib.sha256(out.read_bytes()).hexdigest()[:16] == GOLDEN



def test_stdin_header_and_nul_records_keep_the_order():
    data = b"head\n" + b"".join(LINES[:5000])
    res = invoke(["shuffle", "--header", "--seed", "3", "-S", "1M"], input=data)
    assert res.stdout == b"head\n" + b"".join(expected(LINES[:5000], 3))
    recs = [r[:-1] + b"\0" for r in LINES[:3000]]
    res = invoke(["shuffle", "-z", "--seed", "4", "-S", "1M", "-"], input=b"".join(recs))
    assert res.stdout == b"".join(expected(recs, 4))


def test_many_inputs_are_one_concatenated_input(tmp_path):
    """Indices run across the inputs: `bigshuf a b` is `cat a b | bigshuf`."""
    parts = [LINES[:10], [], LINES[10:3000], LINES[3000:3001]]
    paths = []
    for i, p in enumerate(parts):
        paths.append(tmp_path / f"in{i}")
        paths[-1].write_bytes(b"".join(p))
    out = io.BytesIO()
    bigshuf.shuffle(paths, out, seed=9, memory="1M")
    assert out.getvalue() == b"".join(expected(LINES[:3001], 9))


@pytest.mark.parametrize("memory,n", [("64M", 10), ("1M", 9000), ("1M", 40000)])
def test_a_sample_is_the_head_of_the_shuffle(src, memory, n):
    """-n K: the first K lines of the full shuffle, whichever way it is taken (reservoir in
    memory, spilled, or the engine stopping after K), from a file or a stream."""
    want = b"".join(expected(LINES, 5)[:n])
    for inputs in ([src], [io.BytesIO(src.read_bytes())]):
        out = io.BytesIO()
        bigshuf.shuffle(inputs, out, seed=5, sample=n, memory=memory)
        assert out.getvalue() == want


@pytest.mark.parametrize("memory", ["1M", "64M"])
def test_splits_and_shards_cut_the_same_order(tmp_path, src, memory):
    order = expected(LINES, 8)
    bigshuf.shuffle([src], str(tmp_path / "{split}.txt"), seed=8, memory=memory,
                    split="train=0.9,valid=0.05,test=0.05")
    got = b"".join((tmp_path / f"{s}.txt").read_bytes() for s in ("train", "valid", "test"))
    assert got == b"".join(order)
    bigshuf.shuffle([src], str(tmp_path / "s{index}.txt"), seed=8, memory=memory, shards=3)
    assert b"".join((tmp_path / f"s{i}.txt").read_bytes() for i in range(3)) == b"".join(order)


def test_line_aligned_files_stay_aligned(tmp_path):
    """An en/de pair of different line lengths, shuffled in separate runs with one seed and
    different --memory: line k of both outputs comes from the same input line."""
    en = [b"%d en %s\n" % (i, b"e" * (i % 50)) for i in range(30000)]
    de = [b"%d de %s\n" % (i, b"d" * (i % 7)) for i in range(30000)]
    outs = []
    for name, lines, memory in (("en", en, "1M"), ("de", de, "64M")):
        (tmp_path / name).write_bytes(b"".join(lines))
        bigshuf.shuffle([tmp_path / name], tmp_path / f"{name}.out", seed=5, memory=memory)
        outs.append((tmp_path / f"{name}.out").read_bytes().split(b"\n")[:-1])
    assert [a.split()[0] for a in outs[0]] == [b.split()[0] for b in outs[1]]
