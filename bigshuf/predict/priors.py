"""The class prior CAN re-balances towards: where it comes from and what it is.

Why it matters: CAN pushes uncertain rows towards the prior's class frequencies. A uniform prior
on imbalanced data pushes them towards the rare classes, which usually lowers accuracy; the
right prior is the training-label frequencies (``--prior train_labels.txt``).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, List, Optional, Tuple

import numpy as np

from bigshuf.common.errors import UsageError
from bigshuf.common.inputs import check_readable
from bigshuf.predict.can import check_prior
from bigshuf.predict.formats import LabelMap, is_number
from bigshuf.predict.reading import csv_number, read_label_file

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
    source, where = "given", ""
    if isinstance(spec, str):
        if os.path.isfile(spec) or os.path.isdir(spec):
            weights = _weights_file(spec, m)
            if weights is None:
                labels = read_label_file(spec, label_map)
                return frequencies(labels, m), f"label frequencies of {spec} ({len(labels)} labels)"
            spec, source, where = weights, f"weights from {spec}", f"{spec}:1: "
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
    except UsageError as e:
        raise UsageError(f"{where}{e}") from None
    except (TypeError, ValueError):
        raise UsageError(f"{where}cannot read a prior from {spec!r}") from None


def _parse_weights(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    values = [v.strip() for v in text.split(",")]
    if not all(_is_float(v) for v in values):
        raise UsageError(f"--prior {text}: no such file (nor uniform, reference, estimate, a comma list "
                         "or JSON)") from None
    return [_decimal(v, f"--prior {text}") for v in values]


def _decimal(text: str, where: str) -> float:
    """A prior weight written as a decimal number: the rule the CSV reader uses (ASCII digits,
    no ``_``). Python's float() also reads ``1_000`` and ``٨`` (issue 22)."""
    value = csv_number(text.strip())
    if not isinstance(value, float):
        raise UsageError(f"{where}: {text.strip()!r} is not a decimal number")
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{where}: prior weight {text.strip()!r} must be a non-negative finite number")
    return value


def _small_integers(lines: "list[str]", m: int) -> bool:
    return all(v.isascii() and v.isdigit() and int(v) < m for v in lines)


