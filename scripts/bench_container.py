#!/usr/bin/env python3
"""Benchmark shuffles where users run them: in a memory cgroup (a container), caches cold, the
input larger than what the container may cache. Peers side by side, in alternating rounds.

It creates a child memory cgroup of its own (cgroup v1 ``memory.limit_in_bytes`` under the
memory controller's mount, or v2 ``memory.max`` where cgroup2 has the memory controller), runs
every command in it (``sh -c 'echo $$ > cgroup.procs; exec CMD'``), and removes it at the end.
Before each run: ``sync`` and, with ``--cold`` (root), ``echo 3 > /proc/sys/vm/drop_caches``.
``--read-bps``/``--write-bps`` also throttle the run's device I/O (a cgroup v1 blkio child,
``--device MAJ:MIN``, default the data directory's disk): a slow disk.

Tools (``--tools``, default all that are available):

* ``bigshuf``   -- this checkout, ``shuffle IN -o OUT --memory M -T TMP`` (the method it chooses);
* ``engine``    -- the same to stdout (``> OUT``): stdout always takes the two-phase engine;
* ``jobs1``     -- ``bigshuf`` with ``--jobs 1`` (the speed-up of ``--jobs 2`` on each shape);
* ``default``   -- ``bigshuf`` without ``--memory``: the budget it picks in the cgroup;
* ``previous``  -- ``--previous-cmd`` (an earlier build), as ``bigshuf``;
* ``prevdefault`` -- ``--previous-cmd`` without ``--memory`` (its fixed 1G default);
* ``terashuf``  -- ``MEMORY=<M in GB> terashuf < IN > OUT``, TMPDIR=TMP;
* ``cp``        -- ``cp IN TMP/x && cp TMP/x OUT``: the floor of an external shuffle, which
  writes and reads a temporary copy (read, write, read, write each byte once).

Reported per shape and tool: median wall of ``--repeat`` rounds (min–max), CPU, peak RSS of the
tree, the cgroup's peak usage (``max_usage_in_bytes``: RSS + page cache), wall / cp floor, wall /
terashuf, exit codes (137: OOM-killed), and what ``-v`` said (the method, the budget).

Example (the README's table)::

    sudo python scripts/bench_container.py --data-dir /work/bigdata --size 2600M --limit 1G \\
        --memory 512M --cold --repeat 3 --terashuf /tmp/terashuf/terashuf \\
        --previous-cmd /work/venv-prev/bin/bigshuf

The adversary's tight run: ``--limit 256M --memory 128M --temp-dir /dev/shm/x --read-bps 200M``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _proctree import RunResult, run_measured  # noqa: E402
from bench_shuffle import (  # noqa: E402
    bigshuf_base,
    bigshuf_env,
    count_lines,
    ensure_corpus,
    format_size,
    log,
    others,
    parse_size,
    wait_idle,
)

TOOLS = ("cp", "bigshuf", "engine", "jobs1", "default", "previous", "prevdefault", "terashuf")
V1_MEMORY = "/sys/fs/cgroup/memory"
V1_BLKIO = "/sys/fs/cgroup/blkio"


class Cgroup:
    """A child memory cgroup of this process's own (v1 or v2), and optionally a blkio one."""

    def __init__(self, limit: int, name: str, throttle: Optional[Tuple[str, int, int]]):
        self.dirs: List[str] = []
        self.memory = self._make_memory(limit, name)
        self.blkio = self._make_blkio(name, throttle) if throttle else None

    def _own(self, controller: str) -> str:
        with open("/proc/self/cgroup") as f:
            for line in f:
                num, ctrls, path = line.rstrip("\n").split(":", 2)
                if controller in ctrls.split(",") or (controller == "" and num == "0"):
                    return path
        raise SystemExit(f"no {controller or 'cgroup2'} cgroup for this process")

    def _make_memory(self, limit: int, name: str) -> str:
        """A child of this process's memory cgroup: v1's controller if mounted, else v2's."""
        v1 = os.path.isdir(V1_MEMORY)
        root, own, limit_file = ((V1_MEMORY, "memory", "memory.limit_in_bytes") if v1
                                 else ("/sys/fs/cgroup", "", "memory.max"))
        d = os.path.join(root + self._own(own), name)
        os.makedirs(d, exist_ok=True)
        self.dirs.append(d)
        self._write(d, limit_file, str(limit))
        self.version = 1 if v1 else 2
        return d

    def _make_blkio(self, name: str, throttle: Tuple[str, int, int]) -> str:
        dev, rbps, wbps = throttle
        d = os.path.join(V1_BLKIO + self._own("blkio"), name)
        os.makedirs(d, exist_ok=True)
        self.dirs.append(d)
        if rbps:
            self._write(d, "blkio.throttle.read_bps_device", f"{dev} {rbps}")
        if wbps:
            self._write(d, "blkio.throttle.write_bps_device", f"{dev} {wbps}")
        return d

    @staticmethod
    def _write(d: str, name: str, value: str) -> None:
        with open(os.path.join(d, name), "w") as f:
            f.write(value)

    def wrap(self, cmd: Sequence[str]) -> List[str]:
        """``cmd`` started inside the cgroup(s)."""
        procs = [os.path.join(d, "cgroup.procs") for d in (self.memory, self.blkio) if d]
        enter = "; ".join(f"echo $$ > {shlex.quote(p)}" for p in procs)
        return ["sh", "-c", f'{enter} && exec "$@"', "sh"] + list(cmd)

    def reset_peak(self) -> None:
        if self.version == 1:
            for name in ("memory.max_usage_in_bytes", "memory.failcnt"):
                try:
                    self._write(self.memory, name, "0")
                except OSError:
                    pass

    def peak(self) -> int:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            with open(os.path.join(self.memory, name)) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def remove(self) -> None:
        for d in reversed(self.dirs):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    subprocess.run(["sleep", "0.1"])


