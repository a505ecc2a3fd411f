#!/usr/bin/env python3
"""Stress test (not in CI): shuffle a multi-GB file many times with a random fault injected into
each run, then rerun cleanly, and prove that no line is ever lost or duplicated.

Each round:

1. the destination holds old content; ``bigshuf shuffle`` starts with a random ``--memory`` and one
   random fault: SIGKILL, SIGTERM or SIGINT after a random delay (0-100% of a clean run's time, so
   both the scatter and the gather get hit), or a random file-size limit (RLIMIT_FSIZE between 0
   and the input size);
2. checks: the destination is either the old content or complete (``bigshuf verify``); stderr is
   one line without a traceback; nothing is left in the temp dir; beside the destination at most
   the ``.NAME.bigshuf-PID-*.tmp`` of a SIGKILLed run;
3. the same command again without the fault: exit 0, no temporary file left (the stale one of a
   SIGKILLed run is removed), and ``bigshuf verify`` + line counts against the input.

The input (``scripts/gen_corpus.py --numbered``: every line is unique) is hashed before and after.

    python scripts/stress_shuffle.py                      # 2 GB, 10 runs, in /tmp/bigshuf-stress
    python scripts/stress_shuffle.py --size 300M --runs 5 --seed 1
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OLD = b"old destination content\n"
FAULTS = ("SIGKILL", "SIGTERM", "SIGINT", "RLIMIT_FSIZE")
MEMORIES = ("64M", "256M", "1G")


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("BIGSHUF_DEBUG", None)
    return e


def cli(*args) -> List[str]:
    return [sys.executable, "-m", "bigshuf", *map(str, args)]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(a: Path, b: Path) -> Tuple[bool, int, int, str]:
    """(same multiset, lines in a, lines in b, verify's output) from ``bigshuf verify``."""
    p = subprocess.run(cli("verify", a, b), capture_output=True, env=env())
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    counts = [int(m.replace(",", "")) for m in re.findall(r"^\s*([\d,]+) lines", out, re.M)]
    if len(counts) != 2:
        return False, -1, -1, out.strip()
    return p.returncode == 0 and "same multiset" in out, counts[0], counts[1], out.strip()


def leftovers(d: Path) -> List[str]:
    return sorted(n for n in os.listdir(d) if ".bigshuf-" in n) if d.is_dir() else []


def run_with_fault(args: List[str], fault: str, delay: float, fsize: int,
                   dest: Path) -> Tuple[int, str, subprocess.CompletedProcess]:
    """Run ``bigshuf ARGS`` with the fault; returns (pid, phase hit, result). The phase is
    "gather" if the output's temporary file existed when the signal was sent."""
    phase = "whole run"
    preexec = None
    if fault == "RLIMIT_FSIZE":
        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    proc = subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
                            preexec_fn=preexec)
    if fault != "RLIMIT_FSIZE":
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            gathering = list(dest.parent.glob(f".{dest.name}.bigshuf-{proc.pid}-*.tmp"))
            phase = "gather" if gathering else "start-up or scatter"
            proc.send_signal(getattr(signal, fault))
        else:
            phase = "after the end"
    out, err = proc.communicate()
    return proc.pid, phase, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="2G", help="input size (default 2G)")
    ap.add_argument("--runs", type=int, default=10, help="faulted runs (default 10)")
    ap.add_argument("--dir", default="/tmp/bigshuf-stress", help="work directory (input, temp, output)")
    ap.add_argument("--memory", default=",".join(MEMORIES), help="--memory values to pick from")
    ap.add_argument("--faults", default=",".join(FAULTS), help="faults to pick from")
    ap.add_argument("--seed", type=int, default=None, help="seed of the fault schedule")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    work = Path(a.dir)
    temp, out_dir = work / "tmp", work / "out"
    for d in (work, temp, out_dir):
        d.mkdir(parents=True, exist_ok=True)
    src = work / f"input-{a.size}.txt"
    dest = out_dir / "out.txt"
    memories = a.memory.split(",")
    faults = a.faults.split(",")

    if not src.exists():
        print(f"generating {src} ({a.size}) ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "gen_corpus.py"), "--shape", "short", "--numbered",
                        "--size", a.size, "-o", str(src)], check=True)
    size = src.stat().st_size
    src_hash = sha256(src)
    _, n_lines, _, _ = verify(src, src)
    print(f"input {src}: {size:,} bytes, {n_lines:,} lines", flush=True)

    failures: List[str] = []
    lost_or_dup = 0
    t0 = time.perf_counter()
    # A clean run first: its duration spreads the faults over both phases.
    args = ["shuffle", src, "-o", dest, "-T", temp, "-S", memories[0], "-v"]
    t = time.perf_counter()
    p = subprocess.run(cli(*args), capture_output=True, env=env())
    clean_time = time.perf_counter() - t
    if p.returncode != 0:
        print(p.stderr.decode(errors="replace"))
        return 1
    print(f"clean run: {clean_time:.1f}s; {p.stderr.decode().strip()}", flush=True)

    for i in range(1, a.runs + 1):
        memory = rng.choice(memories)
        fault = rng.choice(faults)
        delay = rng.uniform(0.0, 1.0) * clean_time
        fsize = rng.randrange(1, size)
        seed = rng.randrange(1 << 31)
        args = ["shuffle", src, "-o", dest, "-T", temp, "-S", memory, "--seed", seed]
        dest.write_bytes(OLD)
        what = f"{fault} after {delay:.2f}s" if fault != "RLIMIT_FSIZE" else f"RLIMIT_FSIZE={fsize:,}"
        problems: List[str] = []

        pid, phase, p = run_with_fault(args, fault, delay, fsize, dest)
        if fault != "RLIMIT_FSIZE":
            what += f" ({phase})"
        err = p.stderr.decode(errors="replace")
        lines = [x for x in err.splitlines() if x.strip()]
        status = p.returncode
        if status != 0 and fault != "SIGKILL":
            if "Traceback" in err or len(lines) != 1 or not lines[0].startswith("bigshuf: error: "):
                problems.append(f"stderr is not one error line: {err!r}")
        if status == 0 and fault == "SIGKILL":
            problems.append("exit 0 after SIGKILL?")
        outcome = "old destination kept"
        if dest.read_bytes() != OLD:
            same, a_n, b_n, text = verify(src, dest)
            if same:
                outcome = "finished before the fault: complete output"
            else:
                lost_or_dup += abs(a_n - b_n) if min(a_n, b_n) >= 0 else 0
                problems.append(f"destination neither old nor complete: {text}")
        elif status == 0:
            problems.append("exit 0 but the destination still holds the old content")
        if leftovers(temp):
            problems.append(f"left in temp dir: {leftovers(temp)}")
        left = leftovers(out_dir)
        if fault == "SIGKILL" and status == -signal.SIGKILL:
            bad = [n for n in left if not re.match(rf"^\.out\.txt\.bigshuf-{pid}-[0-9a-f]+\.tmp$", n)]
            if bad or len(left) > 1:
                problems.append(f"left beside the destination: {left}")
        elif left:
            problems.append(f"left beside the destination: {left}")

        # The clean rerun.
        r = subprocess.run(cli(*args, "-v"), capture_output=True, env=env())
        if r.returncode != 0:
            problems.append(f"rerun failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")
        else:
            same, a_n, b_n, text = verify(src, dest)
            lost_or_dup += abs(a_n - b_n) if a_n >= 0 and b_n >= 0 else 0
            if not same:
                problems.append(f"rerun output differs from the input: {text}")
            if leftovers(out_dir) or leftovers(temp):
                problems.append(f"left after the rerun: {leftovers(out_dir) + leftovers(temp)}")
        print(f"run {i}/{a.runs}: -S {memory}, {what}: exit {status}, {outcome}; rerun ok"
              + ("" if not problems else " -- PROBLEMS: " + "; ".join(problems)), flush=True)
        failures += [f"run {i} ({what}, -S {memory}): {x}" for x in problems]

    if sha256(src) != src_hash:
        failures.append("the input file changed")
    elapsed = time.perf_counter() - t0
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{a.runs} runs, {len(failures)} problem(s), {lost_or_dup:,} lines lost or duplicated "
              f"({elapsed:.0f}s):")
        for f in failures:
            print("  " + f)
        return 1
    print(f"{a.runs} runs, 0 lines lost or duplicated ({elapsed:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
