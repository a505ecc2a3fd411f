"""The planner: how a memory budget becomes block sizes, bucket counts and worker counts.

Every size here derives from ``--memory`` (and the input size when known). None of them changes
the output, which is the records in the order of their keys (the order contract of
:mod:`bigshuf.common.randomness`): sizes decide only how the sort is cut up. Workers decide how
many blocks or units are processed at once, and are capped so that all of them together fit in
the budget.

Budget model (bytes held by the engine; the interpreter itself is the +64 MB allowance):

* a scatter worker holds its block (C), the regrouped run (C, or nothing when runs live in RAM)
  and per-record metadata (at most 74 bytes a record with the keys' scratch buffer, with at most
  C/32 records a block);
* a gather worker holds its unit (U), the sorted output (U) and 64 bytes a record;
* the reader holds the block it is filling (C) while scattering; while gathering, the writer
  thread holds the sorted units it has been handed and not yet written (``writer_units`` of U,
  one: C = U, so it takes the reader's place); the run index costs 32 bytes an entry.

With C = U = M/16, three workers and the index share fit in M with room to spare.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from bigshuf.common.cpus import usable_cpus
from bigshuf.common.errors import UsageError
from bigshuf.shuffler.gather import PERMUTE_BYTES_PER_RECORD
from bigshuf.shuffler.scatter import PARTITION_BYTES_PER_RECORD

MIN_MEMORY = 1 << 20
MIN_BLOCK = 64 << 10
MAX_BLOCK = 4 << 30
#: Buckets a level starts with. Many small buckets keep each bucket's permutation inside the CPU
#: cache (measured sweet spot: 0.25-1 MB a bucket); more than a few thousand make the scatter's
#: writes too spread out. A unit's buckets are permuted in one vectorised pass, so tiny buckets
#: (small inputs) cost nothing extra.
INITIAL_BUCKETS = 4096
#: Records per block are capped at block_bytes / MIN_AVG_RECORD so metadata stays bounded even
#: for a file of empty lines.
MIN_AVG_RECORD = 32
INDEX_BYTES_PER_ENTRY = 32
#: Sorted units the gather's writer holds: the one it writes. A worker with the next unit
#: waits for it (a queue of two more measured no faster in a 1 GiB cgroup: 6.7 and 7.6 s
#: against 7.3 and 7.9 s, inside the noise, and it would cost a unit of the budget).
WRITER_UNITS = 1


@dataclass(frozen=True)
class Geometry:
    """Sizes derived from the memory budget."""

    memory: int
    block_bytes: int        # C: bytes a scatter block may hold (also the longest record)
    block_records: int      # records a block may hold
    unit_bytes: int         # U: bytes of buckets gathered at once
    unit_records: int
    index_entries: int      # (run, bucket) pieces the index may hold
    max_workers: int        # workers that fit in the budget
    reserved: int = 0       # set aside for the output's compressor (not part of the shuffle)

    @property
    def worker_bytes(self) -> int:
        """Peak bytes of one worker (scatter or gather, whichever is larger)."""
        scatter = 2 * self.block_bytes + PARTITION_BYTES_PER_RECORD * self.block_records
        gather = 2 * self.unit_bytes + PERMUTE_BYTES_PER_RECORD * self.unit_records
        return max(scatter, gather)

    @property
    def writer_units(self) -> int:
        """Sorted units the gather's writer thread may hold (see :mod:`.outflow`)."""
        return WRITER_UNITS

    def fixed_bytes(self) -> int:
        """Bytes held whatever the workers do: the block being read (scatter) or the units
        being written (gather), and the index."""
        return max(self.block_bytes, self.writer_units * self.unit_bytes) \
            + self.index_entries * INDEX_BYTES_PER_ENTRY

    def workers(self, jobs: Optional[int]) -> int:
        jobs = jobs or usable_cpus()
        return max(1, min(jobs, self.max_workers))

    def memory_store_capacity(self, workers: int) -> int:
        """Bytes of runs that can stay in RAM next to ``workers`` workers."""
        return max(0, self.memory - self.reserved - self.fixed_bytes() - workers * self.worker_bytes)

    # -- the budget's shares, decided here only: the methods receive sizes, never --memory --
    @property
    def sample_share(self) -> int:
        """-n's reservoir (slots and kept records) and -i -n's draws: half of the budget."""
        return self.memory // 2

    @property
    def index_share(self) -> int:
        """Per-record metadata the input method keeps between its passes: an eighth."""
        return self.memory // 8

    @property
    def repeat_round(self) -> int:
        """-r: bytes of drawn lines gathered in one round: an eighth."""
        return self.memory // 8

    @property
    def repeat_split(self) -> int:
        """-r: a round whose lines turn out longer than this is cut in two: a quarter."""
        return self.memory // 4

    @property
    def shard_share(self) -> int:
        return shard_share(self.memory)

    def initial_buckets(self) -> int:
        """Buckets a scatter level starts with: INITIAL_BUCKETS, or fewer if the index is small.

        It does not depend on the input size, so a file and the same bytes on stdin shuffle
        identically; the index halves the count (merging bucket pairs) as runs accumulate.
        """
        return _pow2_floor(max(1, min(INITIAL_BUCKETS, self.index_entries)))


def shard_share(memory: int) -> int:
    """What the shards' names and destinations may hold at once: a quarter of the budget
    (checked from the options, before any plan)."""
    return memory // 4


def _pow2_floor(n: int) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(1, n)))))


def plan(memory: int) -> Geometry:
    """Geometry for a memory budget of ``memory`` bytes."""
    if memory < MIN_MEMORY:
        raise UsageError(f"--memory must be at least 1M (got {memory:,} bytes)")
    block = max(MIN_BLOCK, min(MAX_BLOCK, memory // 16))
    records = max(1, block // MIN_AVG_RECORD)
    entries = max(1024, memory // 16 // INDEX_BYTES_PER_ENTRY)
    geo = Geometry(memory, block, records, block, records, entries, 1)
    room = int(memory * 0.9) - geo.fixed_bytes()
    workers = max(1, room // geo.worker_bytes)
    return Geometry(memory, block, records, block, records, entries, int(workers))
