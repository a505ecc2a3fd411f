"""The options of one shuffle, validated once.

``ShuffleOptions`` is built from CLI flags (``bigshuf shuffle``) or Python keywords
(``bigshuf.shuffle``); its constructor checks every rule that involves only the options
themselves, with the message the user sees. The engine, sampling and the cluster layer take the
options object; none of them re-checks a rule, and the CLI checks none itself. Rules that need
the file system (does the output directory exist, is there space) run in ``preflight`` before
any work, also once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, List, Optional, Sequence, Union

from bigshuf.common.errors import UsageError
from bigshuf.common.sizes import parse_size

PathLike = Union[str, "os.PathLike[str]"]

#: Defaults, shown in --help and the README from here.
DEFAULT_MEMORY = "1G"
STDIO = "-"


@dataclass
class ShuffleOptions:
    """Everything that decides what a shuffle does. See ``bigshuf shuffle --help``."""

    inputs: Sequence[Any] = field(default_factory=lambda: [STDIO])
    output: Any = None
    memory: Union[int, str] = DEFAULT_MEMORY
    seed: Optional[int] = None
    jobs: Optional[int] = None
    temp_dir: Optional[str] = None
    buckets: Optional[int] = None
    zero_terminated: bool = False
    header: bool = False
    shards: Optional[int] = None
    lines_per_shard: Optional[int] = None
    sample: Optional[int] = None
    progress: Optional[bool] = None
    fsync: bool = False
    scheduler: Any = None
    warn: Optional[Callable[[str], None]] = None

    def __post_init__(self) -> None:
        self.inputs = list(self.inputs) or [STDIO]
        self.memory = parse_size(self.memory)
        if self.seed is not None:
            self.seed = _at_least(self.seed, 0, "--seed")
        for name, flag in (("jobs", "--jobs"), ("buckets", "--buckets"), ("shards", "--shards"),
                           ("lines_per_shard", "--lines-per-shard")):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _at_least(value, 1, flag))
        if self.sample is not None:
            self.sample = _at_least(self.sample, 0, "-n")
        self._check_combinations()
        self._check_budget()

    def _check_budget(self) -> None:
        """Rules that come from --memory: a forced bucket count must fit the run index."""
        from bigshuf.shuffler.plan import plan

        geo = plan(self.memory_bytes)
        if self.buckets is not None and self.buckets > geo.index_entries:
            raise UsageError(f"--buckets {self.buckets:,} needs more memory for its index: at most "
                             f"{geo.index_entries:,} buckets with --memory {self.memory_bytes:,} bytes")

    def _check_combinations(self) -> None:
        if self.shards is not None and self.lines_per_shard is not None:
            raise UsageError("--shards and --lines-per-shard cannot be used together")
        if self.sharded and self.to_stdout:
            raise UsageError("sharded output needs -o/--output (the shard name pattern)")
        if self.scheduler is not None:
            if self.sample is not None:
                raise UsageError("-n/--head-count is not available with --scheduler")
            if self.to_stdout:
                raise UsageError("--scheduler writes to -o/--output (a path or URL), not stdout")

    # -- derived ---------------------------------------------------------------------------
    @property
    def sep(self) -> int:
        """The record terminator byte."""
        return 0 if self.zero_terminated else 10

    @property
    def sharded(self) -> bool:
        return self.shards is not None or self.lines_per_shard is not None

    @property
    def to_stdout(self) -> bool:
        return self.output is None or self.output == STDIO or hasattr(self.output, "write")

    @property
    def memory_bytes(self) -> int:
        return int(self.memory)

    @classmethod
    def from_keywords(cls, inputs: Sequence[Any], output: Any = None, **kw: Any) -> "ShuffleOptions":
        """Options from ``bigshuf.shuffle``'s keywords; an unknown keyword is a TypeError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise TypeError(f"shuffle() got unexpected keyword(s): {', '.join(unknown)}")
        return cls(inputs=inputs, output=output, **kw)

    def input_names(self) -> List[str]:
        return [os.fspath(p) if isinstance(p, (str, os.PathLike)) else repr(p) for p in self.inputs]


def _at_least(value: Any, low: int, flag: str) -> int:
    """``value`` as an int >= ``low`` (bools and non-integers are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            value = int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{flag} takes a whole number, not {value!r}") from None
    if value < low:
        word = "must not be negative" if low == 0 else f"must be at least {low}"
        raise UsageError(f"{flag} {word}")
    return value
