"""--aligned: line-parallel files shuffled with one permutation, each to its own output."""
from __future__ import annotations

import gzip

import pytest
from helpers import invoke, one_line_error

import bigshuf
from bigshuf.common.errors import BigshufError, UsageError
from bigshuf.shuffler import run as run_module


def _pair(tmp_path, n=3000, m=None):
    en = b"".join(b"%d en %s\n" % (i, b"e" * (i % 41)) for i in range(n))
    de = b"".join(b"%d de %s\n" % (i, b"d" * (i % 5)) for i in range(n if m is None else m))
    (tmp_path / "en.txt").write_bytes(en)
    (tmp_path / "de.txt").write_bytes(de)
    (tmp_path / "out").mkdir()
    return [str(tmp_path / "en.txt"), str(tmp_path / "de.txt")]


def _ids(data: bytes):
    return [line.split()[0] for line in data.splitlines()]


def test_one_permutation_for_every_input(tmp_path):
    inputs = _pair(tmp_path)
    res = invoke(["shuffle", "--aligned", "--seed", "4", "-S", "1M", *inputs, "-o", tmp_path / "out/{name}"])
    assert res.returncode == 0, res.stderr
    en, de = ((tmp_path / "out" / n).read_bytes() for n in ("en.txt", "de.txt"))
    assert _ids(en) == _ids(de) and sorted(_ids(en)) == sorted(_ids((tmp_path / "en.txt").read_bytes()))
    assert _ids(en) != sorted(_ids(en))
    # Each output is the plain shuffle of its input with that seed.
    single = tmp_path / "single"
    bigshuf.shuffle(inputs[1], single, seed=4, memory="64M")
    assert single.read_bytes() == de


def test_from_python_with_splits_shards_sample_and_compression(tmp_path):
    inputs = _pair(tmp_path)
    for s in ("train", "test"):
        (tmp_path / "out" / s).mkdir()
    bigshuf.shuffle(inputs, tmp_path / "out/{split}/{name}.gz", aligned=True, seed=2,
                    split="train=0.9,test=rest", header=True)
    for s in ("train", "test"):
        en, de = (gzip.decompress((tmp_path / "out" / s / f"{n}.gz").read_bytes()) for n in ("en.txt", "de.txt"))
        assert _ids(en) == _ids(de) and en.startswith(b"0 en")  # the header line stays on top
    bigshuf.shuffle(inputs, str(tmp_path / "out/{name}"), aligned=True, seed=2, shards=2, head_count=7)
    parts = {n: b"".join((tmp_path / "out" / f"{n}-{i:05d}-of-00002.txt").read_bytes() for i in range(2))
             for n in ("en", "de")}
    assert _ids(parts["en"]) == _ids(parts["de"]) and len(_ids(parts["en"])) == 7


def test_different_counts_are_refused_and_nothing_is_written(tmp_path):
    inputs = _pair(tmp_path, 3000, 2999)
    res = invoke(["shuffle", "--aligned", *inputs, "-o", tmp_path / "out/{name}"])
    line = one_line_error(res, 2, "different numbers of records")
    assert "en.txt 3,000" in line and "de.txt 2,999" in line
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("args,needle", [
    (["-o", "x.txt"], "needs -o with {name}"),
    ([], "needs -o with {name}"),
    (["-o", "{name}", "-"], "can be read only once"),
    (["-o", "{name}", "-e"], "not with -e"),
])
def test_usage_errors(tmp_path, args, needle):
    inputs = _pair(tmp_path)
    res = invoke(["shuffle", "--aligned", *inputs, *args])
    one_line_error(res, 2, needle)


@pytest.mark.parametrize("name", ["{split}.txt", "a}b.txt", "{index}.txt"])
def test_input_names_with_braces_are_refused(tmp_path, name):
    """Review break: an input named '{split}.txt' under --split was written to the split's
    name (a silent wrong name), 'a}b.txt' sharded as 'a}}b-…': a name is not a pattern."""
    inputs = _pair(tmp_path)
    (tmp_path / name).write_bytes((tmp_path / "de.txt").read_bytes())
    res = invoke(["shuffle", "--aligned", inputs[0], tmp_path / name, "-o", tmp_path / "out/{name}",
                  "--shards", "2"])
    one_line_error(res, 2, "brace")
    assert list((tmp_path / "out").iterdir()) == []


def test_name_without_aligned_and_same_file_names(tmp_path):
    inputs = _pair(tmp_path)
    one_line_error(invoke(["shuffle", inputs[0], "-o", tmp_path / "{name}"]), 2, "names the outputs of --aligned")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "en.txt").write_bytes((tmp_path / "en.txt").read_bytes())
    res = invoke(["shuffle", "--aligned", inputs[0], tmp_path / "b/en.txt", "-o", tmp_path / "out/{name}"])
    one_line_error(res, 2, "same file name")


def test_no_output_is_published_unless_all_are(tmp_path, monkeypatch):
    """A failure while shuffling the second input removes the first one's finished output:
    a half-aligned pair on disk would be silently wrong."""
    inputs = _pair(tmp_path)
    (tmp_path / "out" / "en.txt").write_bytes(b"old\n")
    real = run_module.run
    calls = []

    def failing(opts):
        calls.append(opts)
        if len(calls) == 3:  # the driver, en.txt, then de.txt fails
            raise BigshufError("disk on fire")
        return real(opts)

    monkeypatch.setattr(run_module, "run", failing)
    with pytest.raises(BigshufError):
        bigshuf.shuffle(inputs, tmp_path / "out/{name}", aligned=True, seed=1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["en.txt"]
    assert (tmp_path / "out" / "en.txt").read_bytes() == b"old\n"


def test_options_refuse_aligned_without_files():
    with pytest.raises(UsageError):
        bigshuf.shuffle([], "x/{name}", aligned=True)
