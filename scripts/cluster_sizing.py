#!/usr/bin/env python3
"""Sizing table for `bigshuf shuffle --scheduler ...`, computed by the planner the code uses
(bigshuf.shuffler.methods.cluster.plan_cluster -> bigshuf.shuffler.plan.plan + the index halving of the scatter).

    python scripts/cluster_sizing.py                 # the README table
    python scripts/cluster_sizing.py --size 3T --memory 8G --file-size 2G
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bigshuf.common.sizes import format_size, parse_size  # noqa: E402
from bigshuf.shuffler.methods.cluster import plan_cluster  # noqa: E402

#: (input size, memory per worker task, input file size) rows of the README table.
DEFAULT_ROWS = [("100G", "4G", "1G"), ("10T", "16G", "4G"), ("1P", "64G", "16G")]


def table(rows) -> str:
    head = ("| input | memory / task | input files | runs | buckets | bucket size | levels "
            "| scatter tasks | gather tasks | shared temp | worker-local temp / task | client index |")
    lines = [head, "|" + "---|" * 12]
    for size, memory, file_size in rows:
        n = parse_size(size)
        files = max(1, -(-n // parse_size(file_size)))
        p = plan_cluster(n, memory, files)
        lines.append(
            f"| {size} | {memory} | {files:,} × {file_size} | {p.runs:,} | {p.buckets:,} | "
            f"{format_size(p.bucket_bytes)} | {p.levels} | {p.scatter_tasks:,} | "
            f"{p.gather_tasks:,} | {format_size(p.shared_temp_bytes)} | "
            f"{format_size(p.worker_temp_bytes) if p.worker_temp_bytes else '–'} | "
            f"{format_size(p.index_bytes)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", action="append", help="input size (repeatable), e.g. 100G")
    ap.add_argument("--memory", default=None, help="memory per worker task (with --size)")
    ap.add_argument("--file-size", default="1G", help="size of each input file (with --size)")
    a = ap.parse_args()
    rows = DEFAULT_ROWS if not a.size else [(s, a.memory or "4G", a.file_size) for s in a.size]
    print(table(rows))


if __name__ == "__main__":
    main()
