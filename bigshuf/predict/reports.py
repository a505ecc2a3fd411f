"""What ``bigshuf.can`` and ``bigshuf.threshold`` return: small dataclasses, not dicts read by key.

``to_dict()`` gives the JSON written by ``--report`` (the same keys as the attributes; ``None``
parts left out). The commands assemble their report as they go and convert it here once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional


@dataclass
class Accuracy:
    """Labelled rows of one group, and their accuracy before and after."""

    rows: int
    before: Optional[float]
    after: Optional[float]


@dataclass
class Change:
    """A metric before -> after on some rows (``gain`` = after - before)."""

    before: float
    after: float
    gain: float
    labelled: Optional[int] = None


@dataclass
class Prior:
    """The prior CAN used: where it came from, its values, and an estimate's details."""

    source: str
    values: List[float]
    estimate: Optional[Dict[str, Any]] = None


def _clean(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class CanReport:
    """The report of ``bigshuf can``. ``accuracy`` maps overall/confident/uncertain to
    ``Accuracy`` when rows carry labels; ``tune`` is the tuning sub-report with ``--tune``."""

    command: str
    input: str
    output: str
    method: str
    warnings: List[str] = field(default_factory=list)
    params: Dict[str, Any] = field(default_factory=dict)
    prior: Optional[Prior] = None
    reference: Optional[Dict[str, Any]] = None
    rows: Optional[int] = None
    confident: Optional[int] = None
    uncertain: Optional[int] = None
    changed_predictions: Optional[int] = None
    accuracy: Optional[Dict[str, Accuracy]] = None
    tune: Optional[Dict[str, Any]] = None
    notes: List[str] = field(default_factory=list)
    lowered_accuracy: bool = False
    left_unchanged_zero_prior: int = 0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "CanReport":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in known})
        if isinstance(out.prior, dict):
            out.prior = Prior(**out.prior)
        if out.accuracy:
            out.accuracy = {g: Accuracy(**a) if isinstance(a, dict) else a for g, a in out.accuracy.items()}
        return out

    def to_dict(self) -> Dict[str, Any]:
        return _clean(asdict(self))


@dataclass
class ThresholdReport:
    """The report of ``bigshuf threshold``: searched (``dev``, ``cv``, ``adopted``) or applied
    (``applied``, ``decisions``) params for one mode (binary, multiclass, multilabel)."""

    command: str
    input: str
    metric: str
    mode: str
    rows: int
    params: Dict[str, Any]
    warnings: List[str] = field(default_factory=list)
    dev: Optional[Change] = None
    cv: Optional[Dict[str, Any]] = None
    adopted: Optional[bool] = None
    applied: Optional[Change] = None
    decisions: Optional[List[int]] = None
    params_file: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ThresholdReport":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in known})
        for name in ("dev", "applied"):
            part = getattr(out, name)
            if isinstance(part, dict):
                setattr(out, name, Change(**part))
        return out

    def to_dict(self) -> Dict[str, Any]:
        return _clean(asdict(self))
