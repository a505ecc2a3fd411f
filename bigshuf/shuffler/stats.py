"""What a shuffle did: counts, layout and timings; ``summary()`` is what ``-v`` prints."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping

from bigshuf.common.sizes import format_size

#: Epochs whose seeds -v lists (the manifest has them all).
SHOWN_EPOCHS = 20


@dataclass
class ShuffleStats:
    """What a run did; ``summary()`` is what ``-v`` prints."""

    records: int = 0
    bytes: int = 0
    records_out: int = 0
    seed: int = 0
    method: str = "engine"  # a methods.MethodName: how the run was done
    why: str = ""           # why that method was chosen
    buckets: int = 0
    runs: int = 0
    levels: int = 0
    store: str = "memory"   # where the engine's runs lived: memory, temporary file, none
    passes: int = 0  # readings of the input after the first (the input method)
    spilled: int = 0  # bytes the reservoir wrote to the temporary file
    unique: bool = False  # --unique ran: duplicates is what it dropped
    duplicates: int = 0  # --unique: records dropped as copies of an earlier one
    unique_seconds: float = 0.0  # --unique: the pass that finds them
    workers: int = 1
    scatter_seconds: float = 0.0
    gather_seconds: float = 0.0
    outputs: List[str] = field(default_factory=list)
    #: Each input's path, bytes, records and digest (--manifest; see RecordReader.input_entries).
    inputs: List[Dict[str, Any]] = field(default_factory=list)
    #: --epochs: each epoch's number and seed (epoch_seed).
    epoch_seeds: Mapping[int, int] = field(default_factory=dict)
    budget: str = ""  # why the default --memory was lowered (a container's limit), if it was
    #: --mix: per input, {path, records, weight, taken, copies, rest} (what it gave the mixture)
    taken: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        text = self._summary()
        if len(self.epoch_seeds) > 1 or any(e for e in self.epoch_seeds):
            shown = list(itertools.islice(self.epoch_seeds.items(), SHOWN_EPOCHS))
            more = len(self.epoch_seeds) - len(shown)
            text += "\nbigshuf: epochs (number: seed): " + ", ".join(
                f"{e}: {s}" for e, s in shown) + (f", ... ({more:,} more)" if more else "")
        return text

    def _summary(self) -> str:
        what = self._what() + (f"; --unique dropped {self.duplicates:,} duplicates "
                               f"({self.unique_seconds:.2f}s)" if self.unique else "")
        text = f"{what}; method: {self.method} ({self.why})" if self.why else what
        text += "".join(_taken_line(t) for t in self.taken)
        return f"{text}; budget: {self.budget}" if self.budget else text

    def _what(self) -> str:
        if self.method in ("repeat", "range", "nothing"):  # no engine, no buckets
            how = {"repeat": "drawn with replacement (-r)",
                   "range": "drawn from the range, which is never generated (-i -n)",
                   "nothing": "written (-n 0 reads nothing)"}[self.method]
            return (f"bigshuf: {self.records:,} records -> {self.records_out:,} {how}; "
                    f"seed {self.seed}")
        if self.method == "reservoir":
            where = (f", spilled {format_size(self.spilled)} to the temporary file"
                     if self.spilled else "")
            return (f"bigshuf: {self.records:,} records ({format_size(self.bytes)}) -> "
                    f"{self.records_out:,} sampled in one pass (reservoir{where}); seed {self.seed}")
        where = (f"no temporary copy, input read {self.passes + 1} times" if self.method == "input"
                 else f"runs in {self.store}")
        return (f"bigshuf: {self.records:,} records ({format_size(self.bytes)}) -> "
                f"{self.records_out:,} written; seed {self.seed}; {_n(self.buckets, 'bucket')}, "
                f"{_n(self.runs, 'run')}, {_n(self.levels, 'level')}, {where}; "
                f"{_n(self.workers, 'worker')}; scatter {self.scatter_seconds:.2f}s, "
                f"gather {self.gather_seconds:.2f}s")


def _taken_line(t: Dict[str, Any]) -> str:
    """``-v``'s line for one input of a mixture."""
    copies = t["copies"]
    how = ("all of them" if copies == 1 and not t["rest"] else
           f"{copies} whole cop{'y' if copies == 1 else 'ies'} + {t['rest']:,}" if copies
           else "a uniform subset")
    return (f"\n  {t['path']}: {t['records']:,} records, weight {t['weight']:g} -> "
            f"{t['taken']:,} taken ({how})")


def _n(count: int, word: str) -> str:
    """``1 worker``, ``2 workers``: a count with its noun."""
    return f"{count} {word}{'' if count == 1 else 's'}"
