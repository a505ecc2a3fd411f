#!/usr/bin/env python3
"""``--mix`` with heavy repetition (tiny inputs, huge -n) against a plain shuffle of a file of the
same output, side by side: wall time, CPU time and peak RSS of each run.

    python scripts/bench_mix_repeat.py [--lines 20000000] [--memory 16M] [--rounds 3]

Peers, in alternating rounds:

* ``mix 1,1``: ``bigshuf shuffle --mix 1,1 a b -n LINES`` (a = 10 lines, b = 5 lines);
* ``mix one``: ``bigshuf shuffle --mix 1 one -n LINES`` (a one-line input);
* ``plain``: ``bigshuf shuffle`` of a file holding what ``mix 1,1`` writes (made once).

Each copy of an input used to become a block and a run of its own (past --memory, minutes for a
million copies); packed copies make the mixture scatter as many runs as the plain shuffle.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd: str, env: Dict[str, str]) -> Tuple[float, float, float]:
    """Wall s, CPU s and peak RSS (MB) of a command (one process)."""
    t = time.perf_counter()
    proc = subprocess.Popen(shlex.split(cmd), env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status:
        raise SystemExit(f"failed ({status}): {cmd}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20_000_000)
    ap.add_argument("--memory", default="16M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work-dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench_mix_repeat.", dir=args.work_dir)
    a, b, one = (os.path.join(work, n) for n in ("a.txt", "b.txt", "one.txt"))
    plain, out = os.path.join(work, "plain.txt"), os.path.join(work, "out.txt")
    with open(a, "w") as f:
        f.writelines(f"{i}\n" for i in range(1, 11))
    with open(b, "w") as f:
        f.writelines(f"{i}\n" for i in range(1, 6))
    with open(one, "w") as f:
        f.write("hello\n")
    big = f"{sys.executable} -m bigshuf shuffle -S {args.memory} --seed 1 -T {work}"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(shlex.split(f"{big} --mix 1,1 {a} {b} -n {args.lines} -o {plain}"),
                   env=env, check=True)
    cmds = {"mix 1,1": f"{big} --mix 1,1 {a} {b} -n {args.lines} -o {out}",
            "mix one": f"{big} --mix 1 {one} -n {args.lines} -o {out}",
            "plain": f"{big} {plain} -o {out}"}
    got: Dict[str, List[Tuple[float, float, float]]] = {k: [] for k in cmds}
    names = list(cmds)
    try:
        for r in range(args.rounds):
            for k in names[r % len(names):] + names[:r % len(names)]:
                got[k].append(timed(cmds[k], env))
    finally:
        for p in (a, b, one, plain, out):
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(work)
    print(f"-n {args.lines:,}, --memory {args.memory}, {args.rounds} rounds")
    print("| run | wall s (median) | CPU s (median) | peak RSS MB (max) | wall vs plain |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(w for w, _, _ in got["plain"])
    for k in names:
        w = statistics.median(x[0] for x in got[k])
        print(f"| {k} | {w:.2f} | {statistics.median(x[1] for x in got[k]):.2f} | "
              f"{max(x[2] for x in got[k]):.0f} | {w / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
