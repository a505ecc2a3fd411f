"""Sampling (-n N): a uniform random sample of N records, in random order."""
from __future__ import annotations


def try_reservoir(reader, output, sample, geo, seed, sep, stats, progress=None, size=None) -> bool:
    return False
