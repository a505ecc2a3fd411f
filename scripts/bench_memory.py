#!/usr/bin/env python3
"""Memory-bound benchmark: peak RSS of the whole `bigshuf shuffle` process tree against
`--memory` + 64 MiB, over budgets from 1M to 1G and inputs of every line-length mix.

    python scripts/bench_memory.py                       # 200 MB inputs (16x the budget at most)
    python scripts/bench_memory.py --size 1G --budgets 256M,1G

Shapes: ``short`` (~37-byte lines), ``json`` (~1 KB lines), ``empty`` (only newlines: one byte
a record, the worst case for per-record metadata), ``mixed`` (short lines with a 1/1000 share
of 1-64 KB lines), ``huge`` (short lines plus a few lines of 1/20 of the smallest budget's
longest allowed line), ``long`` (lines of 1 B to 16 MB, log-uniform: at 1 GB and --memory
256M the input method reads its inputs in parts as long as a line; budgets whose longest
allowed line is shorter end with a clean exit 2). Prints a Markdown table and exits 1 if any
run exceeds its bound or fails.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _proctree import run_measured  # noqa: E402

ALLOWANCE_KB = 64 * 1024


def _gen(shape: str, size: int, path: Path) -> None:
    """Generate an input in a subprocess (keeps numpy out of this harness's RSS)."""
    code = f"""
import numpy as np, sys
sys.path.insert(0, {str(HERE)!r})
size, shape, path = {size}, {shape!r}, {str(path)!r}
rng = np.random.default_rng(0)
if shape in ("short", "json"):
    from gen_corpus import generate_file
    generate_file(path, shape, size)
    sys.exit(0)
with open(path, "wb") as f:
    done = 0
    while done < size:
        n = min(size - done, 8 << 20)
        if shape == "empty":
            f.write(b"\\n" * n); done += n; continue
        if shape == "long":  # log-uniform 1 B .. 16 MB: the input method's longest parts
            lens = np.exp(rng.uniform(0, np.log(16e6), 64)).astype(np.int64) + 1
            lens = lens[:max(1, int(np.searchsorted(np.cumsum(lens), n)))]
        else:
            lens = rng.integers(10, 60, n // 35 + 1)
        if shape == "mixed":
            big = rng.random(len(lens)) < 0.001
            lens[big] = rng.integers(1 << 10, 64 << 10, int(big.sum()))
        buf = rng.integers(97, 123, int(lens.sum()), dtype=np.uint8)
        buf[np.cumsum(lens) - 1] = 10
        f.write(buf.tobytes()); done += len(buf)
        if shape == "huge":
            f.write(b"H" * (3 << 10) + b"\\n"); done += (3 << 10) + 1
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def _compressed(path: Path, codec: str) -> Path:
    """``path`` compressed as .zst (level 3) or .gz (level 6), made once."""
    if codec == "plain":
        return path
    out = Path(f"{path}.{codec}")
    if not out.exists():
        if codec == "zst":
            import zstandard
            with open(path, "rb") as f, open(out, "wb") as g:
                zstandard.ZstdCompressor(level=3).copy_stream(f, g)
        else:
            import gzip
            import shutil
            with open(path, "rb") as f, gzip.open(out, "wb", compresslevel=6) as g:
                shutil.copyfileobj(f, g, 1 << 20)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="200M", help="input size per shape (K/M/G)")
    ap.add_argument("--max-ratio", type=int, default=16,
                    help="inputs are cut to at most this many times the budget (tiny budgets "
                         "need many passes; 16x is already far larger than memory)")
    ap.add_argument("--budgets", default="1M,16M,64M,256M,1G")
    ap.add_argument("--shapes", default="short,json,empty,mixed,huge")
    ap.add_argument("--data-dir", default=None, help="where inputs are generated (default: a temp dir)")
    ap.add_argument("--codecs", default="plain",
                    help="comma-separated of plain,zst,gz: also shuffle IN.zst -> OUT.zst etc. "
                         "(decompressing and compressing threads count too)")
    a = ap.parse_args()
    from bigshuf.common.sizes import parse_size  # light import: no numpy

    size = parse_size(a.size)
    data = Path(a.data_dir or tempfile.mkdtemp(prefix="bigshuf-mem-"))
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows: List[str] = ["| shape | input | --memory | wall s | peak RSS MiB | bound MiB | result |",
                       "|---|---|---|---:|---:|---:|---|"]
    bad = 0
    for shape in a.shapes.split(","):
        src = data / f"{shape}-{a.size}.txt"
        if not src.exists():
            _gen(shape, size, src)
        for budget in a.budgets.split(","):
            cut = min(size, a.max_ratio * parse_size(budget))
            run_src = src
            if cut < size:
                run_src = data / f"{shape}-{cut}.txt"
                if not run_src.exists():
                    with open(src, "rb") as f, open(run_src, "wb") as g:
                        g.write(f.read(cut))
            for codec in a.codecs.split(","):
                suffix = "" if codec == "plain" else "." + codec
                inp = _compressed(run_src, codec)
                out = data / f"out.txt{suffix}"
                r = run_measured([sys.executable, "-m", "bigshuf", "shuffle", str(inp), "-o", str(out),
                                  "--memory", budget, "--seed", "1", "-T", str(data)], env=env)
                bound_kb = parse_size(budget) // 1024 + ALLOWANCE_KB
                ok = r.returncode == 0 and r.peak_rss_kb <= bound_kb
                if r.returncode == 2 and shape in ("huge", "long"):
                    ok, verdict = True, "line too long for this budget: clean exit 2"
                else:
                    verdict = "ok" if ok else (f"FAILED exit {r.returncode}" if r.returncode else "OVER BOUND")
                bad += not ok
                rows.append(f"| {shape}{suffix} | {run_src.stat().st_size / 2**20:.0f} MiB | {budget} | "
                            f"{r.wall_s:.1f} | {r.peak_rss_kb / 1024:.0f} | {bound_kb / 1024:.0f} | {verdict} |")
                print(rows[-1], flush=True)
                out.unlink(missing_ok=True)
    print()
    print("\n".join(rows))
    print(f"\n{'all within the bound' if not bad else f'{bad} run(s) failed or exceeded the bound'} "
          f"(peak RSS: summed VmRSS of the process tree sampled every 10 ms, and VmHWM)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
