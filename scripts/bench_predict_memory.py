"""Peak RSS of ``bigshuf can`` and ``bigshuf threshold`` against ``--memory`` (issue 22 item 3).

Writes ``.npy`` prediction matrices of the given shapes (rows x classes, float64, random
probabilities with a labels file), runs each command in a fresh process and reads that process's
peak RSS from ``wait4``. The promise: peak RSS <= --memory + 64 MB (the interpreter and numpy).

    python scripts/bench_predict_memory.py                       # 8000x10000 and 200000x1000 at 1G
    python scripts/bench_predict_memory.py --shapes 20000x2000 --memory 256M
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np

from bigshuf.common.sizes import parse_size

SLACK = 64 << 20


def make(path: Path, rows: int, m: int, seed: int = 0) -> Tuple[Path, Path]:
    """A probability matrix written block by block (never whole in this process's memory)."""
    rng = np.random.default_rng(seed)
    labels = path.with_suffix(".labels.txt")
    with open(path, "wb") as f, open(labels, "w") as lab:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (rows, m)})
        for start in range(0, rows, 1000):
            n = min(1000, rows - start)
            y = rng.integers(0, m, n)
            logits = rng.normal(size=(n, m))
            logits[np.arange(n), y] += 4.0
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            f.write((p / p.sum(axis=1, keepdims=True)).astype("<f8").tobytes())
            lab.writelines(f"{v}\n" for v in y)
    return path, labels


def peak_rss(argv: List[str]) -> Tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS bytes) of one child process."""
    t = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        print(err, file=sys.stderr)
    return proc.returncode, time.time() - t, usage.ru_maxrss * 1024


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="8000x10000,200000x1000")
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--dir", type=Path, default=None, help="where the matrices go (default: a temp dir)")
    args = ap.parse_args(argv)
    bound = parse_size(args.memory) + SLACK
    bad = 0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for shape in args.shapes.split(","):
            rows, m = (int(v) for v in shape.split("x"))
            src, labels = make(Path(tmp) / f"p{rows}x{m}.npy", rows, m)
            out = Path(tmp) / "out.npy"
            runs = {
                "can": ["can", src, "--labels", labels, "--prior", "uniform", "-o", out],
                "threshold": ["threshold", src, "--labels", labels, "--cv", "2", "--save-params",
                              Path(tmp) / "w.json"],
                "can --tune": ["can", src, "--labels", labels, "--tune", "--cv", "2", "--taus", "0.5,0.9",
                               "--alphas", "1,2", "--iterations-grid", "1,2", "--ks", "3", "--no-progress"],
            }
            for name, cmd in runs.items():
                rc, wall, rss = peak_rss([sys.executable, "-m", "bigshuf", *map(str, cmd), "-q",
                                          "--memory", args.memory])
                ok = rc == 0 and rss <= bound
                bad += not ok
                print(f"{name:<9} {rows:>7} x {m:<6} --memory {args.memory}: peak RSS {rss / 2**20:7.0f} MiB "
                      f"(bound {bound / 2**20:.0f}), {wall:5.1f} s, exit {rc}  {'ok' if ok else 'OVER'}")
            src.unlink()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
