"""Prediction files: reading probability (or logit, or score) rows, writing them back.

Formats (chosen by extension, or ``fmt``; stdin is sniffed):

* **JSONL** (``.jsonl``, ``.ndjson``, ``.json``): one JSON value per line. An object carries the
  vector under a key found automatically (``probs``, ``probabilities``, ``scores``, ``logits``, ...;
  see ``VECTOR_KEYS``) or given as ``key``, optionally as ``{"class": p, ...}``; the gold label
  under ``label``/``gold``/``target``/... or ``label_key``. A bare array ``[0.1, 0.9]`` or a bare
  number (one binary score) per line also works.
* **CSV / TSV** (``.csv``, ``.tsv``) with a header: vector columns share a prefix (``prob_cat``,
  ``prob_dog``, ... or ``logit_*``, which are softmaxed), or are named by the classes; a column
  named like ``score`` is a binary score.
* **.npy**: an ``n x m`` matrix (or ``n`` scores); labels come from a separate file.

Rows are read in chunks, so a pass over a file needs memory for one chunk only. Every bad row
raises ``InputError`` naming the file and 1-based line (the row number for ``.npy``), and the
earliest bad row in the file is the one reported.

Writing keeps every input field in input order; the (adjusted) vector is written back in place,
and the predicted class is added under ``pred`` (``PRED_KEY``; class name when class names are
known, index otherwise). Outputs are atomic: a temporary file beside the destination is renamed
over it at the end, and stdout receives nothing until the whole output is complete.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import InputError, UsageError
from bigshuf.common.output import atomic_output, atomic_path

PRED_KEY = "pred"
"""Key (JSONL) or column (CSV) under which the predicted class is written."""
PROBS_OUT_KEY = "probs"
"""Key for probabilities written for rows that had none of their own (bare arrays, .npy, logits)."""

VECTOR_KEYS = ("probs", "probabilities", "probability", "prob", "proba", "p", "pred_probs",
               "y_prob", "y_proba", "softmax", "scores", "logits", "logit")
SCALAR_KEYS = ("score", "prob", "probability", "proba", "p", "y_prob", "y_score", "logit")
LABEL_KEYS = ("label", "gold", "gold_label", "target", "y", "y_true", "true", "answer", "class")
COLUMN_PREFIXES = ("prob_", "probs_", "proba_", "p_", "score_", "logit_", "logits_")
CHUNK_ROWS = 4096

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
               ".tsv": "tsv", ".tab": "tsv", ".npy": "npy"}
FORMATS = ("jsonl", "csv", "tsv", "npy")


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _is_logit_name(name: Optional[str]) -> bool:
    return bool(name) and name.lower().startswith("logit")


def parse_classes(spec: "str | Sequence[str] | None") -> Optional[List[str]]:
    """Class names from a list, a comma-separated string, or a file (one name a line, or JSON)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if os.path.isfile(spec):
            with open(spec, encoding="utf-8") as f:
                text = f.read()
            try:
                names = json.loads(text)
            except ValueError:
                names = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            names = [s.strip() for s in spec.split(",")]
    else:
        names = list(spec)
    names = [str(n) for n in names]
    if not names or any(n == "" for n in names):
        raise UsageError(f"empty class name in class list {spec!r}")
    if len(set(names)) != len(names):
        raise UsageError("class names must be unique")
    return names


class LabelMap:
    """Turns gold labels (class indices or class names) into indices, naming bad ones."""

    def __init__(self, n_classes: int, classes: Optional[List[str]]):
        self.n_classes = n_classes
        self.classes = classes
        self._index = {c: i for i, c in enumerate(classes)} if classes else {}

    def __call__(self, value: Any, path: str, line: int) -> int:
        if value is None or value == "":
            return -1
        if isinstance(value, str):
            if value in self._index:
                return self._index[value]
            text = value.strip()
            if not text.lstrip("-").isdigit():
                known = f" (classes: {_short_list(self.classes)})" if self.classes else \
                    " (give the class names with --classes)"
                raise InputError(f"unknown label {value!r}{known}", path, line)
            value = int(text)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"label {value!r} is neither a class index nor a class name", path, line)
        if not 0 <= value < self.n_classes:
            raise InputError(f"label {value} is outside the class range 0..{self.n_classes - 1}", path, line)
        return value

    def name(self, index: int) -> Any:
        """What to write for class ``index``: its name when known, else the index."""
        return self.classes[index] if self.classes else int(index)


