"""An adversarial review of --manifest and of the run's output names: the manifest never
replaces an input, the random source or an output (links followed), and no file is written
twice by one run (all epochs, splits, shards, --aligned names and the manifest)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_env, invoke, numbered_file, one_line_error, run

import bigshuf
from bigshuf.common.errors import InputError, UsageError


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


# -- verify --manifest ------------------------------------------------------------------------

@pytest.fixture
def made(here) -> Path:
    """A run with a manifest: o.txt with a header line and 99 records, m.json."""
    r = invoke(["shuffle", "in.txt", "--header", "-o", "o.txt", "--manifest", "m.json"])
    assert r.returncode == 0, r.stderr
    return here / "m.json"


def _edit(m: Path, change) -> None:
    doc = json.loads(m.read_text())
    change(doc)
    m.write_text(json.dumps(doc))


def test_a_signal_while_verifying_is_an_interruption(made):
    """SIGTERM arrives while an output is read (sent by the process to itself from read_fully):
    exit 143 and the interruption's message, not a DAMAGED file."""
    code = ("import os, signal, sys\n"
            "import bigshuf.shuffler.manifest as m\n"
            "orig = m.read_fully\n"
            "def read(*a):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return orig(*a)\n"
            "m.read_fully = read\n"
            "from bigshuf.cli import main\n"
            "main(prog_name='bigshuf')\n")
    p = subprocess.run([sys.executable, "-c", code, "verify", "--manifest", str(made)],
                       capture_output=True, env=cli_env(), timeout=60)
    err = one_line_error(p, 143, "interrupted by SIGTERM")
    assert "DAMAGED" not in err and p.stdout == b""


def test_reads_of_an_output_stop_after_the_recorded_bytes(made, here):
    """A 1 TiB sparse file where a 290-byte output should be: EXTRA BYTES at once; a device is
    not opened (it could block or never end)."""
    os.truncate(here / "o.txt", 1 << 40)
    p = run(["verify", "--manifest", made], timeout=30)
    assert p.returncode == 1 and b"EXTRA BYTES" in p.stdout, p
    _edit(made, lambda d: d["outputs"][0].update(path="/dev/zero"))
    p = run(["verify", "--manifest", made], timeout=30)
    assert p.returncode == 1 and b"NOT A FILE /dev/zero" in p.stdout, p


def test_a_manifest_is_read_in_bounded_memory(here):
    p = run(["verify", "--manifest", "/dev/zero"], timeout=60,
            prefix=["prlimit", "--as=%d" % (1 << 30), "--"])
    one_line_error(p, 2, "not a bigshuf manifest: larger than")
    with pytest.raises(InputError, match="larger than 100 bytes"):
        bigshuf.verify_manifest("/dev/urandom", max_bytes=100)


@pytest.mark.parametrize("change", [
    lambda d: d["outputs"][0].update(bytes="abc"),
    lambda d: d["outputs"][0].update(bytes=-1),
    lambda d: d["outputs"][0].update(bytes=True),
    lambda d: d["outputs"][0].update(records=None),
    lambda d: d["outputs"][0].update(path=None),          # a file with no path: not skipped
    lambda d: d["outputs"][0].update(file="yes"),
    lambda d: d["outputs"][0].update(digest=None),
    lambda d: d["outputs"].append(42),
    lambda d: d["outputs"].append(dict(d["outputs"][0])),  # listed twice: not counted twice
    lambda d: d["outputs"].append(dict(d["outputs"][0], path="./o.txt")),
    lambda d: d.update(bigshuf_manifest=2),
    lambda d: d.update(bigshuf_manifest=True),
    lambda d: d.update(outputs={}),
    lambda d: d.pop("options"),
])
def test_a_malformed_manifest_is_one_line_exit_2(made, change):
    _edit(made, change)
    one_line_error(invoke(["verify", "--manifest", made]), 2, "not a bigshuf manifest")


def test_the_record_count_is_checked(made):
    assert invoke(["verify", "--manifest", made]).stdout.startswith(b"1 output file(s), 99 records")
    _edit(made, lambda d: d["outputs"][0].update(records=98))
    p = invoke(["verify", "--manifest", made])
    assert p.returncode == 1 and b"RECORDS " in p.stdout and b"99 records, the manifest says 98" \
        in p.stdout, p


# -- sizes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, False, "1.9", 1.9, "0.5B", [1]])
def test_a_size_is_a_whole_number_of_bytes(here, value):
    """One rule (common/sizes.parse_size) for --shard-size and --memory: a bool or a fraction of a
    byte is refused, not read as 1 byte."""
    for key in ("shard_size", "memory"):
        with pytest.raises(UsageError, match="size"):
            bigshuf.shuffle(["in.txt"], "p{index}.txt", **{key: value})
    if isinstance(value, str):
        one_line_error(invoke(["shuffle", "in.txt", "--shard-size", value, "-o", "p{index}.txt"]), 2,
                       "size")
        one_line_error(invoke(["shuffle", "in.txt", "--memory", value, "-o", "o.txt"]), 2, "size")
    assert sorted(os.listdir(here)) == ["in.txt"]


def test_fractions_of_a_unit_are_rounded_down():
    from bigshuf.common.sizes import parse_size

    assert parse_size("1.5K") == 1536 and parse_size("1.3G") == int(1.3 * (1 << 30))
    assert parse_size(4096) == 4096 and parse_size(4096.0) == 4096
