"""Writing prediction rows back in the input's format, with new vectors and the predicted class.

Writing keeps every input field in input order; the (adjusted) vector is written back in place,
and the predicted class is added under ``pred`` (``PRED_KEY``; class name when class names are
known, index otherwise). Outputs are atomic (``bigshuf.common.output``): a temporary file beside
the destination is renamed over it at the end, and stdout receives nothing until the whole
output is complete.

JSONL rows are serialised with orjson (compact separators; floats in shortest round-trip form,
so every value reads back exactly); a row orjson cannot write (an integer beyond 64 bits, a lone
surrogate) falls back to the standard library.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np
import orjson

from bigshuf.common.errors import describe_os_error
from bigshuf.common.output import atomic_output, atomic_path
from bigshuf.predict.defaults import PRED_KEY
from bigshuf.predict.formats import PROBS_OUT_KEY
from bigshuf.predict.outputs import RunOutputs
from bigshuf.predict.reading import Chunk, PredictionFile, parse_json_line

_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def has_long_integer(raw: bytes) -> bool:
    """Does the line hold a run of 19+ digits, i.e. maybe an integer beyond 64 bits, which orjson
    reads as a float? (A translate and a substring search: 10x faster than a regex per line.)"""
    return _LONG_RUN in raw.translate(_DIGITS_AS_ZERO)


def dump_json_line(rec: Any) -> bytes:
    """One JSONL row: orjson (numpy arrays included), else the standard library."""
    try:
        return orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # orjson.JSONEncodeError: a huge integer, a lone surrogate
        text = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=_tolist)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(rec, separators=(",", ":"), default=_tolist).encode("ascii")


def _tolist(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


class PredictionWriter:
    """Writes rows back in the input's format with new vectors and the predicted class.

    Output format follows the input (JSONL/CSV/TSV); ``.npy`` input is written as JSONL rows
    ``{"probs": [...], "label": ..., "pred": ...}`` unless the destination ends in ``.npy``,
    which gets the vectors (``bigshuf can``) or the predicted indices (``bigshuf threshold``).
    """

    def __init__(self, dest: Optional[str], source: PredictionFile, *, pred_key: str = PRED_KEY,
                 vectors: bool = True, outputs: Optional[RunOutputs] = None):
        self.dest = dest
        self.outputs = outputs  # the run's output set: published with its other outputs
        self.layout = source.layout
        self.names = source.label_map
        self.pred_key = pred_key
        self.vectors = vectors
        self.npy = dest is not None and dest != "-" and dest.lower().endswith(".npy")
        self.rows = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "PredictionWriter":
        lay = self.layout
        if self.npy:
            assert self.dest is not None
            self._npy_tmp = self.outputs.temp_path("-o", self.dest) if self.outputs else \
                self._stack.enter_context(atomic_path(self.dest))
            self._raw = self._stack.enter_context(tempfile.TemporaryFile())
            self._width = lay.width if self.vectors else 0
        else:
            self._out = self.outputs.file("-o", self.dest) if self.outputs else \
                self._stack.enter_context(atomic_output(self.dest))
            if lay.fmt in ("csv", "tsv"):
                self._text = io.TextIOWrapper(self._out, encoding="utf-8", newline="")
                self._stack.callback(self._text.detach)
                header = list(lay.header or ())
                if self.vectors and lay.logits:
                    header += [f"prob_{self.names.name(j)}" for j in range(lay.width)]
                self._pred_col = header.index(self.pred_key) if self.pred_key in header else len(header)
                if self._pred_col == len(header):
                    header.append(self.pred_key)
                self._text.write(_csv_line(header, lay.delimiter) + "\n")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self.npy:
                    try:
                        self._finish_npy()
                    except OSError as err:
                        raise describe_os_error(err, f"writing {self.dest}") from None
                elif self.layout.fmt in ("csv", "tsv"):
                    self._text.flush()
        finally:
            self._stack.__exit__(exc_type, exc, tb)

    def write(self, chunk: Chunk, preds: np.ndarray, vectors: Optional[np.ndarray] = None,
              changed: Optional[np.ndarray] = None) -> None:
        """Write ``chunk``'s rows with predicted classes ``preds`` (multi-label: a boolean
        ``n x m`` matrix, written as lists); rows where ``changed`` is true get their vector
        replaced by the matching row of ``vectors``."""
        n = len(chunk)
        self.rows += n
        if changed is None:
            changed = np.zeros(n, dtype=bool) if vectors is None else np.ones(n, dtype=bool)
        if self.npy:
            self._write_npy(chunk, preds, vectors, changed)
            return
        names = self._names(preds)
        if self.layout.fmt in ("csv", "tsv"):
            self._write_csv(chunk, names, vectors, changed)
        else:
            self._write_jsonl(chunk, names, vectors, changed)

    def _names(self, preds: np.ndarray) -> List[Any]:
        name = self.names.name
        if preds.ndim == 2:
            return [[name(int(j)) for j in np.flatnonzero(row)] for row in preds]
        if self.names.classes:
            return [name(int(p)) for p in preds]
        return preds.tolist()

    def _write_npy(self, chunk: Chunk, preds: np.ndarray, vectors: Optional[np.ndarray],
                   changed: np.ndarray) -> None:
        if self.vectors:
            out = chunk.values.copy()
            if vectors is not None:
                out[changed] = vectors[changed]
            self._raw.write(np.ascontiguousarray(out, dtype="<f8").tobytes())
        else:
            dtype = "|b1" if preds.ndim == 2 else "<i8"
            self._raw.write(np.ascontiguousarray(preds, dtype=dtype).tobytes())
        self._npy_extra = preds.shape[1:] if not self.vectors else ()

    def _write_jsonl(self, chunk: Chunk, names: List[Any], vectors: Optional[np.ndarray],
                     changed: np.ndarray) -> None:
        lay = self.layout
        new_vectors = vectors if self.vectors else None
        splice = chunk.raw is not None and lay.key is not None and not (self.vectors and lay.logits)
        tail: Dict[Any, bytes] = {}
        key = dump_json_line(self.pred_key)
        if splice and names and not isinstance(names[0], list):
            joined = b"\n".join(chunk.raw)  # type: ignore[arg-type]
            if key not in joined and b"\\" not in joined:
                self._splice_jsonl(chunk, names, new_vectors, changed, key)
                return
        out = []
        for i in range(len(chunk)):
            new = new_vectors[i] if new_vectors is not None and changed[i] else None  # orjson writes numpy
            if splice and new is None and key not in chunk.raw[i] and b"\\" not in chunk.raw[i]:  # type: ignore[index]
                # an unchanged object without that key: its line as read, the class spliced in
                # before the closing "}" (no backslash: no escaped spelling of the key either)
                name = names[i]
                end = tail.get(name) if not isinstance(name, list) else None
                if end is None:
                    end = b"," + key + b":" + dump_json_line(name) + b"}"
                    if not isinstance(name, list):
                        tail[name] = end
                line = chunk.raw[i].rstrip()  # type: ignore[index]
                out.append(line[:-1] + end)
                continue
            rec = chunk.records[i] if chunk.records is not None else None
            if chunk.raw is not None and isinstance(rec, dict) and has_long_integer(chunk.raw[i]):
                rec = json.loads(chunk.raw[i])  # orjson reads integers beyond 64 bits as floats
            if isinstance(rec, dict):
                if self.vectors and lay.logits:
                    rec[PROBS_OUT_KEY] = new if new is not None else chunk.values[i]
                elif new is not None:
                    rec[lay.key] = dict(zip(lay.classes or (), new)) if lay.dict_vector else new
            else:
                rec = self._wrap(chunk, i, rec, new)
            rec[self.pred_key] = names[i]
            out.append(dump_json_line(rec))
        out.append(b"")
        self._out.write(b"\n".join(out))

    def _splice_jsonl(self, chunk: Chunk, names: List[Any], new_vectors: Optional[np.ndarray],
                      changed: np.ndarray, key: bytes) -> None:
        """``_write_jsonl`` for a chunk of objects none of which holds the class key or a
        backslash: every unchanged row is its line as read with the class spliced in before the
        closing "}", in one list comprehension; the changed rows are written as in the loop."""
        tails = {name: b"," + key + b":" + dump_json_line(name) + b"}" for name in set(names)}
        raw: List[bytes] = chunk.raw  # type: ignore[assignment]
        out = [line.rstrip()[:-1] + tails[name] for line, name in zip(raw, names)]
        if new_vectors is not None:
            for i in np.flatnonzero(changed).tolist():
                rec: Dict[str, Any] = chunk.records[i] if chunk.records is not None else parse_json_line(raw[i])
                if has_long_integer(raw[i]):
                    rec = json.loads(raw[i])  # orjson reads integers beyond 64 bits as floats
                lay = self.layout
                assert lay.key is not None
                rec[lay.key] = dict(zip(lay.classes or (), new_vectors[i])) if lay.dict_vector else new_vectors[i]
                rec[self.pred_key] = names[i]
                out[i] = dump_json_line(rec)
        out.append(b"")
        self._out.write(b"\n".join(out))

    def _wrap(self, chunk: Chunk, i: int, rec: Any, new: Optional[List[float]]) -> dict:
        """Bare arrays / numbers / .npy rows have no place for a class: wrap them in an object."""
        lay = self.layout
        if lay.scalar:
            value = rec if rec is not None else float(chunk.values[i])
            wrapped = {"score": value}
        else:
            orig = rec if rec is not None and not lay.logits else chunk.values[i]
            wrapped = {PROBS_OUT_KEY: new if new is not None else orig}
        if chunk.records is None and chunk.labels[i] >= 0:
            if chunk.targets is not None:
                wrapped["label"] = [self.names.name(int(j)) for j in np.flatnonzero(chunk.targets[i])]
            else:
                wrapped["label"] = self.names.name(int(chunk.labels[i]))
        return wrapped

    def _write_csv(self, chunk: Chunk, names: List[Any], vectors: Optional[np.ndarray],
                   changed: np.ndarray) -> None:
        """Rows of a file without quotes (``chunk.raw`` holds its lines) are joined directly:
        unchanged ones are copied as read with the class appended; any field that would need
        quoting sends its row through the csv module."""
        lay = self.layout
        cols = lay.columns or []
        delim = lay.delimiter
        new_vectors = vectors if self.vectors else None
        out: List[str] = []
        for i, rec in enumerate(chunk.records or ()):
            name = names[i]
            name = ";".join(map(str, name)) if isinstance(name, list) else str(name)  # multi-label: a;b
            new = new_vectors[i] if new_vectors is not None and changed[i] else None
            if chunk.raw is not None and new is None and not (self.vectors and lay.logits) \
                    and self._pred_col == len(rec) and _plain(name, delim):
                out.append(chunk.raw[i] + delim + name)
                continue
            row = list(rec)
            if self.vectors and lay.logits:
                row += [repr(v) for v in (new if new is not None else chunk.values[i]).tolist()]
            elif new is not None:
                for c, v in zip(cols, new.tolist()):
                    row[c] = repr(v)
            if self._pred_col == len(row):
                row.append(name)
            else:
                row[self._pred_col] = name
            out.append(delim.join(row) if all(_plain(f, delim) for f in row) else _csv_line(row, delim))
        out.append("")
        self._text.write("\n".join(out))

    def _finish_npy(self) -> None:
        extra = getattr(self, "_npy_extra", ())
        if self._width:
            shape, descr = (self.rows, self._width), "<f8"
        else:
            shape, descr = (self.rows, *extra), "|b1" if extra else "<i8"
        self._raw.seek(0)
        with open(self._npy_tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
            shutil.copyfileobj(self._raw, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())


def _plain(field: str, delim: str) -> bool:
    """A CSV field that needs no quoting."""
    return delim not in field and '"' not in field and "\n" not in field and "\r" not in field


def _csv_line(row: List[str], delim: str) -> str:
    """One row formatted by the csv module (quoting as needed), without its line end. The
    writer's line end is \r\n so that it quotes fields holding either character (it quotes
    only the characters of its line terminator), then the line end is cut off."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=delim, lineterminator="\r\n").writerow(row)
    return buf.getvalue()[:-2]
