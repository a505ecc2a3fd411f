"""Shards: each case a break a review found, failing before its fix."""
from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import invoke, one_line_error, run
from helpers import numbered_file as _numbered

from bigshuf.shuffler.writing import Sink


def test_split_given_twice_and_shard_fields_without_shards_are_refused(tmp_path, src):
    one_line_error(invoke(["shuffle", src, "--split", "a=0.5,b=rest", "--split", "c=rest",
                           "-o", f"{tmp_path}/{{split}}.txt"]), 2, "more than once")
    one_line_error(invoke(["shuffle", src, "-o", f"{tmp_path}/x{{index}}.txt"]), 2, "--shards")
    one_line_error(invoke(["shuffle", src, "--split", "a=0.5,b=rest",
                           "-o", f"{tmp_path}/{{split}}-{{index}}.txt"]), 2, "--shards")




@pytest.mark.parametrize("pattern", ["r{index.x}.txt", "r{index[0]}.txt", "r{0}.txt", "r{index!z}.txt",
                                     "r{index:q}.txt", "r{}.txt"])
def test_bad_shard_patterns_are_usage_errors(tmp_path, pattern):
    src = _numbered(tmp_path / "in.txt", 10)
    r = invoke(["shuffle", src, "--shards", "2", "-o", tmp_path / pattern])
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(b"bigshuf: error: ") and r.stderr.count(b"\n") == 1
    assert b"internal error" not in r.stderr and os.listdir(tmp_path) == ["in.txt"]


def test_more_shards_than_lines_is_said_once(tmp_path):
    src = _numbered(tmp_path / "in.txt", 5)
    r = invoke(["shuffle", src, "--shards", "10", "-o", tmp_path / "s.txt"])
    assert r.returncode == 0
    assert r.stderr.decode() == (f"bigshuf: warning: --shards 10 for 5 line(s): 5 of the shards of "
                                 f"{tmp_path / 's.txt'} are empty\n")
    assert len(os.listdir(tmp_path)) == 11
    ok = invoke(["shuffle", src, "--shards", "5", "-o", tmp_path / "t.txt"])
    assert ok.returncode == 0 and ok.stderr == b""
    split = invoke(["shuffle", src, "--shards", "3", "--split", "a=0.5,b=rest", "-o", tmp_path / "{split}.txt"])
    assert split.returncode == 0 and split.stderr.count(b"warning") == 1 and b"b.txt are empty" in split.stderr


def test_absurd_shard_counts_and_widths_are_refused_at_once(tmp_path):
    import resource

    from helpers import limit

    src = _numbered(tmp_path / "in.txt", 10)
    cap = limit(resource.RLIMIT_AS, 2 << 30)  # before: 23 GB, or a 300 MB name, until killed
    for args, needle in ((["--shards", "99999999999999999999", "-o", tmp_path / "s.txt"], b"--shards"),
                         (["--shards", "2", "-o", tmp_path / "r{index:>300000000}.txt"], b"width")):
        p = run(["shuffle", src, *args], preexec=cap, timeout=60)
        assert p.returncode == 2 and needle in p.stderr and len(p.stderr) < 400, p.stderr[:300]
    assert os.listdir(tmp_path) == ["in.txt"]


def test_the_shard_limit_grows_with_memory(tmp_path):
    from bigshuf.shuffler.writing import max_shards

    src = _numbered(tmp_path / "in.txt", 10)
    r = invoke(["shuffle", src, "-S", "1M", "--shards", str(max_shards(1 << 20) + 1), "-o", tmp_path / "s.txt"])
    assert r.returncode == 2 and b"raise --memory" in r.stderr, r.stderr
    assert max_shards(1 << 30) >= 100_000


def test_many_shards_list_each_directory_once_and_cost_little_each(tmp_path, monkeypatch):
    import tracemalloc


    old = tmp_path / ".s-00007-of-01000.txt.bigshuf-0123456789ab-1.tmp"
    old.write_bytes(b"stale\n")  # a killed run's: still removed
    import glob

    listings = []
    real_scandir, real_glob, real_listdir = os.scandir, glob.glob, os.listdir
    monkeypatch.setattr(os, "scandir", lambda p=".": listings.append(p) or real_scandir(p))
    monkeypatch.setattr(os, "listdir", lambda p=".": listings.append(p) or real_listdir(p))
    monkeypatch.setattr(glob, "glob", lambda *a, **k: listings.append(a) or real_glob(*a, **k))
    n = 1000
    tracemalloc.start()
    sink = Sink(str(tmp_path / "s.txt"), 10, n, shards=n)
    sink.open()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        sink.write(np.frombuffer(b"%d\n" % i, np.uint8), 1)
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    sink.finish()
    monkeypatch.undo()
    assert len(listings) <= 2, len(listings)
    assert grown / n < 1024, f"{grown / n:.0f} bytes a shard"
    assert len(os.listdir(tmp_path)) == n and not old.exists()


def test_too_many_lines_per_shard_files_are_refused_before_any_bookkeeping(tmp_path):
    import tracemalloc

    from bigshuf.common.errors import UsageError

    tracemalloc.start()
    with pytest.raises(UsageError, match="raise --memory"):
        Sink(str(tmp_path / "s.txt"), 10, 10 ** 7, lines_per_shard=1, memory=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, f"{peak / 2**20:.0f} MiB"  # before: a list of ten million line counts


def test_shard_bookkeeping_of_all_splits_together_is_bounded(tmp_path):
    from bigshuf.shuffler.writing import max_shards

    src = _numbered(tmp_path / "in.txt", 10)
    per = max_shards(1 << 20) // 2 + 1  # each split within the bound, the two together over it
    r = invoke(["shuffle", src, "-S", "1M", "--split", "a=0.5,b=rest", "--shards", str(per),
                "-o", tmp_path / "{split}.txt"])
    assert r.returncode == 2 and b"raise --memory" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == ["in.txt"]
