"""Atomic outputs: a destination is either complete or untouched.

One layer for every command that writes files (shuffle outputs and shards, prediction rows,
params and reports, cluster outputs), so the destination rules live in one place.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from typing import IO, Any, Iterator, Optional

from bigshuf.common.errors import UsageError


def _creation_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(dest: str) -> Iterator[str]:
    """A temporary path beside ``dest``, renamed over it when the block succeeds and removed
    when it fails, so ``dest`` is either complete or untouched."""
    if os.path.isdir(dest):
        raise UsageError(f"output {dest!r} is a directory")
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        mode = os.stat(dest).st_mode & 0o7777 if os.path.exists(dest) else _creation_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(dest: Optional[str]) -> Iterator[IO[bytes]]:
    """A binary file for the output ``dest`` (``None`` or ``-`` is stdout).

    A file destination is written atomically (``atomic_path``). Stdout output is held in a
    spooled temporary file and copied out only on success, so a bad row late in the input
    cannot leave a half-written stream in a pipeline.
    """
    if dest in (None, "-"):
        with tempfile.SpooledTemporaryFile(max_size=32 << 20) as buf:
            yield buf  # type: ignore[misc]
            buf.seek(0)
            out = sys.stdout.buffer
            shutil.copyfileobj(buf, out, 1 << 20)
            out.flush()
        return
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_json(dest: Optional[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``dest`` (``-``/None: stdout), atomically."""
    with atomic_output(dest) as f:
        f.write((json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def check_destination(output: Any, pattern: bool = False) -> None:
    """Usage errors (exit 2) for an output that cannot be written, checked before any work.

    ``output`` None, ``-`` or a stream is stdout or the caller's; ``pattern`` says the name is a
    shard name pattern (its directory must exist; the name itself is not a file yet)."""
    if output is None or output == "-" or hasattr(output, "write"):
        return
    out = os.fspath(output)
    d = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(d):
        raise UsageError(f"output directory does not exist: {d}")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"output directory is not writable: {d}")
    if not pattern and os.path.isdir(out):
        raise UsageError(f"output is a directory: {out}")
