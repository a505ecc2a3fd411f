"""The options of ``bigshuf can`` and ``bigshuf threshold``, validated once.

Same convention as ``ShuffleOptions``: the constructor (``__post_init__``) normalises paths
(``str`` or ``pathlib.Path``) and sizes and checks every rule that involves only the options, with
the message the user sees (UsageError, exit 2). The CLI builds these objects from its flags and
checks nothing itself; ``bigshuf.can``/``bigshuf.threshold`` build them from keywords, which are
the CLI's long option names (``format``, ``top_k``, ``uncertainty``, ``cv``, ...) -- the older
keywords in ``KEYWORD_ALIASES`` still work.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional, Sequence

from bigshuf.common.errors import UsageError
from bigshuf.common.sizes import parse_size
from bigshuf.predict.defaults import (
    ADJUSTMENTS,
    DEFAULT_ADJUSTMENT,
    DEFAULT_FOLDS,
    DEFAULT_MAX_REFERENCE,
    DEFAULT_MEMORY,
    DEFAULT_SEARCH,
    DEFAULT_SEED,
    DEFAULT_SUBSAMPLE,
    FORMATS,
    PRED_KEY,
    RULES,
    SEARCHES,
    SUBSAMPLES,
)
from bigshuf.predict.metrics import MULTILABEL_METRICS, SINGLE_LABEL_METRICS, get_metric

#: Older Python keywords -> the CLI's long option names they stand for.
KEYWORD_ALIASES = {"fmt": "format", "k": "top_k", "rule": "uncertainty", "folds": "cv"}
GRID_OPTIONS = {"taus": "--taus", "alphas": "--alphas", "iterations_grid": "--iterations-grid", "ks": "--ks",
                "rules": "--rules"}
_PATH_FIELDS = ("input", "output", "report", "labels", "reference", "reference_labels", "params", "save_params")


def _path(value: Any) -> Any:
    """A str or os.PathLike as str (None stays None)."""
    return None if value is None else os.fspath(value)


def keywords(options: Mapping[str, Any]) -> Dict[str, Any]:
    """Python keywords with the old aliases renamed; an alias and its new name together is an error."""
    out = {name: value for name, value in options.items() if name not in KEYWORD_ALIASES}
    for old, new in KEYWORD_ALIASES.items():
        if old in options:
            if new in options:
                raise UsageError(f"{old!r} and {new!r} are the same option: give one")
            out[new] = options[old]
    return out


@dataclass
class FileOptions:
    """Which prediction file is read and how, where the rows and the report go, and the memory
    bound: the part of ``can``'s and ``threshold``'s options they share."""

    input: Any
    output: Any = None
    report: Any = None
    pred_key: str = PRED_KEY
    format: Optional[str] = None
    key: Optional[str] = None
    label_key: Optional[str] = None
    labels: Any = None
    classes: Any = None
    logits: Optional[bool] = None
    memory: Any = DEFAULT_MEMORY

    def __post_init__(self) -> None:
        for name in _PATH_FIELDS:
            if hasattr(self, name):
                setattr(self, name, _path(getattr(self, name)))
        if self.input is None:
            raise UsageError("an input file is needed ('-' for stdin)")
        if isinstance(self.classes, os.PathLike):
            self.classes = os.fspath(self.classes)
        if self.format is not None and self.format != "auto" and self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r} (choose from {', '.join(FORMATS)})")
        self.memory = parse_size(self.memory)

    def read_options(self) -> Dict[str, Any]:
        """Keywords for ``PredictionFile``."""
        return {"fmt": self.format, "key": self.key, "label_key": self.label_key, "labels": self.labels,
                "classes": self.classes, "logits": self.logits}

    @classmethod
    def names(cls) -> Sequence[str]:
        return [f.name for f in fields(cls)]


def check_can_params(tau: Optional[float], alpha: Optional[float], iterations: Optional[int],
                     k: Optional[int], rule: Optional[str]) -> None:
    """The CAN knobs' ranges (options and saved params files share this rule)."""
    if tau is not None and not 0 <= tau <= 1:
        raise UsageError(f"tau must be between 0 and 1, got {tau}")
    if (alpha is not None and not alpha > 0) or (iterations is not None and iterations < 1) or \
            (k is not None and k < 2):
        raise UsageError("alpha must be > 0, iterations >= 1 and k >= 2")
    if rule is not None and rule not in RULES:
        raise UsageError(f"unknown uncertainty rule {rule!r} (choose from {', '.join(RULES)})")


