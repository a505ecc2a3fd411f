"""Prediction-file formats: which format a file is in and where the vector, label and class
names are (the ``Layout``), plus the small text/JSON/.npy helpers reading and writing share.

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

Reading is in ``reading.py``, writing in ``writing.py``.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.errors import InputError, UsageError
from bigshuf.predict.defaults import FORMATS

PROBS_OUT_KEY = "probs"
"""Key for probabilities written for rows that had none of their own (bare arrays, .npy, logits)."""

VECTOR_KEYS = ("probs", "probabilities", "probability", "prob", "proba", "p", "pred_probs",
               "y_prob", "y_proba", "softmax", "scores", "logits", "logit")
SCALAR_KEYS = ("score", "prob", "probability", "proba", "p", "y_prob", "y_score", "logit")
LABEL_KEYS = ("label", "labels", "gold", "gold_label", "target", "y", "y_true", "true", "answer", "class")
COLUMN_PREFIXES = ("prob_", "probs_", "proba_", "p_", "score_", "logit_", "logits_")
CHUNK_ROWS = 4096

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
               ".tsv": "tsv", ".tab": "tsv", ".npy": "npy"}


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def is_logit_name(name: Optional[str]) -> bool:
    return name is not None and name.lower().startswith("logit")


def parse_classes(spec: "str | Sequence[str] | None") -> Optional[List[str]]:
    """Class names from a list, a comma-separated string, or a file (one name a line, or JSON)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if os.path.isfile(spec):
            with open(spec, encoding="utf-8-sig") as f:
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
        if isinstance(value, list) or (isinstance(value, str) and value.strip().startswith("[")):
            raise InputError(f"label {value!r} is a list: multi-label data needs bigshuf threshold --multi-label",
                             path, line)
        if isinstance(value, str):
            if value in self._index:
                return self._index[value]
            text = value.strip()
            if not text.lstrip("-").isdigit():
                known = f" (classes: {short_list(self.classes)})" if self.classes else \
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

    def many(self, value: Any, path: str, line: int) -> Optional[List[int]]:
        """A multi-label row's label set as sorted class indices (None: unlabelled). A JSON
        list, or text: a JSON list or labels separated by ``;``, ``|``, ``,`` or spaces (an
        empty text is the empty set: a CSV row with no label)."""
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = loads_json(text, path, line)
            else:
                value = [v for v in re.split(r"[;|,\s]+", text) if v]
        if not isinstance(value, list):
            value = [value]
        out = set()
        for v in value:
            if v is None or v == "":
                raise InputError(f"empty label in the label list {value!r}", path, line)
            out.add(self(v, path, line))
        return sorted(out)

    def name(self, index: int) -> Any:
        """What to write for class ``index``: its name when known, else the index."""
        return self.classes[index] if self.classes else int(index)


def short_list(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(map(str, items[:limit]))
    return shown + (", ..." if len(items) > limit else "")


def is_utf8(text: str) -> bool:
    """False if ``text`` holds bytes that were not UTF-8 (read with errors="surrogateescape", so
    the bad line itself is found: a decoding error would come from an 8 KB read-ahead chunk)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_lines(path: str, name: Optional[str] = None, strict: bool = True) -> Iterator[Tuple[int, str]]:
    """(line number, text) of a UTF-8 file; with ``strict``, a line that is not UTF-8 raises
    InputError naming ``name`` (default ``path``) and that line."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        for lineno, text in enumerate(f, 1):
            if strict and not is_utf8(text):
                raise InputError("not valid UTF-8 text", name or path, lineno)
            yield lineno, text


def loads_json(text: str, path: str, line: int) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"invalid JSON: {getattr(exc, 'msg', exc)}", path, line) from None


def load_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a valid .npy file ({exc})", path) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise InputError("a .npy prediction file must hold numbers", path)
    return arr