def _short_list(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(map(str, items[:limit]))
    return shown + (", ..." if len(items) > limit else "")


def _check_readable(path: str) -> None:
    if os.path.isdir(path):
        raise InputError("is a directory", path)
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path)


def read_label_file(path: str, label_map: LabelMap, label_key: Optional[str] = None) -> np.ndarray:
    """Labels from a file: one label per line, JSONL objects with a label key, or a .npy array."""
    _check_readable(path)
    if path.lower().endswith(".npy"):
        arr = _load_npy(path)
        if arr.ndim != 1:
            raise InputError(f"expected a 1-D array of labels, found shape {arr.shape}", path)
        return np.array([label_map(v.item(), path, i + 1) for i, v in enumerate(arr)], dtype=np.int64)
    out: List[int] = []
    for lineno, text in _text_lines(path):
        text = text.strip()
        if not text:
            continue
        value: Any = text
        if text.startswith("{"):
            obj = _loads(text, path, lineno)
            key = label_key or next((k for k in LABEL_KEYS if k in obj), None)
            if key is None or key not in obj:
                raise InputError(f"no label key ({label_key or '/'.join(LABEL_KEYS[:4])}) in object", path, lineno)
            value = obj[key]
        out.append(label_map(value, path, lineno))
    if not out:
        raise InputError("empty file (no labels)", path)
    return np.array(out, dtype=np.int64)


def _is_utf8(text: str) -> bool:
    """False if ``text`` holds bytes that were not UTF-8 (read with errors="surrogateescape", so
    the bad line itself is found: a decoding error would come from an 8 KB read-ahead chunk)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_lines(path: str, name: Optional[str] = None, strict: bool = True) -> Iterator[Tuple[int, str]]:
    """(line number, text) of a UTF-8 file; with ``strict``, a line that is not UTF-8 raises
    InputError naming ``name`` (default ``path``) and that line."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        for lineno, text in enumerate(f, 1):
            if strict and not _is_utf8(text):
                raise InputError("not valid UTF-8 text", name or path, lineno)
            yield lineno, text


def _loads(text: str, path: str, line: int) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"invalid JSON: {getattr(exc, 'msg', exc)}", path, line) from None


def _load_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a valid .npy file ({exc})", path) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise InputError("a .npy prediction file must hold numbers", path)
    return arr


@dataclass
class Layout:
    """Where the vector, the label and the class names are in a prediction file."""

    fmt: str
    width: int                                # values per row (1 for a binary score)
    scalar: bool = False                      # one score per row instead of a vector
    logits: bool = False                      # softmax is applied on reading
    classes: Optional[List[str]] = None
    key: Optional[str] = None                 # JSONL vector key; None for bare values
    dict_vector: bool = False                 # JSONL vector written as {"class": p}
    label_key: Optional[str] = None           # JSONL label key or CSV label column name
    header: Optional[List[str]] = None        # CSV header
    columns: Optional[List[int]] = None       # CSV vector columns
    label_column: Optional[int] = None        # CSV label column
    delimiter: str = ","

    @property
    def n_classes(self) -> int:
        return 2 if self.scalar else self.width


@dataclass
class Chunk:
    """A run of consecutive rows: values (probabilities after any softmax), labels (-1 when
    missing), the parsed input records (for writing back) and their 1-based line numbers."""

    values: np.ndarray
    labels: np.ndarray
    records: Optional[List[Any]]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Predictions:
    """A whole prediction file in memory (for tuning and threshold search)."""

    values: np.ndarray
    labels: np.ndarray
    layout: Layout
    path: str
    lines: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def classes(self) -> Optional[List[str]]:
        return self.layout.classes

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0


