"""--manifest FILE.json and `bigshuf verify --manifest`: what a run wrote, with digests computed
as the bytes went by; every kind of damage found; refused before any work; published with the
outputs, also when a signal comes between the last output and the manifest."""
from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import xxhash
from helpers import cli_argv, cli_env, invoke, numbered_file, one_line_error, run, spawn, tmpfs

import bigshuf
from bigshuf.shuffler import manifest as manifest_module
from bigshuf.shuffler.stats import ShuffleStats


def _xxh(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def _load(p: Path) -> dict:
    return json.loads(p.read_text())


def test_round_trip_records_every_input_and_output(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 1000)
    gz = tmp_path / "more.txt.gz"
    gz.write_bytes(gzip.compress(b"x\ny\n"))
    (tmp_path / "out").mkdir()
    r = invoke(["shuffle", src, gz, "--shards", "3", "-o", tmp_path / "out" / "s.txt.gz",
                "--manifest", tmp_path / "m.json", "-v"])
    assert r.returncode == 0, r.stderr
    doc = _load(tmp_path / "m.json")
    assert doc["bigshuf_version"] == bigshuf.__version__ and doc["digest"] == "xxh3_128"
    assert f"seed {doc['seed']};" in r.stderr.decode()  # the resolved seed, none given
    assert doc["options"]["shards"] == 3 and doc["options"]["seed"] is None
    assert doc["inputs"] == [
        {"path": str(src), "bytes": src.stat().st_size, "records": 1000, "digest": _xxh(src.read_bytes())},
        {"path": str(gz), "bytes": 4, "records": 2, "digest": _xxh(b"x\ny\n")}]
    outs = doc["outputs"]
    assert [o["path"] for o in outs] == [f"out/s-0000{i}-of-00003.txt.gz" for i in range(3)]
    for i, o in enumerate(outs):
        plain = gzip.decompress((tmp_path / o["path"]).read_bytes())
        assert (o["shard"], o["split"], o["epoch"], o["bytes"], o["digest"], o["records"]) == \
            (i, None, None, len(plain), _xxh(plain), len(plain.splitlines()))
    assert sum(o["records"] for o in outs) == 1002
    mode = stat.S_IMODE((tmp_path / "m.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "out" / outs[0]["path"].split("/")[1]).stat().st_mode)
    ok = invoke(["verify", "--manifest", tmp_path / "m.json"])
    assert ok.returncode == 0 and ok.stdout.decode() == \
        "3 output file(s), 1,002 records, 3,894 bytes: all match the manifest\n"


def test_paths_are_relative_to_the_manifest(tmp_path, monkeypatch):
    """The manifest and its outputs can move together."""
    src = numbered_file(tmp_path / "in.txt", 50)
    (tmp_path / "a" / "e").mkdir(parents=True)
    bigshuf.shuffle(src, tmp_path / "a" / "e" / "{epoch}.txt", epochs=2, seed=3,
                    manifest=tmp_path / "a" / "m.json")
    os.rename(tmp_path / "a", tmp_path / "b")
    monkeypatch.chdir("/")
    r = invoke(["verify", "--manifest", tmp_path / "b" / "m.json"])
    assert r.returncode == 0, r.stdout
    doc = _load(tmp_path / "b" / "m.json")
    assert [(o["path"], o["epoch"]) for o in doc["outputs"]] == [("e/0.txt", 0), ("e/1.txt", 1)]
    assert doc["seed"] == 3 and doc["epoch_seeds"] == {"0": 3, "1": bigshuf.epoch_seed(3, 1)}


@pytest.fixture
def made(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 200)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    bigshuf.shuffle(src, tmp_path / "{split}" / "p.txt", split="a=0.5,b=rest", shard_size=300,
                    seed=1, manifest=tmp_path / "m.json")
    return tmp_path


def _damage(p: Path, how: str) -> None:
    data = p.read_bytes()
    if how == "missing":
        p.unlink()
    elif how == "truncated":
        p.write_bytes(data[:-1])
    elif how == "altered":
        p.write_bytes(data[:5] + bytes([data[5] ^ 1]) + data[6:])
    elif how == "extra":
        p.write_bytes(data + b"\n")
    elif how == "swapped":  # same size, another file's content
        other = sorted(p.parent.iterdir())[0]
        p.write_bytes(other.read_bytes()[:len(data)].ljust(len(data), b"\n"))


@pytest.mark.parametrize("how,word", [("missing", "MISSING"), ("truncated", "TRUNCATED"),
                                      ("altered", "ALTERED"), ("extra", "EXTRA BYTES"),
                                      ("swapped", "ALTERED")])
def test_every_damage_is_one_line_and_exit_1(made, how, word):
    doc = _load(made / "m.json")
    assert {o["split"] for o in doc["outputs"]} == {"a", "b"} and len(doc["outputs"]) == 4
    victim = made / "b" / "p-00001.txt"
    _damage(victim, how)
    r = invoke(["verify", "--manifest", made / "m.json"])
    assert r.returncode == 1
    lines = r.stdout.decode().splitlines()
    assert lines == [lines[0], "1 problem(s) in the outputs of " + str(made / "m.json")]
    assert lines[0].startswith(f"{word} {victim}")


def test_damaged_compressed_output(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 5000)
    bigshuf.shuffle(src, tmp_path / "o.txt.zst", manifest=tmp_path / "m.json")
    data = (tmp_path / "o.txt.zst").read_bytes()
    (tmp_path / "o.txt.zst").write_bytes(data[:-10])
    r = invoke(["verify", "--manifest", tmp_path / "m.json"])
    assert r.returncode == 1 and r.stdout.startswith(b"DAMAGED ")


def test_stdin_and_stdout_are_recorded_and_not_rechecked(tmp_path):
    data = b"".join(b"%d\n" % i for i in range(100))
    r = invoke(["shuffle", "--seed", "1", "--manifest", tmp_path / "m.json"], input=data)
    assert r.returncode == 0
    doc = _load(tmp_path / "m.json")
    assert doc["inputs"] == [{"path": "-", "bytes": len(data), "records": 100, "digest": _xxh(data)}]
    assert doc["outputs"][0]["path"] is None and doc["outputs"][0]["digest"] == _xxh(r.stdout)
    v = invoke(["verify", "--manifest", tmp_path / "m.json"])
    assert v.returncode == 0 and b"1 stream output(s) not checkable" in v.stdout


def test_the_manifest_does_not_change_the_output(tmp_path):
    """Sequential writes and the engine instead of the input method: the same bytes."""
    src = numbered_file(tmp_path / "in.txt", 3000)
    bigshuf.shuffle(src, tmp_path / "a.txt", seed=5, memory="1M")
    bigshuf.shuffle(src, tmp_path / "b.txt", seed=5, memory="1M", manifest=tmp_path / "m.json")
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()


def test_a_read_only_directory_is_refused_before_any_work(tmp_path):
    """The input is a FIFO nobody writes: a run that started reading would hang."""
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        p = run(["shuffle", fifo, "-o", tmp_path / "out.txt", "--manifest", ro / "m.json"], timeout=30)
        one_line_error(p, 2, str(ro))
    assert sorted(os.listdir(tmp_path)) == ["p", "ro"]


@pytest.mark.parametrize("args,needle", [
    (["--manifest", "in.txt"], "is an input"),
    (["--manifest", "out.txt"], "not distinct"),
    (["--manifest", "nodir/m.json"], "does not exist"),
    (["--manifest", "-"], "needs a file name"),
])
def test_bad_manifest_options(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    numbered_file(tmp_path / "in.txt", 5)
    one_line_error(invoke(["shuffle", "in.txt", "-o", "out.txt", *args]), 2, needle)
    assert os.listdir(tmp_path) == ["in.txt"]


def test_verify_refuses_a_file_that_is_not_a_manifest(tmp_path):
    (tmp_path / "m.json").write_text("[1, 2]")
    one_line_error(invoke(["verify", "--manifest", tmp_path / "m.json"]), 2, "not a bigshuf manifest")
    one_line_error(invoke(["verify", "--manifest", tmp_path / "none.json"]), 2, "no such file")


def test_a_signal_between_the_outputs_and_the_manifest_publishes_nothing(tmp_path):
    """The manifest is a FIFO: the run blocks opening it once every output is complete. A
    SIGTERM there ends the run with no output and no manifest: outputs and manifest are
    published together."""
    from test_signals import _wait_blocked_opening_a_fifo

    src = numbered_file(tmp_path / "in.txt", 1000)
    fifo = tmp_path / "m.json"
    os.mkfifo(fifo)
    proc = spawn(["shuffle", src, "--shards", "2", "-o", tmp_path / "s.txt", "--manifest", fifo])
    _wait_blocked_opening_a_fifo(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 143, "SIGTERM")
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "m.json"]


def test_a_manifest_written_through_a_fifo_is_read_whole(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 100)
    fifo = tmp_path / "m.json"
    os.mkfifo(fifo)
    proc = subprocess.Popen(cli_argv(["shuffle", str(src), "-o", str(tmp_path / "o.txt"),
                                      "--manifest", str(fifo)]), env=cli_env())
    with open(fifo, "rb") as f:
        doc = json.loads(f.read())
    assert proc.wait(timeout=30) == 0
    assert doc["outputs"][0]["digest"] == _xxh((tmp_path / "o.txt").read_bytes())


def test_per_input_stats_fields_are_copied_generically(monkeypatch, tmp_path):
    """The hook for other options' per-input numbers (--mix's taken, --unique's duplicates)."""
    stats = ShuffleStats(seed=1, inputs=[{"path": "a"}, {"path": "b"}])
    stats.taken = [3, 4]  # type: ignore[attr-defined]
    monkeypatch.setattr(manifest_module, "PER_INPUT_STATS", ("taken",))
    opts = bigshuf.ShuffleOptions(inputs=["a", "b"], output=str(tmp_path / "o"),
                                  manifest=str(tmp_path / "m.json"))
    doc = manifest_module.manifest_document(opts, stats, [])
    assert [i["taken"] for i in doc["inputs"]] == [3, 4]


def test_a_mixture_with_splits_and_dedup_records_what_each_input_gave(tmp_path):
    """--mix with --split, --unique and --epochs together: every input is listed with its digest
    and what it gave the mixture; every split of every epoch is recorded and verifies."""
    a = tmp_path / "a.txt"
    a.write_bytes(b"".join(b"a%d\n" % (i % 80) for i in range(100)))  # 80 distinct
    b = numbered_file(tmp_path / "b.txt", 30)
    m = tmp_path / "m.json"
    stats = bigshuf.shuffle([a, b], str(tmp_path / "{epoch}-{split}.txt"), mix="7,3", sample=50,
                            split="tr=0.8,te=rest", unique=True, epochs=2, manifest=str(m), seed=1)
    doc = _load(m)
    assert [i["digest"] for i in doc["inputs"]][:2] == [_xxh(a.read_bytes()), _xxh(Path(b).read_bytes())]
    assert [i["taken"]["taken"] for i in doc["inputs"]][:2] == [35, 15]
    assert sorted((o["epoch"], o["path"], o["records"]) for o in doc["outputs"]) == [
        (0, "0-te.txt", 10), (0, "0-tr.txt", 40), (1, "1-te.txt", 10), (1, "1-tr.txt", 40)]
    assert bigshuf.verify_manifest(str(m)).ok
    assert len(stats.outputs) == 4
