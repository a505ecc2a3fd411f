"""Free-space check before any work starts, per file system."""
from __future__ import annotations

import os
import tempfile
from typing import Dict, Optional

from bigshuf.common.codecs import compression_of
from bigshuf.common.errors import BigshufError
from bigshuf.common.output import is_write_through
from bigshuf.common.sizes import format_size

#: Head-room kept free on each file system, on top of what the run needs.
MARGIN = 1 << 20


def free_bytes(directory: str) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _existing_dir(path: str) -> str:
    d = os.path.abspath(path)
    while not os.path.isdir(d):
        d = os.path.dirname(d)
    return d


def check_free_space(size: Optional[int], output: Optional[str], temp_dir: Optional[str],
                     memory_store: int, temp_size: Optional[int] = None,
                     sample: bool = False) -> None:
    """Fail (exit 1) before reading anything if the temp or output file system cannot hold the
    run. ``size`` is the (estimated) input size, ``temp_size`` what the temporary file would
    hold (default: ``size``); unknown sizes (stdin) cannot be checked here, and a full disk
    later is still reported cleanly. With ``sample`` (``-n``) the output is the sample, whose
    size is not known before the pass: like a compressed output's, it is not counted (refusing
    ``-n 5`` for the whole input's size was wrong)."""
    if not size:
        return
    temp_size = size if temp_size is None else temp_size
    need: Dict[int, int] = {}
    where: Dict[int, str] = {}
    if temp_size > memory_store:
        t = temp_dir or tempfile.gettempdir()
        dev = os.stat(t).st_dev
        need[dev] = need.get(dev, 0) + temp_size
        where[dev] = t
    # A compressed output's size is not known in advance: it is not counted (a full disk
    # later is still reported cleanly), rather than refusing a run on a guess.
    if output not in (None, "-") and not sample and not hasattr(output, "write") \
            and not is_write_through(output) and not compression_of(output):
        d = _existing_dir(os.path.dirname(os.path.abspath(output)))
        out_bytes = size
        dev = os.stat(d).st_dev
        need[dev] = need.get(dev, 0) + out_bytes
        where.setdefault(dev, d)
    for dev, n in need.items():
        have = free_bytes(where[dev])
        if have < n + MARGIN:
            raise BigshufError(f"not enough free space in {where[dev]}: need {format_size(n + MARGIN)} "
                               f"({n:,} bytes + {format_size(MARGIN)} margin), "
                               f"{format_size(have)} available")
