"""Cost of many small inputs: wall time of one shuffle over N files of L lines, for several N.

The cost must grow linearly with N (target: 20 000 files of 10 lines in under 5 s on 2 cores).
Prints one row per N with the time per file, so a quadratic term shows as a growing column.

    python scripts/bench_many_inputs.py --counts 5000,10000,20000 --lines 10
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def make_files(directory: str, count: int, lines: int) -> list:
    paths = []
    for i in range(count):
        p = os.path.join(directory, f"f{i:06d}.txt")
        with open(p, "w") as f:
            f.write("".join(f"{i}-{j}\n" for j in range(lines)))
        paths.append(p)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="5000,10000,20000")
    ap.add_argument("--lines", type=int, default=10)
    ap.add_argument("--memory", default="1G")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as d:
        paths = make_files(d, max(counts), args.lines)
        out = os.path.join(d, "out.txt")
        print(f"{'files':>8} {'lines':>9} {'wall s':>8} {'ms/file':>8} {'peak RSS MB':>12}")
        for n in counts:
            listing = os.path.join(d, "list")
            # Many paths exceed the argument limit of a shell; pass them through xargs-free python.
            code = ("import sys, bigshuf; bigshuf.shuffle(open(sys.argv[1]).read().split('\\n'), "
                    f"sys.argv[2], seed=1, memory={args.memory!r})")
            with open(listing, "w") as f:
                f.write("\n".join(paths[:n]))
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code, listing, out], check=True)
            wall = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"{n:>8} {n * args.lines:>9} {wall:>8.2f} {1000 * wall / n:>8.3f} {rss:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
