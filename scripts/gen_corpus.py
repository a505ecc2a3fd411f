#!/usr/bin/env python3
"""Deterministic benchmark/test corpora of newline-terminated lines.

Shapes:

* ``short`` -- ~37-byte lines (including the newline) drawn Zipf-like (frequency ~ 1/rank)
  from a fixed vocabulary of 2**20 random token strings of 16..56 bytes, so the file has many duplicate lines (like a token/id list;
  the issue's reference corpus was 1.25 GB / ~34 M lines).
* ``json``  -- ~1 KB JSON objects, one per line, with a few fields (id, user, lang, score,
  tags, text) and a text field whose word count varies, so line lengths vary (~0.7-1.4 KB).

``--numbered`` makes every line unique by embedding its 0-based line index: ``short`` lines
get a ``%010d<TAB>`` prefix, ``json`` lines get the index as their ``"id"`` (otherwise random).

The output for a given (shape, seed, numbered) is a prefix of the output for any larger
``--size``: lines are produced in fixed-size chunks, each with its own RNG stream derived from
(seed, chunk index), and the output stops at the first line end at or after SIZE bytes.

Everything is vectorised with numpy: a line is a row of fixed-width byte "columns" each with
a per-row length, and one boolean mask over the stacked columns concatenates the used bytes of
every row in order. ~1 GB takes ~5-15 s (short/json) on one core.

Usage::

    python scripts/gen_corpus.py --shape short --size 1G -o /tmp/bench/short.txt
    python scripts/gen_corpus.py --shape json --size 64M --seed 3 --numbered -o - | head
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import BinaryIO, Iterator, List, Sequence, Tuple

import numpy as np

SHAPES = ("short", "json")

#: Lines per chunk. Fixed per shape (never derived from --size) so outputs are prefixes.
_CHUNK_LINES = {"short": 1 << 19, "json": 1 << 14}

_SHORT_VOCAB = 1 << 20
_ALNUM = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
_LOWER = _ALNUM[:26]

# A column is (bytes matrix of shape (n, width), used length per row of shape (n,)).
Column = Tuple[np.ndarray, np.ndarray]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``1G``, ``256M``, ``1.5g``, ``4096`` (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"invalid size {text!r} (expected e.g. 1G, 256M, 4096)")
    value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value < 1:
        raise ValueError(f"size must be at least 1 byte: {text!r}")
    return value


# --- column helpers ------------------------------------------------------------------------

def const_column(text: bytes, n: int) -> Column:
    """A column holding the same literal bytes on every one of ``n`` rows."""
    row = np.frombuffer(text, dtype=np.uint8)
    return np.broadcast_to(row, (n, len(row))), np.full(n, len(row), dtype=np.int64)


def digits_column(values: np.ndarray, width: int, pad: bool = False) -> Column:
    """Decimal digits of non-negative ints; zero-padded to ``width`` if ``pad``, else minimal.

    Minimal-width numbers are right-aligned in the matrix, so rows are shifted left to put the
    significant digits first (the mask keeps the first ``length`` bytes of each row).
    """
    values = np.asarray(values, dtype=np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    mat = ((values[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    if pad:
        return mat, np.full(len(values), width, dtype=np.int64)
    ndig = np.maximum(1, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1)
    ndig = np.minimum(ndig, width)
    # Shift row i left by (width - ndig[i]) via a gather on column indices.
    cols = (np.arange(width)[None, :] + (width - ndig)[:, None]) % width
    return np.take_along_axis(mat, cols, axis=1), ndig


def pieces_column(table: np.ndarray, lengths: np.ndarray, ids: np.ndarray) -> Column:
    """Concatenate, per row, the pieces ``table[ids[row, j]]`` for j = 0..k-1.

    ``table`` is (pieces, width) uint8 with ``lengths`` per piece; ``ids`` is (n, k), and an id
    of -1 means "no piece" (length 0). Returns a (n, k*width) column whose mask is
    per-piece, so the result is the pieces back to back.
    """
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[:, None]
    n, k = ids.shape
    safe = np.where(ids < 0, 0, ids)
    mat = table[safe].reshape(n, k * table.shape[1])
    lens = np.where(ids < 0, 0, lengths[safe])
    return mat, lens  # lens is (n, k): per-piece lengths, handled by join_rows


def join_rows(columns: Sequence[Column]) -> Tuple[bytes, np.ndarray]:
    """Concatenate the used bytes of each row across ``columns``.

    Returns the joined bytes and the end offset of every row. A column's length array is
    either (n,) (one field of matrix width) or (n, k) (k pieces of equal width, see
    :func:`pieces_column`).
    """
    mats: List[np.ndarray] = []
    masks: List[np.ndarray] = []
    row_len = None
    for mat, lens in columns:
        n, width = mat.shape
        if lens.ndim == 1:
            mask = np.arange(width)[None, :] < lens[:, None]
            total = lens
        else:
            k = lens.shape[1]
            piece_w = width // k
            mask = (np.arange(piece_w)[None, None, :] < lens[:, :, None]).reshape(n, width)
            total = lens.sum(axis=1)
        mats.append(mat)
        masks.append(mask)
        row_len = total if row_len is None else row_len + total
    data = np.hstack(mats)[np.hstack(masks)]
    return data.tobytes(), np.cumsum(row_len)


def _random_words(rng: np.random.Generator, count: int, min_len: int, max_len: int,
                  alphabet: np.ndarray, prefix: bytes = b"") -> Tuple[np.ndarray, np.ndarray]:
    """A table of ``count`` random words (optionally with a fixed prefix) and their lengths."""
    pre = np.frombuffer(prefix, dtype=np.uint8)
    width = len(pre) + max_len
    lens = rng.integers(min_len, max_len + 1, size=count) + len(pre)
    table = alphabet[rng.integers(0, len(alphabet), size=(count, width), dtype=np.uint8)]
    table[:, : len(pre)] = pre
    return table, lens


# --- shapes --------------------------------------------------------------------------------

def _short_vocab(seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Vocabulary for the short shape: 2**20 tokens of 16..56 bytes, shuffled rank order."""
    rng = np.random.default_rng([seed, 0x5107])
    return _random_words(rng, _SHORT_VOCAB, 16, 56, _ALNUM)


