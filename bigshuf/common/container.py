"""What memory this process may really use: the limits of its memory cgroup (a container's),
not the host's RAM.

Docker and Kubernetes limit a container with a memory cgroup that charges its RSS *and* the page
cache it fills; the host's ``/proc/meminfo`` says nothing of that limit. Found here, at each
question (where the levels are: once per process), from files whose paths are injectable
(:class:`Paths`, for tests with a fake tree):

* the process's cgroups (``/proc/self/cgroup``) and where the hierarchies are mounted
  (``/proc/self/mountinfo``): cgroup v1 (the ``memory`` controller's mount) or v2 (``cgroup2``);
* for its cgroup and every ancestor up to the mount: the limit (v1 ``memory.limit_in_bytes``,
  v2 the lower of ``memory.max`` and ``memory.high``), the usage (``usage_in_bytes`` /
  ``memory.current``) and the page cache it could drop (``memory.stat``'s file pages); the
  *tightest* level (least room left) is the one that counts;
* memory pressure: v2 ``memory.pressure`` of that level, or the host's ``/proc/pressure/memory``
  when no cgroup limits the process (under a v1 limit, none: see :func:`memory_pressure`).

Nothing here fails: an unreadable or absent file means "no limit known" (None).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from bigshuf.common.errors import BigshufError
from bigshuf.common.sizes import format_size

#: A v1 limit at or above this is "unlimited" (the kernel writes PAGE_COUNTER_MAX pages).
UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Paths:
    """The files read; tests point them into a fake tree."""

    proc_cgroup: str = "/proc/self/cgroup"
    mountinfo: str = "/proc/self/mountinfo"
    meminfo: str = "/proc/meminfo"
    host_pressure: str = "/proc/pressure/memory"


@dataclass(frozen=True)
class CgroupMemory:
    """The tightest memory cgroup level of this process."""

    path: str            # its directory
    version: int         # 1 or 2
    limit: int           # bytes (RSS + page cache)
    usage: int           # bytes charged now
    file_cache: int      # of which page cache (reclaimable: the run may take its room)

    @property
    def room(self) -> int:
        """Bytes this process could still fill (anonymous or cache) before the limit bites:
        what is not charged, plus the cache that would be dropped for it."""
        return max(0, self.limit - self.usage + self.file_cache)

    @property
    def free(self) -> int:
        return max(0, self.limit - self.usage)


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _int(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= UNLIMITED else value


def _stat(path: str) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for line in (_read(os.path.join(path, "memory.stat")) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _mounts(paths: Paths) -> Tuple[Optional[Tuple[str, str]], Optional[Tuple[str, str]]]:
    """((root, mount point) of the v1 memory hierarchy, (root, mount point) of cgroup2)."""
    v1 = v2 = None
    for line in (_read(paths.mountinfo) or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 1:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if tail[0] == "cgroup" and len(tail) >= 3 and "memory" in tail[2].split(","):
            v1 = v1 or (root, point)
        elif tail[0] == "cgroup2":
            v2 = v2 or (root, point)
    return v1, v2


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _own_cgroups(paths: Paths) -> Tuple[Optional[str], Optional[str]]:
    """(v1 memory cgroup path, v2 cgroup path) from /proc/self/cgroup."""
    v1 = v2 = None
    for line in (_read(paths.proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        elif "memory" in parts[1].split(","):
            v1 = parts[2]
    return v1, v2


def _levels(mount: Tuple[str, str], cgroup: str) -> List[str]:
    """The directories of ``cgroup`` and its ancestors, innermost first, down to the mount."""
    root, point = mount
    rel = cgroup
    if root != "/" and (cgroup == root or cgroup.startswith(root.rstrip("/") + "/")):
        rel = cgroup[len(root.rstrip("/")):]
    parts = [p for p in rel.split("/") if p and p != ".."]
    if root.startswith("/.."):  # a cgroup namespace below the mount: find where it starts
        parts = _under_namespace(point, root.count("/.."), parts) or parts
    return [os.path.join(point, *parts[:n]) for n in range(len(parts), -1, -1)]


#: Directories looked at, at most, for a cgroup namespace's place under the mount.
NAMESPACE_SEARCH = 4096


def _under_namespace(point: str, ups: int, own: List[str]) -> Optional[List[str]]:
    """Inside a cgroup namespace (``unshare --cgroup``, the hierarchy not remounted) the
    process's cgroup path is relative to the namespace's root, which mountinfo shows as
    ``/..`` (``ups`` levels) below the mount: the one directory that many levels down whose
    ``own`` cgroup lists this process. None if not found (then the limit is unknown)."""
    found: List[List[str]] = [[]]
    looked = 0
    for _ in range(ups):
        deeper = []
        for base in found:
            try:
                names = sorted(os.listdir(os.path.join(point, *base)))
            except OSError:
                continue
            for name in names:
                looked += 1
                if looked > NAMESPACE_SEARCH:
                    return None
                if os.path.isdir(os.path.join(point, *base, name)):
                    deeper.append(base + [name])
        found = deeper
    pid = str(os.getpid())
    for base in found:
        procs = _read(os.path.join(point, *base, *own, "cgroup.procs")) or ""
        if pid in procs.split():
            return base + own
    return None


def _level_v1(path: str) -> Optional[CgroupMemory]:
    limit = _int(_read(os.path.join(path, "memory.limit_in_bytes")))
    if limit is None:
        return None
    usage = _int(_read(os.path.join(path, "memory.usage_in_bytes"))) or 0
    cache = _file_cache(_stat(path), ("total_inactive_file", "total_active_file"),
                        ("total_cache", "cache"), ("total_shmem", "shmem"))
    return CgroupMemory(path, 1, limit, usage, min(cache, usage))


def _level_v2(path: str) -> Optional[CgroupMemory]:
    limits = [v for v in (_int(_read(os.path.join(path, name)))
                          for name in ("memory.max", "memory.high")) if v is not None]
    if not limits:
        return None
    usage = _int(_read(os.path.join(path, "memory.current"))) or 0
    cache = _file_cache(_stat(path), ("inactive_file", "active_file"), ("file",), ("shmem",))
    return CgroupMemory(path, 2, min(limits), usage, min(cache, usage))


def _file_cache(stat: Dict[str, int], lru: Tuple[str, ...], total: Tuple[str, ...],
                shmem: Tuple[str, ...]) -> int:
    """The page cache the kernel could drop: the file LRUs where reported, else the cache
    total less its tmpfs/shared pages. tmpfs pages (``shmem``) count in ``cache``/``file`` but
    live on the anon LRUs and, without swap, are never dropped: a run whose tmpfs temp had
    pushed every file page out saw ``cache`` = its own temp file as room, and was OOM-killed
    instead of stopping with an error. The LRU figures are used even when they are 0."""
    if any(k in stat for k in lru):
        return sum(stat.get(k, 0) for k in lru)
    first = next((stat[k] for k in total if k in stat), 0)
    return max(0, first - next((stat[k] for k in shmem if k in stat), 0))


def _layout(paths: Paths) -> Tuple[List[str], List[str]]:
    """The directories of this process's v1 memory cgroup and of its v2 cgroup, each with its
    ancestors (innermost first); empty where that hierarchy is not mounted."""
    mount1, mount2 = _mounts(paths)
    own1, own2 = _own_cgroups(paths)
    return (_levels(mount1, own1) if mount1 is not None and own1 is not None else [],
            _levels(mount2, own2) if mount2 is not None and own2 is not None else [])


#: The layout from the real /proc files, with the pid that read it: which cgroup a process is
#: in and where the hierarchies are mounted do not change under a run, and parsing mountinfo
#: again cost ~0.1 ms a call (a tiny shuffle asks 2-3 times). Injected Paths are never cached.
_REAL_LAYOUT: List[Tuple[int, Tuple[List[str], List[str]]]] = []


def _cached_layout(paths: Paths) -> Tuple[List[str], List[str]]:
    if paths != Paths():
        return _layout(paths)
    pid = os.getpid()
    if not _REAL_LAYOUT or _REAL_LAYOUT[0][0] != pid:  # a forked child may have been moved
        _REAL_LAYOUT[:] = [(pid, _layout(paths))]
    return _REAL_LAYOUT[0][1]


def cgroup_memory(paths: Paths = Paths()) -> Optional[CgroupMemory]:
    """The tightest memory-limited level of this process's cgroup and its ancestors (v1's
    memory controller, else v2), or None if no level has a limit. The limits and usage are
    read at each call; where the levels are, once per process (:func:`_cached_layout`)."""
    levels1, levels2 = _cached_layout(paths)
    found = [c for c in map(_level_v1, levels1) if c is not None]
    if not found:
        found = [c for c in map(_level_v2, levels2) if c is not None]
    return min(found, key=lambda c: c.room) if found else None


def host_available(paths: Paths = Paths()) -> int:
    """What the host can give without swapping (MemAvailable), or free RAM elsewhere."""
    for line in (_read(paths.meminfo) or "").splitlines():
        if line.startswith("MemAvailable:"):
            try:
                return int(line.split()[1]) * 1024
            except (ValueError, IndexError):
                break
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def memory_pressure(paths: Paths = Paths(), cgroup: Optional[CgroupMemory] = None) -> float:
    """Share of the last 10 s some task waited for memory (PSI ``some avg10``, in %): the
    cgroup's (v2) if known, else the host's; 0 if not reported.

    Under a cgroup v1 limit it is 0: v1 has no pressure file of its own, and the host's counts
    other cgroups' stalls (a neighbour at its limit would decline this run's input method).
    The cgroup's own state is in its room (limit - usage + cache), which the callers weigh,
    and the host's shortage in MemAvailable. (v1's ``memory.failcnt`` is no signal: it counts
    every reclaim at the limit, ~100,000 in a healthy 700 MB run in a 256M cgroup.)"""
    if cgroup is not None and cgroup.version == 1:
        return 0.0
    files = ([os.path.join(cgroup.path, "memory.pressure")] if cgroup and cgroup.version == 2
             else []) + [paths.host_pressure]
    for name in files:
        for line in (_read(name) or "").splitlines():
            if line.startswith("some "):
                for item in line.split()[1:]:
                    key, _, value = item.partition("=")
                    if key == "avg10":
                        try:
                            return float(value)
                        except ValueError:
                            return 0.0
    return 0.0


@dataclass(frozen=True)
class MemoryView:
    """One look at the memory a run may use: the cgroup (if limited), the host, the pressure."""

    cgroup: Optional[CgroupMemory]
    host: int
    pressure: float

    @property
    def cacheable(self) -> int:
        """Bytes that can be filled (a budget plus page cache) without evicting anything this
        process needs: the cgroup's room, or the host's MemAvailable, whichever is less."""
        return min(self.host, self.cgroup.room) if self.cgroup else self.host

    def describe(self) -> str:
        if self.cgroup is None:
            return f"{format_size(self.host)} available"
        return (f"cgroup limit {format_size(self.cgroup.limit)}, "
                f"{format_size(self.cgroup.room)} free")


#: The view of a run whose budget is not this process's (--scheduler: each cluster task's).
NO_LIMIT = MemoryView(None, 0, 0.0)


def memory_view(paths: Paths = Paths()) -> MemoryView:
    cg = cgroup_memory(paths)
    return MemoryView(cg, host_available(paths), memory_pressure(paths, cg))


#: Bytes of the limit left to the interpreter (the "+64 MB" of --memory's help, and the
#: libraries' own pages) and to the page cache a run keeps busy: the written output's dirty
#: pages and the input's readahead, which the cgroup charges too.
INTERPRETER_BYTES = 96 << 20
#: Share of the rest the default budget may take: the page cache needs the other part (a cgroup
#: that must write back dirty pages to make room stalls, or OOM-kills under v1).
BUDGET_SHARE = 0.6
#: The smallest default budget (below it the default gives up on fitting and says so).
MIN_DEFAULT = 16 << 20


def default_budget(default: int, view: Optional[MemoryView] = None) -> Tuple[int, Optional[str]]:
    """The default --memory: ``default``, capped to fit a memory-limited cgroup; and why it
    was capped (None if it was not)."""
    cg = view.cgroup if view is not None else cgroup_memory()  # the host's figures are not needed
    if cg is None:
        return default, None
    cap = int((cg.room - INTERPRETER_BYTES) * BUDGET_SHARE)
    if cap >= default:
        return default, None
    cap = max(MIN_DEFAULT, cap >> 20 << 20)
    return cap, (f"--memory {format_size(cap)} (not {format_size(default)}): the cgroup's "
                 f"limit is {format_size(cg.limit)}, {format_size(cg.room)} free ({cg.path})")


def budget_warning(memory: int, view: Optional[MemoryView] = None) -> Optional[str]:
    """A warning if an explicit --memory cannot fit the cgroup (the kernel would kill the run
    rather than let it finish), else None."""
    cg = view.cgroup if view is not None else cgroup_memory()
    if cg is None or memory + INTERPRETER_BYTES <= cg.room:
        return None
    fit, _ = default_budget(1 << 62, MemoryView(cg, 0, 0.0))
    return (f"--memory {format_size(memory)} does not fit this container's memory cgroup "
            f"(limit {format_size(cg.limit)}, {format_size(cg.room)} free, "
            f"{cg.path}): the kernel may kill the run; about --memory "
            f"{format_size(fit)} would fit")


#: File systems whose files live in RAM: a memory cgroup charges their pages, and without swap
#: they cannot be reclaimed.
IN_MEMORY_FS = ("tmpfs", "ramfs")


def filesystem_type(path: str, paths: Paths = Paths(), _depth: int = 0) -> Optional[str]:
    """The type of the file system holding ``path`` (the longest mount point above it). An
    overlay's new files go to its upper layer: an overlay over a tmpfs upper directory is
    "tmpfs" (RAM); one whose upper layer is not visible here (a container's root, the layer
    on the host's disk) stays "overlay"."""
    real = os.path.realpath(path)
    best, kind, options = "", None, ""
    for line in (_read(paths.mountinfo) or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind, options = point, tail[0], tail[2] if len(tail) > 2 else ""
    if kind == "overlay" and _depth < 4:
        upper = next((_unescape(o[len("upperdir="):]) for o in options.split(",")
                      if o.startswith("upperdir=")), None)
        if upper is not None and os.path.isdir(upper):
            under = filesystem_type(upper, paths, _depth + 1)
            if under is not None and under != "overlay":
                return under
    return kind


#: What a file in RAM is, for the messages: (its directory, the file, the advice).
ROLES = {"temporary": ("temporary directory", "temporary file", "give --temp-dir on a disk"),
         "output": ("output directory", "output", "write the output to a disk")}


def memory_temp_problem(directory: str, nbytes: int, budget: int,
                        view: Optional[MemoryView] = None, paths: Paths = Paths(),
                        role: str = "temporary") -> Optional[str]:
    """Why a temporary file (or an output: ``role``) of ``nbytes`` in ``directory`` cannot
    work, if the directory is in RAM (tmpfs) and a memory cgroup would charge the file to a
    limit it cannot fit; else None."""
    if nbytes <= 0 or filesystem_type(directory, paths) not in IN_MEMORY_FS:
        return None
    view = view or memory_view(paths)
    if view.cgroup is None or nbytes + budget + INTERPRETER_BYTES <= view.cgroup.room:
        return None
    where, what, advice = ROLES[role]
    return (f"{where} {directory} is in memory ({filesystem_type(directory, paths)}): "
            f"the {what} ({format_size(nbytes)}) would count against this container's "
            f"memory limit ({format_size(view.cgroup.limit)}, {format_size(view.cgroup.room)} "
            f"free) and the run would be killed; {advice}")


#: How often (bytes written) a temporary file in RAM re-reads the cgroup's room.
WATCH_EVERY = 8 << 20
#: Room kept free when a temporary file in RAM grows: the interpreter's own growth and the
#: output's dirty pages, so the run stops with an error rather than the OOM killer's SIGKILL.
WATCH_MARGIN = 32 << 20


class TempGrowthWatch:
    """Watches a temporary file in RAM (tmpfs) inside a memory cgroup while it is written.

    The size checked before the run is only an estimate (stdin's size is unknown; a
    compressed input is guessed at 4x its size, and a repetitive one inflates 400x), so every
    :data:`WATCH_EVERY` bytes the cgroup's room is read again, and a write that would leave
    less than :data:`WATCH_MARGIN` is refused with a one-line error before it is made."""

    def __init__(self, directory: str, kind: str, paths: Paths = Paths(), role: str = "temporary"):
        self.directory = directory
        self.kind = kind
        self.paths = paths
        self.role = role
        self.unchecked = WATCH_EVERY  # check at the first write

    def check(self, nbytes: int) -> Optional[str]:
        """Before writing ``nbytes``: why it must not be written, or None."""
        self.unchecked += nbytes
        if self.unchecked < WATCH_EVERY:
            return None
        cg = cgroup_memory(self.paths)
        if cg is None:
            return None
        if cg.room < nbytes + WATCH_EVERY + WATCH_MARGIN:  # this write and the unchecked next
            where, what, advice = ROLES[self.role]
            return (f"{where} {self.directory} is in memory ({self.kind}) and the "
                    f"{what} outgrew this container's memory limit "
                    f"({format_size(cg.limit)}, {format_size(cg.room)} free, {cg.path}); "
                    f"{advice}")
        self.unchecked = 0
        return None

    def guard(self, nbytes: int) -> None:
        """Before writing ``nbytes``: the one-line error (exit 1) if they must not be written."""
        why = self.check(nbytes)
        if why is not None:
            raise BigshufError(why)


def temp_growth_watch(directory: str, paths: Paths = Paths(), role: str = "temporary"
                      ) -> Optional[TempGrowthWatch]:
    """A watch for a temporary file (or an output: ``role``) in ``directory`` if it is in RAM
    inside a memory cgroup; None otherwise (a disk's file is page cache the kernel can write
    back)."""
    kind = filesystem_type(directory, paths)
    if kind not in IN_MEMORY_FS or cgroup_memory(paths) is None:
        return None
    return TempGrowthWatch(directory, kind or "", paths, role)
