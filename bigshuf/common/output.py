"""Outputs: a destination is either complete or untouched, and never replaced by something else.

One layer for every command that writes files (shuffle outputs and shards, prediction rows,
params and reports, cluster outputs), so the destination rules live here only:

- a **regular file** (or a name that does not exist yet) is written under a private temporary
  name beside it (mode 0600, so shuffling a private file never exposes it) and renamed over it
  at the end; the new file keeps the old one's mode (and owner and group where permitted). The
  rename gives the name a new inode: other hard links to the old file keep the old contents.
- a **symbolic link** is followed: its final target is replaced atomically, in the target's
  directory; the link itself stays.
- a **device, FIFO or socket**, ``/dev/stdout``, ``/dev/fd/N`` or ``/proc/self/fd/N`` (process
  substitution ``>(cmd)``) is written through, like ``sort -o`` does: no temporary file and no
  rename, so ``-o /dev/null`` never turns the device into a regular file. Such an output cannot
  be taken back if the run fails later.
- the temporary name is ``.NAME.bigshuf-RUN-SEQ.tmp`` (NAME shortened so the whole fits
  NAME_MAX; RUN is the run's random token). A live run holds an exclusive ``flock`` on at least
  one of its temporary files in every directory it writes to, until it has published or removed
  them all. A later run writing into that directory removes (once per run: one listing) the
  temporary files of runs none of whose files is locked (killed runs), never a live run's,
  whatever PID namespace that run is in, and never a file it cannot open (another user's). Cleanup and
  publishing take an exclusive ``flock`` on the directory, so they never interleave.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import time
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from bigshuf.common.errors import BigshufError, UsageError, describe_os_error

NAME_MAX = 255
_TOKEN_HEX = 12
_SUFFIX_LEN = len(".bigshuf-") + _TOKEN_HEX + len("-1234567.tmp")
_TEMP_RE = re.compile(r"\.bigshuf-([0-9a-f]+)-[0-9a-f]+\.tmp$")
_FD_PATH = re.compile(r"^/(?:dev/fd|proc/self/fd|proc/%d/fd)/(\d+)$" % os.getpid())
_STD_PATHS = {"/dev/stdout": 1, "/dev/stderr": 2}


# -- what a destination is --------------------------------------------------------------------

def inherited_fd(path: str) -> Optional[int]:
    """The descriptor a path like /dev/stdout or /dev/fd/N names in this process, if any."""
    p = os.path.normpath(path) if path.startswith("/") else path
    if p in _STD_PATHS:
        return _STD_PATHS[p]
    m = _FD_PATH.match(p)
    return int(m.group(1)) if m else None


def is_write_through(path: str) -> bool:
    """True if ``path`` must be written in place: an inherited descriptor, or (after following
    links) an existing device, FIFO or socket."""
    if inherited_fd(path) is not None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_destination(output: Any, pattern: bool = False) -> None:
    """Usage errors (exit 2) for an output that cannot be written, checked before any work.

    ``output`` None, ``-`` or a stream is stdout or the caller's; ``pattern`` says the name is a
    shard name pattern (checked by the caller for each name it gives)."""
    if output is None or output == "-" or hasattr(output, "write"):
        return
    out = os.fspath(output)
    if out == "":
        raise UsageError("the output name is empty")
    if is_write_through(out):
        return
    if out.endswith(os.sep) or (not pattern and os.path.isdir(out)):
        raise UsageError(f"output is a directory: {out}")
    target = _final_target(out)
    via = "" if target == os.path.abspath(out) else f" (the target of {out})"
    d = os.path.dirname(target)
    if not os.path.isdir(d):
        raise UsageError(f"output directory does not exist: {d}{via}")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"output directory is not writable: {d}{via}")
    name = os.path.basename(target)
    if len(os.fsencode(name)) > NAME_MAX:
        raise UsageError(f"output name is too long ({len(os.fsencode(name))} bytes, at most "
                         f"{NAME_MAX}): {target}{via}")


def same_file(paths: Sequence[str]) -> Optional[Tuple[str, str]]:
    """The first two of ``paths`` that a write ends at the same file (the same name, or links
    to one target: the second output would replace the first), or None."""
    seen: Dict[str, str] = {}
    for p in paths:
        key = file_key(p)
        if key in seen:
            return seen[key], p
        seen[key] = p
    return None


def file_key(out: str) -> str:
    """What a write to ``out`` ends at, to compare outputs by the file, not the name: the
    final target of its links (a device or pipe: its name)."""
    return os.path.abspath(out) if is_write_through(out) else _final_target(out)


def _final_target(out: str) -> str:
    """The path a write to ``out`` ends at: links followed as the kernel would follow them for
    ``open(O_WRONLY)`` (see :func:`_may_follow`). A loop of links, or a link the kernel would
    refuse to follow, is a usage error."""
    path = os.path.abspath(out)
    todo = [p for p in reversed(path.split(os.sep)) if p]
    resolved = os.sep
    links = 0
    while todo:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            resolved = os.path.dirname(resolved)
            continue
        here = os.path.join(resolved, name)
        try:
            st = os.lstat(here)
        except OSError:  # missing (created later), or not a directory: the checks that follow say so
            resolved = here
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved = here
            continue
        links += 1
        if links > _MAX_LINKS:
            raise UsageError(f"cannot write through {out}: too many levels of symbolic links")
        if not _may_follow(here, st, resolved):
            raise UsageError(f"cannot write through {out}: Permission denied ({here} is a symbolic "
                             "link owned by another user in a sticky world-writable directory: "
                             "fs.protected_symlinks forbids following it)")
        try:
            target = os.readlink(here)
        except OSError as exc:
            raise UsageError(f"cannot write through {out}: {exc.strerror or exc}") from None
        if target.startswith(os.sep):
            resolved = os.sep
        todo.extend(p for p in reversed(target.split(os.sep)) if p)
    return resolved


#: Links followed in one path before it is a loop (the kernel's limit, ELOOP).
_MAX_LINKS = 40


def _may_follow(link: str, st: os.stat_result, directory: str) -> bool:
    """Would the kernel follow ``link`` for this process? With ``fs.protected_symlinks`` on
    (most distributions' default), a link in a sticky world-writable directory is followed only
    by its owner, or when the directory's owner also owns the link: otherwise another user could
    plant ``report.txt -> /etc/...`` in /tmp and have root replace the target."""
    if st.st_uid == os.geteuid() or not _protected_symlinks():
        return True
    try:
        d = os.stat(directory)
    except OSError:
        return True
    sticky_shared = d.st_mode & stat.S_ISVTX and d.st_mode & stat.S_IWOTH
    return not sticky_shared or d.st_uid == st.st_uid


def _protected_symlinks() -> bool:
    try:
        with open("/proc/sys/fs/protected_symlinks", "rb") as f:
            return f.read().strip() not in (b"", b"0")
    except OSError:
        return False


# -- temporary names and their locks ------------------------------------------------------------

def _temp_prefix(target: str) -> str:
    d, base = os.path.split(target)
    raw = os.fsencode(base)[: NAME_MAX - 1 - _SUFFIX_LEN]
    return os.path.join(d, "." + os.fsdecode(raw).rstrip("\udcff") + ".bigshuf-")


@contextlib.contextmanager
def directory_lock(directory: str) -> Iterator[None]:
    """An exclusive ``flock`` on a directory (cleanup and publishing of temporary names).

    A directory we may write into but not read (a 0733 drop box, where ``shuf -o`` works)
    cannot be opened to lock: then there is no lock, and nothing to clean either (its names
    cannot be listed); two runs publishing one shard set there are not serialised."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        yield
        return
    try:
        _lock_within(fd, directory or ".")
        yield
    finally:
        os.close(fd)


#: Seconds a run waits for a directory's lock. bigshuf holds it for a cleanup or a set of renames
#: (well under a second), but anyone who can read a shared directory can flock it for ever.
DIRECTORY_LOCK_WAIT = 30.0


def _lock_within(fd: int, directory: str) -> None:
    deadline = time.monotonic() + DIRECTORY_LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BigshufError(f"{directory} is locked by another process (an flock held "
                                   f"over {DIRECTORY_LOCK_WAIT:g} s: another bigshuf publishing "
                                   "there, or someone holding its lock)") from None
            time.sleep(0.01)


def _locked(path: str) -> bool:
    """Does some process hold a ``flock`` on ``path``? (A vanished file counts as not locked.)
    Opened without blocking and without following links: a FIFO or a link planted under a
    temporary name must not hang or redirect the check. A file we cannot open (another user's
    private temp in a shared directory) may be live: it counts as locked, never ours to remove."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def clean_stale_temps(dest: str) -> List[str]:
    """Remove the temporary files left in ``dest``'s directory by runs that were killed: those
    of runs none of whose temporary files there is locked (one listing of the directory, so a
    run writing N shards there pays once, not N times). Returns the removed paths."""
    directory = os.path.dirname(_temp_prefix(_final_target(dest)))
    removed: List[str] = []
    with directory_lock(directory):
        runs: Dict[str, List[str]] = {}
        try:
            with os.scandir(directory or ".") as entries:
                for entry in entries:
                    m = _TEMP_RE.search(entry.name)
                    if m and entry.name.startswith("."):
                        runs.setdefault(m.group(1), []).append(os.path.join(directory, entry.name))
        except OSError:  # cannot be listed (a drop box): nothing we could find to clean
            return removed
        for paths in runs.values():
            if any(_locked(p) for p in paths):
                continue
            for path in paths:
                if not _is_regular(path):
                    continue  # not something bigshuf made: left alone
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
    return removed


def _creation_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class TempGroup:
    """The temporary files of one run: one token, and one locked descriptor kept per directory
    until the run has published or removed all of them (see the module docstring)."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(_TOKEN_HEX // 2)
        self.seq = 0
        self.anchors: dict = {}
        self.live: List[str] = []  # names created (or being created) and not yet renamed
        self.cleaned: set = set()  # directories whose stale temporary files were removed

    def clean(self, target: str) -> None:
        """Remove stale temporary files beside ``target``, once per directory and run."""
        directory = os.path.dirname(target)
        if directory not in self.cleaned:
            self.cleaned.add(directory)
            clean_stale_temps(target)

    def new_name(self, target: str) -> str:
        """A fresh temporary name, recorded *before* the file is created, so that a signal
        arriving between creation and bookkeeping cannot leave it behind (see ``remove_all``)."""
        self.seq += 1
        name = f"{_temp_prefix(target)}{self.token}-{self.seq:x}.tmp"
        self.live.append(name)
        return name

    def published(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            self.live.remove(name)

    def remove_all(self) -> None:
        """Unlink every temporary file of the group not yet renamed (names carry the group's
        random token, so nothing else can have them)."""
        for name in self.live:
            with contextlib.suppress(OSError):
                os.unlink(name)
        self.live.clear()

    def anchor(self, directory: str, fd: int) -> None:
        if directory not in self.anchors:
            self.anchors[directory] = os.dup(fd)

    def release(self) -> None:
        for fd in self.anchors.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.anchors.clear()


class Destination:
    """One output file: written in place (write-through) or atomically (temp, then rename).

    ``fd`` is the descriptor to write; ``positional`` says whether ``pwrite`` at any offset
    works (a temporary regular file). ``finish()`` publishes it, ``abort()`` takes it back.
    Slots: a run keeps one per shard until it publishes them all."""

    __slots__ = ("path", "temp", "target", "owned_fd", "own_group", "group", "fd")

    def __init__(self, path: str, group: Optional[TempGroup] = None):
        self.path = path
        self.temp: Optional[str] = None
        self.target = path
        self.owned_fd = True
        self.own_group = group is None
        self.group = group or TempGroup()
        fd = inherited_fd(path)
        if fd is not None:
            self.fd = _dup(fd, path)
        elif is_write_through(path):
            self.fd = _open_through(path)
        else:
            self.target = _final_target(path)
            self.group.clean(self.target)
            self.fd = self._create_temp()

    @property
    def atomic(self) -> bool:
        return self.temp is not None

    @property
    def positional(self) -> bool:
        return self.temp is not None

    def _create_temp(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        temp = self.group.new_name(self.target)
        directory = os.path.dirname(temp)
        # The group's first file in a directory is created under the directory lock: until its
        # flock is taken, another run's cleanup must not see it unlocked and remove it.
        first = directory not in self.group.anchors
        with directory_lock(directory) if first else contextlib.nullcontext():
            try:
                fd = os.open(temp, flags, 0o600)
            except OSError as exc:
                raise describe_os_error(exc, f"cannot create output in {directory}") from None
            fcntl.flock(fd, fcntl.LOCK_EX)  # marks the run live for clean_stale_temps
            self.group.anchor(directory, fd)
        self.temp = temp
        return fd

    def close_fd(self) -> None:
        """Close the descriptor early (a finished shard): the temp file stays, still covered
        by its group's lock in that directory."""
        if self.fd >= 0 and self.owned_fd:
            os.close(self.fd)
        self.fd = -1

    def commit(self, durable: bool = False) -> None:
        """Give the finished file its real name. With ``durable``, data is fsynced before and the
        directory after the rename, so it survives a power loss (a crash never needs it)."""
        try:
            if self.temp is None:
                if durable and self.fd >= 0:
                    with contextlib.suppress(OSError):
                        os.fsync(self.fd)
                self.close_fd()
                return
            self._finalise_temp(durable)
            os.replace(self.temp, self.target)
            self.group.published(self.temp)
            self.temp = None
            if durable:
                _fsync_dir(os.path.dirname(self.target))
        except OSError as exc:
            raise describe_os_error(exc, f"renaming output to {self.path}") from None
        finally:
            self.close_fd()
            if self.own_group:
                self.group.release()

    def _finalise_temp(self, durable: bool) -> None:
        assert self.temp is not None
        fd = self.fd if self.fd >= 0 else os.open(self.temp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                old = os.stat(self.target)
            except FileNotFoundError:
                os.fchmod(fd, _creation_mode())
            else:
                with contextlib.suppress(OSError):  # owner/group: only where permitted
                    os.fchown(fd, old.st_uid, old.st_gid)
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
            if durable:
                os.fsync(fd)
        finally:
            if fd != self.fd:
                os.close(fd)

    def abort(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        with contextlib.suppress(OSError):
            self.close_fd()
        if self.temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            self.group.published(self.temp)
            self.temp = None
        if self.own_group:
            self.group.remove_all()
            self.group.release()


def _dup(fd: int, path: str) -> int:
    try:
        return os.dup(fd)
    except OSError:
        raise UsageError(f"{path}: descriptor {fd} is not open") from None


def _open_through(path: str) -> int:
    """A descriptor writing to an existing device, FIFO or socket (connected, for a socket)."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISSOCK(mode):
            return _connect(path)
        flags = os.O_WRONLY | os.O_CLOEXEC | (0 if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) else os.O_TRUNC)
        return os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(mode):
            raise UsageError(f"cannot write to {path}: no process is reading the FIFO") from None
        raise describe_os_error(exc, f"cannot open output {path}") from None


def _connect(path: str) -> int:
    """A Unix socket: connect as a stream (or, failing that, a sequenced-packet) client."""
    last: Optional[OSError] = None
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.connect(path)
            return sock.detach()
        except OSError as exc:
            last = exc
            sock.close()
    assert last is not None
    raise last


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory or ".", os.O_RDONLY)
    except PermissionError:  # a drop box: its entry cannot be flushed by us (the data was)
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def publishing(dests: Sequence[Destination]) -> Iterator[None]:
    """Hold an exclusive lock on every directory the destinations are renamed into, so two runs
    publishing shard sets with the same names end with one run's whole set, never a mix."""
    dirs = sorted({os.path.dirname(d.target) for d in dests if d.atomic})
    with contextlib.ExitStack() as stack:
        for d in dirs:
            stack.enter_context(directory_lock(d))
        yield


# -- whole-file helpers (prediction rows, params, reports) ------------------------------------

@contextlib.contextmanager
def atomic_path(dest: str) -> Iterator[str]:
    """A temporary path to write ``dest`` through: renamed over it when the block succeeds,
    removed when it fails (for writers that want a path, such as numpy.save). A write-through
    destination gets a private temporary file, copied to it on success."""
    check_destination(dest)
    if is_write_through(dest):
        fd, tmp = tempfile.mkstemp(prefix="bigshuf-", suffix=".tmp")
        os.close(fd)
        try:
            yield tmp
            with open(tmp, "rb") as src, open_output_stream(dest) as out:
                shutil.copyfileobj(src, out, 1 << 20)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return
    d = Destination(dest)
    assert d.temp is not None
    try:
        yield d.temp
        d.commit()
    except BaseException:
        d.abort()
        raise


@contextlib.contextmanager
def open_output_stream(dest: str) -> Iterator[IO[bytes]]:
    """A binary file object writing through to a non-regular destination."""
    d = Destination(dest)
    with os.fdopen(d.fd, "wb", closefd=False) as f:
        yield f
    d.commit()


@contextlib.contextmanager
def atomic_output(dest: Optional[str]) -> Iterator[IO[bytes]]:
    """A binary file for the output ``dest`` (``None`` or ``-`` is stdout).

    A file destination is written atomically. Stdout and write-through destinations get the
    output only on success (held in a spooled temporary file until then), so a bad row late in
    the input cannot leave a half-written stream in a pipeline.
    """
    if dest in (None, "-") or is_write_through(str(dest)):
        with tempfile.SpooledTemporaryFile(max_size=32 << 20) as buf:
            yield buf  # type: ignore[misc]
            buf.seek(0)
            if dest in (None, "-"):
                out = sys.stdout.buffer
                shutil.copyfileobj(buf, out, 1 << 20)
                out.flush()
            else:
                with open_output_stream(str(dest)) as out:
                    shutil.copyfileobj(buf, out, 1 << 20)
        return
    with atomic_path(str(dest)) as tmp:
        with open(tmp, "wb") as f:
            yield f
            f.flush()


def write_json(dest: Optional[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``dest`` (``-``/None: stdout), atomically."""
    with atomic_output(dest) as f:
        f.write((json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


#: Bytes per write call to a file. On the dev machine's kernel (6.18, ext4 with large folios, in
#: a VM), one big write() gets large page-cache folios, and writing 1 GB that way took 0.12 s or
#: 0.35-0.5 s depending on the guest's memory state; in 64 KiB calls it took 0.13-0.14 s every
#: time (32 KiB: 0.155 s, syscall overhead; 128 KiB-1 MiB: bimodal again). Measured with
#: scripts/bench_write.py.
WRITE_PIECE = 64 << 10
#: Bytes per write call where the page cache is tight (a memory cgroup that cannot hold the temp
#: file and the output): there the large folios of big writes win, each page charged, written
#: back, dropped and reclaimed costing the kernel less. In a 1 GiB cgroup, gathering 2.7 GB, the
#: output's pwrite took 0.8 s in 32 MiB calls against 2.2 s in 64 KiB calls, and the scatter's
#: temp file writes 1.0-1.3 s against 2.1 s (issue 21).
TIGHT_WRITE_PIECE = 64 << 20


def pwrite_all(fd: int, data: Any, offset: int, piece: int = 0) -> None:
    """``pwrite`` until every byte of ``data`` is written at ``offset``, ``piece`` (default
    WRITE_PIECE) at a time."""
    piece = piece or WRITE_PIECE
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view[:piece], offset)
        view = view[n:]
        offset += n


def libc_function(name: str, argtypes: List[Any], restype: Any) -> Any:
    """A libc function through ctypes (``os`` lacks some Linux calls), with its C types and
    errno kept; None where it does not exist. Looked up in the running process (``CDLL(None)``,
    which has libc loaded), else in libc.so.6: ``ctypes.util.find_library`` would fork
    ``ldconfig``, a second ~30 MB process in the tree that the memory benchmark counts."""
    import ctypes
    for lib in (None, "libc.so.6"):
        try:
            f = getattr(ctypes.CDLL(lib, use_errno=True), name)
        except (OSError, AttributeError):
            continue
        f.argtypes, f.restype = argtypes, restype
        return f
    return None


def _libc_sync_file_range():
    """sync_file_range(2) (Linux only); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    return libc_function("sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                             ctypes.c_uint], ctypes.c_int)


_sync_file_range: Any = False  # looked up on first use (ctypes costs start-up time)
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range's dirty pages to the disk, without waiting (a hint: errors are
    ignored). In a memory cgroup whose page cache is tight, reclaim then finds the pages clean
    or on their way instead of stalling on dirty ones (v1 cgroups start no writeback of their
    own before the host's dirty limits)."""
    global _sync_file_range
    if _sync_file_range is False:
        _sync_file_range = _libc_sync_file_range()
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def write_all(fd: int, data: Any) -> None:
    """``write`` until every byte of ``data`` is written, WRITE_PIECE at a time (a pipe takes
    about that much at once anyway)."""
    view = memoryview(data).cast("B")
    while len(view):
        view = view[os.write(fd, view[:WRITE_PIECE]):]
