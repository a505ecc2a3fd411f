"""The Python API of the prediction commands: the CLI's names as keywords, paths as str or Path,
and the layering (predict never imports the shuffler, and the other way round)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import click
import numpy as np
import pytest

import bigshuf
from bigshuf.cli import main
from bigshuf.common.errors import UsageError
from bigshuf.predict.options import KEYWORD_ALIASES, CanOptions, ThresholdOptions

ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, n: int = 60, m: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, m, n)
    logits = rng.normal(size=(n, m))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    path.write_text("".join(json.dumps({"probs": r.tolist(), "label": int(c)}) + "\n" for r, c in zip(p, y)))
    return path


@pytest.mark.parametrize("command,options", [("can", CanOptions), ("threshold", ThresholdOptions)])
def test_every_cli_option_is_a_python_keyword(command, options):
    cmd = main.get_command(click.Context(main), command)
    names = set(options.names()) | {"quiet"}  # -q only silences the CLI's report
    for param in cmd.params:
        assert param.name in names, f"--{param.name} of {command} has no Python keyword"
        if isinstance(param, click.Option):
            long = [o for o in param.opts if o.startswith("--")][0][2:].replace("-", "_")
            assert long == param.name, f"{command} {long}: the keyword should be the long option name"


def test_paths_may_be_path_objects(tmp_path):
    dev = _write(tmp_path / "dev.jsonl")
    report = bigshuf.threshold(dev, tmp_path / "out.jsonl", save_params=tmp_path / "w.json", cv=2)
    assert report.mode == "multiclass" and (tmp_path / "out.jsonl").exists()
    applied = bigshuf.threshold(dev, tmp_path / "out2.jsonl", params=tmp_path / "w.json")
    assert applied.rows == 60
    out = bigshuf.can(dev, tmp_path / "can.jsonl", prior="uniform", report=tmp_path / "r.json", top_k=2,
                      uncertainty="top-k")
    assert out.params["k"] == 2 and json.loads((tmp_path / "r.json").read_text())["rows"] == 60
    assert len(bigshuf.read_predictions(dev).values) == 60


def test_old_keywords_are_aliases(tmp_path):
    dev = _write(tmp_path / "dev.jsonl")
    new = bigshuf.can(dev, tmp_path / "a.jsonl", prior="uniform", top_k=2, uncertainty="any-k", format="jsonl")
    old = bigshuf.can(dev, tmp_path / "b.jsonl", prior="uniform", k=2, rule="any-k", fmt="jsonl")
    assert new.params == old.params
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert bigshuf.threshold(dev, folds=3).cv == bigshuf.threshold(dev, cv=3).cv
    with pytest.raises(UsageError, match="'k' and 'top_k' are the same option"):
        bigshuf.can(dev, k=2, top_k=3)
    assert set(KEYWORD_ALIASES.values()) <= set(CanOptions.names())


def _imports(package: str) -> set:
    found = set()
    for path in (ROOT / "bigshuf" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add((path.name, node.module))
            elif isinstance(node, ast.Import):
                found.update((path.name, a.name) for a in node.names)
    return found


def test_predict_and_shuffler_do_not_import_each_other():
    assert not [i for i in _imports("predict") if i[1].startswith(("bigshuf.shuffler", "bigshuf.cli"))]
    assert not [i for i in _imports("shuffler") if i[1].startswith(("bigshuf.predict", "bigshuf.cli"))]
    assert not [i for i in _imports("common") if i[1].startswith(("bigshuf.predict", "bigshuf.cli"))]
