"""How many CPUs this process may use: the default for ``--jobs`` and local cluster workers."""
from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs in this process's affinity mask (``taskset -c 0`` gives 1), not the machine's:
    workers beyond it only queue for the same cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call here (macOS)
        return os.cpu_count() or 1
