"""Test helpers: running the CLI in this process (``invoke``) or as a real process (``run``,
``spawn``), injecting faults (resource limits, signals at a chosen phase, fewer privileges, small or
read-only file systems) and checking what a run left behind.

Phases are caught without any hook in bigshuf: the test polls ``/proc/PID`` until the process is in
the wanted phase (scatter: the input is open and partly read, no output file yet; gather: the input
is closed and the output's temporary file exists and is less than half written), stops it with
SIGSTOP, checks the phase again while it is frozen, and only then sends the fault. The phase is
therefore certain when the signal is queued, whatever the load of the machine.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent

NOBODY = 65534


def cli_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("BIGSHUF_DEBUG", None)
    if extra:
        env.update(extra)
    return env


def cli_argv(args: Sequence[str], prefix: Sequence[str] = ()) -> List[str]:
    return [*prefix, sys.executable, "-m", "bigshuf", *map(str, args)]


#: The CLI, stopping itself (SIGSTOP) once, right after its first progress report of a phase:
#: the first block scattered, or the first unit gathered. The test waits for that event.
_PAUSING = r"""
import os, signal, sys
from bigshuf.common import progress
name = {"scatter": "scattered", "gather": "gathered"}[sys.argv[1]]
real = getattr(progress.Progress, name)
done = []
def pausing(self, *a):
    real(self, *a)
    if not done:
        done.append(1)
        os.kill(os.getpid(), signal.SIGSTOP)
setattr(progress.Progress, name, pausing)
sys.argv = ["bigshuf", *sys.argv[2:]]
from bigshuf.launch import main
main()
"""


def spawn(args: Sequence[str], *, prefix: Sequence[str] = (), preexec: Optional[Callable] = None,
          stdin=subprocess.DEVNULL, pause_at: Optional[str] = None) -> subprocess.Popen:
    """Start ``python -m bigshuf ARGS`` (optionally under a command prefix such as setpriv).
    With ``pause_at`` ('scatter' or 'gather') the process stops itself in that phase (see
    ``stop_in_phase``): a phase is never missed, however loaded the machine."""
    argv = cli_argv(args, prefix) if pause_at is None else \
        [*prefix, sys.executable, "-c", _PAUSING, pause_at, *map(str, args)]
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env(), preexec_fn=preexec)
    proc.pause_at = pause_at  # type: ignore[attr-defined]
    return proc


def run(args: Sequence[str], *, prefix: Sequence[str] = (), preexec: Optional[Callable] = None,
        input: Optional[bytes] = None, stdin=None, timeout: float = 120, cwd=None,
        env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``python -m bigshuf ARGS`` as a real process and capture its output (bytes)."""
    return subprocess.run(cli_argv(args, prefix), input=input, stdin=stdin, capture_output=True,
                          env=cli_env(env), preexec_fn=preexec, timeout=timeout, cwd=cwd)


# -- resource limits ------------------------------------------------------------------------------

def limit(kind: int, value: int) -> Callable[[], None]:
    """A preexec_fn setting one resource limit (soft and hard) in the child."""

    def preexec() -> None:
        resource.setrlimit(kind, (value, value))

    return preexec


# -- fewer privileges -----------------------------------------------------------------------------

_UNPRIVILEGED: Optional[dict] = None


def unprivileged(probe_dir: Path) -> dict:
    """How to run the CLI so that file permissions apply: ``{"prefix": [...], "preexec": f}``.

    Not root: nothing to do. Root: first try user nobody (needs the interpreter, site-packages and
    checkout to be readable by it), else keep uid 0 but drop CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set with setpriv (root then obeys permission bits like
    anyone). Skips the test only if neither works.
    """
    global _UNPRIVILEGED
    if os.geteuid() != 0:
        return {"prefix": [], "preexec": None, "how": "not root"}
    if _UNPRIVILEGED is not None:
        return _UNPRIVILEGED
    readable = probe_dir / "probe-readable"
    readable.write_bytes(b"x\n")
    secret = probe_dir / "probe-unreadable"
    secret.write_bytes(b"x\n")
    secret.chmod(0)
    # The test's files must stay readable (as for the tests' own files), the 0-mode one not.
    code = f"import bigshuf; open({str(readable)!r}, 'rb').read(); open({str(secret)!r}, 'rb')"

    def as_nobody() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    options = [
        {"prefix": [], "preexec": as_nobody, "how": "user nobody"},
        {"prefix": ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"],
         "preexec": None, "how": "setpriv without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH"},
    ]
    why = []
    for opt in options:
        if opt["prefix"] and not shutil.which(opt["prefix"][0]):
            why.append(f"{opt['how']}: {opt['prefix'][0]} not installed")
            continue
        try:
            p = subprocess.run([*opt["prefix"], sys.executable, "-c", code], env=cli_env(),
                               preexec_fn=opt["preexec"], capture_output=True, timeout=60)
        except OSError as exc:
            why.append(f"{opt['how']}: {exc}")
            continue
        err = p.stderr.decode(errors="replace")
        if p.returncode != 0 and "PermissionError" in err and "probe-unreadable" in err:
            _UNPRIVILEGED = opt
            return opt
        why.append(f"{opt['how']}: {err.strip().splitlines()[-1:] or p.returncode}")
    pytest.skip("cannot run the CLI without root's file access here: " + "; ".join(map(str, why)))


# -- file systems ---------------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` for the block; skip the test if mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0755" + (",ro" if readonly else "")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "bigshuf-test", str(path)],
                       capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.decode(errors='replace').strip()})")
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