class PredictionFile:
    """A prediction file opened for any number of streaming passes (``chunks()``).

    ``-`` (stdin) is first copied to a temporary file, so it can be read twice like a file.
    """

    def __init__(self, path: str, *, fmt: Optional[str] = None, key: Optional[str] = None,
                 label_key: Optional[str] = None, classes: "str | Sequence[str] | None" = None,
                 logits: Optional[bool] = None, labels: Optional[str] = None):
        self._spool: Optional[str] = None
        if path == "-":
            self.name = "<stdin>"
            self._spool = _spool_stdin()
            self.path = self._spool
        else:
            self.name = path
            self.path = path
            _check_readable(path)
        try:
            self.fmt = self._detect_format(fmt)
            self.layout = self._detect_layout(key, label_key, parse_classes(classes), logits)
            self.label_map = LabelMap(self.layout.n_classes, self.layout.classes)
            self._labels = read_label_file(labels, self.label_map) if labels else None
            self._labels_path = labels
        except BaseException:
            self.close()
            raise

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._spool:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)
            self._spool = None

    def __enter__(self) -> "PredictionFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def classes(self) -> Optional[List[str]]:
        return self.layout.classes

    # -- detection ---------------------------------------------------------------------------
    def _detect_format(self, fmt: Optional[str]) -> str:
        if fmt and fmt != "auto":
            if fmt not in FORMATS:
                raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
            return fmt
        ext = os.path.splitext(self.name.lower())[1]
        if ext in _EXTENSIONS:
            return _EXTENSIONS[ext]
        with open(self.path, "rb") as f:
            head = f.read(1 << 16)
        if head.startswith(b"\x93NUMPY"):
            return "npy"
        first = head.lstrip().split(b"\n", 1)[0]
        if first[:1] in (b"{", b"[") or first[:1].isdigit() or first[:1] in (b"-", b"."):
            return "jsonl"
        return "tsv" if b"\t" in first else "csv"

    def _detect_layout(self, key, label_key, classes, logits) -> Layout:
        if self.fmt == "npy":
            arr = _load_npy(self.path)
            if arr.ndim not in (1, 2) or arr.shape[0] == 0:
                raise InputError("empty file (no prediction rows)" if arr.size == 0 else
                                 f"expected an n x m matrix or n scores, found shape {arr.shape}", self.name)
            lay = Layout("npy", width=1 if arr.ndim == 1 else arr.shape[1], scalar=arr.ndim == 1,
                         logits=bool(logits))
        elif self.fmt == "jsonl":
            lay = self._detect_jsonl(key, label_key, logits)
        else:
            lay = self._detect_csv(key, label_key, logits, classes)
        if classes is not None:
            if len(classes) != lay.n_classes:
                raise UsageError(f"{len(classes)} class names given, but {self.name} has "
                                 f"{lay.n_classes} classes")
            if lay.dict_vector and set(classes) != set(lay.classes or ()):
                raise UsageError(f"class names given do not match the keys in {self.name}")
            lay.classes = classes
        if lay.logits and lay.scalar:
            lay.logits = False  # a single logit is a score; the cut search works on it directly
        return lay

    def _detect_jsonl(self, key, label_key, logits) -> Layout:
        for lineno, text in _text_lines(self.path, self.name):
            if text.strip():
                first = _loads(text, self.name, lineno)
                break
        else:
            raise InputError("empty file (no prediction rows)", self.name)
        if isinstance(first, list):
            return Layout("jsonl", width=len(first), logits=bool(logits))
        if _is_number(first):
            return Layout("jsonl", width=1, scalar=True)
        if not isinstance(first, dict):
            raise InputError("expected a JSON object, array or number per line", self.name, lineno)
        if key is None:
            key = next((k for k in VECTOR_KEYS if isinstance(first.get(k), (list, dict))), None) or \
                next((k for k in SCALAR_KEYS if _is_number(first.get(k))), None)
            if key is None:
                raise InputError("no probability vector found (looked for keys "
                                 f"{', '.join(VECTOR_KEYS[:6])}, ...); give its key with --key",
                                 self.name, lineno)
        elif key not in first:
            raise InputError(f"no key {key!r} in the first row", self.name, lineno)
        if label_key is None:
            label_key = next((k for k in LABEL_KEYS if k in first and k != key), None)
        value = first[key]
        lay = Layout("jsonl", width=1, key=key, label_key=label_key,
                     logits=_is_logit_name(key) if logits is None else logits)
        if isinstance(value, dict):
            lay.dict_vector, lay.classes, lay.width = True, [str(k) for k in value], len(value)
        elif isinstance(value, list):
            lay.width = len(value)
        elif _is_number(value):
            lay.scalar = True
        else:
            raise InputError(f"value under {key!r} is not a vector or a number", self.name, lineno)
        return lay

    def _detect_csv(self, key, label_key, logits, classes) -> Layout:
        delimiter = "\t" if self.fmt == "tsv" else ","
        header = None
        for _, header in self._csv_rows(delimiter):
            break
        if not header:
            raise InputError("empty file (no header)", self.name)
        names = [h.strip() for h in header]
        lower = [h.lower() for h in names]
        lay = Layout(self.fmt, width=0, header=header, delimiter=delimiter)
        if label_key is not None:
            if label_key not in names:
                raise InputError(f"no label column {label_key!r} in the header", self.name, 1)
            lay.label_column = names.index(label_key)
        else:
            lay.label_column = next((lower.index(k) for k in LABEL_KEYS if k in lower), None)
        if lay.label_column is not None:
            lay.label_key = names[lay.label_column]
        cols: List[int] = []
        prefix = ""
        if key is not None and "," in key:  # an explicit list of columns
            wanted = [k.strip() for k in key.split(",")]
            missing = [k for k in wanted if k not in names]
            if missing:
                raise InputError(f"no column {missing[0]!r} in the header", self.name, 1)
            cols = [names.index(k) for k in wanted]
        elif key is not None and key in names:
            cols, lay.scalar = [names.index(key)], True
        else:
            for prefix in ([key] if key is not None else COLUMN_PREFIXES):
                cols = [i for i, h in enumerate(lower) if h.startswith(prefix.lower()) and len(h) > len(prefix)
                        and i != lay.label_column]
                if cols:
                    break
            if not cols and key is None and classes:
                cols = [names.index(c) for c in classes if c in names]
                cols = cols if len(cols) == len(classes) else []
                prefix = ""
            if not cols and key is None:
                cols = [i for i, h in enumerate(lower) if h in SCALAR_KEYS][:1]
                lay.scalar = bool(cols)
            if not cols:
                what = f"columns starting with {key!r}" if key else "probability columns (prob_*, logit_*, ...)"
                raise InputError(f"no {what} in the header; give --key PREFIX or a comma list of columns",
                                 self.name, 1)
        if lay.label_column in cols:  # a column is either part of the vector or the label
            if label_key is not None:
                raise UsageError(f"column {label_key!r} cannot be both the label and a probability")
            lay.label_column = lay.label_key = None
        lay.columns = cols
        lay.width = 1 if lay.scalar else len(cols)
        if not lay.scalar and prefix:
            lay.classes = [names[i][len(prefix):] for i in cols]
        first_col = names[cols[0]] if len(cols) == 1 or not prefix else prefix
        lay.logits = _is_logit_name(first_col) if logits is None else logits
        return lay

    # -- reading -----------------------------------------------------------------------------
    def read_all(self) -> Predictions:
        """One pass into memory: all values, labels and line numbers."""
        chunks = list(self.chunks())
        return Predictions(
            values=np.concatenate([c.values for c in chunks]),
            labels=np.concatenate([c.labels for c in chunks]),
            layout=self.layout, path=self.name,
            lines=np.concatenate([c.lines for c in chunks]),
        )

    def _csv_rows(self, delimiter: str, strict: bool = True) -> Iterator[Tuple[int, List[str]]]:
        with open(self.path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            try:
                for row in reader:
                    if strict and not _is_utf8("".join(row)):
                        raise InputError("not valid UTF-8 text", self.name, reader.line_num)
                    yield reader.line_num, row
            except csv.Error as exc:
                raise InputError(f"malformed {self.fmt.upper()}: {exc}", self.name, reader.line_num) from None

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[Chunk]:
        """Stream the file in chunks of ``size`` rows; each call is a new pass."""
        total = 0
        source = {"npy": self._npy_chunks, "jsonl": self._jsonl_chunks}.get(self.fmt, self._csv_chunks)
        for chunk in source(size):
            if self._labels is not None:
                if total + len(chunk) > len(self._labels):
                    raise InputError(f"has {len(self._labels)} labels, fewer than the rows of {self.name}",
                                     self._labels_path)
                chunk.labels = self._labels[total:total + len(chunk)]
            total += len(chunk)
            yield chunk
        if total == 0:
            raise InputError("empty file (no prediction rows)", self.name)
        if self._labels is not None and total != len(self._labels):
            raise InputError(f"has {len(self._labels)} labels but {self.name} has {total} rows",
                             self._labels_path)

    def _npy_chunks(self, size: int) -> Iterator[Chunk]:
        arr = _load_npy(self.path)
        for start in range(0, arr.shape[0], size):
            values = np.array(arr[start:start + size], dtype=np.float64)
            lines = np.arange(start + 1, start + 1 + len(values))
            yield self._finish(values, np.full(len(values), -1, dtype=np.int64), None, lines)

    def _jsonl_chunks(self, size: int) -> Iterator[Chunk]:
        def parse(text: str) -> Tuple[Any, Any, Any]:
            if not _is_utf8(text):  # checked here, so earlier bad rows are reported first
                raise _Row("not valid UTF-8 text")
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise _Row(f"invalid JSON: {getattr(exc, 'msg', exc)}") from None
            return (obj, *self._jsonl_fields(obj))

        lines = ((n, text) for n, text in _text_lines(self.path, self.name, strict=False) if text.strip())
        return self._buffered(lines, parse, size)

    def _buffered(self, raw: Iterator[Tuple[int, Any]], parse, size: int) -> Iterator[Chunk]:
        """Chunks of ``size`` rows from (line, raw row) pairs; ``parse`` gives (record, vector,
        label) for a raw row or raises ``_Row``."""
        rows = _RowBuffer()
        for lineno, item in raw:
            try:
                record, vec, label = parse(item)
                rows.add(record, vec, self.label_map(label, self.name, lineno), lineno)
            except InputError as exc:
                self._row_error(rows, exc, lineno)
            if len(rows) >= size:
                yield self._build(rows)
        if len(rows):
            yield self._build(rows)

    def _jsonl_fields(self, obj: Any) -> Tuple[Any, Any]:
        lay = self.layout
        if lay.key is None:
            if lay.scalar:
                if not _is_number(obj):
                    raise _Row("expected a number like the first row")
            elif not isinstance(obj, list):
                raise _Row("expected a JSON array like the first row")
            vec = obj
        elif not isinstance(obj, dict):
            raise _Row("expected a JSON object like the first row")
        else:
            vec = self._jsonl_vector(obj)
        if not lay.scalar and len(vec) != lay.width:
            raise _Row(f"row has {len(vec)} values, but the first row has {lay.width}")
        return vec, obj.get(lay.label_key) if lay.label_key else None

    def _jsonl_vector(self, obj: Dict[str, Any]) -> Any:
        lay = self.layout
        if lay.key not in obj:
            raise _Row(f"missing key {lay.key!r}")
        vec = obj[lay.key]
        if lay.dict_vector:
            if not isinstance(vec, dict):
                raise _Row(f"{lay.key!r} is not an object of class probabilities")
            if len(vec) != lay.width or any(c not in vec for c in lay.classes):
                missing = [c for c in lay.classes if c not in vec]
                raise _Row(f"class {missing[0]!r} is missing" if missing else
                           f"row has {len(vec)} classes, expected {lay.width}")
            vec = [vec[c] for c in lay.classes]
        elif lay.scalar:
            if not _is_number(vec):
                raise _Row(f"value under {lay.key!r} is not a number")
        elif not isinstance(vec, list):
            raise _Row(f"value under {lay.key!r} is not a vector")
        return vec

    def _csv_chunks(self, size: int) -> Iterator[Chunk]:
        lay = self.layout
        n_fields = len(lay.header or ())
        cols = lay.columns or []

        def parse(rec: List[str]) -> Tuple[Any, Any, Any]:
            if not _is_utf8("".join(rec)):
                raise _Row("not valid UTF-8 text")
            if len(rec) != n_fields:
                raise _Row(f"row has {len(rec)} fields, the header has {n_fields}")
            vec = rec[cols[0]] if lay.scalar else [rec[i] for i in cols]
            return rec, vec, rec[lay.label_column] if lay.label_column is not None else None

        rows = self._csv_rows(lay.delimiter, strict=False)
        next(rows, None)  # header (checked when the layout was detected)
        return self._buffered(((n, rec) for n, rec in rows if rec), parse, size)

    def _row_error(self, rows: "_RowBuffer", exc: InputError, line: int) -> NoReturn:
        """Raise the error for row ``line`` -- after checking the rows buffered before it, so the
        earliest bad row in the file is the one reported."""
        self._build(rows)
        if isinstance(exc, _Row):
            raise InputError(exc.reason, self.name, line) from None
        raise exc

    def _build(self, rows: "_RowBuffer") -> Chunk:
        """Turn buffered rows into a checked chunk (and empty the buffer)."""
        lines = np.array(rows.lines, dtype=np.int64)
        width = self.layout.width
        expected = 1 if self.layout.scalar else 2
        try:
            values = np.array(rows.vectors, dtype=np.float64)
        except (ValueError, TypeError):
            values = None
        if values is None or values.ndim != expected:
            for vec, line in zip(rows.vectors, rows.lines):
                try:
                    ok = np.array(vec, dtype=np.float64).ndim == expected - 1
                except (ValueError, TypeError):
                    ok = False
                if not ok:
                    raise InputError("value is not a number", self.name, line)
            values = np.empty((0,) if self.layout.scalar else (0, width))
        chunk = self._finish(values, np.array(rows.labels, dtype=np.int64), rows.records, lines)
        rows.clear()
        return chunk

    def _finish(self, values: np.ndarray, labels: np.ndarray, records, lines: np.ndarray) -> Chunk:
        """Check values (finite; probabilities non-negative, not all zero) and apply softmax."""
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
            raise InputError("value is not a finite number (NaN or infinity)", self.name, int(lines[i]))
        lay = self.layout
        if lay.logits:
            values = softmax(values)
        elif not lay.scalar:
            neg = values < 0
            if neg.any():
                i = int(np.flatnonzero(neg.any(axis=1))[0])
                raise InputError(f"negative probability {float(values[i][neg[i]][0])!r} (use --logits for logits)",
                                 self.name, int(lines[i]))
            zero = values.sum(axis=1) <= 0
            if zero.any():
                raise InputError("probabilities are all zero", self.name, int(lines[np.flatnonzero(zero)[0]]))
        return Chunk(values, labels, records, lines)


class _Row(InputError):
    """A problem with the current row; the reader adds the file and line."""


class _RowBuffer:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.records: List[Any] = []
        self.vectors: List[Any] = []
        self.labels: List[int] = []
        self.lines: List[int] = []

    def add(self, record: Any, vector: Any, label: int, line: int) -> None:
        self.records.append(record)
        self.vectors.append(vector)
        self.labels.append(label)
        self.lines.append(line)

    def __len__(self) -> int:
        return len(self.lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _spool_stdin() -> str:
    fd, path = tempfile.mkstemp(prefix="bigshuf-stdin-", suffix=".tmp")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return path


def read_predictions(path: str, **options: Any) -> Predictions:
    """Read a whole prediction file into memory (options as for ``PredictionFile``)."""
    with PredictionFile(path, **options) as pf:
        return pf.read_all()


def read_json(path: str, what: str) -> Dict[str, Any]:
    """Read a JSON object (a params file), reporting problems as InputError."""
    _check_readable(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    obj = _loads(text, path, 1) if text.strip() else None
    if not isinstance(obj, dict):
        raise InputError(f"not a {what} (expected a JSON object)", path)
    return obj


class PredictionWriter:
    """Writes rows back in the input's format with new vectors and the predicted class.

    Output format follows the input (JSONL/CSV/TSV); ``.npy`` input is written as JSONL rows
    ``{"probs": [...], "label": ..., "pred": ...}`` unless the destination ends in ``.npy``,
    which gets the vectors (``bigshuf can``) or the predicted indices (``bigshuf threshold``).
    """

    def __init__(self, dest: Optional[str], source: PredictionFile, *, pred_key: str = PRED_KEY,
                 vectors: bool = True):
        self.dest = dest
        self.layout = source.layout
        self.names = source.label_map
        self.pred_key = pred_key
        self.vectors = vectors
        self.npy = bool(dest) and dest != "-" and dest.lower().endswith(".npy")
        self.rows = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "PredictionWriter":
        lay = self.layout
        if self.npy:
            self._npy_tmp = self._stack.enter_context(atomic_path(self.dest))  # type: ignore[arg-type]
            self._raw = self._stack.enter_context(tempfile.TemporaryFile())
            self._width = lay.width if self.vectors else 0
        else:
            self._out = self._stack.enter_context(atomic_output(self.dest))
            self._text = io.TextIOWrapper(self._out, encoding="utf-8", newline="")
            self._stack.callback(self._text.detach)
            if lay.fmt in ("csv", "tsv"):
                self._csv = csv.writer(self._text, delimiter=lay.delimiter, lineterminator="\n")
                header = list(lay.header or ())
                if self.vectors and lay.logits:
                    header += [f"prob_{self.names.name(j)}" for j in range(lay.width)]
                self._pred_col = header.index(self.pred_key) if self.pred_key in header else len(header)
                if self._pred_col == len(header):
                    header.append(self.pred_key)
                self._csv.writerow(header)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self.npy:
                    self._finish_npy()
                else:
                    self._text.flush()
        finally:
            self._stack.__exit__(exc_type, exc, tb)

    def write(self, chunk: Chunk, preds: np.ndarray, vectors: Optional[np.ndarray] = None,
              changed: Optional[np.ndarray] = None) -> None:
        """Write ``chunk``'s rows with predicted classes ``preds``; rows where ``changed`` is
        true get their vector replaced by the matching row of ``vectors``."""
        n = len(chunk)
        self.rows += n
        if changed is None:
            changed = np.zeros(n, dtype=bool) if vectors is None else np.ones(n, dtype=bool)
        if self.npy:
            if self.vectors:
                out = chunk.values.copy()
                out[changed] = vectors[changed]
                self._raw.write(np.ascontiguousarray(out, dtype="<f8").tobytes())
            else:
                self._raw.write(np.asarray(preds, dtype="<i8").tobytes())
            return
        lay = self.layout
        names = [self.names.name(int(p)) for p in preds]
        if lay.fmt in ("csv", "tsv"):
            self._write_csv(chunk, names, vectors, changed)
        else:
            self._write_jsonl(chunk, names, vectors, changed)

    def _write_jsonl(self, chunk: Chunk, names: List[Any], vectors, changed) -> None:
        lay = self.layout
        out = []
        for i in range(len(chunk)):
            rec = chunk.records[i] if chunk.records is not None else None
            new = vectors[i].tolist() if self.vectors and changed[i] else None
            if isinstance(rec, dict):
                if self.vectors and lay.logits:
                    rec[PROBS_OUT_KEY] = new if new is not None else chunk.values[i].tolist()
                elif new is not None:
                    rec[lay.key] = dict(zip(lay.classes, new)) if lay.dict_vector else new
            else:
                # bare arrays / numbers / .npy rows have no place for a class: wrap them in an object
                if lay.scalar:
                    value = rec if rec is not None else float(chunk.values[i])
                    rec = {"score": value}
                else:
                    orig = rec if rec is not None and not lay.logits else chunk.values[i].tolist()
                    rec = {PROBS_OUT_KEY: new if new is not None else orig}
                if chunk.records is None and chunk.labels[i] >= 0:
                    rec["label"] = self.names.name(int(chunk.labels[i]))
            rec[self.pred_key] = names[i]
            out.append(json.dumps(rec, ensure_ascii=False))
        out.append("")
        self._text.write("\n".join(out))

    def _write_csv(self, chunk: Chunk, names: List[Any], vectors, changed) -> None:
        lay = self.layout
        cols = lay.columns or []
        for i, rec in enumerate(chunk.records or ()):
            row = list(rec)
            if self.vectors:
                vec = vectors[i] if changed[i] else chunk.values[i]
                if lay.logits:
                    row += [repr(float(v)) for v in vec]
                elif changed[i]:
                    for c, v in zip(cols, vec):
                        row[c] = repr(float(v))
            if self._pred_col == len(row):
                row.append(names[i])
            else:
                row[self._pred_col] = names[i]
            self._csv.writerow(row)

    def _finish_npy(self) -> None:
        shape = (self.rows, self._width) if self._width else (self.rows,)
        descr = "<f8" if self._width else "<i8"
        self._raw.seek(0)
        with open(self._npy_tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
            shutil.copyfileobj(self._raw, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
