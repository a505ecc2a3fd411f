"""An adversarial review of --manifest and of the run's output names: the manifest never
replaces an input, the random source or an output (links followed), and no file is written
twice by one run (all epochs, splits, shards, --aligned names and the manifest)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import invoke, numbered_file, one_line_error, run

import bigshuf
from bigshuf.common.errors import UsageError


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    numbered_file(tmp_path / "in.txt", 100)
    return tmp_path


def _unchanged(here: Path, before: dict) -> None:
    after = {p: (here / p).read_bytes() for p in os.listdir(here) if (here / p).is_file()}
    assert after == before


def _snapshot(here: Path) -> dict:
    return {p: (here / p).read_bytes() for p in os.listdir(here) if (here / p).is_file()}


@pytest.mark.parametrize("link_to,output,needle", [
    ("in.txt", "out.txt", "is an input"),        # the manifest would replace the input
    ("out.txt", "out.txt", "the same file"),     # ... the output
    ("real.txt", "lo.txt", "the same file"),     # -o lo.txt -> real.txt, --manifest real.txt
])
def test_a_manifest_that_is_an_input_or_output_by_a_link_is_refused(here, link_to, output, needle):
    (here / "real.txt").write_bytes(b"keep\n")
    os.symlink("real.txt", here / "lo.txt")
    manifest = "real.txt" if output == "lo.txt" else "m.json"
    if manifest == "m.json":
        os.symlink(link_to, here / "m.json")
    before = _snapshot(here)
    one_line_error(invoke(["shuffle", "in.txt", "-o", output, "--manifest", manifest]), 2, needle)
    _unchanged(here, before)


def test_the_random_source_is_not_replaced_by_the_manifest(here):
    (here / "key.bin").write_bytes(bytes(range(256)) * 4)
    os.symlink("key.bin", here / "k2")
    before = _snapshot(here)
    for src in ("key.bin", "k2"):
        one_line_error(invoke(["shuffle", "in.txt", "-o", "o.txt", "--random-source", src,
                               "--manifest", "key.bin"]), 2, "--random-source")
    _unchanged(here, before)


@pytest.mark.parametrize("args", [
    ["--shard-size", "20", "-o", "p{index}.txt", "--manifest", "p1.txt"],   # found when opened
    ["--lines-per-shard", "20", "-o", "p{index}.txt", "--manifest", "p1.txt"],
    ["--epochs", "3", "-o", "e{epoch}.txt", "--manifest", "e2.txt"],
    ["--split", "a=0.5,b=rest", "-o", "{split}.txt", "--manifest", "b.txt"],
    ["--shards", "3", "-o", "o.txt", "--manifest", "o-00001-of-00003.txt"],
    ["--epochs", "12", "--shard-size", "1", "-o", "w{epoch}{index}.txt"],   # w1+10 = w11+0
    ["--epochs", "12", "--shards", "11", "-o", "cc/v{epoch}{index}.txt"],
    ["--split", "a=0.5,a1=rest", "--shard-size", "2", "-o", "cc/{split}{index}.txt"],
])
def test_a_name_written_twice_by_one_run_is_refused_and_nothing_published(here, args):
    (here / "cc").mkdir()
    before = _snapshot(here)
    one_line_error(invoke(["shuffle", "in.txt", *args]), 2, "not distinct")
    _unchanged(here, before)
    assert os.listdir(here / "cc") == []


def test_an_aligned_output_named_as_the_manifest_is_refused(here):
    (here / "shuf").mkdir()
    for name in ("en", "de"):
        numbered_file(here / name, 10)
    one_line_error(invoke(["shuffle", "--aligned", "en", "de", "-o", "shuf/{name}",
                           "--manifest", "shuf/de"]), 2, "not distinct")
    assert os.listdir(here / "shuf") == []


def test_known_names_are_refused_before_any_work(here):
    """Names known before the run (here every epoch's shards, and a split named as the
    manifest) are checked before an input is read: a FIFO input nobody writes would hang it."""
    os.mkfifo(here / "p")
    p = run(["shuffle", "p", "--epochs", "12", "--shards", "11", "-o", "w{epoch}{index}.txt"],
            timeout=30, cwd=here)
    one_line_error(p, 2, "w110.txt")
    p = run(["shuffle", "p", "--split", "a=0.5,b=rest", "-o", "{split}.txt", "--manifest",
             "b.txt"], timeout=30, cwd=here)
    one_line_error(p, 2, "b.txt")


def test_the_library_refuses_like_the_cli(here):
    with pytest.raises(UsageError, match="not distinct"):
        bigshuf.shuffle(["in.txt"], "w{epoch}{index}.txt", epochs=12, shard_size=1)
    with pytest.raises(UsageError, match="is an input"):
        os.symlink("in.txt", "m.json")
        bigshuf.shuffle(["in.txt"], "o.txt", manifest="m.json")


def test_distinct_names_across_epochs_still_run(here):
    r = invoke(["shuffle", "in.txt", "--epochs", "3", "--shard-size", "100", "-o",
                "e{epoch}-{index}.txt", "--manifest", "m.json"])
    assert r.returncode == 0, r.stderr
    assert invoke(["verify", "--manifest", "m.json"]).returncode == 0