def short_chunk(rng: np.random.Generator, first_line: int, n: int, vocab: Tuple[np.ndarray, np.ndarray],
                numbered: bool) -> Tuple[bytes, np.ndarray]:
    """``n`` short lines: Zipf-like vocabulary tokens, so many lines repeat.

    Ranks are log-uniform (P(rank < r) = log(r + 1) / log(V + 1), i.e. frequency ~ 1/rank, the
    classic Zipf law): the most frequent token is ~5% of lines. This is much faster than
    ``rng.zipf``'s rejection sampler. The vocabulary order is random, so frequent tokens are
    not systematically short or long.
    """
    table, lens = vocab
    ids = np.exp(rng.random(n) * np.log(len(table) + 1)).astype(np.int64) - 1
    ids = np.minimum(ids, len(table) - 1)  # guard against rounding at the top end
    cols: List[Column] = []
    if numbered:
        cols += [digits_column(np.arange(first_line, first_line + n), 10, pad=True),
                 const_column(b"\t", n)]
    cols += [(table[ids], lens[ids]), const_column(b"\n", n)]
    return join_rows(cols)


_JSON_WORDS = 4096
_LANGS = [b"en", b"de", b"fr", b"es", b"pt", b"it", b"nl", b"ja"]
_TAGS = [b"news", b"sports", b"tech", b"science", b"music", b"travel", b"food", b"health",
         b"finance", b"games", b"movies", b"art"]