def npy_row_blocks(path: str, rows: int) -> Iterator[Tuple[int, np.ndarray]]:
    """(first row, block of up to ``rows`` rows) of a .npy file, read with plain reads so that
    only one block is resident (a memory map keeps every touched page in RSS)."""
    arr = load_npy(path)
    if arr.flags.f_contiguous and arr.ndim == 2 and not arr.flags.c_contiguous:
        for start in range(0, arr.shape[0], rows):  # Fortran order: rows are not contiguous
            yield start, np.array(arr[start:start + rows])
        return
    shape, dtype, offset = arr.shape, arr.dtype, int(arr.offset)  # type: ignore[attr-defined]  # np.memmap
    del arr
    width = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    with open(path, "rb") as f:
        f.seek(offset)
        for start in range(0, shape[0], rows):
            n = min(rows, shape[0] - start)
            block = np.fromfile(f, dtype=dtype, count=n * width)
            if block.size != n * width:
                raise InputError("truncated .npy file", path)
            yield start, block.reshape((n, *shape[1:]))


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
    multi_label: bool = False                 # labels are lists; values independent per class

    @property
    def n_classes(self) -> int:
        return 2 if self.scalar else self.width




def fields_used(lay: Layout, vectors: bool) -> List[str]:
    """The JSONL keys / CSV columns a run reads or writes besides the predicted class: the
    vector, the gold label, the ``probs`` (``prob_*``) written for logits when ``vectors`` are
    written, and the keys a bare row is wrapped in."""
    if lay.fmt in ("csv", "tsv"):
        header = [h.strip() for h in lay.header or ()]
        used = [header[c] for c in lay.columns or ()]
        if lay.label_column is not None:
            used.append(header[lay.label_column])
        if vectors and lay.logits:
            names = lay.classes or [str(j) for j in range(lay.width)]
            used += [f"prob_{n}" for n in names]
        return used
    if lay.key is None:  # bare arrays, numbers, .npy rows: written as {"probs"|"score": ..., "label": ...}
        return ["score" if lay.scalar else PROBS_OUT_KEY, "label"]
    used = [lay.key] + ([lay.label_key] if lay.label_key else [])
    if vectors and lay.logits:
        used.append(PROBS_OUT_KEY)
    return used


def check_pred_key(lay: Layout, pred_key: str, name: str, vectors: bool) -> None:
    """--pred-key must not name a field the run reads or writes (it would replace the gold
    labels or the vector); another existing field of that name (a previous decision) is
    overwritten in place, as documented."""
    if pred_key in fields_used(lay, vectors):
        what = "column" if lay.fmt in ("csv", "tsv") else "key"
        raise UsageError(f"--pred-key {pred_key!r} is the {what} {name} holds its vector, label or probabilities "
                         "under: give another --pred-key")


def is_number(value: Any) -> bool:
    """A JSON number (not a bool, which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def csv_rows(path: str, name: str, fmt: str, strict: bool = True) -> Iterator[Tuple[int, List[str]]]:
    """(line number, fields) of a CSV/TSV file; malformed quoting (and, with ``strict``, bytes
    that are not UTF-8) raise InputError naming ``name`` and the line."""
    delimiter = "\t" if fmt == "tsv" else ","
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            for row in reader:
                if strict and not is_utf8("".join(row)):
                    raise InputError("not valid UTF-8 text", name, reader.line_num)
                yield reader.line_num, row
        except csv.Error as exc:
            raise InputError(f"malformed {fmt.upper()}: {exc}", name, reader.line_num) from None


def plain_csv(path: str) -> bool:
    """True if the file has no quote and no carriage return: then every line is one record and
    splitting it at the delimiter is exactly what the csv module would do, several times faster."""
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                return True
            if b'"' in block or b"\r" in block:
                return False


def plain_lines(path: str) -> Iterator[Tuple[int, str]]:
    """(line number, text without its newline) of a ``plain_csv`` file, blank lines skipped."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        for lineno, line in enumerate(f, 1):
            text = line[:-1] if line.endswith("\n") else line
            if text:
                yield lineno, text


BOM = b"\xef\xbb\xbf"


def jsonl_lines(path: str) -> Iterator[Tuple[int, bytes]]:
    """(line number, raw bytes) of a JSONL file, blank lines skipped. A UTF-8 byte-order mark
    at the start is dropped, as the text readers (``utf-8-sig``) drop it from CSV: one rule."""
    for numbers, lines in jsonl_line_blocks(path):
        yield from zip(numbers, lines)


