"""Run a command and measure wall time, CPU time, and peak RSS / open fds of its process tree.

Linux only (reads /proc). The whole-tree peak is sampled: every ``interval`` seconds the
VmRSS of the child and all its live descendants is summed, and the largest sum is kept. Summing
VmRSS counts pages shared between processes (libraries, fork copy-on-write) once per process,
so the tree sum errs high; sampling can miss a spike shorter than the interval.

Two per-process peaks complement it (neither is a sum):

* the largest ``VmHWM`` (the kernel's high-water RSS of the process since its exec) seen in
  any sample -- exact except for growth in a process's last ``interval`` before it exits;
* ``ru_maxrss`` from ``wait4`` of the direct child: exact, covers the child and the descendants
  it reaped, but on Linux it is at least the *launcher's* own peak RSS, because the
  (v)forked child's pre-exec address space is the parent's. So it is kept only when it exceeds
  the launcher's own ``ru_maxrss`` (else reported as 0); keep the launcher small (the benchmark
  does not import numpy).
"""
from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple


@dataclass
class RunResult:
    """What :func:`run_measured` observed for one command."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_tree_rss_kb: int  #: max over samples of the summed VmRSS of the process tree
    peak_hwm_kb: int  #: max VmHWM of any single process of the tree seen in a sample
    ru_maxrss_kb: int  #: wait4 ru_maxrss of the child; 0 if not above the launcher's own peak
    launcher_maxrss_kb: int  #: this process's own peak RSS (a floor for wait4's ru_maxrss)
    peak_tree_fds: int  #: max over samples of the summed open fds of the tree
    peak_tree_procs: int  #: max number of live processes seen in the tree
    samples: int
    system_busy_s: float = 0.0  #: non-idle CPU time of the whole machine during the run
    stderr_tail: str = ""
    fd_targets: List[str] = field(default_factory=list)  #: fd targets at the fd peak

    @property
    def peak_rss_kb(self) -> int:
        """Best estimate of the tree's peak: the sampled sum or a single-process high-water mark."""
        return max(self.peak_tree_rss_kb, self.peak_hwm_kb, self.ru_maxrss_kb)

    @property
    def peak_single_kb(self) -> int:
        """Largest single-process peak RSS (VmHWM samples and wait4 ru_maxrss)."""
        return max(self.peak_hwm_kb, self.ru_maxrss_kb)


def _children(pid: int) -> List[int]:
    """Direct children of ``pid`` (all its threads' children files)."""
    kids: List[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return kids


def _children_by_scan(pid: int) -> List[int]:
    """Fallback without CONFIG_PROC_CHILDREN: scan /proc/*/stat for the parent pid."""
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The comm field may hold spaces/parens; ppid is the 2nd field after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(name))
    return kids


_HAVE_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def tree_pids(root: int) -> List[int]:
    """``root`` and all its live descendants."""
    find = _children if _HAVE_CHILDREN_FILE else _children_by_scan
    seen: Set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(find(pid))
    return list(seen)


def _rss_hwm_kb(pid: int) -> Tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KB; (0, 0) if gone or a zombie."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                    break  # VmRSS follows VmHWM
    except (OSError, IndexError, ValueError):
        pass
    return rss, hwm


def system_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _fds(pid: int) -> List[str]:
    """Targets of the open fds of ``pid`` (empty if gone)."""
    out = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            out.append("?")
    return out


def run_measured(cmd: Sequence[str], *, stdin: Optional[str] = None, stdout: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                 interval: float = 0.01, timeout: Optional[float] = None,
                 stderr_path: Optional[str] = None) -> RunResult:
    """Run ``cmd`` (stdin/stdout redirected from/to the given paths), sampling its tree.

    ``stderr`` goes to ``stderr_path`` (or a temp file); its last lines are kept in the result.
    The process is killed (SIGKILL to the child) if ``timeout`` seconds pass.
    """
    import tempfile

    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
    ferr = open(stderr_path, "w+b") if stderr_path else tempfile.TemporaryFile()
    try:
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        busy0 = system_busy_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdin=fin, stdout=fout, stderr=ferr,
                                env=dict(env) if env is not None else None, cwd=cwd)
        peak_rss = peak_hwm = peak_fds = peak_procs = samples = 0
        fd_targets: List[str] = []
        while True:
            # Reap with wait4 (not Popen.wait) to get the child's own rusage.
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                wall = time.perf_counter() - t0
                busy = system_busy_seconds() - busy0
                break
            pids = tree_pids(proc.pid)
            mem = [_rss_hwm_kb(p) for p in pids]
            rss = sum(r for r, _ in mem)
            peak_hwm = max([peak_hwm] + [h for _, h in mem])
            fds_by_pid: Dict[int, List[str]] = {p: _fds(p) for p in pids}
            nfds = sum(len(v) for v in fds_by_pid.values())
            samples += 1
            peak_rss = max(peak_rss, rss)
            peak_procs = max(peak_procs, len(pids))
            if nfds > peak_fds:
                peak_fds = nfds
                fd_targets = [t for v in fds_by_pid.values() for t in v]
            if timeout is not None and time.perf_counter() - t0 > timeout:
                proc.kill()
            time.sleep(interval)
        proc.returncode = os.waitstatus_to_exitcode(status)
        ferr.seek(0, os.SEEK_END)
        size = ferr.tell()
        ferr.seek(max(0, size - 4000))
        tail = ferr.read().decode("utf-8", "replace")
        return RunResult(
            returncode=proc.returncode, wall_s=wall, user_s=ru.ru_utime, sys_s=ru.ru_stime,
            peak_tree_rss_kb=peak_rss, peak_hwm_kb=peak_hwm,
            ru_maxrss_kb=ru.ru_maxrss if ru.ru_maxrss > own_peak else 0,
            launcher_maxrss_kb=own_peak, peak_tree_fds=peak_fds,
            peak_tree_procs=peak_procs, samples=samples, system_busy_s=busy, stderr_tail=tail, fd_targets=fd_targets,
        )
    finally:
        for f in (fin, fout, ferr):
            if hasattr(f, "close"):
                f.close()
