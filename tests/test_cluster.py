"""The Dask layer (bigshuf.shuffler.methods.cluster) on a LocalCluster of 2 worker processes: byte-identical to the
local engine, a clean temp directory, and a worker killed mid-run."""
from __future__ import annotations

import gzip
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("fsspec")

from helpers import invoke, one_line_error, run  # noqa: E402

import bigshuf  # noqa: E402
from bigshuf.common.errors import InputError, UsageError  # noqa: E402
from bigshuf.shuffler.run import shuffle as shuffle_on_cluster  # noqa: E402  (with scheduler=)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def inputs(tmp_path):
    """Three inputs, one gzip-compressed, with headers; ~2.5 MB in all."""
    paths = []
    for i in range(3):
        data = b"id\ttext\n" + b"".join(b"%d-%d\t%s\n" % (i, j, b"x" * (j % 37)) for j in range(30_000))
        p = tmp_path / (f"in{i}.tsv" + (".gz" if i == 1 else ""))
        p.write_bytes(gzip.compress(data) if i == 1 else data)
        paths.append(str(p))
    return paths


def _files(d: Path):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


SETTINGS = [
    dict(memory="64M"),                                     # one level, runs in RAM locally
    dict(memory="1M", shards=3),                            # re-scattered buckets, shards
    dict(memory="4M", lines_per_shard=40_000, header=True),  # header on every shard
    dict(memory="4M", buckets=7),
]


@pytest.mark.parametrize("kw", SETTINGS, ids=["memory", "recursive-shards", "header", "buckets"])
def test_identical_to_local_engine(client, inputs, tmp_path, kw):
    local, remote, temp = tmp_path / "local", tmp_path / "remote", tmp_path / "temp"
    for d in (local, remote, temp):
        d.mkdir()
    name = "out.tsv.gz"
    bigshuf.shuffle(inputs, str(local / name), seed=3, progress=False, **kw)
    stats = shuffle_on_cluster(inputs, str(remote / name), scheduler=client, seed=3,
                               temp_dir=str(temp), progress=False, **kw)
    assert _files(local) == _files(remote)
    assert stats.records == 90_003 - (3 if kw.get("header") else 0)
    assert list(temp.iterdir()) == []  # job directory removed


def test_result_verifies_and_cli_works(inputs, tmp_path):
    """--scheduler local:N from the command line, with another cluster's dashboard on port 8787:
    quiet (Dask printed a three-line warning when the local cluster asked for 8787; the worker
    count of -v is checked in test_shared_dirs' cluster test). One cluster of one worker for
    both checks: each worker process costs ~1 s of CPU, and two workers' identical bytes are
    the module cluster's tests above."""
    out = tmp_path / "out.txt"
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", 8787))
            s.listen()
        except OSError:
            pass  # already taken: as good
        p = run(["shuffle", *inputs, "-o", str(out), "--scheduler", "local:1", "-T", str(tmp_path),
                 "--seed", "1", "-S", "2M"], timeout=300)
    assert p.returncode == 0, p.stderr
    assert b"8787" not in p.stderr and p.stderr == b"", p.stderr
    cat = tmp_path / "cat.txt"
    cat.write_bytes(b"".join(gzip.decompress(Path(i).read_bytes()) if i.endswith(".gz")
                             else Path(i).read_bytes() for i in inputs))
    v = invoke(["verify", str(cat), str(out)])  # in this process: verifying needs none of its own
    assert v.returncode == 0, v.stdout


def test_glob_inputs_and_errors(client, inputs, tmp_path):
    pattern = str(Path(inputs[0]).parent / "in*.tsv*")
    a = tmp_path / "a.txt"
    shuffle_on_cluster([pattern], str(a), scheduler=client, seed=1, temp_dir=str(tmp_path),
                       progress=False)
    b = tmp_path / "b.txt"
    bigshuf.shuffle(sorted(inputs), str(b), seed=1, progress=False)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(InputError):
        shuffle_on_cluster([str(tmp_path / "nope*.txt")], str(a), scheduler=client)
    with pytest.raises(UsageError):
        shuffle_on_cluster(inputs, None, scheduler=client)