def device_of(path: str) -> str:
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    # A partition's throttle goes on its disk: /sys/dev/block/M:m/partition marks one.
    if os.path.exists(f"/sys/dev/block/{major}:{minor}/partition"):
        disk = os.path.basename(os.path.dirname(os.path.realpath(f"/sys/dev/block/{major}:{minor}")))
        with open(f"/sys/block/{disk}/dev") as f:
            return f.read().strip()
    return f"{major}:{minor}"


def drop_caches() -> None:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError as exc:
        raise SystemExit(f"--cold needs root (drop_caches): {exc}") from None


def command(tool: str, args: argparse.Namespace, inp: str, out: str, tmp: str
            ) -> Tuple[List[str], Optional[str], Optional[str], Dict[str, str]]:
    """(argv, stdin, stdout, env) of one tool's run."""
    mem = ["--memory", format_size(args.memory)]
    if tool in ("bigshuf", "engine", "jobs1", "default", "previous", "prevdefault"):
        prev = tool in ("previous", "prevdefault")
        base = shlex.split(args.previous_cmd) if prev else bigshuf_base(args)
        env = dict(os.environ) if prev else bigshuf_env(args)
        cmd = base + ["shuffle", inp, "--seed", str(args.seed), "-T", tmp, "-v"]
        cmd += [] if tool in ("default", "prevdefault") else mem
        cmd += ["--jobs", "1"] if tool == "jobs1" else []
        cmd += shlex.split(args.bigshuf_args)
        if tool == "engine":
            return cmd, None, out, env
        return cmd + ["-o", out], None, None, env
    if tool == "terashuf":
        env = dict(os.environ, MEMORY=f"{args.memory / (1 << 30):.6g}", SEED=str(args.seed),
                   TMPDIR=tmp)
        return [args.terashuf], inp, out, env
    if tool == "cp":
        x = os.path.join(tmp, "copy")
        return ["sh", "-c", f"cp {shlex.quote(inp)} {x} && cp {x} {shlex.quote(out)} && rm {x}"
                ], None, None, dict(os.environ)
    raise ValueError(tool)


