#!/usr/bin/env python3
"""Time writing 1 GiB into the page cache of a new file, by size of write call.

    python scripts/bench_write.py [--dir /tmp] [--size 1G] [--rounds 8] [--pieces 64K,1M,200M]

Why it exists: on the dev machine (kernel 6.18, ext4, a VM) the same 1 GiB written in large
calls took 0.12 s in some runs and 0.35-0.5 s in others, while 64 KiB calls took 0.13-0.14 s
every time; bigshuf writes files WRITE_PIECE bytes per call (bigshuf/common/output.py). Each
run deletes the file, syncs, waits a second (as the shuffle benchmark does between runs) and
times the writes and the close. What the previous run freed matters (``--alternate``: after a
run in large calls, 64 KiB calls were slower too), so the end-to-end check is
``bench_methods.py --write-pieces 64K,1T``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bigshuf.common.sizes import parse_size  # noqa: E402


def one_run(path: str, data: memoryview, total: int, piece: int) -> float:
    if os.path.exists(path):
        os.unlink(path)
    os.sync()
    time.sleep(1)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        offset = 0
        while offset < total:
            chunk = data[:min(len(data), total - offset)]
            for i in range(0, len(chunk), piece):
                offset += os.pwrite(fd, chunk[i:i + piece], offset)
    finally:
        os.close(fd)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--size", default="1G")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--pieces", default="32K,64K,128K,1M,16M,200M")
    ap.add_argument("--alternate", action="store_true",
                    help="alternate piece sizes within each round (default: all rounds of one size, "
                         "then the next; the file freed before a run then came from the same size)")
    args = ap.parse_args()
    total = parse_size(args.size)
    pieces = [parse_size(p) for p in args.pieces.split(",")]
    data = memoryview(os.urandom(1 << 20) * 200)  # 200 MiB, written again until total
    path = os.path.join(args.dir, "bench_write.out")
    times = {p: [] for p in pieces}
    try:
        order = [p for _ in range(args.rounds) for p in pieces] if args.alternate \
            else [p for p in pieces for _ in range(args.rounds)]
        for p in order:
            times[p].append(one_run(path, data, total, p))
    finally:
        if os.path.exists(path):
            os.unlink(path)
    print(f"writing {args.size} into a new file, {args.rounds} rounds (seconds)")
    for p, v in times.items():
        print(f"piece {p >> 10:>7} KiB: median {statistics.median(v):.3f}  min {min(v):.3f}  "
              f"max {max(v):.3f}  " + " ".join(f"{x:.2f}" for x in v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
