"""bigshuf: exactly uniform shuffles of line files larger than memory, and classifier
prediction post-processing (CAN, threshold search).

The command-line tool is a thin layer over these functions; see README.md.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "shuffle", "verify", "fingerprint",
           "can", "tune_can", "can_adjust", "CanModel", "uncertainty", "read_predictions",
           "threshold", "find_threshold", "find_class_weights", "apply_threshold"]


def __getattr__(name):
    # Lazy imports keep `bigshuf --help` and the prediction commands from paying for the engine.
    if name == "shuffle":
        from bigshuf.engine import shuffle
        return shuffle
    if name in ("verify", "fingerprint"):
        from bigshuf import fingerprints as _fp
        return getattr(_fp, name)
    if name in ("can", "tune_can", "can_adjust", "CanModel", "uncertainty"):
        # importing bigshuf.can binds the package attribute `can` to the module; the module is
        # callable (it runs can()), so bigshuf.can(...) works whichever was looked up first
        import importlib
        module = importlib.import_module("bigshuf.can")
        return module if name == "can" else getattr(module, name)
    if name == "read_predictions":
        from bigshuf.predictions import read_predictions
        return read_predictions
    if name in ("threshold", "find_threshold", "find_class_weights", "apply_threshold"):
        from bigshuf import thresholds as _thresholds
        return getattr(_thresholds, name)
    raise AttributeError(f"module 'bigshuf' has no attribute {name!r}")
