"""``--memory`` for ``can`` and ``threshold``: one place that turns a byte budget into rows.

Why bytes and not rows: the cost of a row is its number of classes times a handful of float
copies, so a row cap that is fine for 40 classes peaked at 4 GB for 10 000 (issue 22). Each
consumer gets a share of the budget and asks here how many rows of ``m`` classes fit in it; the
per-row costs below count every array a step holds at its peak (measured with
``scripts/bench_predict_memory.py``: measured 30-100 B a value, set a little above). The interpreter and numpy themselves (~60 MB) are not in the
budget, as with ``bigshuf shuffle``.
"""
from __future__ import annotations

from typing import Optional

from bigshuf.common.errors import UsageError
from bigshuf.common.sizes import format_size, parse_size
from bigshuf.predict.can import BLAS_BLOCK

#: Shares of the budget: a streaming chunk, the reference set, CanModel's batch buffers, and
#: everything held at once by a search (tuning rows, threshold rows, EM rows).
CHUNK_SHARE, REFERENCE_SHARE, BATCH_SHARE, MATRIX_SHARE = 1 / 8, 1 / 2, 1 / 8, 1 / 2
#: Bytes per value of a streamed row: the parsed JSON floats (~32 B), the raw line, the float
#: array and the ~12 copies the uncertainty and CAN steps make, the output text.
CHUNK_BYTES_PER_VALUE = 200
#: Bytes per value of a row kept for a search: the values, normalised copies, two worker threads'
#: temporaries (CAN trajectories, class-weight ascent states), the reservoir's compaction.
SEARCH_BYTES_PER_VALUE = 120
#: The class-weight search's per value: values, weighted copy, top-two masks, two folds' copies.
THRESHOLD_BYTES_PER_VALUE = 48
#: Per row whatever the width: labels, line numbers, the search's per-row index arrays.
SEARCH_BYTES_PER_ROW = 256
MAX_CHUNK_ROWS = 1 << 15
#: BBSE's per cell of its m x m confusion matrix: the int64 counts, the float64 copy it solves,
#: and the copy LAPACK's least squares overwrites (measured 26 B; 6 000 x 4 000 rows had peaked at
#: 490 MiB under --memory 256M before it was counted).
BBSE_BYTES_PER_CELL = 32
#: JSONL parse workers (``parse_workers.py``) run beside the streaming pass; their share holds
#: each worker's RSS -- the reading process's RSS when it forks (copy-on-write pages count again
#: in the worker's RSS) plus its piece -- and the reading process's copy of the pieces in flight.
WORKER_SHARE = 1 / 4
#: Per value of a worker's piece: its text and split lines, orjson's Python floats and lists
#: (~40 B), the float64 array and the lines and answer the reading process holds meanwhile.
WORKER_BYTES_PER_VALUE = 100
#: Smaller pieces cost more in messages than the workers save.
MIN_PIECE_ROWS = 256
MIN_RESERVOIR_ROWS = 64


class Budget:
    """Row counts for each consumer of one run's ``--memory``."""

    def __init__(self, memory: "int | str"):
        self.memory = parse_size(memory)
        self.m = 1
        self.chunk_rows = MAX_CHUNK_ROWS

    def fit(self, m: int) -> "Budget":
        """Size the streaming chunks for rows of ``m`` values."""
        self.m = max(int(m), 1)
        if CHUNK_BYTES_PER_VALUE * self.m > self.memory:
            raise UsageError(f"a row of {self.m:,} values needs about {format_size(CHUNK_BYTES_PER_VALUE * self.m)} "
                             f"while it is read and adjusted: --memory {format_size(self.memory)} cannot hold one")
        self.chunk_rows = int(max(1, min(MAX_CHUNK_ROWS, self.memory * CHUNK_SHARE // (CHUNK_BYTES_PER_VALUE * self.m))))
        return self

    @property
    def batch_bytes(self) -> int:
        return int(self.memory * BATCH_SHARE)

    def reference_rows(self, cap: int, iterations: int) -> int:
        """``--max-reference`` lowered so the reference and CanModel's per-iteration copies fit."""
        per_row = 8 * self.m * max(4, 2 + 2 * iterations) + (8 * BLAS_BLOCK if iterations > 1 else 0)
        fits = int(self.memory * REFERENCE_SHARE // per_row)
        if fits < 1:
            raise UsageError(f"--memory {format_size(self.memory)} holds no reference row of {self.m:,} classes")
        return min(cap, fits) if cap else fits

    def identity_fits(self, iterations: int) -> bool:
        """Can the m x m identity reference (no confident row) and its trajectory be held?"""
        return 8 * self.m * self.m * (1 + iterations) <= self.memory * REFERENCE_SHARE

    def matrix_rows(self, m: Optional[int] = None, per_value: int = SEARCH_BYTES_PER_VALUE) -> int:
        """Rows of ``m`` values a search may hold at once (at least a small sample)."""
        m = self.m if m is None else m
        return max(MIN_RESERVOIR_ROWS, int(self.memory * MATRIX_SHARE // (per_value * max(m, 1) + SEARCH_BYTES_PER_ROW)))

    def parse_plan(self, wanted: int, base: int) -> "tuple[int, int]":
        """(workers, rows per piece) for parsing on up to ``wanted`` worker processes, each
        starting at ``base`` bytes of RSS; (0, 0) when the share holds none: parse in-process."""
        for n in range(wanted, 0, -1):
            room = int(self.memory * WORKER_SHARE) // n - base
            rows = min(self.chunk_rows, max(0, room) // (WORKER_BYTES_PER_VALUE * self.m))
            if rows >= min(MIN_PIECE_ROWS, self.chunk_rows):
                return n, rows
        return 0, 0

    def check_bbse(self, m: int) -> None:
        """BBSE's confusion matrix and its solve, in the share a search holds, or a usage error."""
        need = BBSE_BYTES_PER_CELL * m * m
        if need > self.memory * MATRIX_SHARE:
            raise UsageError(f"--prior estimate-bbse with {m:,} classes needs about {format_size(need)} for its "
                             f"{m:,} x {m:,} confusion matrix and solve, more than --memory {format_size(self.memory)} "
                             f"holds for it; use --prior estimate (EM) or --memory {format_size(int(need / MATRIX_SHARE) + 1)}")

    def tuning_rows(self, m: int) -> int:
        return self.matrix_rows(m)
