"""Prediction-file I/O: every format, label handling, bad rows, writing back, atomic output."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bigshuf.common.errors import InputError, UsageError
from bigshuf.common.output import atomic_output
from bigshuf.predict.formats import parse_classes, softmax
from bigshuf.predict.reading import PredictionFile, read_predictions
from bigshuf.predict.writing import PredictionWriter


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def jsonl(path: Path, rows) -> str:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def rewrite(src: str, dest: str, preds, vectors=None, changed=None, **options) -> None:
    with PredictionFile(src, **options) as pf, PredictionWriter(dest, pf, vectors=vectors is not None) as w:
        start = 0
        for chunk in pf.chunks():
            n = len(chunk)
            w.write(chunk, np.asarray(preds[start:start + n]),
                    None if vectors is None else np.asarray(vectors[start:start + n]),
                    None if changed is None else np.asarray(changed[start:start + n]))
            start += n


# -- reading -----------------------------------------------------------------------------------

def test_jsonl_objects_find_vector_and_label_keys(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"id": 1, "probabilities": [0.2, 0.8], "gold": 1},
                                        {"id": 2, "probabilities": [0.6, 0.4], "gold": None}])
    p = read_predictions(path)
    assert p.layout.key == "probabilities" and p.layout.label_key == "gold"
    np.testing.assert_array_equal(p.values, [[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_array_equal(p.labels, [1, -1])  # null label: unlabelled row


def test_explicit_keys_and_blank_lines(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"out": [1, 3], "y_gold": 0}\n\n{"out": [2, 2], "y_gold": 1}\n')
    p = read_predictions(path, key="out", label_key="y_gold")
    np.testing.assert_array_equal(p.values, [[1, 3], [2, 2]])
    np.testing.assert_array_equal(p.lines, [1, 3])


def test_bare_arrays_and_bare_scores(tmp_path):
    assert read_predictions(write(tmp_path / "a.jsonl", "[0.1, 0.9]\n[0.5, 0.5]\n")).values.shape == (2, 2)
    scores = read_predictions(write(tmp_path / "s.jsonl", "0.3\n-1.5\n"))
    assert scores.layout.scalar and scores.values.tolist() == [0.3, -1.5]


def test_dict_vectors_give_class_names_and_named_labels(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"probs": {"cat": 0.3, "dog": 0.7}, "label": "dog"},
                                        {"probs": {"dog": 0.1, "cat": 0.9}, "label": "cat"}])
    p = read_predictions(path)
    assert p.classes == ["cat", "dog"]
    np.testing.assert_allclose(p.values, [[0.3, 0.7], [0.9, 0.1]])  # keyed by name, not position
    np.testing.assert_array_equal(p.labels, [1, 0])


def test_logits_key_is_softmaxed(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"logits": [0.0, np.log(3.0)]}])
    p = read_predictions(path)
    assert p.layout.logits
    np.testing.assert_allclose(p.values, [[0.25, 0.75]])
    forced = read_predictions(jsonl(tmp_path / "q.jsonl", [{"probs": [-1.0, 1.0]}]), logits=True)
    np.testing.assert_allclose(forced.values, softmax(np.array([[-1.0, 1.0]])))


def test_csv_prefix_columns_class_names_and_quoted_fields(tmp_path):
    path = write(tmp_path / "p.csv", 'id,text,prob_cat,prob_dog,label\n1,"a, b",0.2,0.8,dog\n2,x,0.6,0.4,0\n')
    p = read_predictions(path)
    assert p.classes == ["cat", "dog"]
    np.testing.assert_array_equal(p.values, [[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_array_equal(p.labels, [1, 0])  # a name and an index both work


def test_tsv_logit_columns(tmp_path):
    path = write(tmp_path / "p.tsv", "logit_a\tlogit_b\n0\t0\n")
    p = read_predictions(path)
    assert p.layout.logits and p.classes == ["a", "b"]
    np.testing.assert_allclose(p.values, [[0.5, 0.5]])


def test_csv_explicit_column_list_and_score_column(tmp_path):
    path = write(tmp_path / "p.csv", "x,y,z\n0.1,0.9,5\n")
    np.testing.assert_array_equal(read_predictions(path, key="y,x").values, [[0.9, 0.1]])
    scored = read_predictions(write(tmp_path / "s.csv", "id,score,label\n1,0.7,1\n"))
    assert scored.layout.scalar and scored.values.tolist() == [0.7]


def test_npy_with_label_file_and_class_names(tmp_path):
    np.save(tmp_path / "p.npy", np.array([[0.1, 0.9], [0.7, 0.3]]))
    write(tmp_path / "labels.txt", "b\na\n")
    p = read_predictions(str(tmp_path / "p.npy"), labels=str(tmp_path / "labels.txt"), classes="a,b")
    np.testing.assert_array_equal(p.labels, [1, 0])
    with pytest.raises(InputError, match="has 1 labels"):
        write(tmp_path / "short.txt", "a\n")
        read_predictions(str(tmp_path / "p.npy"), labels=str(tmp_path / "short.txt"), classes="a,b")


def test_stdin_is_sniffed_and_can_be_read_twice(tmp_path, monkeypatch):
    import io
    import sys
    data = b'{"probs": [0.3, 0.7]}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with PredictionFile("-") as pf:
        assert pf.fmt == "jsonl" and pf.name == "<stdin>"
        assert sum(len(c) for c in pf.chunks()) == sum(len(c) for c in pf.chunks()) == 1


def test_parse_classes_sources(tmp_path):
    assert parse_classes("a, b,c") == ["a", "b", "c"]
    assert parse_classes(write(tmp_path / "names.txt", "x\ny\n")) == ["x", "y"]
    with pytest.raises(UsageError):
        parse_classes("a,a")


def test_chunks_stream_in_order(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"probs": [i, 1]} for i in range(10)])
    with PredictionFile(path) as pf:
        chunks = list(pf.chunks(size=3))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert np.concatenate([c.values[:, 0] for c in chunks]).tolist() == list(range(10))



def test_class_names_of_wrong_count_are_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="3 class names"):
        read_predictions(jsonl(tmp_path / "p.jsonl", [{"probs": [0.5, 0.5]}]), classes="a,b,c")


# -- writing ---------------------------------------------------------------------------------------

def test_jsonl_rows_keep_fields_in_order_and_add_pred(tmp_path):
    src = write(tmp_path / "in.jsonl", '{"z": 1, "probs": [0.1, 0.9], "a": "x", "label": 0}\n'
                                       '{"z": 2, "probs": [0.4, 0.6], "a": "y", "label": 1}\n')
    dest = tmp_path / "out.jsonl"
    rewrite(src, str(dest), [1, 0], vectors=[[9, 9], [0.7, 0.3]], changed=[False, True])
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert list(rows[0]) == ["z", "probs", "a", "label", "pred"]
    assert rows[0]["probs"] == [0.1, 0.9]  # unchanged row keeps its exact input values
    assert rows[1]["probs"] == [0.7, 0.3] and rows[1]["pred"] == 0


def test_class_names_are_written_as_pred(tmp_path):
    src = jsonl(tmp_path / "in.jsonl", [{"probs": {"cat": 0.3, "dog": 0.7}}])
    dest = tmp_path / "out.jsonl"
    rewrite(src, str(dest), [1], vectors=[[0.6, 0.4]])
    assert json.loads(dest.read_text()) == {"probs": {"cat": 0.6, "dog": 0.4}, "pred": "dog"}


def test_bare_arrays_and_logits_get_a_probs_field(tmp_path):
    dest = tmp_path / "out.jsonl"
    rewrite(write(tmp_path / "a.jsonl", "[0.2, 0.8]\n"), str(dest), [1], vectors=[[0.3, 0.7]])
    assert json.loads(dest.read_text()) == {"probs": [0.3, 0.7], "pred": 1}
    rewrite(jsonl(tmp_path / "l.jsonl", [{"logits": [0.0, 0.0]}]), str(dest), [0], vectors=[[0.5, 0.5]],
            changed=[False])
    assert json.loads(dest.read_text()) == {"logits": [0.0, 0.0], "probs": [0.5, 0.5], "pred": 0}


def test_csv_writes_vector_in_place_and_pred_column(tmp_path):
    src = write(tmp_path / "in.csv", 'id,prob_a,prob_b,note\n1,0.2,0.8,"x, y"\n2,0.6,0.4,z\n')
    dest = tmp_path / "out.csv"
    rewrite(src, str(dest), [1, 0], vectors=[[0, 0], [0.75, 0.25]], changed=[False, True])
    assert dest.read_text() == 'id,prob_a,prob_b,note,pred\n1,0.2,0.8,"x, y",b\n2,0.75,0.25,z,a\n'


def test_npy_output_matrix_and_decisions(tmp_path):
    np.save(tmp_path / "p.npy", np.array([[0.2, 0.8], [0.6, 0.4]]))
    src = str(tmp_path / "p.npy")
    rewrite(src, str(tmp_path / "v.npy"), [1, 0], vectors=[[0, 0], [0.9, 0.1]], changed=[False, True])
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), [[0.2, 0.8], [0.9, 0.1]])
    rewrite(src, str(tmp_path / "d.npy"), [1, 0])
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), [1, 0])
    rewrite(src, str(tmp_path / "rows.jsonl"), [1, 0])
    assert json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[1]) == {"probs": [0.6, 0.4], "pred": 0}


def test_atomic_output_leaves_destination_untouched_on_failure(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(str(dest)) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind
    with atomic_output(str(dest)) as f:
        f.write(b"new")
    assert dest.read_text() == "new"
