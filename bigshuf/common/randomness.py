"""Randomness: every random draw of a run comes from a named stream, keyed by what it is for.

The reproducibility contract, shared by the local engine, sampling and the Dask cluster:
a stream is ``PCG64(SeedSequence(seed, spawn_key=key))`` where ``key`` is

    level path + (purpose, coordinates...)

- ``purpose`` says what the draws are for (:class:`Purpose`); no two purposes share a number;
- the *level path* locates a nested level: ``()`` for the top level, and each bucket re-scattered
  inside a level appends ``(Purpose.NESTED, first bucket of its unit)``;
- the coordinates locate the data: ``(source, block)`` for the input blocks of a scatter or a
  sample (``source`` = position of the input among all inputs, ``block`` = block number within
  that input), ``(first bucket,)`` for a gather unit, ``()`` for a once-per-run draw, and
  ``(chunk,)`` for draws that read no input block (``-i -n``, ``-r``): the n-th fixed-size chunk
  of draws, so their sequence does not depend on ``--memory`` or on how it is cut into rounds.
  ``-e`` and ``-i`` records are one input (source 0) and use the scatter/gather/sample streams.

The seed is ``--seed N``, a fresh random number, or, with ``--random-source FILE``, the first 32
bytes of FILE read as a little-endian 256-bit number (:func:`seed_from_bytes`): the same file
gives the same output, a file shorter than 32 bytes is an error, and bytes past the 32nd are
never read (so ``/dev/urandom`` or an endless pipe work). This differs from GNU shuf, which
consumes the file's bytes as it draws: the output for a given file is bigshuf's own, not shuf's.

So a stream depends only on the seed and on the position of the data it handles, never on how
many workers ran, in which order, or on which machine: the same seed and input give the same
bytes everywhere. And because every key names the input it comes from, two inputs can never
reuse one stream (reusing them made ``-n`` over several files non-uniform).
"""
from __future__ import annotations

import secrets
from enum import IntEnum
from typing import Optional, Tuple

import numpy as np

#: Where a nested level sits: a sequence of (Purpose.NESTED, first bucket) pairs.
LevelPath = Tuple[int, ...]


class Purpose(IntEnum):
    """What a stream's draws are for. The numbers are part of the contract: never reuse one."""

    SCATTER = 0       # bucket of each record of one input block
    GATHER = 1        # permutation of the records of one gather unit
    NESTED = 2        # a bucket too big for a unit, scattered again: starts a level path
    SAMPLE = 3        # reservoir (-n) draws for one input block
    SAMPLE_ORDER = 4  # the order the reservoir is written in
    RANGE_SAMPLE = 5  # -i LO-HI -n K: distinct offsets in the range, one chunk of draws
    REPEAT_DRAW = 6   # -r: the indices of the lines drawn with replacement, one chunk of draws
    RANGE_SUBSET = 7  # -i LO-HI -n K beyond memory: a uniform K-subset, drawn per value bucket


def new_seed() -> int:
    """A fresh 63-bit seed (reported by ``-v`` so a run can be repeated)."""
    return secrets.randbits(63)


def resolve_seed(seed: Optional[int]) -> int:
    """The run's seed: the given one, or a fresh one."""
    return new_seed() if seed is None else int(seed)


def seed_from_bytes(data: bytes) -> int:
    """The seed a --random-source file gives (its first 32 bytes, little-endian)."""
    return int.from_bytes(data, "little")


def stream(seed: int, key: Tuple[int, ...]) -> np.random.Generator:
    """The generator for one key (see the module docstring)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


class Streams:
    """The named streams of one run."""

    def __init__(self, seed: int):
        self.seed = seed

    def scatter(self, level: LevelPath, source: int, block: int) -> np.random.Generator:
        return stream(self.seed, level + (Purpose.SCATTER, source, block))

    def gather(self, level: LevelPath, first_bucket: int) -> np.random.Generator:
        return stream(self.seed, level + (Purpose.GATHER, first_bucket))

    @staticmethod
    def nested(level: LevelPath, first_bucket: int) -> LevelPath:
        """The level path of a bucket re-scattered inside ``level``."""
        return level + (Purpose.NESTED, first_bucket)

    def sample(self, source: int, block: int) -> np.random.Generator:
        return stream(self.seed, (Purpose.SAMPLE, source, block))

    def sample_order(self) -> np.random.Generator:
        return stream(self.seed, (Purpose.SAMPLE_ORDER,))

    def range_sample(self, chunk: int) -> np.random.Generator:
        """-i -n: the ``chunk``-th batch of candidate offsets (one source: the range)."""
        return stream(self.seed, (Purpose.RANGE_SAMPLE, chunk))

    def range_subset(self, *key: int) -> np.random.Generator:
        """-i LO-HI -n K beyond memory: (attempt, step[, bucket]) of the subset's draws."""
        return stream(self.seed, (Purpose.RANGE_SUBSET, *key))

    def repeat_draw(self, chunk: int) -> np.random.Generator:
        """-r: the ``chunk``-th fixed-size batch of line indices drawn with replacement."""
        return stream(self.seed, (Purpose.REPEAT_DRAW, chunk))


def nesting_depth(level: LevelPath) -> int:
    """How many levels lie above ``level`` (0 for the top level)."""
    return len(level) // 2
