"""The class prior CAN re-balances towards: where it comes from and what it is.

Why it matters: CAN pushes uncertain rows towards the prior's class frequencies. A uniform prior
on imbalanced data pushes them towards the rare classes, which usually lowers accuracy; the
right prior is the training-label frequencies (``--prior train_labels.txt``).
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Tuple

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.common.inputs import check_readable
from bigshuf.predict.can import check_prior
from bigshuf.predict.formats import LabelMap
from bigshuf.predict.reading import read_label_file

UNIFORM_DEFAULT = "uniform (default)"


def frequencies(labels: np.ndarray, m: int) -> np.ndarray:
    """Label frequencies of the labelled rows (labels < 0 are unlabelled)."""
    counts = np.bincount(labels[labels >= 0], minlength=m).astype(np.float64)
    if counts.sum() == 0:
        raise UsageError("a prior from labels needs labelled rows")
    return counts / counts.sum()


def resolve_prior(spec: Any, label_map: LabelMap, reference_labels: Optional[np.ndarray] = None
                  ) -> Tuple[np.ndarray, str]:
    """The class prior and a description of where it came from.

    ``spec``: None or ``"uniform"``; ``"reference"`` (label frequencies of the reference rows);
    a list/array of numbers or a {class: weight} dict; a string holding a comma list or JSON;
    or a file: a JSON list/object of weights, or training labels (one per line, or JSONL with a
    label key) whose frequencies are used.
    """
    m = label_map.n_classes
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "uniform"):
        return np.full(m, 1.0 / m), "uniform" if spec else UNIFORM_DEFAULT
    if isinstance(spec, str) and spec.strip().lower() == "reference":
        if reference_labels is None or not (reference_labels >= 0).any():
            raise UsageError("--prior reference needs gold labels in the reference rows")
        n = int((reference_labels >= 0).sum())
        return frequencies(reference_labels, m), f"label frequencies of the {n} labelled reference rows"
    source = "given"
    if isinstance(spec, str):
        if os.path.isfile(spec) or os.path.isdir(spec):
            weights = _weights_file(spec)
            if weights is None:
                labels = read_label_file(spec, label_map)
                return frequencies(labels, m), f"label frequencies of {spec} ({len(labels)} labels)"
            spec, source = weights, f"weights from {spec}"
        else:
            spec = _parse_weights(spec)
    if isinstance(spec, dict):
        if not label_map.classes:
            raise UsageError("a prior given by class name needs class names (--classes)")
        unknown = [c for c in spec if c not in label_map.classes]
        if unknown:
            raise UsageError(f"prior names unknown class {unknown[0]!r}")
        spec = [spec.get(c, 0.0) for c in label_map.classes]
    try:
        return check_prior(spec, m), source
    except (TypeError, ValueError):
        raise UsageError(f"cannot read a prior from {spec!r}") from None


def _parse_weights(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--prior {text!r}: not uniform, reference, a file, a comma list or JSON") from None


def _weights_file(path: str) -> Any:
    """The weights in a JSON prior file, or None if the file is a list of labels."""
    check_readable(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if isinstance(obj, list) and all(isinstance(v, (int, float)) for v in obj) and len(obj) > 1:
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, (int, float)) for v in obj.values()):
        return obj
    return None
