"""What -o does to what is already there (README, 'What happens if …'): devices, FIFOs and
inherited descriptors are written through, links are followed, regular files are replaced
atomically keeping their mode, names are checked before any work, and temporary files are
private and cleaned only when no live run holds them."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import cli_env, invoke, lines_of, one_line_error, run
from helpers import numbered_file as _numbered

import bigshuf
from bigshuf.common import output
from bigshuf.shuffler.writing import Sink

DATA = b"".join(b"%d\n" % i for i in range(2000))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "in.txt"
    p.write_bytes(DATA)
    return p


def _same_lines(data: bytes) -> bool:
    return sorted(data.splitlines()) == sorted(DATA.splitlines())


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_character_device_is_written_through_never_replaced(tmp_path, src):
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    assert invoke(["shuffle", src, "-o", null]).returncode == 0
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert invoke(["shuffle", src, "-o", "/dev/null"]).returncode == 0
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    assert [n for n in os.listdir(tmp_path) if "bigshuf" in n] == []


def test_a_fifo_is_written_through_to_its_reader(tmp_path, src):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = {}
    reader = threading.Thread(target=lambda: got.setdefault("data", fifo.read_bytes()))
    reader.start()
    assert invoke(["shuffle", src, "-o", fifo, "--seed", "1"]).returncode == 0
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and _same_lines(got["data"])


def test_dev_stdout_and_dev_fd_write_to_the_inherited_descriptor(tmp_path, src):
    """`-o /dev/stdout > file` appends to what the shell opened, and `-o >(cmd)` feeds cmd."""
    out = tmp_path / "out.txt"
    out.write_bytes(b"kept\n")
    with open(out, "ab") as f:
        p = subprocess.run([sys.executable, "-m", "bigshuf", "shuffle", str(src), "-o", "/dev/stdout"],
                           stdout=f, env=cli_env(), capture_output=False, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr
    data = out.read_bytes()
    assert data.startswith(b"kept\n") and _same_lines(data[5:])
    p = subprocess.run(["bash", "-c", f'"{sys.executable}" -m bigshuf shuffle "{src}" -o >(wc -l > "{tmp_path}/n"); wait'],
                       env=cli_env(), capture_output=True)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    for _ in range(100):
        if (tmp_path / "n").exists() and (tmp_path / "n").read_text().strip():
            break
        threading.Event().wait(0.05)
    assert (tmp_path / "n").read_text().strip() == "2000"


def test_a_symlink_is_followed_and_stays_a_link(tmp_path, src):
    target_dir = tmp_path / "real"
    target_dir.mkdir()
    target = target_dir / "data.txt"
    target.write_bytes(b"old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert invoke(["shuffle", src, "-o", link]).returncode == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert _same_lines(target.read_bytes())
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(target_dir / "new.txt")
    assert invoke(["shuffle", src, "-o", dangling]).returncode == 0
    assert dangling.is_symlink() and _same_lines((target_dir / "new.txt").read_bytes())


def test_mode_kept_and_temp_private(tmp_path, src, monkeypatch):
    src.chmod(0o600)
    seen = []
    real_replace = os.replace

    def spy(a, b):
        seen.append(stat.S_IMODE(os.stat(a).st_mode))
        return real_replace(a, b)

    created = []
    real_open = os.open

    def spy_open(path, flags, mode=0o777, *a, **k):
        fd = real_open(path, flags, mode, *a, **k)
        if ".bigshuf-" in str(path) and flags & os.O_CREAT:
            created.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(os, "replace", spy)
    monkeypatch.setattr(os, "open", spy_open)
    bigshuf.shuffle([str(src)], str(src), seed=1)  # in place
    assert created and all(m == 0o600 for m in created)  # private from the first byte
    assert stat.S_IMODE(os.stat(src).st_mode) == 0o600 and seen == [0o600]
    assert _same_lines(src.read_bytes())
    other = tmp_path / "shared.txt"
    other.write_bytes(b"x\n")
    other.chmod(0o644)
    bigshuf.shuffle([str(src)], str(other), seed=1)
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o644


def test_a_hard_link_keeps_the_old_contents(tmp_path, src):
    """Documented: the destination name gets a new file; other names of the old one keep it."""
    dest = tmp_path / "d.txt"
    dest.write_bytes(b"old\n")
    os.link(dest, tmp_path / "other-name.txt")
    bigshuf.shuffle([str(src)], str(dest), seed=1)
    assert (tmp_path / "other-name.txt").read_bytes() == b"old\n" and _same_lines(dest.read_bytes())


def test_names_up_to_name_max(tmp_path, src):
    for n in (249, 255):
        dest = tmp_path / ("x" * n)
        assert invoke(["shuffle", src, "-o", dest]).returncode == 0
        assert _same_lines(dest.read_bytes())
    p = invoke(["shuffle", src, "-o", tmp_path / ("y" * 256)])
    one_line_error(p, 2, "too long")


@pytest.mark.parametrize("dest,needle", [
    ("", "empty"),
    ("{tmp}/newdir/", "directory"),
    ("{tmp}/nodir/x.txt", "does not exist"),
    ("{tmp}", "is a directory"),
])
def test_bad_names_rejected_before_any_work(tmp_path, src, dest, needle, monkeypatch):
    p = invoke(["shuffle", src, "-o", dest.format(tmp=tmp_path)])
    one_line_error(p, 2, needle)


def test_shard_pattern_directories_checked_before_any_work(tmp_path, src, monkeypatch):
    import bigshuf.shuffler.engine as engine

    monkeypatch.setattr(engine.Engine, "scatter", lambda *a, **k: (_ for _ in ()).throw(AssertionError("worked")))
    p = invoke(["shuffle", src, "--shards", "3", "-o", f"{tmp_path}/d{{index}}/x.txt"])
    one_line_error(p, 2, "does not exist")
    p = invoke(["shuffle", src, "--shards", "3", "-o", f"{tmp_path}/x{{nope}}.txt"])
    one_line_error(p, 2, "shard pattern")


def test_shard_directories_named_by_index_are_checked_per_shard(tmp_path, src):
    """Review break: `-o 'd{index}/x'` was refused ("output directory does not exist:
    d{index}") though every shard's directory existed (README: patterns "are formatted and
    their directories checked")."""
    for i in range(2):
        (tmp_path / f"d{i}").mkdir()
    assert invoke(["shuffle", src, "--shards", "2", "-o", f"{tmp_path}/d{{index}}/x"]).returncode == 0
    got = (tmp_path / "d0" / "x").read_bytes() + (tmp_path / "d1" / "x").read_bytes()
    assert sorted(got.splitlines()) == sorted(DATA.splitlines())
    p = invoke(["shuffle", src, "--split", "a=0.5,b=rest", "--shards", "2", "-o",
                f"{tmp_path}/d{{index}}/{{split}}.txt"])
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("how", ["split", "shards"])
def test_two_outputs_that_are_one_file_are_refused(tmp_path, src, how, monkeypatch):
    """Review break: two split (or shard) names that are links to one file: exit 0 and half
    the lines gone (the second rename replaced the first). Refused before any work now."""
    import bigshuf.shuffler.engine as engine

    monkeypatch.setattr(engine.Engine, "scatter", lambda *a, **k: (_ for _ in ()).throw(AssertionError("worked")))
    (tmp_path / "B").mkdir()
    (tmp_path / "A").mkdir()
    names = ("train.txt", "test.txt") if how == "split" else ("s-0.txt", "s-1.txt")
    for n in names:
        os.symlink("../B/same.txt", tmp_path / "A" / n)
    args = ["--split", "train=0.5,test=rest", "-o", f"{tmp_path}/A/{{split}}.txt"] if how == "split" \
        else ["--shards", "2", "-o", f"{tmp_path}/A/s-{{index}}.txt"]
    one_line_error(invoke(["shuffle", src, *args]), 2, "same file")
    assert not (tmp_path / "B" / "same.txt").exists()


def test_a_live_runs_temp_is_never_removed_a_dead_ones_is(tmp_path):
    dest = tmp_path / "out.txt"
    live = output.Destination(str(dest))        # a live run (any PID namespace): holds the lock
    dead = output.Destination(str(dest))
    dead_temp = dead.temp
    os.close(dead.fd)                           # as if killed: lock gone, file left
    dead.group.release()
    removed = output.clean_stale_temps(str(dest))
    assert removed == [dead_temp] and os.path.exists(live.temp)
    live.abort()
    assert os.listdir(tmp_path) == []


def test_closed_shards_of_a_live_run_are_kept(tmp_path):
    """A finished shard's descriptor is closed, but the run still holds its group's lock."""
    group = output.TempGroup()
    a = output.Destination(str(tmp_path / "a.txt"), group)
    b = output.Destination(str(tmp_path / "b.txt"), group)
    a.close_fd()
    assert output.clean_stale_temps(str(tmp_path / "a.txt")) == []
    a.commit()
    b.commit()
    group.release()
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


def test_two_sharded_runs_to_the_same_names_never_publish_a_mix(tmp_path, src):
    pattern = str(tmp_path / "s.txt")
    procs = [subprocess.Popen([sys.executable, "-m", "bigshuf", "shuffle", str(src), "--shards", "50",
                               "-o", pattern, "--seed", str(seed)], env=cli_env(),
                              stderr=subprocess.PIPE) for seed in (1, 2, 3)]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    got = b"".join((tmp_path / f"s-{i:05d}-of-00050.txt").read_bytes() for i in range(50))
    expected = {}
    for seed in (1, 2, 3):
        r = invoke(["shuffle", str(src), "--seed", str(seed)])  # the reference bytes: no process needed
        assert r.returncode == 0, r.stderr
        expected[seed] = r.stdout
    assert got in expected.values()
    assert [n for n in os.listdir(tmp_path) if "bigshuf" in n] == []


def test_files_are_written_in_pieces(tmp_path, monkeypatch):
    """Every write call to an output or temporary file is at most WRITE_PIECE bytes (big calls
    made the page cache's cost swing 4x on the dev machine: see bench_write.py), short writes
    are resumed, and the bytes land where they belong."""
    sizes = []
    real_pwrite, real_write = os.pwrite, os.write

    def pwrite(fd, data, offset):
        sizes.append(len(data))
        return real_pwrite(fd, memoryview(data)[:max(1, len(data) - 7)], offset)  # a short write

    def write(fd, data):
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "write", write)
    data = bytes(range(256)) * 1000
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    output.pwrite_all(fd, data, 5)
    output.write_all(fd, data)  # sequential: from where the descriptor is (0)
    os.close(fd)
    assert max(sizes) == output.WRITE_PIECE and len(sizes) > 2 * len(data) // output.WRITE_PIECE
    assert path.read_bytes() == data + data[len(data) - 5:]


