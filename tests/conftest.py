"""Fixtures; the helpers themselves live in tests/helpers.py."""
from __future__ import annotations

import compileall
import signal
from pathlib import Path

import pytest
from helpers import REPO
from helpers import one_line_error as assert_clean_error  # noqa: F401  (older test modules)
from helpers import run as run_cli  # noqa: F401


def pytest_configure(config) -> None:
    """Compile the checkout's bigshuf once, before the workers start: the CLI processes the tests
    run never write bytecode (helpers.cli_env: a child under a file-size limit would leave a
    truncated .pyc), so without it each of the ~140 compiled bigshuf again, ~0.06 s of CPU each.
    Python checks each .pyc against its source, as for any import."""
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        compileall.compile_dir(str(REPO / "bigshuf"), quiet=1)
    _children_get_default_signals()


def _ignore(signum, frame) -> None:
    """Still ignored here, but a handler: exec gives the children the default again."""


def _children_get_default_signals() -> None:
    """A suite run under ``nohup`` or as a background job has INT or HUP ignored, and an ignored
    signal stays ignored across exec: every bigshuf the signal tests start would then never
    stop (they hung, or exited 0). A do-nothing handler keeps this process as it was asked to
    be, while exec resets handled signals to their defaults in every child."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, _ignore)


@pytest.fixture
def numbered(tmp_path: Path):
    """Factory: a file of N numbered lines ('0\\n'..'N-1\\n')."""

    def make(n: int, name: str = "in.txt") -> Path:
        p = tmp_path / name
        p.write_bytes(b"".join(b"%d\n" % i for i in range(n)))
        return p

    return make


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A small input: 5000 numbered lines (modules with their own ``src`` override it)."""
    p = tmp_path / "in.txt"
    p.write_bytes(b"".join(b"%d\n" % i for i in range(5000)))
    return p
