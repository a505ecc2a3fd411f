"""Pieces both products share: errors, sizes, progress bars, signals, randomness, outputs."""
