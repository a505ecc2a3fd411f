#!/usr/bin/env python3
"""A/B of bigshuf's two ways to shuffle a cached file, with GNU shuf beside them.

    python scripts/bench_methods.py FILE [--memory 256M] [--rounds 8] [--write-pieces 64K,1T]

``input``: the default, which takes the input method (shuffler/methods/reread.py) where it fits;
``engine``: the same run with the input method switched off (the two-phase engine, temporary
file); ``shuf``: GNU shuf in memory. Alternating rounds (order rotated), the input read once
before each run, medians printed. The two bigshuf outputs are byte-identical for a seed.
``--write-pieces``: also the input method with files written in calls of these sizes
(``input/64K``...; 1T: one call per buffer, as before WRITE_PIECE), to see what the size of the
write calls does on this machine (README, "Benchmarks").
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = ("import sys; import bigshuf.shuffler.methods.reread as r; r.suitable = lambda *a: None; "
          "from bigshuf.launch import main; sys.argv[0] = 'bigshuf'; main()")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--write-pieces", default="", help="comma-separated sizes, e.g. 64K,1T")
    args = ap.parse_args()
    out = os.path.join(tempfile.gettempdir(), "bench_methods.out")
    common = ["shuffle", args.file, "-o", out, "-S", args.memory, "--seed", args.seed]
    cmds = {"input": [sys.executable, "-m", "bigshuf", *common],
            "engine": [sys.executable, "-c", ENGINE, *common],
            "shuf": ["shuf", args.file, "-o", out]}
    for piece in filter(None, args.write_pieces.split(",")):
        code = ("import sys; import bigshuf.common.output as o; from bigshuf.common.sizes import parse_size; "
                f"o.WRITE_PIECE = parse_size({piece!r}); from bigshuf.launch import main; "
                "sys.argv[0] = 'bigshuf'; main()")
        cmds[f"input/{piece}"] = [sys.executable, "-c", code, *common]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    times = {k: [] for k in cmds}
    names = list(cmds)
    for r in range(args.rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            if os.path.exists(out):
                os.unlink(out)
            with open(args.file, "rb") as f:  # warm the page cache
                while f.read(1 << 24):
                    pass
            os.sync()
            t = time.perf_counter()
            subprocess.run(cmds[k], check=True, env=env)
            times[k].append(time.perf_counter() - t)
    if os.path.exists(out):
        os.unlink(out)
    for k, v in times.items():
        print(f"{k:10s} median {statistics.median(v):.2f} s  min {min(v):.2f}  max {max(v):.2f}  "
              + " ".join(f"{x:.2f}" for x in v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
