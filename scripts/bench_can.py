#!/usr/bin/env python3
"""Benchmark: vectorised CAN (bigshuf.predict.can.CanModel) against the per-row definition.

Generates ROWS x CLASSES softmax predictions (seeded), splits them into confident and uncertain
rows (tau 0.9, k 3), and times adjusting every uncertain row against all confident rows:

* the per-row loop (``can_per_row``: one stacked (n+1) x m matrix per uncertain row) -- it costs
  O(n*m) per row, hours for the whole set, so it is timed on a random sample of uncertain rows
  and extrapolated linearly (the rows are independent, so its cost is exactly linear);
* the vectorised implementation on all uncertain rows.

Prints both times, the speed-up, and the largest absolute difference between the two on the
sampled rows. Usage: python scripts/bench_can.py [--rows 100000] [--classes 100]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bigshuf.predict.can import CanModel, can_per_row, confident_mask


def make_predictions(rows: int, classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    logits = rng.normal(0.0, 1.0, (rows, classes))
    logits[np.arange(rows), labels] += rng.uniform(0.0, 8.0, rows)  # a spread of confidence
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--loop-sample", type=int, default=100, help="uncertain rows timed with the per-row loop")
    ap.add_argument("--configs", default="1:1,2:2",
                    help="comma list of alpha:iterations to time (default 1:1,2:2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    probs = make_predictions(args.rows, args.classes, args.seed)
    conf = confident_mask(probs, 0.9, 3)
    reference, uncertain = probs[conf], probs[~conf]
    prior = np.full(args.classes, 1.0 / args.classes)
    rng = np.random.default_rng(args.seed + 1)
    sample = np.sort(rng.choice(len(uncertain), min(args.loop_sample, len(uncertain)), replace=False))
    print(f"{args.rows} rows x {args.classes} classes: {len(reference)} confident (reference), "
          f"{len(uncertain)} uncertain; tau 0.9, k 3, uniform prior")
    for config in args.configs.split(","):
        alpha, iterations = float(config.split(":")[0]), int(config.split(":")[1])
        t0 = time.perf_counter()
        looped = can_per_row(uncertain[sample], reference, prior, alpha, iterations)
        loop_s = (time.perf_counter() - t0) * len(uncertain) / len(sample)
        t0 = time.perf_counter()
        fast = CanModel(reference, prior, alpha, iterations).adjust(uncertain)
        fast_s = time.perf_counter() - t0
        diff = float(np.abs(fast[sample] - looped).max())
        print(f"alpha={alpha:g} iterations={iterations}: per-row loop {loop_s:9.1f} s "
              f"(timed on {len(sample)} rows, extrapolated to {len(uncertain)}), "
              f"vectorised {fast_s:7.2f} s, speed-up {loop_s / fast_s:8.0f}x, max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