def test_signals_are_deferred_only_once_every_output_exists(tmp_path):
    """Review break: --shards 100000 on two lines made its empty shards after the run had
    started ignoring signals (SIGTERM and SIGINT did nothing for minutes). The outputs are
    completed first, then signals deferred, then the renames."""

    sink = Sink(str(tmp_path / "s.txt"), 10, 1, shards=3)
    sink.open()
    seen = []
    sink.finish(lambda: seen.append(sorted(p.name for p in tmp_path.iterdir())))
    assert len(seen[0]) == 3 and all(".tmp" in n for n in seen[0])  # all made, none renamed
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"s-0000{i}-of-00003.txt" for i in range(3)]


def test_a_unix_socket_destination_is_connected_and_written(tmp_path, src):
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got = bytearray()

    def serve() -> None:
        conn, _ = server.accept()
        while chunk := conn.recv(1 << 16):
            got.extend(chunk)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    assert invoke(["shuffle", src, "-o", path]).returncode == 0
    t.join(10)
    server.close()
    assert sorted(bytes(got).splitlines()) == sorted(DATA.splitlines())


def test_a_fifo_planted_under_a_temporary_name_does_not_hang_the_next_run(tmp_path, src):
    os.mkfifo(tmp_path / ".out.txt.bigshuf-a-1.tmp")
    p = run(["shuffle", src, "-o", tmp_path / "out.txt"], timeout=30)
    assert p.returncode == 0 and (tmp_path / ".out.txt.bigshuf-a-1.tmp").exists()


