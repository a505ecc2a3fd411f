"""JSONL parsed on worker processes (bigshuf/predict/parse_workers.py): the same chunks and
errors as in-process, only when --memory holds the workers, and no process left behind."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import orjson
import pytest

from bigshuf.common.errors import InputError
from bigshuf.predict import parse_workers
from bigshuf.predict.budget import Budget
from bigshuf.predict.reading import PredictionFile

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="workers are forked, and die with their parent through prctl")


class _Plan:
    """A budget stub: always (workers, piece) -- small pieces, several a chunk."""

    def __init__(self, workers: int, piece: int):
        self.plan = (workers, piece)

    def parse_plan(self, wanted: int, base: int) -> Tuple[int, int]:
        return self.plan


def _rows(n: int, m: int = 5, seed: int = 0) -> List[bytes]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(m), n).round(6) + 1e-6
    return [orjson.dumps({"id": i, "probs": row, "label": int(i % m)}) for i, row in enumerate(p.tolist())]


def _write(path: Path, lines: List[bytes], bom: bool = True) -> Path:
    text = b"\n".join(lines)  # the last line without a newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text)
    return path


def _read(path: Path, workers: int, monkeypatch: Any, piece: int = 70, size: int = 300) -> List[Tuple[Any, ...]]:
    monkeypatch.setattr(parse_workers, "MIN_FILE_BYTES", 0)
    # Threads other tests left idle would make the reader decline to fork; these workers only
    # parse (no lock of those threads is needed), so fork anyway.
    monkeypatch.setattr(parse_workers, "can_fork", lambda: True)
    out = []
    with PredictionFile(str(path), chunk_rows=size) as pf:
        pf.budget = _Plan(workers, piece)  # type: ignore[assignment]
        pf.workers = workers
        assert pf._parse_plan()[0] == workers
        for c in pf.chunks():
            out.append((c.values.tobytes(), c.labels.tolist(), c.lines.tolist(), list(c.raw or []),
                        [dict(r) for r in c.records]))
    return out


def test_workers_give_the_chunks_of_the_in_process_parse(tmp_path, monkeypatch):
    lines = _rows(1000)
    lines[10:10] = [b"", b"   ", b"\r"]  # blank lines keep their numbers
    lines[400] = lines[400] + b"\r"  # CRLF
    lines[650] = lines[650].replace(b'"id"', b'"ok":true,"id"')  # a JSON boolean: that chunk in-process
    lines[800] = lines[800].replace(b'"label":', b'"label":"3","l":')  # a class name: in-process
    lines[820] = lines[820].replace(b'"label":', b'"label":null,"l":')
    path = _write(tmp_path / "p.jsonl", lines)
    serial = _read(path, 0, monkeypatch)
    assert len(serial) == 4 and serial[0][2][:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15]
    assert _read(path, 2, monkeypatch) == serial
    assert _read(path, 1, monkeypatch, piece=300) == serial


@pytest.mark.parametrize("first, second", [("negative", "json"), ("json", "negative"), ("width", "nan")])
def test_the_first_bad_line_in_file_order_is_reported(tmp_path, monkeypatch, first, second):
    bad = {"negative": b'{"probs":[-0.5,0.5,0.5,0.5,0.5],"label":0}', "json": b'{"probs":[0.2,',
           "width": b'{"probs":[0.5,0.5],"label":0}', "nan": b'{"probs":[0.2,0.2,0.2,0.2,NaN],"label":0}'}
    lines = _rows(1000)
    lines[449], lines[849] = bad[first], bad[second]  # lines 450 and 850, in different chunks
    path = _write(tmp_path / "p.jsonl", lines, bom=False)
    messages = []
    for workers in (0, 2):
        with pytest.raises(InputError) as err:
            _read(path, workers, monkeypatch)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and ":450:" in messages[0], messages


def test_the_budget_holds_the_workers_or_the_file_is_parsed_in_process(tmp_path, monkeypatch):
    base = 80 << 20
    assert Budget("1G").fit(100).parse_plan(2, base)[0] == 2
    assert Budget("256M").fit(100).parse_plan(2, base) == (0, 0)  # 64 MB share < one worker's RSS
    assert Budget("512M").fit(100).parse_plan(2, base)[0] == 1  # room for one worker, not two
    workers, piece = Budget("1G").fit(100).parse_plan(4, base)
    assert workers * (base + piece * 100 * 100) <= (1 << 30) // 4
    monkeypatch.setattr(parse_workers, "MIN_FILE_BYTES", 0)

    def no_fork(*args: Any) -> None:
        raise AssertionError("forked workers the budget cannot hold")

    monkeypatch.setattr(parse_workers, "ParseWorkers", no_fork)
    path = _write(tmp_path / "p.jsonl", _rows(200))
    with PredictionFile(str(path), chunk_rows=64) as pf:
        pf.budget, pf.workers = Budget("64M").fit(5), 2
        assert pf._parse_plan() == (0, 0)
        assert sum(len(c) for c in pf.chunks()) == 200


_DRIVER = r"""
import os, sys
from bigshuf.predict import parse_workers
parse_workers.MIN_FILE_BYTES = 0
real = parse_workers.ParseWorkers.result
def result(self):  # the first answer waits until the test has signalled (or killed) this process
    if not self.received:
        print(" ".join(map(str, self.pids)), flush=True)
        os.read(0, 1)
    return real(self)
parse_workers.ParseWorkers.result = result
from bigshuf.launch import main
try:
    main()
finally:
    try:
        os.waitpid(-1, os.WNOHANG)
        print("a child is left", file=sys.stderr)
    except ChildProcessError:
        pass
"""


def _spawn(tmp_path: Path) -> Tuple[subprocess.Popen, List[int]]:
    src = _write(tmp_path / "p.jsonl", _rows(3000), bom=False)
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), "can", str(src), "--prior", "uniform", "-q",
                             "-o", str(tmp_path / "out.jsonl")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert pids, proc.communicate(timeout=60)
    return proc, pids


def _wait_gone(pids: List[int]) -> None:
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass
    try:
        for fd in fds:  # a pidfd turns readable when its process has ended
            assert select.select([fd], [], [], 30)[0], "a worker outlived its parent"
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_parse_leaves_no_process(tmp_path, sig):
    proc, pids = _spawn(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    text = err.decode()
    assert "Traceback" not in text and "a child is left" not in text
    assert text.count("\n") == 1 and f"interrupted by {signal.Signals(sig).name}" in text, text
    _wait_gone(pids)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open")
def test_workers_die_with_their_parent(tmp_path):
    proc, pids = _spawn(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    _wait_gone(pids)
