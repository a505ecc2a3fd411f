"""The Python API speaks the CLI's language: every long option of `bigshuf shuffle` is a
keyword of `bigshuf.shuffle`, paths may be str or pathlib.Path, one input need not be a list."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from helpers import invoke

import bigshuf
from bigshuf.cli import main
from bigshuf.shuffler.options import KEYWORD_ALIASES, ShuffleOptions

#: CLI options that are not run settings (they say what the CLI prints).
NOT_KEYWORDS = {"verbose", "help"}


def _long_names(command: str):
    cmd = main.get_command(click.Context(main), command)
    for p in cmd.params:
        if isinstance(p, click.Option):
            longs = [o for o in p.opts if o.startswith("--")]
            yield longs[0][2:].replace("-", "_")


def test_every_shuffle_option_is_a_python_keyword():
    fields = {f.name for f in dataclasses.fields(ShuffleOptions)}
    names = set(_long_names("shuffle")) - NOT_KEYWORDS
    missing = sorted(n for n in names if n not in fields and n not in KEYWORD_ALIASES)
    assert not missing, missing
    assert "head_count" in names and "aligned" in names and "unique" in names


def test_unique_keyword(tmp_path):
    src = tmp_path / "words.txt"
    src.write_bytes(b"b\na\nb\nc\na\n")
    stats = bigshuf.shuffle(src, tmp_path / "out.txt", unique=True, seed=1)
    assert stats.duplicates == 2 and stats.records_out == 3
    assert sorted((tmp_path / "out.txt").read_bytes().splitlines()) == [b"a", b"b", b"c"]


def test_paths_and_keywords_as_the_cli_spells_them(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b"".join(b"%d\n" % i for i in range(100)))
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle(src, out, head_count=10, seed=1)   # one Path, not its characters
    assert stats.records_out == 10 and len(out.read_bytes().splitlines()) == 10
    again = tmp_path / "again.txt"
    bigshuf.shuffle(str(src), str(again), sample=10, seed=1, temp_dir=Path(tmp_path))
    assert again.read_bytes() == out.read_bytes()


def test_mix_keyword_takes_text_or_numbers_like_the_cli(tmp_path):
    """``mix=`` is --mix: "7,3" or a sequence of numbers, the same bytes as the command line."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"".join(b"a%d\n" % i for i in range(50)))
    b.write_bytes(b"".join(b"b%d\n" % i for i in range(5)))
    outs = []
    for i, mix in enumerate(("7,3", [7, 3], (0.7, 0.3))):
        out = tmp_path / f"out{i}.txt"
        stats = bigshuf.shuffle([a, b], out, mix=mix, head_count=20, seed=2)
        assert [t["taken"] for t in stats.taken] == [14, 6]
        outs.append(out.read_bytes())
    cli = tmp_path / "cli.txt"
    r = invoke(["shuffle", str(a), str(b), "--mix", "7,3", "-n", "20", "--seed", "2", "-o", str(cli)])
    assert r.returncode == 0
    assert outs[0] == outs[1] == outs[2] == cli.read_bytes()
