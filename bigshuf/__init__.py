"""bigshuf: exactly uniform shuffles of line files larger than memory, and classifier
prediction post-processing (CAN, threshold search).

The package has three parts: ``bigshuf.shuffler`` (the out-of-core line shuffle, verify and the
Dask scale-out), ``bigshuf.predict`` (prediction files, CAN, thresholds, metrics) and
``bigshuf.common`` (errors, sizes, signals, randomness, atomic outputs). The command-line tool
is a thin layer over the functions exported here; see README.md.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it. Imported on first use, so `bigshuf --help` and the
# prediction commands do not pay for the engine (and the other way round).
_EXPORTS = {
    "shuffle": "bigshuf.shuffler.run",
    "verify": "bigshuf.shuffler.verify",
    "ShuffleOptions": "bigshuf.shuffler.options",
    "fingerprint": "bigshuf.shuffler.verify",
    "epoch_seed": "bigshuf.common.randomness",
    "verify_manifest": "bigshuf.shuffler.manifest",
    "can": "bigshuf.predict.can_command",
    "tune_can": "bigshuf.predict.tune",
    "can_adjust": "bigshuf.predict.can",
    "CanModel": "bigshuf.predict.can",
    "uncertainty": "bigshuf.predict.can",
    "read_predictions": "bigshuf.predict.reading",
    "threshold": "bigshuf.predict.threshold_command",
    "find_threshold": "bigshuf.predict.thresholds",
    "find_class_weights": "bigshuf.predict.thresholds",
    "apply_threshold": "bigshuf.predict.thresholds",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bigshuf' has no attribute {name!r}")
