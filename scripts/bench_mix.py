#!/usr/bin/env python3
"""``--mix`` against a plain shuffle of the same amount of data, and against the shell glue.

    python scripts/bench_mix.py [--short /tmp/bench/short-1G-seed0.txt]
        [--json /tmp/bench/json-1G-seed0.txt] [--memory 256M] [--rounds 3] [--corpora]

The mixture takes half the lines of each corpus (``--mix A,B -n A+B``: about 1 GiB of output,
half of its bytes from each). Peers, in alternating rounds (order rotated), input files read
once before each run so every run starts from the page cache:

* ``mix``: ``bigshuf shuffle --mix A,B -n A+B short json``;
* ``plain``: ``bigshuf shuffle`` of a 1 GiB file of the same composition (the first A lines of
  one corpus and the first B of the other, made once before the rounds);
* ``glue``: ``(bigshuf shuffle -n A short; bigshuf shuffle -n B json) | bigshuf shuffle``;
* with ``--corpora``: plain shuffles of each 1 GiB corpus too.

Prints one table: median wall time, min-max, median CPU seconds (user + system of the
process tree), and the ratio to ``plain``. Every output's line count is checked once.
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 24)
            if not chunk:
                return n
            n += chunk.count(b"\n")


def warm(paths: List[str]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def timed(cmd: str, env: Dict[str, str]) -> tuple:
    """Wall and CPU seconds of a shell command (its whole process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], check=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", default="/tmp/bench/short-1G-seed0.txt")
    ap.add_argument("--json", default="/tmp/bench/json-1G-seed0.txt")
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--corpora", action="store_true", help="also plain shuffles of each corpus")
    ap.add_argument("--work-dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    a_lines, b_lines = count_lines(args.short) // 2, count_lines(args.json) // 2
    total = a_lines + b_lines
    work = tempfile.mkdtemp(prefix="bench_mix.", dir=args.work_dir)
    mixed = os.path.join(work, "mixed.txt")
    subprocess.run(f"(head -n {a_lines} {shlex.quote(args.short)}; head -n {b_lines} "
                   f"{shlex.quote(args.json)}) > {mixed}", shell=True, check=True)
    out = os.path.join(work, "out.txt")
    big = f"{shlex.quote(sys.executable)} -m bigshuf shuffle -S {args.memory} --seed {args.seed} -T {work}"
    cmds = {
        "mix": f"{big} --mix {a_lines},{b_lines} -n {total} {args.short} {args.json} -o {out}",
        "plain": f"{big} {mixed} -o {out}",
        "glue": f"({big} -n {a_lines} {args.short}; {big} -n {b_lines} {args.json}) | {big} -o {out}",
    }
    expect = {"mix": total, "plain": total, "glue": total}
    if args.corpora:
        cmds["plain short"] = f"{big} {args.short} -o {out}"
        cmds["plain json"] = f"{big} {args.json} -o {out}"
        expect.update({"plain short": count_lines(args.short), "plain json": count_lines(args.json)})
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    walls: Dict[str, List[float]] = {k: [] for k in cmds}
    cpus: Dict[str, List[float]] = {k: [] for k in cmds}
    names = list(cmds)
    try:
        for r in range(args.rounds):
            for k in names[r % len(names):] + names[:r % len(names)]:
                if os.path.exists(out):
                    os.unlink(out)
                warm([args.short, args.json, mixed])
                wall, cpu = timed(cmds[k], env)
                walls[k].append(wall)
                cpus[k].append(cpu)
                if r == 0:
                    got = count_lines(out)
                    if got != expect[k]:
                        raise SystemExit(f"{k}: {got} lines, expected {expect[k]}")
        size = os.path.getsize(mixed)
    finally:
        for p in (out, mixed):
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(work)
    print(f"--mix {a_lines},{b_lines} -n {total:,} of {args.short} and {args.json} "
          f"({size / 2**30:.2f} GiB of output), --memory {args.memory}, {args.rounds} rounds")
    print("| run | wall s (median) | min-max | CPU s (median) | wall vs plain |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(walls["plain"])
    for k in names:
        w = statistics.median(walls[k])
        print(f"| {k} | {w:.2f} | {min(walls[k]):.2f}-{max(walls[k]):.2f} | "
              f"{statistics.median(cpus[k]):.2f} | {w / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
