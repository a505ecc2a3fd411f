#!/usr/bin/env python3
"""--epochs 3 against 3 separate runs and one run, with --manifest's cost beside them.

    python scripts/bench_epochs.py /tmp/bench/short-1G-seed0.txt [--memory 256M] [--rounds 3]

``one``: one shuffle; ``epochs3``: ``--epochs 3 -o 'OUT{epoch}'`` (one process); ``separate3``:
the same three epochs as three processes (``--first-epoch e --epochs 1``), timed together;
``one+manifest``: one shuffle with ``--manifest`` (digests as written; sequential writes; the
engine instead of the input method). Alternating rounds (order rotated), the input read once
before each variant, medians of wall time, CPU (user+sys) and peak RSS of the process tree.
At the end the outputs of ``epochs3`` and ``separate3`` are compared (XXH3-128 of each file).
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile

import xxhash

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proctree import run_measured  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(path: str) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 24)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--out-dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    out = os.path.join(args.out_dir, "bench_epochs")
    base = [sys.executable, "-m", "bigshuf", "shuffle", args.file, "-S", args.memory, "--seed", args.seed]
    variants = {
        "one": [base + ["-o", f"{out}-one.txt"]],
        "epochs3": [base + ["--epochs", "3", "-o", out + "-e{epoch}.txt"]],
        "separate3": [base + ["--first-epoch", str(e), "--epochs", "1", "-o", out + "-s{epoch}.txt"]
                      for e in range(3)],
        "one+manifest": [base + ["-o", f"{out}-m.txt", "--manifest", f"{out}-m.json"]],
    }
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = {k: [] for k in variants}
    digests = {}
    names = list(variants)
    for r in range(args.rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            for f in glob.glob(out + "-*"):
                os.unlink(f)  # no output of a run before (its pages freed, no writeback)
            with open(args.file, "rb") as f:  # the input in the page cache
                while f.read(1 << 24):
                    pass
            os.sync()
            wall = cpu = rss = busy = 0.0
            for cmd in variants[k]:
                res = run_measured(cmd, env=env)
                if res.returncode != 0:
                    raise SystemExit(f"{k}: exit {res.returncode}: {res.stderr_tail}")
                wall += res.wall_s
                cpu += res.user_s + res.sys_s
                rss = max(rss, res.peak_tree_rss_kb / 1024)
                busy += res.system_busy_s
            results[k].append((wall, cpu, rss, busy - cpu))
            if k in ("epochs3", "separate3"):  # untimed: the outputs, to compare at the end
                digests[k] = [_digest(f"{out}-{k[0]}{e}.txt") for e in range(3)]
            print(f"round {r} {k:13s} {wall:6.2f} s wall  {cpu:6.2f} s CPU  {rss:5.0f} MiB",
                  flush=True)
    print(f"\n{'variant':13s} {'wall median':>11s} {'min-max':>13s} {'CPU s':>7s} {'RSS MiB':>8s} "
          f"{'others CPUs':>11s} {'vs one':>7s}")
    one = statistics.median(w for w, *_ in results["one"])
    for k, v in results.items():
        walls = [w for w, *_ in v]
        med = statistics.median(walls)
        others = statistics.median(o / w for w, _, _, o in v)
        print(f"{k:13s} {med:11.2f} {min(walls):6.2f}-{max(walls):<6.2f} "
              f"{statistics.median(c for _, c, _, _ in v):7.2f} {max(m for _, _, m, _ in v):8.0f} "
              f"{others:11.2f} {med / one:6.2f}x")
    same = digests["epochs3"] == digests["separate3"] and len(set(digests["epochs3"])) == 3
    print(f"\nepochs3 and separate3 outputs identical: {same}")
    for f in glob.glob(out + "-*"):
        os.unlink(f)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