def _weights_file(path: str, m: int) -> Any:
    """The weights in a prior file, or None if the file is a list of labels. Weights are a JSON
    list or object, one comma list (``0.5,0.3,0.2``, as on the command line), or exactly one
    number per class a line (per-class counts or weights). Numbers follow the CSV reader's
    decimal rule; a bad one is an error naming ``FILE:LINE``. A file of exactly m small integers
    (each < m) could be m training labels or m per-class counts: it is refused rather than
    guessed (``printf '1\n0\n2\n'`` was read as the prior [0.33, 0, 0.67])."""
    check_readable(path)
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except ValueError:
        numbered = [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        lines = [v for _, v in numbered]
        if len(lines) == 1 and "," in lines[0]:
            lineno = numbered[0][0]
            return [_decimal(v, f"{path}:{lineno}") for v in lines[0].split(",")]
        if len(lines) == m > 1 and all(_is_float(v) for v in lines):
            if _small_integers(lines, m):
                raise UsageError(
                    f"{path}: {m} lines of integers below {m}, one per class: these could be {m} training labels "
                    f"or {m} per-class counts; give counts as one comma list ({','.join(lines)}) or a JSON list, "
                    "or labels as JSONL ({\"label\": ...}) or with more rows") from None
            return [_decimal(v, f"{path}:{lineno}") for lineno, v in numbered]
        return None
    if isinstance(obj, list) and all(is_number(v) for v in obj) and len(obj) > 1:
        return _checked(obj, path)
    if isinstance(obj, dict) and obj and all(is_number(v) for v in obj.values()):
        _checked(list(obj.values()), path)
        return obj
    return None


def _checked(values: "list[Any]", path: str) -> "list[Any]":
    for v in values:
        if not math.isfinite(v) or v < 0:
            raise UsageError(f"{path}:1: prior weight {v!r} must be a non-negative finite number")
    return values


def _is_float(text: str) -> bool:
    """Python float() syntax: used only to tell numbers from label names; the value itself is
    then read by ``_decimal`` (which refuses what float() alone would accept)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- label shift: estimating the prior of the file being adjusted ---------------------------------

EM_TOLERANCE = 1e-6
EM_MAX_ITERATIONS = 500
"""EM on an uncalibrated model keeps creeping towards a corner after its useful steps: 725
iterations on a 50-row reference ended at priors like 3e-189 (issue 22, adversarial pass)."""
EM_FLOOR = 0.1
"""No class's estimate goes below this share of its effective prior. A genuine shift that moves
5 of 40 classes to 60% of the rows shrinks the others by about half; the estimates the floor
stops had driven 23 of 40 classes below 1e-6 and lost up to 21 points of accuracy."""
EM_MIN_ROWS_PER_CLASS = 20
"""Fewer reference (or adjusted) rows per class than this and the estimate is mostly noise."""


def effective_prior(mean: np.ndarray, rows: int) -> np.ndarray:
    """The model's effective prior from its mean prediction on ``rows`` reference rows, with one
    pseudo-row spread evenly over the classes: a class a 50-row reference happens never to
    predict would otherwise get an effective prior near 0 and EM divides by it."""
    mean = np.asarray(mean, dtype=np.float64)
    m = len(mean)
    total = float(mean.sum()) or 1.0
    return (rows * mean / total + 1.0) / (rows + m)


def em_prior(probs: np.ndarray, source: np.ndarray, tolerance: float = EM_TOLERANCE,
             max_iterations: int = EM_MAX_ITERATIONS, floor: float = EM_FLOOR) -> Tuple[np.ndarray, int, bool]:
    """The class prior of ``probs``'s rows under label shift, by EM (Saerens et al. 2002).

    ``source`` is the prior the model's posteriors are calibrated to. Start it from the model's
    *effective* prior -- its mean posterior on a dev/reference file (``effective_prior``) -- not
    the training label frequencies: on an uncalibrated model the latter lost 8-12 points (issue
    22). Each step re-weights every row by prior / source, renormalises, and takes the mean as
    the next prior, held at ``floor`` x source or above (so the estimate is never 0).
    Returns (prior, iterations, converged)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    src = np.maximum(np.asarray(source, dtype=np.float64), 1e-300)
    src = src / src.sum()
    prior = src.copy()
    low = floor * src
    for it in range(1, max_iterations + 1):
        w = p * (prior / src)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        new = _floored(w.mean(axis=0), low)
        if np.abs(new - prior).max() < tolerance:
            return new, it, True
        prior = new
    return prior, max_iterations, False


def _floored(prior: np.ndarray, low: np.ndarray) -> np.ndarray:
    """``prior`` raised to ``low`` where below, the rest scaled down so it still sums to 1."""
    out = prior
    for _ in range(len(prior)):
        under = out < low * (1 - 1e-12)
        if not under.any():
            break
        fixed = np.where(under, low, 0.0)
        rest = np.where(under, 0.0, out)
        out = fixed + rest * (1 - fixed.sum()) / max(rest.sum(), 1e-300)
    return out


def em_warnings(estimate: np.ndarray, start: np.ndarray, reference_rows: int, rows: int,
                floor: float = EM_FLOOR) -> "list[str]":
    """What makes an EM estimate weak, one sentence each."""
    m = len(estimate)
    out = []
    if reference_rows < EM_MIN_ROWS_PER_CLASS * m:
        out.append(f"the EM prior estimate starts from the mean prediction on only {reference_rows} reference rows "
                   f"for {m} classes (fewer than {EM_MIN_ROWS_PER_CLASS} a class): the effective prior it divides by "
                   "is noisy; use a larger --reference file")
    collapsed = int((estimate <= floor * start * (1 + 1e-9)).sum())
    if collapsed:
        out.append(f"EM drove {collapsed} of {m} classes to its floor ({floor:g} x their effective prior): the "
                   "model's probabilities do not fit a pure label shift there; the estimate is held at the floor "
                   "rather than 0")
    moved = 0.5 * float(np.abs(estimate - start).sum())
    if moved > 0.25 and rows < EM_MIN_ROWS_PER_CLASS * m:
        out.append(f"the EM estimate moves {moved:.0%} of the prior mass away from the effective prior on only "
                   f"{rows} rows for {m} classes: treat it as a guess")
    return out


def bbse_prior(confusion: np.ndarray, predicted: np.ndarray, warnings: Optional[List[str]] = None) -> np.ndarray:
    """Black-box shift estimation (Lipton et al. 2018): ``confusion[i, j]`` counts reference rows
    predicted i with label j; ``predicted[i]`` counts rows of the adjusted file predicted i.
    Solves C w = mu for the importance weights w = target / reference label prior (least squares,
    clipped at 0) and returns the target prior w * reference label prior. A rank-deficient C (a
    class the reference never predicts) leaves part of w undetermined: one line in ``warnings``."""
    c = np.asarray(confusion).astype(np.float64)  # one copy, normalised in place
    c /= c.sum()
    mu = np.asarray(predicted, dtype=np.float64)
    mu = mu / mu.sum()
    solution, _, rank, _ = np.linalg.lstsq(c, mu, rcond=None)
    w = np.maximum(solution, 0.0)
    prior = w * c.sum(axis=0)
    if prior.sum() <= 0:
        raise UsageError("BBSE found no positive class weight: the reference's confusion matrix says nothing "
                         "about this file (use --prior estimate)")
    if rank < len(c) and warnings is not None:
        never = int((c.sum(axis=1) == 0).sum())
        what = f": the reference never predicts {never} of them" if never else ""
        warnings.append(f"the reference's confusion matrix has rank {rank} for {len(c)} classes{what}; the BBSE "
                        "estimate is not determined for every class (least squares picked one; --prior estimate, "
                        "EM, does not need it)")
    return prior / prior.sum()
