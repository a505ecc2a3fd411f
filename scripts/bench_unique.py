#!/usr/bin/env python3
"""--unique against a plain shuffle of the same file and against ``sort -u | shuf``.

    python scripts/bench_unique.py [FILE] [--memory 256M] [--rounds 3] [--tools unique,plain,sort-u]

Tools, run in alternating rounds (the order rotated each round, the input read once before each
run so it is in the page cache), medians printed with min-max, CPU time and peak RSS of the
process tree (scripts/_proctree.py):

* ``unique``: ``bigshuf shuffle -u FILE -o OUT -S MEMORY``;
* ``plain``: ``bigshuf shuffle FILE -o OUT -S MEMORY`` (no dedup: the goal is unique <= 2x this);
* ``engine``: the same with the input method switched off (the two-phase engine, which --unique
  runs on: on a cached file of long lines, plain takes the input method and writes no temporary
  file);
* ``sort-u``: ``sort -u -S MEMORY FILE | shuf -o OUT`` (LC_ALL=C: byte order, as bigshuf compares);
* ``awk``: ``awk '!seen[$0]++' FILE | bigshuf shuffle -S MEMORY -o OUT`` (same bytes as unique for
  a seed: checked when both run).

The default FILE is the short-line corpus (heavy duplication; scripts/gen_corpus.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proctree import run_measured  # noqa: E402

ENGINE = ("import sys; import bigshuf.shuffler.methods.reread as r; r.suitable = lambda *a: None; "
          "from bigshuf.launch import main; sys.argv[0] = 'bigshuf'; main()")


def _commands(args, out: str):
    me = [sys.executable, "-m", "bigshuf", "shuffle"]
    mem = ["-S", args.memory, "--seed", args.seed]
    return {
        "unique": (me + ["-u", args.file, "-o", out + ".unique"] + mem, None),
        "plain": (me + [args.file, "-o", out + ".plain"] + mem, None),
        "engine": ([sys.executable, "-c", ENGINE, "shuffle", args.file, "-o", out + ".engine"] + mem,
                   None),
        "sort-u": (["sh", "-c", f"LC_ALL=C sort -u -S {args.memory} -T {tempfile.gettempdir()} "
                          f"'{args.file}' | shuf -o '{out}.sort-u'"], None),
        "awk": (["sh", "-c", f"LC_ALL=C awk '!seen[$0]++' '{args.file}' | "
                       f"{' '.join(me)} -o '{out}.awk' {' '.join(mem)}"], None),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default="/tmp/bench/short-1G-seed0.txt")
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--tools", default="unique,plain,sort-u")
    args = ap.parse_args()
    out = os.path.join(tempfile.gettempdir(), "bench_unique.out")
    cmds = _commands(args, out)
    tools = [t for t in args.tools.split(",") if t]
    results = {t: [] for t in tools}
    env = dict(os.environ, LC_ALL="C")
    for r in range(args.rounds):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        for tool in order:
            subprocess.run(["cat", args.file], stdout=subprocess.DEVNULL, check=True)
            cmd, _ = cmds[tool]
            res = run_measured(cmd, env=env, timeout=3600)
            if res.returncode != 0:
                print(f"{tool}: exit {res.returncode}: {res.stderr_tail}", file=sys.stderr)
                return 1
            results[tool].append(res)
            for suffix in (".plain", ".sort-u", ".engine"):  # free the page cache of big outputs
                if os.path.exists(out + suffix) and tool != "unique":
                    os.unlink(out + suffix)
            print(f"round {r + 1} {tool}: {res.wall_s:.2f} s", file=sys.stderr)
    if "unique" in tools and "awk" in tools:
        with open(out + ".unique", "rb") as a, open(out + ".awk", "rb") as b:
            same = a.read() == b.read()
        print(f"unique == awk | shuffle (same seed): {same}", file=sys.stderr)
    plain = statistics.median(x.wall_s for x in results["plain"]) if "plain" in results else None
    print(f"{args.file}, --memory {args.memory}, {args.rounds} alternating rounds")
    print("| tool | wall s (median) | min-max | CPU s | peak RSS MiB | wall vs plain |")
    print("|---|---:|---:|---:|---:|---:|")
    for tool in tools:
        rs = results[tool]
        wall = statistics.median(x.wall_s for x in rs)
        cpu = statistics.median(x.user_s + x.sys_s for x in rs)
        rss = max(x.peak_rss_kb for x in rs) / 1024
        vs = f"{wall / plain:.2f}x" if plain else "-"
        print(f"| {tool} | {wall:.2f} | {min(x.wall_s for x in rs):.2f}-{max(x.wall_s for x in rs):.2f} "
              f"| {cpu:.2f} | {rss:.0f} | {vs} |")
    for suffix in (".unique", ".plain", ".sort-u", ".awk", ".engine"):
        if os.path.exists(out + suffix):
            os.unlink(out + suffix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