def said(stderr_tail: str) -> str:
    """What -v said about the method and the budget (the summary's tail), shortened."""
    lines = [ln for ln in stderr_tail.splitlines() if ln.startswith("bigshuf:")]
    if not lines:
        return ""
    text = lines[-1]
    at = min([i for i in (text.find("method:"), text.find("no temporary"), text.find("runs in"))
              if i >= 0], default=len(text))
    return text[at:].replace("|", "/")[:400]


def run_one(tool: str, shape: str, inp: str, size: int, rnd: int, cg: Cgroup,
            args: argparse.Namespace) -> Tuple[RunResult, int, bool, str]:
    out = os.path.join(args.out_dir, f"{shape}.{tool}.out")
    tmp = os.path.join(args.temp_dir, f"{tool}-{shape}")
    os.makedirs(tmp, exist_ok=True)
    cmd, stdin, stdout, env = command(tool, args, inp, out, tmp)
    if os.path.exists(out):
        os.unlink(out)
    if args.cold:
        drop_caches()
    else:
        os.sync()
    if args.wait_idle:
        wait_idle(args.wait_idle)
    cg.reset_peak()
    log(f"[{shape} round {rnd + 1}] {tool}: {shlex.join(cmd)}"
        + (f" < {stdin}" if stdin else "") + (f" > {stdout}" if stdout else ""))
    r = run_measured(cg.wrap(cmd), stdin=stdin, stdout=stdout, env=env, cwd=REPO,
                     interval=args.interval, timeout=args.timeout,
                     stderr_path=os.path.join(args.out_dir, f"{shape}.{tool}.stderr"))
    peak = cg.peak()
    ok = r.returncode == 0 and os.path.exists(out) and os.path.getsize(out) == size
    note = said(r.stderr_tail)
    log(f"    rc={r.returncode} wall={r.wall_s:.2f}s cpu={r.user_s + r.sys_s:.2f}s "
        f"rss={r.peak_rss_kb / 1024:.0f}MiB cgroup-peak={peak >> 20}MiB other-cpus={others(r):.2f}"
        f" ok={ok} {note}")
    if os.path.exists(out):
        os.unlink(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return r, peak, ok, note


def table(results: Dict[Tuple[str, str], List[Tuple[RunResult, int, bool, str]]],
          shapes: List[str], tools: List[str], corpora: Dict[str, dict]) -> List[str]:
    rows = ["| input | tool | wall s, median (min–max) | CPU s | peak RSS MiB | cgroup peak MiB "
            "| vs cp floor | vs terashuf | exit codes | others CPUs | what -v said |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for shape in shapes:
        c = corpora[shape]
        med: Dict[str, float] = {}
        for tool in tools:
            runs = results.get((shape, tool), [])
            if runs:
                med[tool] = statistics.median(r.wall_s for r, _, _, _ in runs)
        for tool in tools:
            runs = results.get((shape, tool), [])
            if not runs:
                continue
            walls = [r.wall_s for r, _, _, _ in runs]
            cpu = statistics.median(r.user_s + r.sys_s for r, _, _, _ in runs)
            rss = max(r.peak_rss_kb for r, _, _, _ in runs) / 1024
            peak = max(p for _, p, _, _ in runs) >> 20
            codes = ",".join(str(r.returncode) for r, _, _, _ in runs)
            bad = "" if all(ok for _, _, ok, _ in runs) else " **FAILED**"
            vs_cp = f"{med[tool] / med['cp']:.2f}×" if "cp" in med and tool != "cp" else "–"
            vs_t = f"{med[tool] / med['terashuf']:.2f}×" if "terashuf" in med \
                and tool not in ("terashuf", "cp") else "–"
            oth = statistics.median(others(r) for r, _, _, _ in runs)
            notes = sorted({n for _, _, _, n in runs if n})
            what = " / ".join(notes)[:400]
            rows.append(f"| {shape} {c['bytes'] / 1e9:.2f} GB, {c['lines'] / 1e6:.1f} M lines "
                        f"| {tool}{bad} | {med[tool]:.1f} ({min(walls):.1f}–{max(walls):.1f}) "
                        f"| {cpu:.1f} | {rss:.0f} | {peak} | {vs_cp} | {vs_t} | {codes} "
                        f"| {oth:.2f} | {what} |")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--data-dir", default=os.path.join(REPO, "bench-data"))
    ap.add_argument("--out-dir", help="outputs (default: --data-dir)")
    ap.add_argument("--temp-dir", help="-T / TMPDIR (default: <out-dir>/tmp)")
    ap.add_argument("--shapes", default="json,short")
    ap.add_argument("--size", default="2600M", help="corpus size per shape (default 2600M)")
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--limit", default="1G", help="the cgroup's memory limit (default 1G)")
    ap.add_argument("--memory", default="512M", help="--memory / terashuf MEMORY (default 512M)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tools", help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--terashuf", metavar="PATH")
    ap.add_argument("--bigshuf-cmd", help="command that runs this bigshuf (default: -m bigshuf "
                                          "of this checkout)")
    ap.add_argument("--previous-cmd", metavar="CMD")
    ap.add_argument("--bigshuf-args", default="")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each run")
    ap.add_argument("--read-bps", default=None, help="blkio read throttle, e.g. 200M")
    ap.add_argument("--write-bps", default=None, help="blkio write throttle, e.g. 200M")
    ap.add_argument("--device", help="MAJ:MIN to throttle (default: the data dir's disk)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=None)
    args = ap.parse_args(argv)
    args.memory, size, limit = parse_size(args.memory), parse_size(args.size), parse_size(args.limit)
    tools = [t for t in (args.tools or ",".join(TOOLS)).split(",") if t]
    if args.terashuf is None or not os.access(args.terashuf, os.X_OK):
        tools = [t for t in tools if t != "terashuf"]
    if not args.previous_cmd:
        tools = [t for t in tools if t not in ("previous", "prevdefault")]
    args.out_dir = args.out_dir or args.data_dir
    args.temp_dir = args.temp_dir or os.path.join(args.out_dir, "tmp")
    for d in (args.data_dir, args.out_dir, args.temp_dir):
        os.makedirs(d, exist_ok=True)
    throttle = None
    if args.read_bps or args.write_bps:
        throttle = (args.device or device_of(args.data_dir),
                    parse_size(args.read_bps) if args.read_bps else 0,
                    parse_size(args.write_bps) if args.write_bps else 0)
    shapes = [s for s in args.shapes.split(",") if s]
    corpora = {}
    for shape in shapes:
        path = ensure_corpus(args.data_dir, shape, size, args.corpus_seed)
        corpora[shape] = {"path": path, "bytes": os.path.getsize(path), "lines": count_lines(path)}
    # SIGTERM ends the run through the finally below (the cgroup is removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cg = Cgroup(limit, f"bench-container-{os.getpid()}", throttle)
    results: Dict[Tuple[str, str], List[Tuple[RunResult, int, bool, str]]] = {}
    try:
        for rnd in range(args.repeat):
            for shape in shapes:
                order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
                for tool in order:
                    c = corpora[shape]
                    results.setdefault((shape, tool), []).append(
                        run_one(tool, shape, c["path"], c["bytes"], rnd, cg, args))
    finally:
        cg.remove()
    print(f"## Shuffles in a memory cgroup (v{cg.version}, limit {format_size(limit)}), "
          f"--memory {format_size(args.memory)}, {'cold caches' if args.cold else 'warm'}"
          + (f", blkio throttle {throttle}" if throttle else "") + "\n")
    print(f"Command: {shlex.join([sys.executable] + sys.argv)}\n")
    print("\n".join(table(results, shapes, tools, corpora)))
    print(f"\nMedian of {args.repeat} alternating rounds (the tool order rotated each round); "
          f"each run after sync{' and drop_caches' if args.cold else ''}. cp floor = cp IN TMP "
          f"&& cp TMP OUT (an external shuffle writes and reads a temporary copy). others CPUs: "
          f"CPUs used by other processes during the run (2-core machine). cgroup peak: RSS + "
          f"page cache charged. Exit -9 = killed by SIGKILL (the cgroup's OOM killer).")
    failed = any(not ok for runs in results.values() for _, _, ok, _ in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
