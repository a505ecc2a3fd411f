#!/usr/bin/env python3
"""The speed targets of issue 22 (item 4), timed as a user runs them, optionally beside another build.

1. ``bigshuf can dev.jsonl --tune --prior train_labels.txt`` on the real-model dev file
   (``scripts/gen_real_predictions.py``, 100 000 x 40) -- target <= 20 s wall on 2 cores;
2. ``bigshuf threshold dev.jsonl`` (class weights, default 5-fold CV) on the same -- <= 20 s wall;
3. ``bigshuf can big.jsonl -o out.jsonl --prior uniform`` on 1 000 000 x 100 JSONL -- <= 15 s.
   The file is made here (seeded) if missing: rows ``{"id": i, "probs": [...], "label": k}`` of a
   model biased against Zipf-frequent classes, probabilities rounded to 6 decimals as real dumps
   often are (924 MB).

    python scripts/gen_real_predictions.py bench-data/real
    python scripts/bench_predict_speed.py bench-data/real --rounds 3 --base /tmp/base/.venv/bin/python

With ``--base PYTHON`` (the interpreter of another checkout's venv, e.g. the build a branch
started from) each round runs the base build and this one back to back, alternating which goes
first, and the medians are printed side by side, with the CPU time (user + sys) and peak RSS of
each run and the load average (other jobs on the machine inflate wall times). The outputs of the
two builds are compared byte for byte.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from _proctree import run_measured  # noqa: E402


def make_big(path: Path, n: int = 1_000_000, m: int = 100, seed: int = 5) -> None:
    """Seeded n x m JSONL, written in blocks (bounded memory)."""
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, m + 1)
    prior /= prior.sum()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for start in range(0, n, 50_000):
            k = min(50_000, n - start)
            y = rng.choice(m, k, p=prior)
            logits = rng.normal(0, 1.0, (k, m))
            logits[np.arange(k), y] += rng.gamma(2.0, 4.25, k)
            logits -= 0.4 * np.log(prior * m)[None, :]
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = np.round(p / p.sum(axis=1, keepdims=True), 6)
            p[np.arange(k), p.argmax(axis=1)] += 1e-6 * (p.sum(axis=1) == 0)
            f.write(b"".join(orjson.dumps({"id": start + i, "probs": row, "label": int(c)}) + b"\n"
                             for i, (row, c) in enumerate(zip(p.tolist(), y.tolist()))))
    tmp.replace(path)


def run(python: str, cwd: str, args: List[str]) -> Tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of ``python -m bigshuf args``: CPU and RSS of its whole process
    tree (JSONL parse workers included; RSS sampled by ``_proctree``, shared pages counted per process)."""
    res = run_measured([python, "-m", "bigshuf", *args], cwd=cwd, interval=0.05)
    if res.returncode != 0:
        sys.exit(f"{python} -m bigshuf {' '.join(args)} failed:\n{res.stderr_tail}")
    return res.wall_s, res.user_s + res.sys_s, res.peak_rss_kb / 1024


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="directory written by gen_real_predictions.py")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", default=None, help="python of another build to time beside this one")
    ap.add_argument("--only", default="1,2,3", help="which targets (comma list of 1-3)")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    big = root / "big-1m-100.jsonl"
    only = {int(v) for v in args.only.split(",")}
    if 3 in only and not big.exists():
        t0 = time.time()
        make_big(big)
        print(f"made {big} ({big.stat().st_size / 1e6:.0f} MB) in {time.time() - t0:.0f} s", flush=True)
    out = root / "speed-out"
    out.mkdir(exist_ok=True)
    dev, prior = str(root / "dev.jsonl"), str(root / "train_labels.txt")
    cases = {
        1: ("can dev.jsonl --tune --prior train_labels.txt", 20.0,
            ["can", dev, "--tune", "--prior", prior, "-q", "--no-progress", "--save-params", "{out}/can.json"]),
        2: ("threshold dev.jsonl (weights, 5-fold CV)", 20.0,
            ["threshold", dev, "-q", "--save-params", "{out}/thr.json"]),
        3: ("can big-1m-100.jsonl -o out.jsonl --prior uniform", 15.0,
            ["can", str(big), "-o", "{out}/big.jsonl", "--prior", "uniform", "-q"]),
    }
    builds: Dict[str, Tuple[str, str]] = {"new": (sys.executable, str(REPO))}
    if args.base:
        base_python = args.base
        base_repo = str(Path(base_python).resolve().parent.parent.parent)
        builds = {"base": (base_python, base_repo), **builds}
    for case in sorted(only):
        what, target, template = cases[case]
        times: Dict[str, List[Tuple[float, float, float]]] = {b: [] for b in builds}
        loads = []
        for r in range(args.rounds):
            order = list(builds) if r % 2 == 0 else list(reversed(builds))
            for b in order:
                python, cwd = builds[b]
                os.makedirs(f"{out}/{b}", exist_ok=True)
                loads.append(os.getloadavg()[0])
                times[b].append(run(python, cwd, [a.format(out=f"{out}/{b}") for a in template]))
        print(f"\n{case}. bigshuf {what}  (target <= {target:g} s wall; load average "
              f"{min(loads):.1f}-{max(loads):.1f})")
        for b, rows in times.items():
            wall = statistics.median(t[0] for t in rows)
            cpu = statistics.median(t[1] for t in rows)
            rss = max(t[2] for t in rows)
            runs = " ".join(f"{t[0]:.1f}" for t in rows)
            ok = "OK" if wall <= target else "MISSED"
            print(f"  {b:<5} median {wall:6.1f} s wall, {cpu:6.1f} s CPU, peak RSS {rss:5.0f} MiB  "
                  f"(runs: {runs} s)  {ok}", flush=True)
        if args.base:
            name = {1: "can.json", 2: "thr.json", 3: "big.jsonl"}[case]
            same = filecmp.cmp(f"{out}/base/{name}", f"{out}/new/{name}", shallow=False)
            print(f"  outputs of base and new: {'identical' if same else 'DIFFERENT'} ({name})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
