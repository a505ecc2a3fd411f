"""Reading prediction files: streaming passes in chunks, checked row by row.

Rows are read in chunks, so a pass over a file needs memory for one chunk only. Every bad row
raises ``InputError`` naming the file and 1-based line (the row number for ``.npy``), and the
earliest bad row in the file is the one reported.

JSONL lines are parsed with orjson (about 3x the standard library on rows of 100 floats; see
docs/predictions.md). A line orjson rejects is parsed again with the standard library, so
``NaN``/``Infinity`` literals, numbers beyond 64 bits and invalid JSON get the same messages as
before (a non-finite value is then reported by the value check).
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

import numpy as np
import orjson

from bigshuf.common.errors import InputError
from bigshuf.common.inputs import check_readable, is_read_once
from bigshuf.common.tempdir import unlinked_temp_fd
from bigshuf.predict import parse_workers
from bigshuf.predict.budget import Budget
from bigshuf.predict.formats import (
    CHUNK_ROWS,
    LABEL_KEYS,
    LabelMap,
    Layout,
    csv_rows,
    detect_format,
    detect_layout,
    is_number,
    is_utf8,
    jsonl_line_blocks,
    jsonl_lines,
    load_npy,
    loads_json,
    npy_row_blocks,
    parse_classes,
    plain_csv,
    plain_lines,
    softmax,
    text_lines,
)


def read_label_file(path: str, label_map: LabelMap, label_key: Optional[str] = None,
                    multi_label: bool = False) -> Any:
    """Labels from a file: one label per line, JSONL objects with a label key, or a .npy array.

    With ``multi_label``, each line holds a list of labels (a JSON array, or names/indices
    separated by ``;``, ``|`` or spaces), or the .npy array is an n x m 0/1 matrix, and the result
    is a ``PackedLabels`` (one bit per row and class: Python lists of the sets took 400 MB for
    20 000 x 2 000 under --memory 256M)."""
    check_readable(path)
    if multi_label:
        return _packed_label_file(path, label_map, label_key)
    if path.lower().endswith(".npy"):
        arr = load_npy(path)
        if arr.ndim != 1:
            raise InputError(f"expected a 1-D array of labels, found shape {arr.shape}", path)
        return np.array([label_map(v.item(), path, i + 1) for i, v in enumerate(arr)], dtype=np.int64)
    out = [label_map(value, path, lineno) for lineno, value in _label_values(path, label_key)]
    if not out:
        raise InputError("empty file (no labels)", path)
    return np.array(out, dtype=np.int64)


def _label_values(path: str, label_key: Optional[str]) -> Iterator[Tuple[int, Any]]:
    """(line, label value) of a text label file: a line's text, or a JSON object's label key."""
    for lineno, text in text_lines(path):
        text = text.strip()
        if not text:
            continue
        value: Any = text
        if text.startswith("{"):
            obj = loads_json(text, path, lineno)
            key = label_key or next((k for k in LABEL_KEYS if k in obj), None)
            if key is None or key not in obj:
                raise InputError(f"no label key ({label_key or '/'.join(LABEL_KEYS[:4])}) in object", path, lineno)
            value = obj[key]
        yield lineno, value


class PackedLabels:
    """Label sets of n rows and m classes, one bit each; ``[a:b]`` gives rows a..b as a boolean
    matrix (what a chunk needs), ``len()`` the number of rows."""

    def __init__(self, blocks: List[np.ndarray], m: int):
        self.m = m
        self.bits = np.concatenate(blocks) if blocks else np.zeros((0, (m + 7) // 8), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.bits)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.unpackbits(self.bits[rows], axis=1, count=self.m).astype(bool)


def _packed_label_file(path: str, label_map: LabelMap, label_key: Optional[str]) -> PackedLabels:
    m = label_map.n_classes
    blocks = []
    if path.lower().endswith(".npy"):
        arr = load_npy(path)
        if arr.ndim != 2 or arr.shape[1] != m:
            raise InputError(f"expected an n x {m} array of 0/1 labels, found shape {arr.shape}", path)
        del arr
        for start, block in npy_row_blocks(path, CHUNK_ROWS):
            bad = (block != 0) & (block != 1)
            if bad.any():
                row = int(np.flatnonzero(bad.any(axis=1))[0])
                raise InputError("multi-label labels in a .npy file must be 0 or 1", path, start + row + 1)
            blocks.append(np.packbits(block != 0, axis=1))
        return PackedLabels(blocks, m)
    sets: List[Any] = []
    for lineno, value in _label_values(path, label_key):
        sets.append(label_map.many(value, path, lineno))
        if len(sets) == CHUNK_ROWS:
            blocks.append(np.packbits(_label_matrix(sets, label_map, path), axis=1))
            sets = []
    if sets:
        blocks.append(np.packbits(_label_matrix(sets, label_map, path), axis=1))
    if not blocks:
        raise InputError("empty file (no labels)", path)
    return PackedLabels(blocks, m)


def _label_matrix(sets: Sequence[Optional[List[int]]], label_map: LabelMap, path: str) -> np.ndarray:
    """Label sets as an n x m boolean matrix (a missing set leaves its row all False)."""
    out = np.zeros((len(sets), label_map.n_classes), dtype=bool)
    for i, s in enumerate(sets):
        if s:
            out[i, s] = True
    return out


@dataclass
class Chunk:
    """A run of consecutive rows: values (probabilities after any softmax), labels (-1 when
    missing), the parsed input records (for writing back) and their 1-based line numbers.
    Multi-label files also carry ``targets``, the boolean ``n x m`` matrix of label sets (a row
    with a label set has ``labels`` 1, an unlabelled row -1)."""

    values: np.ndarray
    labels: np.ndarray
    records: Optional[List[Any]]
    lines: np.ndarray
    targets: Optional[np.ndarray] = None
    raw: Optional[List[Any]] = None  # each row's line as read (JSONL bytes, plain CSV text), for copying

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Predictions:
    """A whole prediction file in memory (for tuning and threshold search)."""

    values: np.ndarray
    labels: np.ndarray
    layout: Layout
    path: str
    lines: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=np.int64))
    targets: Optional[np.ndarray] = None
    sampled_from: int = 0  # > 0: these rows are a uniform sample of that many (read_all's max_rows)

    @property
    def classes(self) -> Optional[List[str]]:
        return self.layout.classes

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0


class _Row(InputError):
    """A problem with the current row; the reader adds the file and line."""


class _RowBuffer:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.records: List[Any] = []
        self.vectors: List[Any] = []
        self.labels: List[Any] = []
        self.lines: List[int] = []
        self.raw: List[Any] = []

    def add(self, record: Any, vector: Any, label: Any, line: int, raw: Any) -> None:
        self.raw.append(raw)
        self.records.append(record)
        self.vectors.append(vector)
        self.labels.append(label)
        self.lines.append(line)

    def __len__(self) -> int:
        return len(self.lines)


def spool_stdin(source: Optional[str] = None) -> Tuple[int, str]:
    """Copy standard input (or a pipe, FIFO, ``/dev/stdin``, ``<(cmd)``: anything that can be
    read only once) to a private temporary file, so it can be read twice; returns its descriptor
    and a path to read it by. The file is unlinked at once (a named copy of private data was
    left behind by ``kill -9``) and read as ``/proc/self/fd/N``, which forked parse workers
    inherit; without ``/proc`` it keeps a name until ``close`` (descriptor -1)."""
    if os.path.isdir("/proc/self/fd"):
        fd = unlinked_temp_fd(tempfile.gettempdir())
        path = f"/proc/self/fd/{fd}"
    else:  # pragma: no cover - not Linux
        fd, path = tempfile.mkstemp(prefix="bigshuf-stdin-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            if source is None:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            else:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    except BaseException:
        _drop_spool(fd, path)
        raise
    if not path.startswith("/proc/"):  # pragma: no cover
        os.close(fd)
        fd = -1
    return fd, path


def _drop_spool(fd: int, path: str) -> None:
    with contextlib.suppress(OSError):
        if path.startswith("/proc/"):
            os.close(fd)
        else:
            os.unlink(path)


def parse_json_line(raw: bytes) -> Any:
    """One JSONL line: orjson, else the standard library (NaN literals, huge integers, and the
    same error messages as before). Raises ``_Row`` for bad text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    text = raw.decode("utf-8", errors="surrogateescape")
    if not is_utf8(text):
        raise _Row("not valid UTF-8 text")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Row(f"invalid JSON: {getattr(exc, 'msg', exc)}") from None


