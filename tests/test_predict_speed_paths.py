"""The fast paths of issue 22's speed work give what the plain paths give: JSONL lines read in
blocks, common-shape chunks parsed as a whole, fold searches run side by side, threshold fits
beside the folds, and the in-place first-order CAN steps."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bigshuf.common.errors import InputError
from bigshuf.predict import tune as tune_module
from bigshuf.predict.can import adjust_first_order, fast_power, reference_column_sums, row_normalise, safe_div
from bigshuf.predict.formats import jsonl_line_blocks
from bigshuf.predict.reading import PredictionFile
from bigshuf.predict.tune import tune_can


def _by_lines(path: Path) -> list:
    """The definition: a Python step per line."""
    out = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw and not raw.isspace():
                out.append((lineno, raw))
    return out


@pytest.mark.parametrize("text", [
    b'\xef\xbb\xbf{"a": 1}\n\n  \n{"a": 2}\r\n{"a": 3}',  # BOM, blank lines, CRLF, no final newline
    b"\n\n" + b"".join(b'{"probs": [0.5, 0.5], "label": %d}\n' % (i % 2) for i in range(500)) + b"\t\n",
    b"\xef\xbb\xbf\n[1, 2]\n",                             # a BOM on a line of its own
])
def test_line_blocks_are_the_lines_one_by_one(tmp_path, text):
    path = tmp_path / "in.jsonl"
    path.write_bytes(text)
    for hint in (1, 64, 1 << 22):  # blocks of one line, of a few, of the whole file
        got = [pair for numbers, lines in jsonl_line_blocks(str(path), hint) for pair in zip(numbers, lines)]
        assert got == _by_lines(path)


def _rows(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [{"id": i, "probs": rng.dirichlet(np.ones(4)).round(6).tolist(), "label": int(rng.integers(0, 4))}
            for i in range(n)]


def _lines(rows: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _read(path: Path, fast: bool, monkeypatch) -> object:
    """Every chunk's values, labels, lines, records and raw lines -- or the error, as the CLI shows it."""
    with monkeypatch.context() as mp:
        if not fast:
            mp.setattr(PredictionFile, "_plain_chunk", lambda self, numbers, raws: None)
        try:
            with PredictionFile(str(path), chunk_rows=7) as pf:
                return [(c.values.tobytes(), c.labels.tolist(), c.lines.tolist(), list(c.records), c.raw)
                        for c in pf.chunks()]
        except InputError as exc:
            return str(exc)


ODD_ROWS = [
    '{"id": 9, "probs": [1, 0, 0, 0], "label": 1}',                 # integers in the vector
    '{"id": 9, "probs": [0.5, 0.5, 0, 0]}',                         # no label
    '{"id": 9, "probs": [0.5, 0.5, 0, 0], "label": null}',
    '{"id": 9, "probs": [0.5, 0.5, 0, 0], "label": "2"}',           # a label by name / index text
    '{"id": 9, "probs": [0.5, 0.5, 0, 0], "label": true}',
    '{"id": 9, "probs": [0.5, 0.5, 0, 0], "label": 7}',             # no such class
    '{"id": 9, "probs": [0.5, "0.5", 0, 0], "label": 1}',           # a numeric string
    '{"id": 9, "probs": [0.5, true, 0, 0], "label": 1}',            # a boolean
    '{"id": 9, "probs": [0.5, 0.5, 0], "label": 1}',                # short
    '{"id": 9, "probs": [0.5, 0.5, 0, NaN], "label": 1}',           # the standard library's literals
    '{"id": 9, "probs": [0.5, 0.5, 0, 1e400], "label": 1}',         # overflow
    '{"id": 9, "probs": [0.5, -0.5, 0, 1], "label": 1}',            # negative
    '{"id": 9, "probs": [0, 0, 0, 0], "label": 1}',
    '{"id": 9, "probs": [0.5, 0.5, 0, 123456789012345678901234567890], "label": 1}',
    '{"id": 9, "probs": [0.5, 0.5, 0, 0.], "label": 1}',            # not JSON
    '{"id": 9, "probs": {"a": 1}, "label": 1}',
    '[0.5, 0.5, 0, 0]',
    '{"id": 9, "probs": [0.5, 0.5, 0, 0], "label": 1',
]


