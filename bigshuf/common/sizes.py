"""Parsing of human byte sizes (``--memory 256M``), like sort(1)'s -S."""
from __future__ import annotations

import re

from bigshuf.common.errors import UsageError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPB]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: "str | int") -> int:
    """Return the number of bytes in ``text`` ('1G', '256M', '1.5g', '4096'; binary units).
    A fraction of a unit is rounded down ('1.3G'), a fraction of a byte is refused ('1.9'), and
    so is a bool (True is not one byte)."""
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise UsageError(f"invalid size {text!r} (expected a number of bytes or a string like '256M')")
    if isinstance(text, int):
        if text <= 0:
            raise UsageError(f"size must be positive, got {text}")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"invalid size {text!r} (expected a number with an optional K, M, G or T suffix)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if _UNITS[m.group(2).upper()] == 1 and value != int(value):
        raise UsageError(f"invalid size {text!r}: not a whole number of bytes")
    if value < 1:
        raise UsageError(f"size must be at least one byte, got {text!r}")
    return int(value)


def format_size(n: float) -> str:
    """Short human form of a byte count: 1.5G, 256M, 12K, 100B."""
    for unit in ("P", "T", "G", "M", "K"):
        scale = _UNITS[unit]
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}".replace(".0" + unit, unit)
    return f"{int(n)}B"