class PredictionFile:
    """A prediction file opened for any number of streaming passes (``chunks()``).

    ``-`` (stdin) is first copied to a temporary file, so it can be read twice like a file.
    With ``multi_label``, gold labels are lists of classes and the values independent
    probabilities in [0, 1] (sigmoid outputs), which are not renormalised.
    """

    def __init__(self, path: Any, *, fmt: Optional[str] = None, key: Optional[str] = None,
                 label_key: Optional[str] = None, classes: "str | Sequence[str] | None" = None,
                 logits: Optional[bool] = None, labels: Any = None, multi_label: bool = False,
                 chunk_rows: int = CHUNK_ROWS):
        path = os.fspath(path)
        self.chunk_rows = chunk_rows
        #: With a budget, big JSONL files are parsed on the worker processes it holds
        #: (``parse_workers``); ``workers`` caps them (None: the usable CPUs; 0: in-process).
        self.budget: Optional[Budget] = None
        self.workers: Optional[int] = None
        self.notes: List[str] = []
        labels = None if labels is None else os.fspath(labels)
        self._spool: Optional[Tuple[int, str]] = None
        self._cache: Optional[_ValueCache] = None
        if path == "-":
            self.name = "<stdin>"
            self._spool = spool_stdin()
            self.path = self._spool[1]
        else:
            self.name = path
            self.path = path
            check_readable(path)
            if is_read_once(path):  # detection reads it, then the passes: copy it once
                self._spool = spool_stdin(path)
                self.path = self._spool[1]
        try:
            self.fmt = detect_format(self.path, self.name, fmt)
            self.layout = detect_layout(self.path, self.name, self.fmt, key=key, label_key=label_key,
                                        classes=parse_classes(classes), logits=logits)
            self.layout.multi_label = multi_label
            self.label_map = LabelMap(self.layout.n_classes, self.layout.classes)
            self._labels = read_label_file(labels, self.label_map, multi_label=multi_label) if labels else None
            self._labels_path = labels
        except BaseException:
            self.close()
            raise

    def _drop_cache(self) -> None:
        if self._cache is not None:
            self._cache.file.close()
            self._cache = None

    def close(self) -> None:
        self._drop_cache()
        if self._spool:
            _drop_spool(*self._spool)
            self._spool = None

    def __enter__(self) -> "PredictionFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def classes(self) -> Optional[List[str]]:
        return self.layout.classes

    def read_all(self, max_rows: Optional[int] = None, seed: int = 0) -> Predictions:
        """One pass into memory: values, labels and line numbers (the parsed records are dropped).
        With more rows than ``max_rows``, a uniform random sample of ``max_rows`` of them, kept in
        file order (``sampled_from`` says of how many): the memory bound of a search."""
        keep = _Reservoir(max_rows, seed)
        for c in self.chunks():
            keep.add(c.values, c.labels, c.lines, c.targets)
        values, labels, lines, targets = keep.result()
        return Predictions(values=values, labels=labels, layout=self.layout, path=self.name, lines=lines,
                           targets=targets, sampled_from=keep.seen if keep.seen > len(labels) else 0)

    def chunks(self, size: Optional[int] = None, *, cache: bool = False) -> Iterator[Chunk]:
        """Stream the file in chunks of ``size`` rows; each call is a new pass. With ``cache``,
        a JSONL or quote-free CSV file's checked values are kept (in an unlinked temporary
        file) so that ``replay`` can pass over it again without parsing a number."""
        size = size or self.chunk_rows
        total = 0
        source = {"npy": self._npy_chunks, "jsonl": self._jsonl_chunks}.get(self.fmt, self._csv_chunks)
        store = _ValueCache() if cache and self._replayable() else None
        if cache:
            self._drop_cache()
            self._cache = store
        for chunk in source(size):
            if self._labels is not None:
                self._attach_labels(chunk, total)
            if store is not None:
                store.add(chunk)
            total += len(chunk)
            yield chunk
        self._check_total(total)
        if store is not None:
            store.complete = True

    def replay(self, size: Optional[int] = None) -> Iterator[Chunk]:
        """Another pass: from the cache of the last ``chunks(cache=True)`` pass if it completed
        (values, labels and lines cached; records parsed only when a row is rewritten), else a
        plain ``chunks`` pass."""
        cache = self._cache
        if cache is None or not cache.complete:
            yield from self.chunks(size)
            return
        lines = self._raw_lines()
        for values, labels, numbers, targets in cache.parts():
            raw = list(itertools.islice(lines, len(values)))
            records = _LazyRecords(raw, self.fmt, self.layout.delimiter)
            yield Chunk(values, labels, records, numbers, targets, raw)  # type: ignore[arg-type]

    def _replayable(self) -> bool:
        return self.fmt == "jsonl" or (self.fmt in ("csv", "tsv") and plain_csv(self.path))

    def _raw_lines(self) -> Iterator[Any]:
        """The rows' lines as read (no line numbers: the cache holds them)."""
        if self.fmt == "jsonl":
            return itertools.chain.from_iterable(lines for _, lines in jsonl_line_blocks(self.path))
        lines = plain_lines(self.path)
        next(lines, None)  # header
        return (line for _, line in lines)

    def _check_total(self, total: int) -> None:
        if total == 0:
            raise InputError("empty file (no prediction rows)", self.name)
        if self._labels is not None and total != len(self._labels):
            raise InputError(f"has {len(self._labels)} labels but {self.name} has {total} rows",
                             self._labels_path)

    def _attach_labels(self, chunk: Chunk, start: int) -> None:
        """Labels from the separate label file override those in the rows."""
        assert self._labels is not None
        if start + len(chunk) > len(self._labels):
            raise InputError(f"has {len(self._labels)} labels, fewer than the rows of {self.name}",
                             self._labels_path)
        part = self._labels[start:start + len(chunk)]
        if self.layout.multi_label:
            chunk.targets = part
            chunk.labels = np.ones(len(chunk), dtype=np.int64)
        else:
            chunk.labels = part

    def _npy_chunks(self, size: int) -> Iterator[Chunk]:
        """Rows read with plain reads, not a memory map: mapped pages stay resident and would
        count against --memory for the whole file."""
        for start, part in npy_row_blocks(self.path, size):
            values = np.asarray(part, dtype=np.float64)
            lines = np.arange(start + 1, start + 1 + len(values))
            yield self._finish(values, np.full(len(values), -1, dtype=np.int64), None, lines)

    def _jsonl_chunks(self, size: int) -> Iterator[Chunk]:
        lay = self.layout
        if lay.key is not None and not lay.dict_vector and not lay.scalar and not lay.multi_label:
            return self._jsonl_plain_chunks(size)

        def parse(raw: bytes) -> Tuple[Any, Any, Any]:
            obj = parse_json_line(raw)
            return (obj, *self._jsonl_fields(obj))

        return self._buffered(jsonl_lines(self.path), parse, size)

    def _jsonl_plain_chunks(self, size: int) -> Iterator[Chunk]:
        """The common shape -- objects with a list under one key, integer labels: each chunk's
        lines are parsed by list comprehensions and checked as a whole (``_plain_chunk``); a chunk
        with any other row goes row by row (``_plain_rows``), which explains problems."""
        plan = self._parse_plan()
        if plan[0]:
            yield from self._jsonl_worker_chunks(size, *plan)
            return
        for numbers, raws in _groups(jsonl_line_blocks(self.path), size):
            chunk = self._plain_chunk(numbers, raws)
            yield chunk if chunk is not None else self._plain_rows(numbers, raws)

    def _parse_plan(self) -> Tuple[int, int]:
        """(workers, rows per piece) the budget holds for this pass, or (0, 0): in-process."""
        wanted = parse_workers.wanted_workers() if self.workers is None else self.workers
        if self.budget is None or wanted < 1 or not parse_workers.can_fork() or \
                os.path.getsize(self.path) < parse_workers.MIN_FILE_BYTES:
            return 0, 0
        return self.budget.parse_plan(wanted, parse_workers.current_rss())

    def _jsonl_worker_chunks(self, size: int, workers: int, piece: int) -> Iterator[Chunk]:
        """``_jsonl_plain_chunks`` with each chunk's pieces parsed on worker processes a few pieces
        ahead; a chunk with a piece a worker declined is parsed here as without workers (so the
        first bad line in file order is the one reported). If a worker is lost, the rest of the
        file is parsed here."""
        lay = self.layout
        key, label_key, width, m = lay.key, lay.label_key, lay.width, self.label_map.n_classes

        def parse(raws: List[bytes]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
            arrays = _plain_arrays(raws, key, label_key, width, m)
            return None if arrays is None else arrays[1:]

        spans = parse_workers.chunk_spans(self.path, size, piece)
        queue = parse_workers.ChunkQueue()
        try:
            with parse_workers.ParseWorkers(self.path, workers, parse, width) as pool:
                for numbers, raws, pieces in spans:
                    queue.add(numbers, raws, len(pieces))
                    for start, end, rows in pieces:
                        while pool.in_flight >= parse_workers.DEPTH * workers:
                            queue.take(pool)
                            while queue.ready():
                                yield self._worker_chunk(*queue.items.popleft())
                        pool.submit(start, end, rows)
                while queue.items:
                    while not queue.ready():
                        queue.take(pool)
                    yield self._worker_chunk(*queue.items.popleft())
        except parse_workers.WorkerLost:
            pass
        for numbers, raws, _, _ in queue.items:  # a worker was lost: the rest in-process
            yield self._worker_chunk(numbers, raws, 0, [None])
        for numbers, raws, _ in spans:
            yield self._worker_chunk(numbers, raws, 0, [None])

    def _worker_chunk(self, numbers: List[int], raws: List[bytes], pieces: int,
                      answers: List[Optional[Tuple[np.ndarray, np.ndarray]]]) -> Chunk:
        if any(a is None for a in answers):
            chunk = self._plain_chunk(numbers, raws)
            return chunk if chunk is not None else self._plain_rows(numbers, raws)
        parts = [a for a in answers if a is not None]
        values = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        chunk = self._finish(values, labels, _LazyRecords(raws, "jsonl", ""),  # type: ignore[arg-type]
                             np.array(numbers, dtype=np.int64))
        chunk.raw = raws
        return chunk

    def _plain_chunk(self, numbers: Sequence[int], raws: List[bytes]) -> Optional[Chunk]:
        """The chunk of these lines if every row has the common shape (the values, labels and
        records ``_plain_rows`` would give, made by the same calls), else None. No Python step
        per row: 1M x 100 JSONL read in 11 s instead of 15."""
        lay = self.layout
        arrays = _plain_arrays(raws, lay.key, lay.label_key, lay.width, self.label_map.n_classes)
        if arrays is None:
            return None
        objs, values, label_array = arrays
        chunk = self._finish(values, label_array, objs, np.array(numbers, dtype=np.int64))
        chunk.raw = raws
        return chunk

    def _plain_rows(self, numbers: Sequence[int], raws: List[bytes]) -> Chunk:
        """One chunk of the common shape row by row: any other row takes the general path, which
        explains problems (the earliest bad row is the one reported)."""
        lay = self.layout
        key, width, label_key = lay.key, lay.width, lay.label_key
        convert, name, m = self.label_map, self.name, self.label_map.n_classes
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        rows = _RowBuffer()
        for lineno, raw in zip(numbers, raws):
            try:
                obj = loads(raw)
                vec = obj[key]
                label = obj.get(label_key) if label_key else None
                if type(vec) is not list or len(vec) != width or \
                        (label is not None and (type(label) is not int or not 0 <= label < m)):
                    raise TypeError
            except (decode_error, KeyError, TypeError, AttributeError):
                try:
                    obj = parse_json_line(raw)
                    vec, label = self._jsonl_fields(obj)
                    label = convert(label, name, lineno)
                except InputError as exc:
                    self._row_error(rows, exc, lineno)
            rows.records.append(obj)
            rows.vectors.append(vec)
            rows.labels.append(-1 if label is None else label)
            rows.lines.append(lineno)
            rows.raw.append(raw)
        return self._build(rows)

    def _buffered(self, raw: Iterator[Tuple[int, Any]], parse: Callable[[Any], Tuple[Any, Any, Any]],
                  size: int) -> Iterator[Chunk]:
        """Chunks of ``size`` rows from (line, raw row) pairs; ``parse`` gives (record, vector,
        label) for a raw row or raises ``_Row``."""
        rows = _RowBuffer()
        convert = self.label_map.many if self.layout.multi_label else self.label_map
        for lineno, item in raw:
            try:
                record, vec, label = parse(item)
                rows.add(record, vec, convert(label, self.name, lineno), lineno, item)
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
                if not is_number(obj):
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
            classes = lay.classes or []
            if len(vec) != lay.width or any(c not in vec for c in classes):
                missing = [c for c in classes if c not in vec]
                raise _Row(f"class {missing[0]!r} is missing" if missing else
                           f"row has {len(vec)} classes, expected {lay.width}")
            vec = [vec[c] for c in classes]
        elif lay.scalar:
            if not is_number(vec):
                raise _Row(f"value under {lay.key!r} is not a number")
        elif not isinstance(vec, list):
            raise _Row(f"value under {lay.key!r} is not a vector")
        return vec

    def _csv_chunks(self, size: int) -> Iterator[Chunk]:
        lay = self.layout
        n_fields = len(lay.header or ())
        cols = lay.columns or []
        delimiter = lay.delimiter
        span = slice(cols[0], cols[-1] + 1) if cols == list(range(cols[0], cols[-1] + 1)) else None

        def parse(item: Any) -> Tuple[Any, Any, Any]:
            rec = item.split(delimiter) if isinstance(item, str) else item
            if not is_utf8(item if isinstance(item, str) else "".join(rec)):
                raise _Row("not valid UTF-8 text")
            if len(rec) != n_fields:
                raise _Row(f"row has {len(rec)} fields, the header has {n_fields}")
            vec: Any = csv_number(rec[cols[0]]) if lay.scalar else _csv_numbers(rec[span] if span else [rec[i] for i in cols])
            return rec, vec, rec[lay.label_column] if lay.label_column is not None else None

        if plain_csv(self.path):  # lines are records: split them (kept as read, for writing)
            lines = plain_lines(self.path)
            next(lines, None)  # header (checked when the layout was detected)
            return self._buffered(lines, parse, size)
        rows = csv_rows(self.path, self.name, self.fmt, strict=False)
        next(rows, None)
        return self._buffered(((n, rec) for n, rec in rows if rec), parse, size)

    def _row_error(self, rows: _RowBuffer, exc: InputError, line: int) -> NoReturn:
        """Raise the error for row ``line`` -- after checking the rows buffered before it, so the
        earliest bad row in the file is the one reported."""
        if len(rows):  # none buffered (the chunk's first row is bad): nothing to check
            self._build(rows)
        if isinstance(exc, _Row):
            raise InputError(exc.reason, self.name, line) from None
        raise exc

    def _build(self, rows: _RowBuffer) -> Chunk:
        """Turn buffered rows into a checked chunk (and empty the buffer)."""
        lines = np.array(rows.lines, dtype=np.int64)
        values = self._values(rows)
        if self.layout.multi_label:
            targets = _label_matrix(rows.labels, self.label_map, self.name)
            labels = np.array([-1 if s is None else 1 for s in rows.labels], dtype=np.int64)
            chunk = self._finish(values, labels, rows.records, lines, targets)
        else:
            chunk = self._finish(values, np.array(rows.labels, dtype=np.int64), rows.records, lines)
        if self.fmt == "jsonl" or (rows.raw and isinstance(rows.raw[0], str)):
            chunk.raw = rows.raw
        rows.clear()
        return chunk

    def _values(self, rows: _RowBuffer) -> np.ndarray:
        """The buffered vectors as floats; the first row holding a non-number is reported.
        JSON strings and booleans are not numbers, even where float() would take them
        (``"0.5"``, ``true``): a vector holding one is a broken file, not a probability. Fast
        path: numpy infers a numeric dtype (a string makes it text) and no raw line holds a JSON
        boolean (numpy would silently read it as 1 or 0); otherwise every value's type is checked."""
        scalar = self.layout.scalar
        expected = 1 if scalar else 2
        try:
            values = np.array(rows.vectors)
        except (ValueError, TypeError, OverflowError):
            values = None
        if values is not None and values.ndim == expected and values.dtype.kind in "fiu" and \
                not _any_json_bool(rows.raw):
            return values.astype(np.float64, copy=False)
        numbers = _NUMBER_TYPES.issuperset
        for vec, line in zip(rows.vectors, rows.lines):
            if not (numbers([type(vec)]) if scalar else isinstance(vec, list) and numbers(map(type, vec))):
                raise InputError("value is not a number", self.name, line)
            try:
                np.array(vec, dtype=np.float64)
            except OverflowError:
                raise InputError("value is beyond the range of a 64-bit float", self.name, line) from None
        try:
            return np.array(rows.vectors, dtype=np.float64)
        except (ValueError, TypeError):
            return np.empty((0,) if scalar else (0, self.layout.width))

    def _finish(self, values: np.ndarray, labels: np.ndarray, records: Optional[List[Any]],
                lines: np.ndarray, targets: Optional[np.ndarray] = None) -> Chunk:
        """Check values (finite; probabilities non-negative, not all zero) and apply softmax."""
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
            raise InputError("value is not a finite number (NaN or infinity)", self.name, int(lines[i]))
        lay = self.layout
        if lay.logits:
            values = 1 / (1 + np.exp(-values)) if lay.multi_label else softmax(values)
        elif lay.multi_label:
            self._check_unit_interval(values, lines)
        elif not lay.scalar:
            neg = values < 0
            if neg.any():
                i = int(np.flatnonzero(neg.any(axis=1))[0])
                raise InputError(f"negative probability {float(values[i][neg[i]][0])!r} (use --logits for logits)",
                                 self.name, int(lines[i]))
            with np.errstate(over="ignore"):
                total = values.sum(axis=1)
            zero = total <= 0
            if zero.any():
                raise InputError("probabilities are all zero", self.name, int(lines[np.flatnonzero(zero)[0]]))
            huge = ~np.isfinite(total)
            if huge.any():  # 1e308 + 1e308: every ratio to the sum would read as 0
                raise InputError("probabilities sum beyond the largest 64-bit float (are these scores?)",
                                 self.name, int(lines[np.flatnonzero(huge)[0]]))
        return Chunk(values, labels, records, lines, targets)

    def _check_unit_interval(self, values: np.ndarray, lines: np.ndarray) -> None:
        """Multi-label rows hold one independent probability per label."""
        out = (values < 0) | (values > 1)
        if out.any():
            i = int(np.flatnonzero(out.reshape(len(values), -1).any(axis=1))[0])
            v = float(values[i][out[i]][0]) if values.ndim == 2 else float(values[i])
            raise InputError(f"probability {v!r} is outside [0, 1] (use --logits for logits)",
                             self.name, int(lines[i]))


class _Reservoir:
    """A uniform sample of at most ``cap`` rows (the smallest random keys), in file order; all
    rows when ``cap`` is None. Holds at most 3 x cap rows at a time."""

    def __init__(self, cap: Optional[int], seed: int):
        self.cap = cap
        self.rng = np.random.default_rng(seed)
        self.parts: List[Tuple[Any, ...]] = []
        self.size = self.seen = 0

    def add(self, *arrays: Optional[np.ndarray]) -> None:
        n = len(arrays[0])  # type: ignore[arg-type]
        keys = self.rng.random(n) if self.cap else np.zeros(n)
        self.parts.append((keys, *arrays))
        self.size += n
        self.seen += n
        if self.cap and self.size > 2 * self.cap:
            self._compact()

    def _compact(self) -> None:
        cols = list(zip(*self.parts))
        joined = [None if col[0] is None else np.concatenate(col) for col in cols]
        keys = joined[0]
        assert keys is not None
        if self.cap and len(keys) > self.cap:
            pick = np.sort(np.argpartition(keys, self.cap - 1)[:self.cap])  # file order kept
            joined = [None if a is None else a[pick] for a in joined]
        self.parts = [tuple(joined)]
        self.size = len(joined[0])  # type: ignore[arg-type]

    def result(self) -> Tuple[Any, ...]:
        self._compact()
        return self.parts[0][1:]


class _ValueCache:
    """Checked values, labels, line numbers (and label sets) of one full pass, in an unlinked
    temporary file: bounded memory, and a second pass needs no number parsing."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.shapes: List[Tuple[int, int, bool]] = []
        self.complete = False

    def add(self, chunk: Chunk) -> None:
        width = chunk.values.shape[1] if chunk.values.ndim == 2 else 0
        for arr in (chunk.values, chunk.labels, chunk.lines):
            self.file.write(np.ascontiguousarray(arr).tobytes())
        if chunk.targets is not None:
            self.file.write(np.ascontiguousarray(chunk.targets).tobytes())
        self.shapes.append((len(chunk), width, chunk.targets is not None))

    def parts(self) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        self.file.seek(0)
        for n, width, has_targets in self.shapes:
            shape = (n, width) if width else (n,)
            values = np.frombuffer(self.file.read(8 * n * max(width, 1)), dtype=np.float64).reshape(shape)
            labels = np.frombuffer(self.file.read(8 * n), dtype=np.int64)
            numbers = np.frombuffer(self.file.read(8 * n), dtype=np.int64)
            targets = None
            if has_targets:
                targets = np.frombuffer(self.file.read(n * width), dtype=bool).reshape(n, width)
            yield values.copy(), labels.copy(), numbers.copy(), targets


class _LazyRecords:
    """The records of replayed lines, parsed only when one is asked for (a row rewritten)."""

    def __init__(self, raw: List[Any], fmt: str, delimiter: str):
        self.raw, self.fmt, self.delimiter = raw, fmt, delimiter

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> Any:
        if self.fmt == "jsonl":
            return parse_json_line(self.raw[i])
        return self.raw[i].split(self.delimiter)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self.raw)))


_DECIMAL = re.compile(r"\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|nan|inf|infinity)\s*",
                      re.IGNORECASE | re.ASCII)


def csv_number(text: str) -> Any:
    """A CSV cell as a float if it is written as a decimal number (ASCII digits, no ``_``:
    Python's float() would also read ``1_000`` and Arabic-Indic digits); else the text itself,
    which the chunk check reports with its line. ``nan``/``inf`` read as such and are reported
    as not finite."""
    return float(text) if _DECIMAL.fullmatch(text) else text


def _csv_numbers(fields: List[str]) -> List[Any]:
    """CSV fields as numbers: orjson reads a run of JSON numbers several times faster than
    float() one by one (and rounds the same: correctly); anything else goes through
    ``csv_number``."""
    try:
        values = orjson.loads("[" + ",".join(fields) + "]")
        if len(values) == len(fields) and set(map(type, values)) <= _NUMBER_TYPES:
            return values
    except orjson.JSONDecodeError:
        pass
    return [csv_number(v) for v in fields]


_NUMBER_TYPES = {float, int}


def _any_json_bool(raw: List[Any]) -> bool:
    """Might a JSONL line hold ``true``/``false``? (A cheap byte search; a hit anywhere in the
    line, e.g. another field, only sends the chunk through the exact per-value check.) CSV rows
    cannot hold JSON booleans."""
    if not raw or not isinstance(raw[0], bytes):
        return False
    joined = b"".join(raw)  # one C-speed scan of the chunk instead of two per line
    # a single byte is found by memchr, ten times faster than a word: numbers hold no t or f
    return (b"t" in joined or b"f" in joined) and (b"true" in joined or b"false" in joined)


def _plain_arrays(raws: List[bytes], key: Any, label_key: Optional[str], width: int,
                  m: int) -> Optional[Tuple[List[Any], np.ndarray, np.ndarray]]:
    """(records, float64 values, labels) of JSONL lines if every row has the common shape -- an
    object with a list of ``width`` numbers under ``key``, an integer label in range -- else None.
    The one parse of such rows, in the reading process and in the parse workers alike."""
    loads = orjson.loads
    try:
        objs = [loads(raw) for raw in raws]
        vectors = [obj[key] for obj in objs]
        labels = [obj.get(label_key) for obj in objs] if label_key else None
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    if labels is None:
        label_array = np.full(len(objs), -1, dtype=np.int64)
    else:
        if set(map(type, labels)) != {int}:  # a missing label, a class name, a bool: row by row
            return None
        try:
            label_array = np.array(labels, dtype=np.int64)
        except OverflowError:
            return None
        if label_array.min() < 0 or label_array.max() >= m:
            return None
    try:
        values = np.array(vectors)
    except (ValueError, TypeError, OverflowError):
        return None
    if values.shape != (len(objs), width) or values.dtype.kind not in "fiu" or _any_json_bool(raws):
        return None
    return objs, values.astype(np.float64, copy=False), label_array


def _groups(blocks: Iterator[Tuple[Sequence[int], List[bytes]]], size: int) -> Iterator[Tuple[List[int], List[bytes]]]:
    """Blocks of (line numbers, lines) regrouped into runs of ``size`` lines (the last shorter)."""
    numbers: List[int] = []
    lines: List[bytes] = []
    for block_numbers, block_lines in blocks:
        numbers.extend(block_numbers)
        lines.extend(block_lines)
        while len(lines) >= size:
            yield numbers[:size], lines[:size]
            del numbers[:size], lines[:size]
    if lines:
        yield numbers, lines


def read_predictions(path: Any, **options: Any) -> Predictions:
    """Read a whole prediction file into memory (options as for ``PredictionFile``)."""
    with PredictionFile(path, **options) as pf:
        return pf.read_all()


def read_json(path: str, what: str) -> Dict[str, Any]:
    """Read a JSON object (a params file), reporting problems as InputError."""
    check_readable(path)
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    obj = loads_json(text, path, 1) if text.strip() else None
    if not isinstance(obj, dict):
        raise InputError(f"not a {what} (expected a JSON object)", path)
    return obj