def test_a_truncated_input_is_an_input_error_on_the_cluster_too(client, tmp_path):
    """The cluster reads inputs with the strict decoders every local run uses (it read them
    through fsspec's compression="infer", which returns a truncated .gz's lines, exit 0)."""
    data = gzip.compress(b"".join(b"%d\n" % i for i in range(200_000)), mtime=0)
    bad = tmp_path / "cut.txt.gz"
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        shuffle_on_cluster([str(bad)], str(tmp_path / "o.txt"), scheduler=client, seed=1,
                           temp_dir=str(tmp_path), progress=False)
    assert not (tmp_path / "o.txt").exists()


def test_worker_killed_mid_run(client, tmp_path):
    """SIGKILL a worker while units are being gathered: the nanny restarts it, Dask reruns the
    lost tasks, and the output is still exactly the local engine's."""
    paths = []
    for i in range(6):
        p = tmp_path / f"big{i}.txt"
        p.write_bytes(b"".join(b"%d:%d %s\n" % (i, j, b"y" * (j % 50)) for j in range(60_000)))
        paths.append(str(p))
    temp = tmp_path / "temp"
    temp.mkdir()
    out = tmp_path / "out.txt"
    result = {}

    def run():
        try:
            result["stats"] = shuffle_on_cluster(paths, str(out), scheduler=client, seed=8,
                                                 memory="2M", temp_dir=str(temp), progress=False)
        except BaseException as exc:  # reported below
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 120
    # Wait until gathering has started (unit files appear), then kill one worker.
    while time.time() < deadline and t.is_alive():
        if any(temp.glob("bigshuf-*/units/*.bin")):
            break
        time.sleep(0.02)
    assert t.is_alive(), "the run finished before a worker could be killed"
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    t.join(300)
    assert not t.is_alive()
    # Dask re-runs the lost tasks (retries=3): the run must complete, with the local bytes.
    assert "error" not in result, result.get("error")
    expected = tmp_path / "expected.txt"
    bigshuf.shuffle(paths, str(expected), seed=8, memory="2M", progress=False)
    assert out.read_bytes() == expected.read_bytes()
    assert list(temp.iterdir()) == []
    client.wait_for_workers(2, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_cluster_output_to_a_device_is_written_through(client, inputs, tmp_path):
    """The cluster publishes local outputs through the same layer as a local run: a device
    given to -o is written through, never replaced by a regular file."""
    import stat

    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    temp = tmp_path / "temp"
    temp.mkdir()
    shuffle_on_cluster(inputs, str(null), scheduler=client, seed=1, temp_dir=str(temp), progress=False)
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_cluster_refuses_stdin_before_starting(tmp_path):
    """No input argument means stdin, which a cluster cannot read: refused (it once wrote an
    empty output and exited 0)."""
    from helpers import one_line_error

    p = invoke(["shuffle", "--scheduler", "local:1", "-o", tmp_path / "o.txt"], input=b"a\nb\n")
    one_line_error(p, 2, "not stdin")
    assert not (tmp_path / "o.txt").exists()


def test_the_cluster_refuses_pipes_before_starting(tmp_path):
    pytest.importorskip("distributed")
    p = run(["shuffle", "/dev/stdin", "--scheduler", "local:1", "-o", tmp_path / "o.txt"], input=b"a\n")
    one_line_error(p, 2, "not pipes")


def test_dask_missing_says_how_to_install_from_the_clone(monkeypatch):
    import builtins

    from bigshuf.common.errors import UsageError
    from bigshuf.shuffler.methods import cluster

    real = builtins.__import__

    def no_dask(name, *a, **kw):
        if name.split(".")[0] in ("distributed", "dask"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(UsageError) as e:
        cluster._require()
    assert "'.[dask]'" in str(e.value) and "bigshuf[dask]" not in str(e.value)