def _json_tables(seed: int) -> dict:
    """Fixed word/tag/lang tables for the json shape."""
    rng = np.random.default_rng([seed, 0x1503])
    words = _random_words(rng, _JSON_WORDS, 2, 10, _LOWER, prefix=b" ")

    def table_of(items: Sequence[bytes], template: bytes) -> Tuple[np.ndarray, np.ndarray]:
        encoded = [template % it for it in items]
        width = max(map(len, encoded))
        t = np.zeros((len(encoded), width), dtype=np.uint8)
        for i, e in enumerate(encoded):
            t[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
        return t, np.array([len(e) for e in encoded], dtype=np.int64)

    return {
        "words": words,
        "langs": table_of(_LANGS, b'"%s"'),
        "tags": table_of(_TAGS, b'"%s",'),  # trailing comma; the closing piece is tag-less
        "user": _random_words(rng, 50_000, 4, 12, _ALNUM, prefix=b"u_"),
    }


def json_chunk(rng: np.random.Generator, first_line: int, n: int, tables: dict,
               numbered: bool) -> Tuple[bytes, np.ndarray]:
    """``n`` JSON lines of ~1 KB: id, user, lang, score, tags, text (80..180 words)."""
    words, wlens = tables["words"]
    ids = (np.arange(first_line, first_line + n) if numbered
           else rng.integers(0, 10**12, size=n))
    users = rng.integers(0, len(tables["user"][0]), size=n)
    langs = rng.integers(0, len(_LANGS), size=n)
    score = rng.integers(0, 10**6, size=n)
    ntags = rng.integers(0, 4, size=n)
    tag_ids = rng.integers(0, len(_TAGS), size=(n, 3))
    tag_ids[np.arange(3)[None, :] >= ntags[:, None]] = -1
    max_words = 180
    nwords = rng.integers(80, max_words + 1, size=n)
    word_ids = rng.integers(0, len(words), size=(n, max_words))
    word_ids[np.arange(max_words)[None, :] >= nwords[:, None]] = -1
    utab, ulen = tables["user"]
    cols: List[Column] = [
        const_column(b'{"id": ', n), digits_column(ids, 12),
        const_column(b', "user": "', n), (utab[users], ulen[users]),
        const_column(b'", "lang": ', n), (tables["langs"][0][langs], tables["langs"][1][langs]),
        const_column(b', "score": 0.', n), digits_column(score, 6, pad=True),
        const_column(b', "tags": [', n), pieces_column(*tables["tags"], tag_ids),
        const_column(b'"all"], "text": "Lorem', n), pieces_column(words, wlens, word_ids),
        const_column(b'."}\n', n),
    ]
    return join_rows(cols)


def iter_chunks(shape: str, seed: int, numbered: bool = False) -> Iterator[Tuple[bytes, np.ndarray]]:
    """Endless stream of (chunk bytes, line end offsets within the chunk) for ``shape``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    n = _CHUNK_LINES[shape]
    if shape == "short":
        vocab = _short_vocab(seed)
        make = lambda rng, first: short_chunk(rng, first, n, vocab, numbered)  # noqa: E731
    else:
        tables = _json_tables(seed)
        make = lambda rng, first: json_chunk(rng, first, n, tables, numbered)  # noqa: E731
    index = 0
    while True:
        yield make(np.random.default_rng([seed, 1, index]), index * n)
        index += 1


def generate(out: BinaryIO, shape: str, size: int, seed: int = 0, numbered: bool = False) -> Tuple[int, int]:
    """Write ``shape`` lines to ``out`` until at least ``size`` bytes; end on a line boundary.

    Returns (bytes written, lines written).
    """
    written = lines = 0
    for data, ends in iter_chunks(shape, seed, numbered):
        remaining = size - written
        if len(data) >= remaining:
            # Stop at the first line end at or after `remaining`.
            k = int(np.searchsorted(ends, remaining, side="left"))
            cut = int(ends[k])
            out.write(memoryview(data)[:cut])
            return written + cut, lines + k + 1
        out.write(data)
        written += len(data)
        lines += len(ends)
    raise AssertionError("unreachable")


def generate_file(path: str, shape: str, size: int, seed: int = 0, numbered: bool = False) -> Tuple[int, int]:
    """Like :func:`generate`, to ``path`` via a temp name + rename (never a half file)."""
    tmp = f"{path}.part{os.getpid()}"
    try:
        with open(tmp, "wb", buffering=1 << 22) as f:
            result = generate(f, shape, size, seed, numbered)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return result


def main(argv: "Sequence[str] | None" = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, required=True)
    ap.add_argument("--size", default="1G", help="target bytes, K/M/G/T suffixes (default 1G)")
    ap.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    ap.add_argument("--numbered", action="store_true",
                    help="embed the line index so every line is unique")
    ap.add_argument("-o", "--output", default="-", help="output path, '-' for stdout (default)")
    args = ap.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        ap.error(str(exc))
    if args.output == "-":
        nbytes, nlines = generate(sys.stdout.buffer, args.shape, size, args.seed, args.numbered)
        sys.stdout.buffer.flush()
    else:
        nbytes, nlines = generate_file(args.output, args.shape, size, args.seed, args.numbered)
    print(f"{args.shape}: {nbytes} bytes, {nlines} lines, {nbytes / nlines:.1f} bytes/line",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        # `... -o - | head`: the reader went away.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
