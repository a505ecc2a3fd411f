"""Links and shared directories with a second user (issue 23, items 1-3).

Root must not follow a symbolic link another user planted in a sticky world-writable directory
when the kernel's ``fs.protected_symlinks`` would refuse ``open(O_WRONLY)`` through it (shuf and
``>`` get "Permission denied"); one user's run must never remove another user's live temporary
file; cluster temp data keeps a private input private. The second user is ``nobody`` (via
``setpriv``); ``fs.protected_symlinks`` is set for each test and restored after it.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest
from helpers import NOBODY, cli_env, invoke

SETPRIV = shutil.which("setpriv")
OTHER = 12345  # a third uid, with no name: only numbers matter to the kernel


def _as(uid: int, argv: List[str], **kw) -> subprocess.CompletedProcess:
    assert SETPRIV
    return subprocess.run([SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
                          capture_output=True, env=cli_env(), cwd="/", **kw)


@pytest.fixture
def second_user() -> None:
    if os.geteuid() != 0 or SETPRIV is None:
        pytest.skip("needs root and setpriv to act as a second user")
    if _as(NOBODY, ["true"]).returncode != 0:
        pytest.skip("setpriv cannot switch to a second uid here")


@pytest.fixture
def protected_symlinks(second_user) -> Iterator[None]:
    """fs.protected_symlinks=1 for the test (most distributions' default), then as it was."""
    knob = Path("/proc/sys/fs/protected_symlinks")
    try:
        old = knob.read_text().strip()
        knob.write_text("1")
    except OSError:
        pytest.skip("cannot set fs.protected_symlinks")
    try:
        yield
    finally:
        knob.write_text(old)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="bigshuf-shared-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _sticky(shared: Path) -> Path:
    d = shared / "sticky"
    d.mkdir()
    d.chmod(0o1777)
    return d


def _plant(link: Path, target: Path) -> None:
    """The second user makes ``link`` point at ``target``."""
    p = _as(NOBODY, ["ln", "-s", str(target), str(link)])
    assert p.returncode == 0, p.stderr
    assert os.lstat(link).st_uid == NOBODY


def _input(shared: Path) -> Path:
    src = shared / "in.txt"
    src.write_bytes(b"".join(b"%d\n" % i for i in range(50)))
    src.chmod(0o644)
    return src


def test_a_planted_link_in_a_sticky_dir_is_not_followed(protected_symlinks, shared):
    src, sticky = _input(shared), _sticky(shared)
    victim = shared / "victim.txt"
    victim.write_bytes(b"precious\n")
    link = sticky / "report.txt"
    _plant(link, victim)
    if shutil.which("shuf"):  # the reference: the kernel refuses root's open through the link
        assert subprocess.run(["shuf", "-o", str(link), str(src)], capture_output=True).returncode != 0
    r = invoke(["shuffle", src, "-o", link])
    assert r.returncode == 2, r.stderr
    err = r.stderr.decode()
    assert "permission denied" in err.lower() and str(link) in err and err.count("\n") == 1
    assert victim.read_bytes() == b"precious\n" and os.path.islink(link)
    assert sorted(os.listdir(shared)) == ["in.txt", "sticky", "victim.txt"]


def test_a_planted_dangling_link_creates_nothing(protected_symlinks, shared):
    src, sticky = _input(shared), _sticky(shared)
    created = shared / "created.txt"
    link = sticky / "report.txt"
    _plant(link, created)
    r = invoke(["shuffle", src, "-o", link])
    assert r.returncode == 2 and b"permission denied" in r.stderr.lower()
    assert not created.exists()


def test_a_planted_directory_link_is_not_followed_and_helpers_share_the_rule(protected_symlinks, shared):
    from bigshuf.common.errors import UsageError
    from bigshuf.common.output import write_json

    src, sticky = _input(shared), _sticky(shared)
    victim = shared / "victim.txt"
    victim.write_bytes(b"precious\n")
    _plant(sticky / "d", shared)
    r = invoke(["shuffle", src, "-o", sticky / "d" / "victim.txt"])
    assert r.returncode == 2 and b"permission denied" in r.stderr.lower()
    _plant(sticky / "params.json", victim)  # --save-params, --report: the same layer
    with pytest.raises(UsageError, match="ermission denied"):
        write_json(str(sticky / "params.json"), {"a": 1})
    assert victim.read_bytes() == b"precious\n"


def test_links_the_kernel_would_follow_are_followed(protected_symlinks, shared):
    """The caller's own link, and any link in a directory that is not sticky: followed as
    before (its target replaced, the link kept)."""
    src, sticky = _input(shared), _sticky(shared)
    mine = shared / "mine.txt"
    mine.write_bytes(b"old\n")
    os.symlink(mine, sticky / "own-link")
    assert invoke(["shuffle", src, "-o", sticky / "own-link"]).returncode == 0
    assert len(mine.read_bytes().splitlines()) == 50 and os.path.islink(sticky / "own-link")
    plain = shared / "plain"
    plain.mkdir()
    plain.chmod(0o777)
    _plant(plain / "link", mine)
    assert invoke(["shuffle", src, "-o", plain / "link", "--seed", "3"]).returncode == 0


_HOLD = """
import sys
from bigshuf.common.output import Destination
d = Destination(sys.argv[1])
print(d.temp, flush=True)
sys.stdin.readline()
d.commit()
"""


def test_another_users_live_temp_is_never_removed(second_user, shared):
    """Two users in a 0777 (not sticky) directory: the second one's run cannot open the first
    one's 0600 temporary file, so it cannot know it is dead: it must leave it alone."""
    src = _input(shared)
    box = shared / "box"
    box.mkdir()
    box.chmod(0o777)
    dest = box / "out.txt"
    holder = subprocess.Popen(
        [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
         "-c", _HOLD, str(dest)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=cli_env(), cwd="/")
    try:
        temp = holder.stdout.readline().decode().strip()  # the event: its temp exists and is locked
        assert temp and stat.S_IMODE(os.stat(temp).st_mode) == 0o600
        second = _as(OTHER, [sys.executable, "-m", "bigshuf", "shuffle", str(src), "-o", str(dest)])
        assert second.returncode == 0, second.stderr
        assert os.path.exists(temp), "the second user's run removed a live temporary file"
        out, err = holder.communicate(b"\n", timeout=60)
        assert holder.returncode == 0, err
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_cluster_temp_data_is_private(tmp_path, monkeypatch):
    """A 0600 input's runs and units under --temp-dir: 0600 files in a 0700 job directory,
    whatever the umask (under 022 they were 0644 in a 0755 directory)."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("fsspec")
    from bigshuf.shuffler.methods import cluster
    from bigshuf.shuffler.run import shuffle

    src = tmp_path / "private.txt"
    src.write_bytes(b"".join(b"secret %d\n" % i for i in range(2000)))
    src.chmod(0o600)
    temp = tmp_path / "temp"
    temp.mkdir()
    seen = []
    real = cluster._put_atomic

    def watching(fs, path, writer):
        real(fs, path, writer)
        job = os.path.dirname(os.path.dirname(path))
        seen.append((path, stat.S_IMODE(os.stat(path).st_mode), stat.S_IMODE(os.stat(job).st_mode),
                     stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)))

    monkeypatch.setattr(cluster, "_put_atomic", watching)
    old = os.umask(0o022)
    client = distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                                dashboard_address=":0")
    try:
        stats = shuffle([str(src)], str(tmp_path / "out.txt"), scheduler=client,
                        temp_dir=str(temp), memory="1M", seed=1)
    finally:
        client.close()
        os.umask(old)
    assert seen and stats.workers == 2  # -v said "1 worker(s)" for a cluster of 2
    assert all(m == 0o600 and j == 0o700 and d == 0o700 for _, m, j, d in seen), seen
    assert os.listdir(temp) == []


def test_another_user_holding_the_directory_lock_cannot_hang_a_run(second_user, shared, monkeypatch):
    """Anyone who can read a shared directory can flock it: a run waits a bounded time for the
    lock, then says so (it waited forever)."""
    from bigshuf.common import output

    src = _input(shared)
    box = shared / "box"
    box.mkdir()
    box.chmod(0o777)
    holder = subprocess.Popen([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               "flock", "-x", str(box), "-c", "echo held; read x"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/")
    try:
        assert holder.stdout.readline() == b"held\n"  # the event: the lock is taken
        monkeypatch.setattr(output, "DIRECTORY_LOCK_WAIT", 0.3)
        r = invoke(["shuffle", src, "-o", box / "out.txt"])
        assert r.returncode == 1 and b"is locked by another process" in r.stderr, r.stderr
        assert r.stderr.count(b"\n") == 1 and os.listdir(box) == []
    finally:
        holder.communicate(b"\n", timeout=30)
    assert invoke(["shuffle", src, "-o", box / "out.txt"]).returncode == 0