def test_link_loops_and_link_targets_are_checked_before_any_work(tmp_path, src):
    (tmp_path / "la").symlink_to("lb")
    (tmp_path / "lb").symlink_to("la")
    one_line_error(invoke(["shuffle", src, "-o", tmp_path / "la"]), 2, "symbolic links")
    (tmp_path / "l1").symlink_to(tmp_path / "nodir" / "x")
    one_line_error(invoke(["shuffle", src, "-o", tmp_path / "l1"]), 2, f"{tmp_path}/nodir (the target of")


def test_a_file_name_with_a_line_break_gives_a_one_line_error(tmp_path):
    one_line_error(invoke(["shuffle", str(tmp_path / "bad\nname")]), 2, "bad\\nname")




def test_a_write_only_drop_box_directory_is_an_output_directory(tmp_path):
    """Mode 0733 (write and search, no read: a drop box): shuf -o works there, so must we."""
    from helpers import run, unprivileged

    how = unprivileged(tmp_path)
    base = tmp_path / "pub"
    base.mkdir()
    base.chmod(0o755)
    tmp_path.chmod(0o755)
    src = _numbered(base / "in.txt", 100)
    src.chmod(0o644)
    box = base / "box"
    box.mkdir()
    box.chmod(0o733)
    os.chown(box, 12345, 12345)  # neither the runner (nobody, or root without DAC override)
    for args in (["-o", box / "out.txt"], ["--shards", "2", "-o", box / "s.txt"],
                 ["-n", "3", "--fsync", "-o", box / "n.txt"]):
        p = run(["shuffle", src, *args], prefix=how["prefix"], preexec=how["preexec"])
        assert p.returncode == 0, p.stderr
    box.chmod(0o755)
    assert sorted(os.listdir(box)) == ["n.txt", "out.txt", "s-00000-of-00002.txt", "s-00001-of-00002.txt"]
    assert lines_of((box / "out.txt").read_bytes()) == lines_of(src.read_bytes())
