"""Randomness: the order contract, and every other random draw from a named stream.

**The order** of a shuffle (and so of ``-n``, shards, splits, ``--aligned``) is the records
sorted by a key that depends only on the seed and the record's index in the concatenated input
(:class:`OrderKeys`). ``--memory``, ``--jobs``, ``--buckets``, the method, local or cluster,
file or stdin, compression and the lines' lengths change how the sort is done, never its result.

**Other draws** (``-i LO-HI -n K``'s offsets, ``-r``'s picks) come from streams
``PCG64(SeedSequence(seed, spawn_key=key))`` keyed by ``(purpose, chunk)``: the n-th fixed-size
chunk of draws, so they do not depend on ``--memory`` or on how the work is cut either.
:class:`Purpose` numbers are part of the contract: never reuse one.

The seed is ``--seed N``, a fresh random number, or, with ``--random-source FILE``, the first 32
bytes of FILE read as a little-endian 256-bit number (:func:`seed_from_bytes`): the same file
gives the same output, a file shorter than 32 bytes is an error, and bytes past the 32nd are
never read (so ``/dev/urandom`` or an endless pipe work). This differs from GNU shuf, which
consumes the file's bytes as it draws: the output for a given file is bigshuf's own, not shuf's.
"""
from __future__ import annotations

import secrets
from enum import IntEnum
from typing import Optional, Tuple

import numpy as np


class Purpose(IntEnum):
    """What a stream's draws are for. The numbers are part of the contract: never reuse one
    (0-4 were the bucket, permutation and reservoir streams of the order before version 1)."""

    RANGE_SAMPLE = 5  # -i LO-HI -n K: distinct offsets in the range, one chunk of draws
    REPEAT_DRAW = 6   # -r: the indices of the lines drawn with replacement, one chunk of draws
    ORDER = 7         # the order contract: the constants of every record's key (OrderKeys)
    EPOCH = 8         # --epochs: the seed of epoch e > 0 (epoch_seed)
    DEDUP = 9         # --unique: the keys of the content hash (shuffler/dedup.py)
    MIX_SELECT = 10   # --mix: input j's selection keys (spawn key (10, j)): its partial copy
    MIX_SPLIT = 11    # --mix --split: input j's split keys (11, j): which split gets an element
    MIX_ROUND = 12    # --mix --split: which cells of the split table are rounded up


def new_seed() -> int:
    """A fresh 63-bit seed (reported by ``-v`` so a run can be repeated)."""
    return secrets.randbits(63)


def resolve_seed(seed: Optional[int]) -> int:
    """The run's seed: the given one, or a fresh one."""
    return new_seed() if seed is None else int(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run with ``seed`` (``--epochs``): epoch 0 is ``seed``
    itself (so ``--epochs 1`` is the plain run), epoch e > 0 the 63-bit number drawn from
    ``SeedSequence(seed, spawn_key=(Purpose.EPOCH, e))``: every epoch is the order contract with
    its own seed, so ``--seed S --first-epoch e --epochs 1`` (or ``--seed epoch_seed(S, e)``)
    gives epoch e alone. Part of the contract: changing it changes every epoch's output."""
    if epoch == 0:
        return int(seed)
    lo, hi = np.random.SeedSequence(seed, spawn_key=(Purpose.EPOCH, epoch)).generate_state(2)
    return (int(lo) | int(hi) << 32) & ((1 << 63) - 1)


def seed_from_bytes(data: bytes) -> int:
    """The seed a --random-source file gives (its first 32 bytes, little-endian)."""
    return int.from_bytes(data, "little")


def stream(seed: int, key: Tuple[int, ...]) -> np.random.Generator:
    """The generator for one key (see the module docstring)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


class Streams:
    """The random draws of one run: the records' keys and the named streams."""

    def __init__(self, seed: int):
        self.seed = seed
        self.keys = OrderKeys(seed)

    def range_sample(self, chunk: int) -> np.random.Generator:
        """-i -n: the ``chunk``-th batch of candidate offsets (one source: the range)."""
        return stream(self.seed, (Purpose.RANGE_SAMPLE, chunk))

    def repeat_draw(self, chunk: int) -> np.random.Generator:
        """-r: the ``chunk``-th fixed-size batch of line indices drawn with replacement."""
        return stream(self.seed, (Purpose.REPEAT_DRAW, chunk))


#: The key function's constants (murmur3's 64-bit finaliser and the golden ratio): odd
#: multipliers, so every step is a bijection of the 64-bit integers.
_M1, _M2, _GOLDEN = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53), np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)
#: Keys computed per vectorised step: the temporaries stay in the CPU cache (4.4 ns a key,
#: against 17 ns over one large array).
KEY_CHUNK = 1 << 16


class OrderKeys:
    """The order contract (version 1): record ``i`` (its index among the shuffled records of
    the concatenated input, from 0) gets the 64-bit key ``F_seed(i)``, and the output is the
    records in increasing key order.

    ``F_seed(i) = fmix(fmix(((i + a) * golden) ^ b) + c)``, where (a, b, c) come from
    ``SeedSequence(seed, spawn_key=(Purpose.ORDER,))`` and ``fmix`` is murmur3's finaliser.
    Every step is a bijection of the 64-bit integers, so two records never share a key: no
    tie is ever broken, and the order is a uniformly random one if ``F_seed`` is taken as a
    random permutation of the 64-bit integers (the keys of n records are then n distinct
    values in exchangeable positions). Nothing here depends on ``--memory``, the workers, the
    method or how the input was cut: only the seed and the record's index.

    Changing anything here changes every output: it is a breaking change (README, changelog).
    """

    def __init__(self, seed: int):
        a, b, c = np.random.SeedSequence(seed, spawn_key=(Purpose.ORDER,)).generate_state(3, np.uint64)
        self.a, self.b, self.c = np.uint64(a), np.uint64(b), np.uint64(c)

    def range(self, first: int, count: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Keys of records ``first .. first + count - 1`` (into ``out`` if given: a worker's
        reused buffer, so no fresh pages are faulted in for every block)."""
        out = np.empty(count, dtype=np.uint64) if out is None else out[:count]
        for lo in range(0, count, KEY_CHUNK):
            hi = min(count, lo + KEY_CHUNK)
            x = out[lo:hi]
            x[:] = np.arange(first + lo, first + hi, dtype=np.uint64)
            self._mix(x)
        return out

    def of(self, indices: np.ndarray) -> np.ndarray:
        """Keys of the records numbered ``indices`` (any order)."""
        out = np.asarray(indices).astype(np.uint64)
        for lo in range(0, len(out), KEY_CHUNK):
            self._mix(out[lo:lo + KEY_CHUNK])
        return out

    def _mix(self, x: np.ndarray) -> None:
        """x <- F_seed(x), in place (uint64 arithmetic wraps: it is arithmetic modulo 2^64)."""
        x += self.a
        x *= _GOLDEN
        x ^= self.b
        fmix(x)
        x += self.c
        fmix(x)


def fmix(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place (uint64): a bijection that mixes every bit into
    every bit. Returns ``x``."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x
