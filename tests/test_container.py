"""Memory cgroups (containers): the limit found from a fake tree as from a real one, the default
--memory capped by it, and the input method's page-cache decision."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest
from helpers import invoke, one_line_error

from bigshuf.common import container
from bigshuf.common.container import CgroupMemory, MemoryView, Paths
from bigshuf.shuffler.methods.reread import FAST_READ, cache_holds

MB = 1 << 20
V1_UNLIMITED = "9223372036854771712"


def _files(root: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def fake_tree(tmp_path: Path, version: int, levels: Dict[str, Dict[str, str]],
              own: str = "/a/b", meminfo_kb: int = 16 << 20, pressure: Optional[str] = None
              ) -> Paths:
    """A /proc and a cgroup mount under ``tmp_path``: ``levels`` maps cgroup paths ("/", "/a",
    "/a/b") to their files; the process is in ``own``."""
    mnt = tmp_path / "sys" / "fs" / "cgroup" / ("memory" if version == 1 else "unified")
    for cg, files in levels.items():
        _files(mnt / cg.lstrip("/") if cg != "/" else mnt, files)
    fstype = "cgroup cgroup rw,memory" if version == 1 else "cgroup2 cgroup2 rw"
    _files(tmp_path / "proc", {
        "mountinfo": f"31 23 0:28 / {tmp_path}/sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
                     f"35 31 0:32 / {mnt} rw,relatime - {fstype}\n",
        "cgroup": (f"4:memory:{own}\n0::/\n" if version == 1 else f"0::{own}\n"),
        "meminfo": f"MemTotal: {meminfo_kb * 2} kB\nMemAvailable: {meminfo_kb} kB\n",
        "pressure": pressure or "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    })
    proc = tmp_path / "proc"
    return Paths(str(proc / "cgroup"), str(proc / "mountinfo"), str(proc / "meminfo"),
                 str(proc / "pressure"))


def v1(limit: object, usage: int, cache: int = 0) -> Dict[str, str]:
    return {"memory.limit_in_bytes": str(limit), "memory.usage_in_bytes": str(usage),
            "memory.stat": f"cache {cache}\ntotal_inactive_file {cache // 2}\n"
                           f"total_active_file {cache - cache // 2}\n"}


def v2(maximum: object, current: int, file: int = 0, high: object = "max") -> Dict[str, str]:
    return {"memory.max": str(maximum), "memory.high": str(high), "memory.current": str(current),
            "memory.stat": f"anon 1\nfile {file}\nactive_file {file // 2}\n"
                           f"inactive_file {file - file // 2}\n"}


def test_v1_tightest_ancestor(tmp_path: Path) -> None:
    """The parent's limit binds when it leaves less room than the process's own level."""
    paths = fake_tree(tmp_path, 1, {"/": v1(V1_UNLIMITED, 5000 * MB),
                                    "/a": v1(2048 * MB, 1900 * MB, cache=400 * MB),
                                    "/a/b": v1(4096 * MB, 300 * MB)})
    cg = container.cgroup_memory(paths)
    assert cg is not None and cg.version == 1 and cg.path.endswith("memory/a")
    assert cg.limit == 2048 * MB and cg.room == (2048 - 1900 + 400) * MB


def test_v2_max_high_and_nesting(tmp_path: Path) -> None:
    paths = fake_tree(tmp_path, 2, {"/": {}, "/a": v2(4096 * MB, 100 * MB),
                                    "/a/b": v2("max", 50 * MB, high=1024 * MB)})
    cg = container.cgroup_memory(paths)
    assert cg is not None and cg.version == 2 and cg.path.endswith("unified/a/b")
    assert cg.limit == 1024 * MB and cg.free == 974 * MB


def test_no_limit_anywhere(tmp_path: Path) -> None:
    paths = fake_tree(tmp_path, 1, {"/": v1(V1_UNLIMITED, 1), "/a/b": v1(V1_UNLIMITED, 1)})
    view = container.memory_view(paths)
    assert view.cgroup is None and view.host == (16 << 20) * 1024
    assert container.default_budget(1 << 30, view) == (1 << 30, None)
    assert container.budget_warning(8 << 30, view) is None


def test_unreadable_tree_is_no_limit(tmp_path: Path) -> None:
    paths = Paths(str(tmp_path / "none"), str(tmp_path / "none"), str(tmp_path / "none"),
                  str(tmp_path / "none"))
    assert container.cgroup_memory(paths) is None
    assert container.memory_pressure(paths) == 0.0


def test_mount_root_of_a_namespace(tmp_path: Path) -> None:
    """A container sees its own cgroup mounted at the mount point (mountinfo root /docker/x)."""
    paths = fake_tree(tmp_path, 1, {"/": v1(700 * MB, 10 * MB)}, own="/docker/x")
    text = Path(paths.mountinfo).read_text().replace(" / " + str(tmp_path) + "/sys/fs/cgroup/memory",
                                                     " /docker/x " + str(tmp_path) + "/sys/fs/cgroup/memory")
    Path(paths.mountinfo).write_text(text)
    cg = container.cgroup_memory(paths)
    assert cg is not None and cg.limit == 700 * MB and cg.path.endswith("cgroup/memory")


@pytest.mark.parametrize("own", ["/", "/inner"])
def test_inside_a_cgroup_namespace(tmp_path: Path, own: str) -> None:
    """`unshare --cgroup` without remounting: /proc/self/cgroup is relative to the namespace
    (``/``) and mountinfo's root is ``/..``; the limit is found where this process is listed
    (it was not: the default stayed 1G and the run was OOM-killed)."""
    mine = {**v1(256 * MB, 10 * MB), "cgroup.procs": f"1\n{os.getpid()}\n"}
    levels = {"/": v1(V1_UNLIMITED, 1), "/other": {**v1(8 << 30, 0), "cgroup.procs": "7\n"},
              "/ns": v1(512 * MB, 10 * MB) if own != "/" else mine}
    if own != "/":
        levels["/ns/inner"] = mine
    paths = fake_tree(tmp_path, 1, levels, own=own)
    mnt = f"{tmp_path}/sys/fs/cgroup/memory"
    text = Path(paths.mountinfo).read_text().replace(f" / {mnt} ", f" /.. {mnt} ")
    Path(paths.mountinfo).write_text(text)
    cg = container.cgroup_memory(paths)
    assert cg is not None and cg.limit == 256 * MB and cg.path == f"{mnt}/ns{own.rstrip('/')}"


def test_levels_found_once_per_process_but_limits_read_each_time(tmp_path: Path, monkeypatch) -> None:
    """The real /proc layout is parsed once per process (a tiny shuffle asked 2-3 times); a fake
    tree is never cached, and a limit written after the first look is seen at the next."""
    calls = []
    real_layout = container._layout
    monkeypatch.setattr(container, "_layout", lambda p: calls.append(p) or real_layout(p))
    monkeypatch.setattr(container, "_REAL_LAYOUT", [])
    container.cgroup_memory()
    container.default_budget(1 << 30)
    container.budget_warning(1 << 30)
    assert calls == [Paths()]
    paths = fake_tree(tmp_path, 1, {"/a/b": v1(V1_UNLIMITED, 20 * MB)})
    assert container.cgroup_memory(paths) is None
    _files(tmp_path / "sys/fs/cgroup/memory/a/b", v1(700 * MB, 20 * MB))
    cg = container.cgroup_memory(paths)
    assert cg is not None and cg.limit == 700 * MB
    assert container.default_budget(1 << 30, container.memory_view(paths))[1] is not None
    assert calls[1:] == [paths, paths, paths]


def test_default_budget_capped_and_warned(tmp_path: Path) -> None:
    paths = fake_tree(tmp_path, 1, {"/a/b": v1(700 * MB, 20 * MB, cache=10 * MB)})
    view = container.memory_view(paths)
    budget, why = container.default_budget(1 << 30, view)
    room = (700 - 20 + 10) * MB
    assert budget == int((room - container.INTERPRETER_BYTES) * container.BUDGET_SHARE) >> 20 << 20
    assert why is not None and "limit is 700M" in why and "(not 1G)" in why
    warn = container.budget_warning(1 << 30, view)
    assert warn is not None and "does not fit" in warn and "700M" in warn
    assert container.budget_warning(budget, view) is None
    big = fake_tree(tmp_path / "big", 1, {"/a/b": v1(8 << 30, 0)})
    assert container.default_budget(1 << 30, container.memory_view(big)) == (1 << 30, None)


def test_pressure_v2_and_host(tmp_path: Path) -> None:
    levels = {"/a/b": {**v2(1 << 30, 0), "memory.pressure": "some avg10=42.50 avg60=1 avg300=0 total=9\n"}}
    paths = fake_tree(tmp_path, 2, levels)
    assert container.memory_view(paths).pressure == 42.5
    host = fake_tree(tmp_path / "h", 1, {}, pressure="some avg10=3.25 avg60=0 avg300=0 total=1\n")
    assert container.memory_view(host).pressure == 3.25


def _view(limit: Optional[int], room: int, host: int = 16 << 30, pressure: float = 0.0) -> MemoryView:
    cg = None if limit is None else CgroupMemory("/cg", 1, limit, limit - room, 0)
    return MemoryView(cg, host, pressure)


@pytest.mark.parametrize("size,view,rate,uses", [
    (1 << 30, _view(None, 0), 0.0, True),                        # host with room: as before
    (1 << 30, _view(None, 0, host=1 << 30), 0.0, False),         # host without room
    (1 << 30, _view(2 << 30, 2 << 30), 0.0, True),               # cgroup holds input + budget
    (2600 * MB, _view(1 << 30, 1 << 30), 200e6, False),          # beyond it, from a disk
    (2600 * MB, _view(1 << 30, 1 << 30), 8.0 * FAST_READ, True),  # beyond it, cached elsewhere
    (2600 * MB, _view(1 << 30, 1 << 30), 1.3 * FAST_READ, False),  # the dev VM's cold disk
    (1 << 30, _view(None, 0, pressure=50.0), 9e9, False),        # pressure
])
def test_cache_decision(size: int, view: MemoryView, rate: float, uses: bool) -> None:
    why_not, seen = cache_holds(size, 256 * MB, view, lambda: rate, 7)
    assert (why_not is None) == uses, (why_not, seen)
    if view.cgroup is not None and not uses:
        assert "cgroup limit" in why_not  # -v names the limit
    if uses:
        assert seen


def test_decision_from_fake_tree_as_real(tmp_path: Path) -> None:
    """The same numbers through the files: a 2 GB cgroup with 1.2 GB used by cache holds 1 GB."""
    paths = fake_tree(tmp_path, 1, {"/a/b": v1(2048 * MB, 1500 * MB, cache=1200 * MB)})
    view = container.memory_view(paths)
    why_not, seen = cache_holds(1 << 30, 256 * MB, view)
    assert why_not is None and "cgroup limit 2G" in seen
    why_not, _ = cache_holds(3 << 30, 256 * MB, view)
    assert why_not is not None and "reads from disk" in why_not


# -- a real cgroup, when this machine lets us make one ------------------------------------------

def _own_v1_memory() -> Optional[str]:
    try:
        with open("/proc/self/cgroup") as f:
            own = next((ln.split(":", 2)[2].strip() for ln in f
                        if "memory" in ln.split(":", 2)[1].split(",")), None)
    except (OSError, IndexError):
        return None
    d = None if own is None else "/sys/fs/cgroup/memory" + own.rstrip("/")
    return d if d and os.access(d, os.W_OK) else None


@pytest.fixture
def real_cgroup():
    parent = _own_v1_memory()
    if parent is None:
        pytest.skip("no writable cgroup v1 memory controller here")
    d = os.path.join(parent, f"bigshuf-test-{os.getpid()}")
    try:
        os.mkdir(d)
        with open(os.path.join(d, "memory.limit_in_bytes"), "w") as f:
            f.write(str(600 * MB))
    except OSError as exc:
        pytest.skip(f"cannot make a child memory cgroup: {exc}")
    yield d
    for _ in range(100):
        try:
            os.rmdir(d)
            break
        except OSError:
            import time
            time.sleep(0.05)


def test_real_cgroup_caps_the_default(real_cgroup: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%d\n" % i for i in range(1000)))
    out = tmp_path / "out.txt"
    enter = f"echo $$ > {real_cgroup}/cgroup.procs"
    cmd = [sys.executable, "-m", "bigshuf", "shuffle", str(src), "-o", str(out), "-v", "--seed", "1"]
    p = subprocess.run(["sh", "-c", f'{enter} && exec "$@"', "sh"] + cmd, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert "budget: --memory" in p.stderr and "limit is 600M" in p.stderr
    # The order contract: the capped budget changes nothing but speed.
    import bigshuf
    bigshuf.shuffle([str(src)], str(tmp_path / "free.txt"), seed=1, memory="1G")
    assert out.read_bytes() == (tmp_path / "free.txt").read_bytes()
    # An explicit budget larger than the limit: warned (read in the cgroup, as a run would).
    probe = "from bigshuf.common.container import budget_warning as w; print(w(2 << 30))"
    p = subprocess.run(["sh", "-c", f'{enter} && exec "$@"', "sh", sys.executable, "-c", probe],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "--memory 2G does not fit" in p.stdout, p.stderr


def test_real_cgroup_tmpfs_pages_are_not_room(real_cgroup: str, tmp_path: Path) -> None:
    """On the real kernel: 32M written to tmpfs from inside the cgroup leave at most the limit
    less 32M of room, whatever the file LRUs hold (the input reached this run through a pipe
    from outside the cgroup: then they were empty, and the tmpfs pages were taken as room)."""
    shm = "/dev/shm"
    if container.filesystem_type(shm) not in container.IN_MEMORY_FS or not os.access(shm, os.W_OK):
        pytest.skip("no writable tmpfs at /dev/shm")
    f = os.path.join(shm, f"bigshuf-test-{os.getpid()}")
    probe = ("from bigshuf.common.container import cgroup_memory as c; g = c(); "
             "print(g.limit, g.room)")
    script = (f"echo $$ > {real_cgroup}/cgroup.procs && "
              f"dd if=/dev/zero of={f} bs=1M count=32 status=none && exec \"$@\"")
    try:
        p = subprocess.run(["sh", "-c", script, "sh", sys.executable, "-c", probe],
                           capture_output=True, text=True)
    finally:
        if os.path.exists(f):
            os.unlink(f)
    assert p.returncode == 0, p.stderr
    limit, room = map(int, p.stdout.split())
    assert limit == 600 * MB and room <= limit - 32 * MB


def test_tmpfs_temp_dir_in_a_cgroup(tmp_path: Path) -> None:
    """A temporary file on tmpfs is RAM the cgroup charges: refused before any work if it cannot
    fit, fine on a disk or without a limit."""
    paths = fake_tree(tmp_path, 1, {"/a/b": v1(1 << 30, 0)})
    shm = tmp_path / "shm"
    shm.mkdir()
    with open(paths.mountinfo, "a") as f:
        f.write(f"50 23 0:40 / {shm} rw,nosuid - tmpfs tmpfs rw,size=4g\n")
    view = container.memory_view(paths)
    assert container.filesystem_type(str(shm / "x"), paths) == "tmpfs"
    why = container.memory_temp_problem(str(shm), 2 << 30, 256 * MB, view, paths)
    assert why is not None and "in memory (tmpfs)" in why and "--temp-dir" in why
    assert container.memory_temp_problem(str(shm), 100 * MB, 256 * MB, view, paths) is None
    assert container.memory_temp_problem(str(tmp_path), 2 << 30, 256 * MB, view, paths) is None
    free = container.memory_view(fake_tree(tmp_path / "nolimit", 1, {}))
    assert container.memory_temp_problem(str(shm), 2 << 30, 256 * MB, free, paths) is None


def test_overlay_over_tmpfs_is_in_memory(tmp_path: Path) -> None:
    """An overlay whose upper layer is on tmpfs keeps its new files in RAM (a container's
    scratch overlay): the temp file there is refused or watched as on tmpfs. One over a disk,
    or whose upper layer is not visible (a container's root), is not."""
    paths = fake_tree(tmp_path, 1, {"/a/b": v1(256 * MB, 100 * MB)})
    for d in ("shm/upper", "disk/upper", "ov", "ov2", "ov3"):
        (tmp_path / d).mkdir(parents=True)
    with open(paths.mountinfo, "a") as f:
        f.write(f"50 23 0:40 / {tmp_path}/shm rw - tmpfs tmpfs rw,size=4g\n"
                f"51 23 0:41 / {tmp_path}/disk rw - ext4 /dev/vdb rw\n")
        for name, upper in (("ov", "shm/upper"), ("ov2", "disk/upper"), ("ov3", "gone/upper")):
            f.write(f"52 23 0:42 / {tmp_path}/{name} rw - overlay overlay rw,lowerdir=/l,"
                    f"upperdir={tmp_path}/{upper},workdir={tmp_path}/w\n")
    kinds = [container.filesystem_type(str(tmp_path / d / "x"), paths) for d in ("ov", "ov2", "ov3")]
    assert kinds == ["tmpfs", "ext4", "overlay"]
    assert container.temp_growth_watch(str(tmp_path / "ov"), paths) is not None
    assert container.temp_growth_watch(str(tmp_path / "ov2"), paths) is None


def test_temp_file_in_ram_is_watched_while_it_grows(tmp_path: Path) -> None:
    """A tmpfs temporary file inside a memory cgroup re-reads the cgroup's room as it grows
    (stdin's size is unknown, a compressed input's a guess) and refuses the write that would
    leave too little, before the OOM killer fires; a disk's temp file is not watched."""
    paths = fake_tree(tmp_path, 1, {"/": v1(V1_UNLIMITED, 1),
                                    "/a/b": v1(256 * MB, 100 * MB, cache=20 * MB)})
    ram = tmp_path / "sys" / "fs" / "cgroup" / "tmp"  # under the fake tmpfs mount
    ram.mkdir()
    assert container.temp_growth_watch(str(tmp_path / "proc"), paths) is None  # not in RAM
    watch = container.temp_growth_watch(str(ram), paths)
    assert watch is not None
    assert watch.check(4 * MB) is None  # 176M room
    usage = tmp_path / "sys" / "fs" / "cgroup" / "memory" / "a" / "b" / "memory.usage_in_bytes"
    usage.write_text(str(240 * MB))  # the file grew: 36M room
    assert watch.check(4 * MB) is None  # not re-read within WATCH_EVERY
    why = watch.check(container.WATCH_EVERY)
    assert why is not None and str(ram) in why and "--temp-dir" in why and "\n" not in why


def _only_tmpfs(version: int, limit: int, shm: int) -> Dict[str, str]:
    """A cgroup whose charge is all tmpfs pages, every file page reclaimed: memory.stat as a
    real v1 (or v2) kernel prints it then, the tmpfs pages in cache/file and shmem."""
    if version == 1:
        return {"memory.limit_in_bytes": str(limit), "memory.usage_in_bytes": str(shm),
                "memory.stat": f"cache {shm}\nrss 0\nshmem {shm}\ninactive_anon {shm}\n"
                               f"inactive_file 0\nactive_file 0\ntotal_cache {shm}\n"
                               f"total_shmem {shm}\ntotal_inactive_file 0\ntotal_active_file 0\n"}
    return {"memory.max": str(limit), "memory.high": "max", "memory.current": str(shm),
            "memory.stat": f"anon 0\nfile {shm}\nshmem {shm}\nactive_file 0\ninactive_file 0\n"}


@pytest.mark.parametrize("version", [1, 2])
def test_tmpfs_pages_are_not_room(tmp_path: Path, version: int) -> None:
    """tmpfs pages count in the cgroup's cache (v1) or file (v2) total but cannot be dropped.
    When the file LRUs were empty, the total was taken as reclaimable: a run whose tmpfs temp
    filled a 256M cgroup saw 193M of room, and was OOM-killed instead of stopping (seen under
    CPU load, which reclaims every file page)."""
    paths = fake_tree(tmp_path, version, {"/a/b": _only_tmpfs(version, 256 * MB, 230 * MB)})
    cg = container.cgroup_memory(paths)
    assert cg is not None and cg.room == 26 * MB
    ram = tmp_path / "sys" / "fs" / "cgroup" / "tmp"  # under the fake tmpfs mount
    ram.mkdir()
    watch = container.temp_growth_watch(str(ram), paths)
    assert watch is not None and watch.check(4 * MB) is not None


def test_cache_total_without_lrus_excludes_tmpfs(tmp_path: Path) -> None:
    """A kernel that reports no file LRUs: the cache total less its tmpfs pages."""
    files = {"memory.limit_in_bytes": str(256 * MB), "memory.usage_in_bytes": str(200 * MB),
             "memory.stat": f"cache {150 * MB}\nshmem {100 * MB}\n"}
    cg = container.cgroup_memory(fake_tree(tmp_path, 1, {"/a/b": files}))
    assert cg is not None and cg.room == (256 - 200 + 50) * MB


def test_v1_limit_ignores_host_pressure(tmp_path: Path) -> None:
    """Under a v1 limit the host's PSI (other cgroups' stalls) does not count as this run's
    memory pressure; the cgroup's room does."""
    paths = fake_tree(tmp_path, 1, {"/a/b": v1(1 << 30, 0)},
                      pressure="some avg10=50.00 avg60=0 avg300=0 total=1\n")
    view = container.memory_view(paths)
    assert view.cgroup is not None and view.pressure == 0.0
    why, _ = cache_holds(100 * MB, 64 * MB, view)
    assert why is None


class _Refuse(container.TempGrowthWatch):
    """A watch whose cgroup has no room left: every write is refused."""

    def __init__(self) -> None:
        super().__init__("/dev/shm/x", "tmpfs")

    def check(self, nbytes: int) -> Optional[str]:
        return "temporary directory /dev/shm/x is in memory (tmpfs) and outgrew the limit"


@pytest.mark.parametrize("module,options", [
    ("bigshuf.shuffler.rereading", {"unique": True}),  # a stream spooled to read it twice
    ("bigshuf.shuffler.dedup", {"unique": True, "memory": "1M"}),  # the table spilled
    ("bigshuf.shuffler.writing", {}),  # the output itself (-o on tmpfs), written in place
    ("bigshuf.shuffler.writing", {"output": "out.gz"}),  # ... or through a compressor
])
def test_every_temp_file_in_ram_is_watched(tmp_path: Path, monkeypatch, module, options) -> None:
    """Not only the engine's temp file: the spool of a stream read twice and --unique's spilled
    table stop with the one-line error before the OOM killer would (a tmpfs -T in a cgroup)."""
    import importlib
    import io

    import bigshuf
    from bigshuf.common.errors import BigshufError
    monkeypatch.setattr(importlib.import_module(module), "temp_growth_watch",
                        lambda directory, role="temporary": _Refuse())
    data = b"".join(b"%d\n" % i for i in range(60_000))
    source = io.BytesIO(data) if module.endswith("rereading") else _file(tmp_path, data)
    out = tmp_path / options.pop("output", "out")
    with pytest.raises(BigshufError, match="outgrew"):
        bigshuf.shuffle([source], output=str(out), seed=1, **options)
    assert not out.exists() and os.listdir(tmp_path) == ["in.txt"] * (not module.endswith("rereading"))


def test_an_output_in_ram_is_refused_before_work(tmp_path: Path, monkeypatch) -> None:
    """-o on tmpfs inside a memory cgroup, of a known size that cannot fit: refused before any
    work, with the output's words (the watch stops it later when the size was not known)."""
    from bigshuf.shuffler import run as run_module
    asked = []

    def problem(directory, nbytes, budget, view=None, paths=Paths(), role="temporary"):
        asked.append((role, nbytes))
        return f"output directory {directory} is in memory" if role == "output" else None
    monkeypatch.setattr(run_module, "memory_temp_problem", problem)
    src = _file(tmp_path, b"x\n" * 50_000)
    p = invoke(["shuffle", src, "-o", str(tmp_path / "out.txt")])
    one_line_error(p, 1, "output directory", "is in memory")
    assert ("output", 100_000) in asked and not (tmp_path / "out.txt").exists()


def _file(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    return str(path)