# -- what a run leaves ----------------------------------------------------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def leftovers(*dirs: Path) -> List[str]:
    """Names in ``dirs`` that look like bigshuf temporaries (output temps and run files)."""
    found = []
    for d in dirs:
        if os.path.isdir(d):
            found += [str(Path(d) / n) for n in os.listdir(d) if ".bigshuf-" in n or "bigshuf-stdin" in n]
    return sorted(found)


def output_temps(dest: Path) -> List[str]:
    return sorted(glob.glob(os.path.join(glob.escape(str(dest.parent)), f".{glob.escape(dest.name)}.bigshuf-*.tmp")))


def one_line_error(proc, code: int, *needles: str) -> str:
    """Exit status ``code``, exactly one non-empty line on stderr, no traceback. Works for a
    subprocess (``run``) and for an in-process run (``invoke``)."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("bigshuf: error: "), err
    for n in needles:
        assert n in err, (n, err)
    return lines[0]


def verify_cli(a: Path, b: Path) -> None:
    """``bigshuf verify A B`` exits 0: the two files hold the same multiset of lines (in this
    process: nothing about verifying needs a process of its own)."""
    v = invoke(["verify", str(a), str(b)])
    assert v.returncode == 0 and b"same multiset" in v.stdout, (v.stdout, v.stderr)


# -- catching a phase -----------------------------------------------------------------------------

def _fds(pid: int) -> Dict[int, str]:
    out = {}
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for n in names:
        try:
            out[int(n)] = os.readlink(f"{base}/{n}")
        except OSError:
            pass
    return out


def _fd_pos(pid: int, fd: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("pos:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def phase_of(pid: int, src: Path, dest: Path, temp_dir: Optional[Path]) -> dict:
    """What the process is doing, from /proc and the destination directory."""
    fds = _fds(pid)
    size = src.stat().st_size
    in_fds = [fd for fd, target in fds.items() if target == str(src)]
    pos = _fd_pos(pid, in_fds[0]) if in_fds else None
    runs = [t for t in fds.values() if ".bigshuf-" in t and t.endswith(".runs (deleted)")
            and (temp_dir is None or t.startswith(str(temp_dir) + "/"))]
    temps = output_temps(dest)
    written = 0
    for t in temps:
        try:
            written += os.stat(t).st_blocks * 512
        except OSError:
            pass
    state = {"input_pos": pos, "runs_file": runs, "output_temps": temps, "output_bytes": written}
    if pos is not None and 0 < pos <= size * 0.7 and not temps:
        state["phase"] = "scatter"
    elif pos is None and len(temps) == 1 and written < size // 2:
        state["phase"] = "gather"
    else:
        state["phase"] = None
    return state


def _all_stopped(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("T", "t", "Z", "X"):
            return False
    return True


def stop_in_phase(proc: subprocess.Popen, phase: str, src: Path, dest: Path,
                  temp_dir: Optional[Path] = None, need_runs_file: bool = False,
                  timeout: float = 120) -> dict:
    """Freeze ``proc`` (SIGSTOP) while it is in ``phase`` ('scatter' or 'gather'); return the
    state seen while frozen. The caller sends its fault, then SIGCONT."""
    if not os.path.isdir(f"/proc/{proc.pid}"):
        pytest.skip("no /proc to observe the process")
    deadline = time.monotonic() + timeout
    if getattr(proc, "pause_at", None) == phase:  # it stops itself there: wait for that event
        while not _all_stopped(proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=60)
                raise AssertionError(f"never stopped in its {phase} phase (exit "
                                     f"{proc.returncode}): {err.decode(errors='replace')}")
            time.sleep(0.002)
        st = phase_of(proc.pid, src, dest, temp_dir)
        assert st["phase"] == phase and (st["runs_file"] or not need_runs_file), st
        return st
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        st = phase_of(proc.pid, src, dest, temp_dir)
        if st["phase"] == phase and (st["runs_file"] or not need_runs_file):
            os.kill(proc.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            while not _all_stopped(proc.pid) and time.monotonic() - t0 < 10:
                time.sleep(0.001)
            st = phase_of(proc.pid, src, dest, temp_dir)
            if st["phase"] == phase and (st["runs_file"] or not need_runs_file):
                return st
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.002)
    out, err = proc.communicate(timeout=60)
    raise AssertionError(f"never caught the process in its {phase} phase "
                         f"(exit {proc.returncode}): {err.decode(errors='replace')}")


def fault_and_wait(proc: subprocess.Popen, sig: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """Send ``sig`` to a frozen process, let it go on, and collect it."""
    os.kill(proc.pid, sig)
    if sig != signal.SIGKILL:
        os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- in-process runs ------------------------------------------------------------------------------

class Invoked:
    """What ``invoke`` returns: the fields of a CompletedProcess (bytes), from an in-process run."""

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def invoke(args: Sequence[str], input: Optional[bytes] = None) -> Invoked:
    """Run ``bigshuf ARGS`` in this process with click's CliRunner (fast; use ``run`` when a real
    process matters: signals, limits, descriptors, pipes)."""
    from bigshuf.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Invoked(result.exit_code, result.stdout_bytes, result.stderr_bytes)


def lines_of(data: bytes) -> List[bytes]:
    return sorted(data.splitlines())


def numbered_file(path: Path, n: int, header: bytes = b"") -> Path:
    """``path`` holding ``header`` then the lines '0'..'n-1'."""
    path.write_bytes(header + b"".join(b"%d\n" % i for i in range(n)))
    return path