@dataclass
class CanOptions(FileOptions):
    """Everything ``bigshuf can`` takes. ``None`` for tau/alpha/iterations/top_k/uncertainty
    means: from ``params`` if given, else the default."""

    reference: Any = None
    reference_labels: Any = None
    prior: Any = None
    method: str = DEFAULT_ADJUSTMENT
    tau: Optional[float] = None
    alpha: Optional[float] = None
    iterations: Optional[int] = None
    top_k: Optional[int] = None
    uncertainty: Optional[str] = None
    params: Any = None
    tune: bool = False
    save_params: Any = None
    cv: int = DEFAULT_FOLDS
    taus: Optional[Sequence[float]] = None
    alphas: Optional[Sequence[float]] = None
    iterations_grid: Optional[Sequence[int]] = None
    ks: Optional[Sequence[int]] = None
    rules: Optional[Sequence[str]] = None
    search: str = DEFAULT_SEARCH
    max_reference: int = DEFAULT_MAX_REFERENCE
    subsample: str = DEFAULT_SUBSAMPLE
    seed: int = DEFAULT_SEED
    progress: Optional[bool] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.prior, os.PathLike):
            self.prior = os.fspath(self.prior)
        if self.tune and self.params:
            raise UsageError("--tune searches the parameters; it cannot also read them with --params")
        if self.save_params and not self.tune:
            raise UsageError("--save-params needs --tune")
        given = [flag for name, flag in GRID_OPTIONS.items() if getattr(self, name) is not None]
        if given and not self.tune:
            raise UsageError(f"{'/'.join(GRID_OPTIONS.values())} need --tune (got {given[0]})")
        for name, value, allowed in (("--subsample", self.subsample, SUBSAMPLES),
                                     ("--search", self.search, SEARCHES), ("--method", self.method, ADJUSTMENTS)):
            if value not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}")
        if self.max_reference < 0:
            raise UsageError("--max-reference must be >= 0 (0: no cap)")
        if self.cv < 0:
            raise UsageError("--cv must be >= 0")
        if self.tune and self.method != "can":
            raise UsageError(f"--tune searches CAN's knobs; --method {self.method} has none")
        check_can_params(self.tau, self.alpha, self.iterations, self.top_k, self.uncertainty)

    def grid(self) -> Dict[str, Sequence[Any]]:
        """The tuning grid values given (the rest take tune_can's defaults)."""
        named = {"taus": self.taus, "alphas": self.alphas, "iterations": self.iterations_grid, "ks": self.ks,
                 "rules": self.rules}
        return {k: v for k, v in named.items() if v}


@dataclass
class ThresholdOptions(FileOptions):
    """Everything ``bigshuf threshold`` takes."""

    metric: Optional[str] = None
    params: Any = None
    save_params: Any = None
    positive: Any = None
    multi_label: bool = False
    cv: int = DEFAULT_FOLDS
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.params and self.save_params:
            raise UsageError("--params applies saved params; --save-params saves searched ones: use one")
        if self.params and self.positive is not None:
            raise UsageError("--positive is fixed by the params file")
        if self.multi_label and self.positive is not None:
            raise UsageError("--positive is for binary data, not --multi-label")
        if self.metric is not None and not self.multi_label and self.metric in MULTILABEL_METRICS \
                and self.metric not in SINGLE_LABEL_METRICS:
            raise UsageError(f"--metric {self.metric} is for multi-label data: add --multi-label "
                             f"(single-label metrics: {', '.join(SINGLE_LABEL_METRICS)})")
        if self.metric is not None:
            get_metric(self.metric, self.multi_label)
        if self.cv < 0:
            raise UsageError("--cv must be >= 0")

    def read_options(self) -> Dict[str, Any]:
        return {**super().read_options(), "multi_label": self.multi_label}