def jsonl_line_blocks(path: str, hint: int = 1 << 22) -> Iterator[Tuple[Sequence[int], List[bytes]]]:
    """``jsonl_lines`` a block of about ``hint`` bytes at a time: (line numbers, raw lines), the
    same lines and numbers. The file's C ``readlines`` splits a block three times faster than a
    Python step per line (2.0 -> 0.7 s for the lines of 1M x 100 JSONL)."""
    start = 1
    with open(path, "rb") as f:
        while True:
            lines = f.readlines(hint)
            if not lines:
                return
            if start == 1 and lines[0].startswith(BOM):
                lines[0] = lines[0][len(BOM):]
            kept = [raw for raw in lines if raw and not raw.isspace()]
            if len(kept) == len(lines):
                yield range(start, start + len(lines)), lines
            else:
                yield [start + i for i, raw in enumerate(lines) if raw and not raw.isspace()], kept
            start += len(lines)


def detect_format(path: str, name: str, fmt: Optional[str]) -> str:
    """The format: ``fmt`` if given, else by the extension of ``name``, else sniffed."""
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    ext = os.path.splitext(name.lower())[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    head = head[len(BOM):] if head.startswith(BOM) else head  # the readers drop it too
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    first = head.lstrip().split(b"\n", 1)[0]
    if first[:1] in (b"{", b"[") or first[:1].isdigit() or first[:1] in (b"-", b"."):
        return "jsonl"
    return "tsv" if b"\t" in first else "csv"


def detect_layout(path: str, name: str, fmt: str, *, key: Optional[str] = None,
                  label_key: Optional[str] = None, classes: Optional[List[str]] = None,
                  logits: Optional[bool] = None) -> Layout:
    """Where the vector, label and class names are, from the first row (or the header)."""
    if fmt == "npy":
        arr = load_npy(path)
        if arr.ndim not in (1, 2) or arr.shape[0] == 0:
            raise InputError("empty file (no prediction rows)" if arr.size == 0 else
                             f"expected an n x m matrix or n scores, found shape {arr.shape}", name)
        lay = Layout("npy", width=1 if arr.ndim == 1 else arr.shape[1], scalar=arr.ndim == 1,
                     logits=bool(logits))
    elif fmt == "jsonl":
        lay = _detect_jsonl(path, name, key, label_key, logits)
    else:
        lay = _detect_csv(path, name, fmt, key, label_key, logits, classes)
    if not lay.scalar and lay.width == 0:
        raise InputError("the probability vector has no values", name)
    if classes is not None:
        if len(classes) != lay.n_classes:
            raise UsageError(f"{len(classes)} class names given, but {name} has {lay.n_classes} classes")
        if lay.dict_vector and set(classes) != set(lay.classes or ()):
            raise UsageError(f"class names given do not match the keys in {name}")
        lay.classes = classes
    if lay.logits and lay.scalar:
        lay.logits = False  # a single logit is a score; the cut search works on it directly
    return lay


def _first_json_row(path: str, name: str) -> Tuple[Any, int]:
    for lineno, text in text_lines(path, name):
        if text.strip():
            return loads_json(text, name, lineno), lineno
    raise InputError("empty file (no prediction rows)", name)


def _detect_jsonl(path: str, name: str, key: Optional[str], label_key: Optional[str],
                  logits: Optional[bool]) -> Layout:
    first, lineno = _first_json_row(path, name)
    if isinstance(first, list):
        if not first:
            raise InputError("the probability vector has no values", name, lineno)
        return Layout("jsonl", width=len(first), logits=bool(logits))
    if is_number(first):
        return Layout("jsonl", width=1, scalar=True)
    if not isinstance(first, dict):
        raise InputError("expected a JSON object, array or number per line", name, lineno)
    if key is None:
        key = next((k for k in VECTOR_KEYS if isinstance(first.get(k), (list, dict))), None) or \
            next((k for k in SCALAR_KEYS if is_number(first.get(k))), None)
        if key is None:
            raise InputError("no probability vector found (looked for keys "
                             f"{', '.join(VECTOR_KEYS[:6])}, ...); give its key with --key", name, lineno)
    elif key not in first:
        raise InputError(f"no key {key!r} in the first row", name, lineno)
    if label_key is None:
        label_key = next((k for k in LABEL_KEYS if k in first and k != key), None)
    value = first[key]
    lay = Layout("jsonl", width=1, key=key, label_key=label_key,
                 logits=is_logit_name(key) if logits is None else logits)
    if isinstance(value, (dict, list)) and not value:
        raise InputError(f"the vector under {key!r} has no values", name, lineno)
    if isinstance(value, dict):
        lay.dict_vector, lay.classes, lay.width = True, [str(k) for k in value], len(value)
    elif isinstance(value, list):
        lay.width = len(value)
    elif is_number(value):
        lay.scalar = True
    else:
        raise InputError(f"value under {key!r} is not a vector or a number", name, lineno)
    return lay


def _detect_csv(path: str, name: str, fmt: str, key: Optional[str], label_key: Optional[str],
                logits: Optional[bool], classes: Optional[List[str]]) -> Layout:
    header = next((row for _, row in csv_rows(path, name, fmt)), None)
    if not header:
        raise InputError("empty file (no header)", name)
    names = [h.strip() for h in header]
    lay = Layout(fmt, width=0, header=header, delimiter="\t" if fmt == "tsv" else ",")
    lay.label_column = _csv_label_column(names, label_key, name)
    if lay.label_column is not None:
        lay.label_key = names[lay.label_column]
    cols, prefix, lay.scalar = _csv_vector_columns(names, key, classes, lay.label_column, name)
    if lay.label_column in cols:  # a column is either part of the vector or the label
        if label_key is not None:
            raise UsageError(f"column {label_key!r} cannot be both the label and a probability")
        lay.label_column = lay.label_key = None
    dup = [names[i] for i in cols if [names[j] for j in cols].count(names[i]) > 1]
    if dup or len(set(cols)) != len(cols):
        raise InputError(f"column {(dup or [names[cols[0]]])[0]!r} appears twice among the probability "
                         "columns: each class needs its own column", name, 1)
    lay.columns = cols
    lay.width = 1 if lay.scalar else len(cols)
    if not lay.scalar and prefix:
        lay.classes = [names[i][len(prefix):] for i in cols]
    first_col = names[cols[0]] if len(cols) == 1 or not prefix else prefix
    lay.logits = is_logit_name(first_col) if logits is None else logits
    return lay


def _csv_label_column(names: List[str], label_key: Optional[str], name: str) -> Optional[int]:
    if label_key is not None:
        if label_key not in names:
            raise InputError(f"no label column {label_key!r} in the header", name, 1)
        return names.index(label_key)
    lower = [h.lower() for h in names]
    return next((lower.index(k) for k in LABEL_KEYS if k in lower), None)


def _csv_vector_columns(names: List[str], key: Optional[str], classes: Optional[List[str]],
                        label_column: Optional[int], name: str) -> Tuple[List[int], str, bool]:
    """(vector columns, their shared prefix, whether it is one score column)."""
    if key is not None and "," in key:  # an explicit list of columns
        wanted = [k.strip() for k in key.split(",")]
        missing = [k for k in wanted if k not in names]
        if missing:
            raise InputError(f"no column {missing[0]!r} in the header", name, 1)
        return [names.index(k) for k in wanted], "", False
    if key is not None and key in names:
        return [names.index(key)], "", True
    lower = [h.lower() for h in names]
    for prefix in ([key] if key is not None else COLUMN_PREFIXES):
        cols = [i for i, h in enumerate(lower) if h.startswith(prefix.lower()) and len(h) > len(prefix)
                and i != label_column]
        if cols:
            return cols, prefix, False
    if key is None and classes:
        cols = [names.index(c) for c in classes if c in names]
        if len(cols) == len(classes):
            return cols, "", False
    if key is None:
        cols = [i for i, h in enumerate(lower) if h in SCALAR_KEYS][:1]
        if cols:
            return cols, "", True
    what = f"columns starting with {key!r}" if key else "probability columns (prob_*, logit_*, ...)"
    raise InputError(f"no {what} in the header; give --key PREFIX or a comma list of columns", name, 1)