@pytest.mark.parametrize("odd", ODD_ROWS)
def test_a_chunk_parsed_whole_equals_row_by_row(tmp_path, monkeypatch, odd):
    """Values (bit for bit), labels, line numbers, records, raw lines, and the first error with its
    line are the same whether chunks go through ``_plain_chunk`` or row by row."""
    rows = _lines(_rows(30, 1)).splitlines(keepends=True)
    rows.insert(17, odd + "\n")
    rows.insert(3, "\n")
    path = tmp_path / "in.jsonl"
    path.write_text("".join(rows))
    fast = _read(path, True, monkeypatch)
    assert fast == _read(path, False, monkeypatch)


def test_common_chunks_take_the_whole_chunk_path(tmp_path, monkeypatch):
    path = tmp_path / "in.jsonl"
    path.write_text(_lines(_rows(30, 2)))
    calls = []
    original = PredictionFile._plain_rows
    monkeypatch.setattr(PredictionFile, "_plain_rows", lambda self, *a: calls.append(1) or original(self, *a))
    with PredictionFile(str(path), chunk_rows=7) as pf:
        assert sum(len(c) for c in pf.chunks()) == 30
    assert calls == []


def _small_tuning(seed: int):
    rng = np.random.default_rng(seed)
    m, n = 5, 6000  # folds of 4000 rows: two rungs, whose rows and reference are drawn
    y = rng.integers(0, m, n)
    logits = rng.normal(0, 1, (n, m))
    logits[np.arange(n), y] += rng.gamma(2.0, 1.0, n)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), y


def test_fold_searches_side_by_side_give_the_results_of_running_them_in_turn(monkeypatch):
    probs, y = _small_tuning(3)
    grid = dict(taus=(0.5, 0.9), alphas=(0.5, 1.0, 3.0), iterations=(1, 2), ks=(2, 3))
    together = tune_can(probs, y, "labels", folds=3, seed=4, max_reference=6000, progress=False, **grid)
    monkeypatch.setattr(tune_module, "_folds_side_by_side", lambda *a: False)
    in_turn = tune_can(probs, y, "labels", folds=3, seed=4, max_reference=6000, progress=False, **grid)
    assert together.table == in_turn.table
    assert together.cv == in_turn.cv and together.search == in_turn.search
    assert together.best == in_turn.best and together.adopted == in_turn.adopted


def test_folds_run_in_turn_when_a_winner_could_draw_a_capped_reference():
    held = [np.arange(10), np.arange(10, 20)]
    assert tune_module._folds_side_by_side(20, held, 0)
    assert tune_module._folds_side_by_side(20, held, 10)
    assert not tune_module._folds_side_by_side(20, held, 9)


def test_in_place_first_order_steps_equal_the_formula_and_leave_their_inputs():
    rng = np.random.default_rng(5)
    for alpha in (1.0, 0.5, 2.0, 3.0):
        ref = rng.dirichlet(np.full(6, 0.4), 40)
        ref[:5, 2] = 0.0
        rows = rng.dirichlet(np.full(6, 0.7), 9)
        prior = rng.dirichlet(np.ones(6))
        prior[1] = 0.0
        ref0, rows0 = ref.copy(), rows.copy()
        sums = reference_column_sums(ref, prior, alpha, 3)
        outs = adjust_first_order(rows, sums, prior, alpha)
        assert np.array_equal(ref, ref0) and np.array_equal(rows, rows0)
        lbar, b = ref0, rows0
        for t in range(3):
            powered = lbar if alpha == 1.0 else fast_power(lbar, alpha)
            assert np.array_equal(sums[t], powered.sum(axis=0))
            lbar = row_normalise(powered * safe_div(prior, sums[t]))
            b = b if alpha == 1.0 else fast_power(b, alpha)
            b = row_normalise(b * safe_div(prior, sums[t] + b))
            assert np.array_equal(outs[t], b)
