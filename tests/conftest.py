"""Shared fixtures: small generated inputs and a helper to run the real CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(args: List[str], input: Optional[bytes] = None, cwd=None, env=None,
            timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m bigshuf ARGS`` and capture its output (bytes)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("BIGSHUF_DEBUG", None)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "bigshuf", *args], input=input,
                          capture_output=True, cwd=cwd, env=e, timeout=timeout, **kw)


def assert_clean_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The process failed with ``code`` and one line of error text, no traceback."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture
def numbered(tmp_path: Path):
    """Factory: a file of N numbered lines ('0\\n'..'N-1\\n')."""

    def make(n: int, name: str = "in.txt") -> Path:
        p = tmp_path / name
        p.write_bytes(b"".join(b"%d\n" % i for i in range(n)))
        return p

    return make
