"""bigshuf verify: one file against several (splits, shards), --header, lines of any length,
stdin at most once."""
from __future__ import annotations

import random

import pytest
from helpers import invoke, one_line_error
from helpers import numbered_file as _numbered

import bigshuf
from bigshuf.shuffler import verify as verify_mod


def test_first_against_several_files(tmp_path, numbered):
    src = numbered(100)
    lines = src.read_bytes().splitlines(keepends=True)
    parts = []
    for i, (a, b) in enumerate(((0, 30), (30, 31), (31, 100))):
        p = tmp_path / f"p{i}.txt"
        p.write_bytes(b"".join(reversed(lines[a:b])))
        parts.append(str(p))
    v = invoke(["verify", str(src), *parts])
    assert v.returncode == 0 and b"(the 3 files together)" in v.stdout
    result = bigshuf.verify(str(src), *parts)
    assert result.same and len(result.parts) == 3 and result.second.count == 100
    v = invoke(["verify", str(src), parts[0], parts[2]])
    assert v.returncode == 1 and b"the 2 others together 99" in v.stdout
    v = invoke(["verify", str(src), *parts, parts[1]])  # a duplicated line is a difference
    assert v.returncode == 1


def test_header_is_left_out_of_every_file(tmp_path):
    a = tmp_path / "a.tsv"
    a.write_bytes(b"h\n1\n2\n3\n")
    b1, b2 = tmp_path / "b1.tsv", tmp_path / "b2.tsv"
    b1.write_bytes(b"h\n3\n")
    b2.write_bytes(b"h\n2\n1\n")
    assert invoke(["verify", "--header", str(a), str(b1), str(b2)]).returncode == 0
    assert invoke(["verify", str(a), str(b1), str(b2)]).returncode == 1


def test_lines_of_any_length(tmp_path, monkeypatch):
    """A 33 MiB line (more than one read block) is hashed as a stream; fingerprints do not
    depend on the block size, so lines longer than a block compare like any other."""
    big = tmp_path / "big.txt"
    long_line = b"y" * (33 << 20) + b"\n"
    big.write_bytes(b"a\n" + long_line + b"b")
    shuffled = tmp_path / "shuf.txt"
    shuffled.write_bytes(b"b\n" + long_line + b"a\n")
    v = invoke(["verify", str(big), str(shuffled)])
    assert v.returncode == 0, v.stdout + v.stderr
    shuffled.write_bytes(b"b\n" + long_line[:-2] + b"z\n" + b"a\n")
    assert invoke(["verify", str(big), str(shuffled)]).returncode == 1

    r = random.Random(3)
    lines = [b"x" * r.choice([0, 5, 127, 128, 129, 1000, 1023, 1024, 1025, 5000])
             + bytes([r.randrange(97, 123)]) + b"\n" for _ in range(300)]
    src = tmp_path / "mixed.txt"
    src.write_bytes(b"".join(lines)[:-1])                # last line without its newline
    reference = verify_mod.fingerprint(str(src), key=7)
    monkeypatch.setattr(verify_mod, "BLOCK", 1024)      # most long lines now span blocks
    assert verify_mod.fingerprint(str(src), key=7) == reference
    r.shuffle(lines)
    other = tmp_path / "mixed2.txt"
    other.write_bytes(b"".join(lines))
    assert verify_mod.fingerprint(str(other), key=7).same_multiset(reference)


def test_stdin_only_once(numbered):
    src = numbered(3)
    one_line_error(invoke(["verify", "-", "-"], input=b"a\n"), 2, "more than once")
    one_line_error(invoke(["verify", str(src), "-", "-"], input=b"a\n"), 2, "more than once")
    v = invoke(["verify", "-", str(src)], input=src.read_bytes())
    assert v.returncode == 0




def test_verify_of_header_outputs_without_header_hints_at_it(tmp_path):
    src = _numbered(tmp_path / "in.txt", 30, b"id\n")
    assert invoke(["shuffle", "--header", src, "--shards", "3", "-o", tmp_path / "s.txt"]).returncode == 0
    shards = sorted(str(p) for p in tmp_path.glob("s-*"))
    r = invoke(["verify", src, *shards])
    assert r.returncode == 1 and b"--header" in r.stdout, r.stdout
    assert invoke(["verify", "--header", src, *shards]).returncode == 0
    other = _numbered(tmp_path / "other.txt", 31)
    assert b"--header" not in invoke(["verify", src, other]).stdout  # no hint when unrelated


def test_verify_progress_has_a_total(tmp_path):
    a = _numbered(tmp_path / "a.txt", 1000)
    r = invoke(["verify", "--progress", a, a])
    assert r.returncode == 0 and b"%|" in r.stderr, r.stderr  # a percentage: tqdm knows the total


def test_verify_tells_crafted_short_records_apart(tmp_path):
    """A collision of the unkeyed short-record hash (its rounds are invertible, so a second
    16-byte line with the first one's hash can be solved for): different files, said 'same'."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"hello, world!!!\n")
    b.write_bytes(b"Yb({j3h9VH,|54k\n")
    r = invoke(["verify", a, b])
    assert r.returncode == 1 and b"DIFFERENT" in r.stdout, r.stdout


def test_the_key_changes_the_hashes_not_the_verdict(tmp_path):
    from bigshuf.shuffler import verify as v

    src = _numbered(tmp_path / "in.txt", 500)
    lines = src.read_bytes().splitlines(keepends=True)
    other = tmp_path / "rev.txt"
    other.write_bytes(b"".join(reversed(lines)))
    one, two = v.fingerprint(str(src), key=1), v.fingerprint(str(src), key=2)
    assert one.count == two.count and (one.sum1, one.sum2) != (two.sum1, two.sum2)
    assert v.fingerprint(str(other), key=2).same_multiset(two)
    with pytest.raises(ValueError):
        one.same_multiset(two)  # sums under different keys say nothing
