"""bigshuf: exactly uniform shuffles of line files larger than memory, and classifier
prediction post-processing (CAN, threshold search).

The command-line tool is a thin layer over these functions; see README.md.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "shuffle", "verify", "fingerprint"]


def __getattr__(name):
    # Lazy imports keep `bigshuf --help` and the prediction commands from paying for the engine.
    if name == "shuffle":
        from bigshuf.shuffle import shuffle
        return shuffle
    if name in ("verify", "fingerprint"):
        from bigshuf import fingerprints as _fp
        return getattr(_fp, name)
    raise AttributeError(f"module 'bigshuf' has no attribute {name!r}")
