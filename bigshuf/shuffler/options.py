"""The options of one shuffle, validated once.

``ShuffleOptions`` is built from CLI flags (``bigshuf shuffle``) or Python keywords
(``bigshuf.shuffle``); its constructor checks every rule that involves only the options
themselves, with the message the user sees. The engine, sampling and the cluster layer take the
options object; none of them re-checks a rule, and the CLI checks none itself. Rules that need
the file system (does the output directory exist, is there space) run in ``preflight`` before
any work, also once.
"""
from __future__ import annotations

import numbers
import os
import re
from dataclasses import dataclass, field, fields
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

from bigshuf.common.container import NO_LIMIT, default_budget
from bigshuf.common.errors import InputError, UsageError
from bigshuf.common.inputs import check_read_once_given_once, check_readable, is_read_once
from bigshuf.common.output import is_write_through
from bigshuf.common.randomness import seed_from_bytes
from bigshuf.common.sizes import parse_size
from bigshuf.shuffler.plan import plan
from bigshuf.shuffler.writing import check_shard_count

PathLike = Union[str, "os.PathLike[str]"]

#: Defaults, shown in --help and the README from here. Without --memory a run in a
#: memory-limited cgroup (a container) gets less: bigshuf.common.container.default_budget.
DEFAULT_MEMORY = "1G"
DEFAULT_MEMORY_HELP = f"{DEFAULT_MEMORY}, less in a memory-limited container"
STDIO = "-"
#: Bytes of --random-source that make the seed (a 256-bit number: the contract in
#: bigshuf.common.randomness); a shorter file is an error, like shuf's "end of file".
RANDOM_SOURCE_BYTES = 32
#: In --split, the split that gets whatever the others leave.
SPLIT_REST = "rest"
#: In -o with --split, replaced by each split's name.
SPLIT_FIELD = "{split}"
#: In -o with --aligned: each input's file name.
NAME_FIELD = "{name}"
#: In -o with --epochs: the epoch's number (0..E-1), with an optional integer format ({epoch:02d}).
EPOCH_FIELD_RE = re.compile(r"\{epoch(?::([^{}]*))?\}")


#: Python keywords spelled as the CLI's long options, for the fields named otherwise.
KEYWORD_ALIASES = {"head_count": "sample"}


def _check_rereadable(p: Any, why: str) -> None:
    """An input read twice (counted, then read) must be a file: one-line usage error naming it
    (a directory is said to be one, not "read only once")."""
    if isinstance(p, str) and p != STDIO and os.path.isdir(p):
        raise UsageError(f"{p}: is a directory")
    if not isinstance(p, str) or p == STDIO or is_read_once(p):
        name = p if isinstance(p, str) else repr(p)
        raise UsageError(f"{why}{name} can be read only once (give a file)")


@dataclass
class ShuffleOptions:
    """Everything that decides what a shuffle does. See ``bigshuf shuffle --help``.

    The shuf-compatible fields, from Python: ``echo`` a list of str/bytes lines (shuf -e);
    ``input_range`` ``"LO-HI"`` or ``(lo, hi)`` (shuf -i); ``repeat`` True (shuf -r);
    ``random_source`` a path whose first 32 bytes become ``seed``; ``split``
    ``"train=0.98,valid=0.01,test=0.01"`` or a dict (counts, fractions, ``"rest"``), parsed into
    a list of (name, kind, value). ``sample``, ``output``, ``input_range`` and ``random_source``
    also take a tuple of strings (the option given several times on the command line): the
    smallest ``sample`` wins, more than one of the others is an error, as in shuf.
    """

    inputs: Sequence[Any] = field(default_factory=lambda: [STDIO])
    output: Any = None
    memory: Union[int, str, None] = None  # None: DEFAULT_MEMORY, capped to fit the cgroup
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
    echo: Optional[Sequence[Union[str, bytes]]] = None
    input_range: Any = None
    repeat: bool = False
    random_source: Any = None
    split: Any = None
    aligned: bool = False
    unique: bool = False
    epochs: Optional[int] = None
    first_epoch: Optional[int] = None
    shard_size: Any = None
    manifest: Any = None
    mix: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.inputs, (str, bytes, os.PathLike)):  # one path, not its characters
            self.inputs = [self.inputs]
        self.inputs = [os.fspath(p) if isinstance(p, os.PathLike) else p for p in self.inputs]
        if isinstance(self.output, os.PathLike):
            self.output = os.fspath(self.output)
        if isinstance(self.temp_dir, os.PathLike):
            self.temp_dir = os.fspath(self.temp_dir)
        if isinstance(self.manifest, os.PathLike):
            self.manifest = os.fspath(self.manifest)
        explicit_inputs = [p for p in self.inputs]
        self.inputs = list(self.inputs) or [STDIO]
        #: Why the default budget was lowered (-v says it), or None.
        self.memory_capped: Optional[str] = None
        if self.memory is None:
            self.memory, self.memory_capped = default_budget(
                parse_size(DEFAULT_MEMORY), None if self.scheduler is None else NO_LIMIT)
        self.memory = parse_size(self.memory)
        # Options given more than once (a tuple from the CLI): as GNU shuf treats them.
        self.output = _only_one(self.output, "multiple output files specified")
        self.random_source = _only_one(self.random_source, "multiple random sources specified")
        self.input_range = _only_one(self.input_range, "multiple -i options specified")
        self.split = _only_one(self.split, "--split given more than once")
        if isinstance(self.sample, (list, tuple)):
            self.sample = min((_at_least(v, 0, "-n") for v in self.sample), default=None)
        if self.seed is not None:
            self.seed = _at_least(self.seed, 0, "--seed")
        self._check_generated(explicit_inputs)
        if self.split is not None:
            self.split = parse_split(self.split)
        if self.mix is not None:
            self.mix = parse_mix(self.mix)
        if self.random_source is not None:
            if self.seed is not None:
                raise UsageError("--seed and --random-source cannot be used together")
            self.seed = seed_from_random_source(self.random_source)
        if self.shard_size is not None:
            self.shard_size = parse_size(self.shard_size)
        for name, flag in (("jobs", "--jobs"), ("buckets", "--buckets"), ("shards", "--shards"),
                           ("lines_per_shard", "--lines-per-shard"), ("epochs", "--epochs")):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _at_least(value, 1, flag))
        if self.sample is not None:
            self.sample = _at_least(self.sample, 0, "-n")
        if self.first_epoch is not None:
            self.first_epoch = _at_least(self.first_epoch, 0, "--first-epoch")
            self.epochs = 1 if self.epochs is None else self.epochs
        self._check_combinations()
        self._check_budget()
        if not self.generated:  # every mode: -u, -r, --epochs, --mix copy streams before reading
            check_read_once_given_once(self.inputs)

    def _check_budget(self) -> None:
        """Rules that come from --memory: a forced bucket count must fit the run index."""
        geo = plan(self.memory_bytes)
        if self.shards is not None:
            check_shard_count(self.shards, self.memory_bytes)
        if self.buckets is not None and self.buckets > geo.index_entries:
            raise UsageError(f"--buckets {self.buckets:,} needs more memory for its index: at most "
                             f"{geo.index_entries:,} buckets with --memory {self.memory_bytes:,} bytes")

    def _check_generated(self, explicit_inputs: Sequence[Any]) -> None:
        """-e and -i replace the input files (shuf's rules and messages)."""
        if self.echo is not None and self.input_range is not None:
            raise UsageError("cannot combine -e and -i options")
        if self.echo is None and self.input_range is None:
            return
        extra = [p for p in explicit_inputs if not (p == STDIO and len(explicit_inputs) == 1)]
        if extra:
            raise UsageError(f"extra operand {os.fspath(extra[0])!r} (-e/-i take no input files)"
                             if isinstance(extra[0], (str, os.PathLike)) else
                             "-e/-i take no input files")
        if self.input_range is not None:
            self.input_range = parse_range(self.input_range)
        if self.echo is not None:
            self.echo = [os.fsencode(a) if isinstance(a, str) else bytes(a) for a in self.echo]
            term = bytes([self.sep])
            for i, arg in enumerate(self.echo, 1):
                if term in arg:
                    what = "a NUL" if self.zero_terminated else "a newline (use -z)"
                    raise UsageError(f"-e argument {i} contains {what}: a line cannot hold its terminator")

    def _check_combinations(self) -> None:
        if sum(v is not None for v in (self.shards, self.lines_per_shard, self.shard_size)) > 1:
            raise UsageError("--shards, --lines-per-shard and --shard-size cannot be used together")
        self._check_outputs_options()
        if self.sharded and self.to_stdout:
            raise UsageError("sharded output needs -o/--output (the shard name pattern)")
        if self.scheduler is not None:
            if self.sample is not None:
                raise UsageError("-n/--head-count is not available with --scheduler")
            if self.to_stdout:
                raise UsageError("--scheduler writes to -o/--output (a path or URL), not stdout")
            if self.repeat or self.generated:
                raise UsageError("-r, -e and -i are not available with --scheduler")
        if self.repeat:
            if self.split is not None:
                raise UsageError("--split and -r/--repeat cannot be used together")
            streamed = self.to_stdout or is_write_through(os.fspath(self.output))
            if self.sample is None and not (streamed and not self.sharded):
                raise UsageError("-r/--repeat without -n never ends: write to stdout (a pipe), "
                                 "not -o or shards")
        if self.split is not None:
            self._check_split()
        if self.unique and (self.repeat or self.aligned or self.scheduler is not None):
            raise UsageError("--unique is not available with -r, --aligned or --scheduler")
        if self.mix is not None:
            self._check_mix()
        if self.aligned:
            self._check_aligned()
        elif isinstance(self.output, str) and NAME_FIELD in self.output:
            raise UsageError(f"-o {self.output}: {NAME_FIELD} names the outputs of --aligned")
        if not self.sharded and isinstance(self.output, str) \
                and re.search(r"\{(index|count)[:!}]", self.output):
            raise UsageError(f"-o {self.output}: {{index}}/{{count}} name shards: add --shards or "
                             "--lines-per-shard")

    def _check_outputs_options(self) -> None:
        """--epochs, --shard-size and --manifest (README, 'Epochs, byte-sized shards, manifest')."""
        pattern = self.output if isinstance(self.output, str) else ""
        if self.shard_size is not None and re.search(r"\{count[:!}]", pattern):
            raise UsageError(f"-o {pattern}: {{count}} is not known in advance with --shard-size "
                             "(use {index})")
        if self.epochs is None and EPOCH_FIELD_RE.search(pattern):
            raise UsageError(f"-o {pattern}: {{epoch}} names the outputs of --epochs")
        if self.epochs is not None:
            if self.repeat or self.scheduler is not None:
                raise UsageError("--epochs is not available with -r or --scheduler")
            by_epoch = bool(EPOCH_FIELD_RE.search(pattern))
            if self.split is not None and not by_epoch and self.epochs > 1:
                raise UsageError("--split with --epochs needs {epoch} in -o: each epoch cuts its "
                                 "own splits (e.g. -o 'data/{epoch}/{split}.txt')")
        if self.scheduler is not None and (self.shard_size is not None or self.manifest is not None):
            raise UsageError("--shard-size and --manifest are not available with --scheduler")
        if self.manifest is not None:
            if not isinstance(self.manifest, str) or self.manifest in ("", STDIO):
                raise UsageError("--manifest needs a file name (FILE.json)")

    def _check_aligned(self) -> None:
        """--aligned: one permutation for line-parallel input files, one output each."""
        if self.generated or self.repeat or self.scheduler is not None:
            raise UsageError("--aligned shuffles input files: not with -e, -i, -r or --scheduler")
        if self.to_stdout or not isinstance(self.output, str) or NAME_FIELD not in self.output:
            raise UsageError(f"--aligned needs -o with {NAME_FIELD} in it (each input's file name "
                             f"goes there), e.g. -o 'shuf/{NAME_FIELD}'")
        for p in self.inputs:
            _check_rereadable(p, "--aligned counts every input's records before shuffling it: ")
            if set("{}") & set(os.path.basename(p)):
                raise UsageError(f"--aligned: {p}: a file name with a brace would be read as a "
                                 f"field of the -o pattern ({{split}}, {{index}}): give it "
                                 f"through a link of another name")

    def _check_mix(self) -> None:
        """--mix: one weight per input, each input counted before it is read again."""
        if self.generated or self.repeat or self.aligned or self.scheduler is not None:
            raise UsageError("--mix mixes input files: not with -e, -i, -r, --aligned or --scheduler")
        if len(self.mix) != len(self.inputs):
            raise UsageError(f"--mix takes one weight per input: {len(self.mix)} weights for "
                             f"{len(self.inputs)} input{'s' if len(self.inputs) != 1 else ''}")
        for p in self.inputs:  # streams are copied to --temp-dir first (run.run_mixture)
            if isinstance(p, str) and p != STDIO and os.path.isdir(p):
                raise UsageError(f"{p}: is a directory")

    def _check_split(self) -> None:
        if self.sample is not None and self.mix is None:
            raise UsageError("--split and -n/--head-count cannot be used together")
        if self.to_stdout or not isinstance(self.output, (str, os.PathLike)):
            raise UsageError(f"--split needs -o with {SPLIT_FIELD} in it, "
                             f"e.g. -o 'data/{SPLIT_FIELD}.jsonl.gz'")
        if SPLIT_FIELD not in os.fspath(self.output):
            raise UsageError(f"with --split, -o must contain {SPLIT_FIELD} (each split's name "
                             f"goes there), e.g. -o 'data/{SPLIT_FIELD}.jsonl.gz'")

    # -- derived ---------------------------------------------------------------------------
    @property
    def sep(self) -> int:
        """The record terminator byte."""
        return 0 if self.zero_terminated else 10

    @property
    def sharded(self) -> bool:
        return self.shards is not None or self.lines_per_shard is not None \
            or self.shard_size is not None

    @property
    def to_stdout(self) -> bool:
        return self.output is None or self.output == STDIO or hasattr(self.output, "write")

    @property
    def memory_bytes(self) -> int:
        return self.memory if isinstance(self.memory, int) else parse_size(self.memory or DEFAULT_MEMORY)

    @property
    def direct(self) -> bool:
        """Runs without the engine: -r, -n 0 (reads nothing, like shuf) and -i LO-HI -n K."""
        return self.repeat or self.sample == 0 or (self.input_range is not None
                                                   and self.sample is not None)

    @property
    def generated(self) -> bool:
        """The records come from -e arguments or an -i range, not from input files."""
        return self.echo is not None or self.input_range is not None

    @property
    def echo_lines(self) -> List[bytes]:
        """The -e arguments as bytes (normalised by the constructor)."""
        return [a if isinstance(a, bytes) else os.fsencode(a) for a in self.echo or ()]

    @classmethod
    def from_keywords(cls, inputs: Sequence[Any], output: Any = None, **kw: Any) -> "ShuffleOptions":
        """Options from ``bigshuf.shuffle``'s keywords (the CLI's long option names, or the
        field names); an unknown keyword is a TypeError."""
        for alias, name in KEYWORD_ALIASES.items():
            if alias in kw:
                if name in kw:
                    raise TypeError(f"shuffle() got both {alias}= and {name}=")
                kw[name] = kw.pop(alias)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise TypeError(f"shuffle() got unexpected keyword(s): {', '.join(unknown)}")
        return cls(inputs=inputs, output=output, **kw)

    @property
    def epoch_numbers(self) -> range:
        """The epochs this run writes: --first-epoch .. + --epochs - 1."""
        first = self.first_epoch or 0
        return range(first, first + (self.epochs or 1))

    def input_names(self) -> List[str]:
        return [os.fspath(p) if isinstance(p, (str, os.PathLike)) else repr(p) for p in self.inputs]


def _at_least(value: Any, low: int, flag: str) -> int:
    """``value`` as an int >= ``low`` (bools and non-integers are refused)."""
    if isinstance(value, str):  # from the command line: ASCII digits only, as shuf
        if not re.fullmatch(r"[+-]?[0-9]+", value.strip()):
            raise UsageError(f"{flag} takes a whole number, not {value!r}")
        value = int(value)
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


def _only_one(value: Any, message: str) -> Any:
    """A value given once: a list or tuple of strings (an option repeated on the command line)
    must hold at most one item. Other values (a (lo, hi) pair for -i) pass unchanged."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return value
    if len(set(value)) > 1:  # the same value twice is harmless (shuf accepts it too)
        raise UsageError(message)
    return value[0] if value else None


def parse_range(value: Any) -> Tuple[int, int]:
    """``LO-HI`` (or a (lo, hi) pair) as two ints, 0 <= LO <= HI + 1 (HI = LO - 1 is empty)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = value
    else:
        m = re.fullmatch(r"\+?([0-9]+)-\+?([0-9]+)", str(value))  # ASCII digits, as shuf
        if not m:
            raise UsageError(f"invalid input range: {str(value)!r} (expected LO-HI, e.g. 1-100)")
        lo, hi = int(m.group(1)), int(m.group(2))
    if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, int) \
            or not isinstance(hi, int) or lo < 0 or hi < lo - 1:
        raise UsageError(f"invalid input range: {value!r}")
    if hi >= 1 << 64:
        raise UsageError(f"invalid input range: {value!r} (numbers up to 2**64-1)")
    return lo, hi


#: One split: (name, kind, value), kind "count" (an int), "fraction" (a float) or "rest".
SplitPart = Tuple[str, str, Union[int, float, None]]


def parse_split(value: Any) -> List[SplitPart]:
    """``train=0.98,valid=0.01,test=0.01`` or ``valid=10000,test=10000,train=rest`` (or a
    mapping of the same), as a list of parts. Fractions have a decimal point (or are 0/1 as
    floats from Python); counts are whole numbers; at most one split is ``rest``."""
    items: Sequence[Tuple[str, Any]]
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 3 for p in value):
        return value  # parsed already (options copied with dataclasses.replace)
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        items = []
        for piece in str(value).split(","):
            name, eq, spec = piece.partition("=")
            if not eq:
                raise UsageError(f"--split: {piece.strip()!r} is not NAME=SIZE "
                                 "(e.g. train=0.98,valid=0.01,test=0.01)")
            items.append((name.strip(), spec.strip()))
    parts = [_split_part(name, spec) for name, spec in items]
    names = [p[0] for p in parts]
    if len(parts) < 1 or len(set(names)) != len(names):
        raise UsageError("--split needs distinct split names")
    rests = sum(1 for p in parts if p[2] is None)
    fractions = sum(split_value(p) for p in parts if p[1] == "fraction")
    if rests > 1:
        raise UsageError(f"--split: only one split can be '{SPLIT_REST}'")
    if fractions > 1 + 1e-9:
        raise UsageError(f"--split: the fractions add up to {fractions:g}, more than 1")
    if not rests and any(p[1] == "count" for p in parts):
        raise UsageError(f"--split with line counts needs one split '={SPLIT_REST}' (e.g. "
                         f"valid=10000,test=10000,train={SPLIT_REST})")
    if not rests and abs(fractions - 1) > 1e-9:
        raise UsageError(f"--split: the fractions add up to {fractions:g}, not 1 (or make one "
                         f"split '{SPLIT_REST}')")
    return parts


#: A --mix weight as written: plain decimal digits, one optional point, an optional exponent.
WEIGHT = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?", re.ASCII)
#: Weights lie in [1e-300, 1e300] (or are 0): exact arithmetic on them stays cheap (no 10**e
#: of a huge exponent) and every weight has a float (what -v and the stats report).
WEIGHT_EXP = 300
_WEIGHT_MAX = Fraction(10) ** WEIGHT_EXP
_WEIGHT_MIN = 1 / _WEIGHT_MAX


def parse_mix(value: Any) -> List[Fraction]:
    """``--mix 7,3`` (or a list or tuple of numbers) as exact fractions: non-negative, some
    positive, each 0 or in [1e-300, 1e300]. Strings are plain decimals taken as written (``0.1`` is
    1/10), floats by their shortest repr."""
    if isinstance(value, list) and all(isinstance(w, Fraction) for w in value) and value:
        return value  # parsed already (options copied with dataclasses.replace)
    if isinstance(value, str):
        items: List[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise UsageError(f"--mix: give the weights as a string such as '7,3' or a list of numbers, "
                         f"not {type(value).__name__}")
    weights = [_weight(w) for w in items]
    if not weights or sum(weights) <= 0:
        raise UsageError("--mix: the weights add up to 0 (give at least one positive weight)")
    return weights


def _weight(value: Any) -> Fraction:
    """One --mix weight as a Fraction, or a usage error."""
    bad = UsageError(f"--mix: bad weight {_short(value)} (a plain decimal number such as 7, 0.25 or "
                     f"1e-6, e.g. --mix 7,3)")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, numbers.Rational):
        w = Fraction(int(value.numerator), int(value.denominator))
    elif isinstance(value, (str, Decimal, numbers.Real)):
        text = value.strip() if isinstance(value, str) else \
            str(value) if isinstance(value, Decimal) else repr(float(value))
        if text.startswith("-") and text[1:].strip() and WEIGHT.fullmatch(text[1:]):
            raise UsageError(f"--mix: bad weight {_short(value)}: weights must not be negative")
        m = WEIGHT.fullmatch(text)
        if m is None:
            raise bad
        exp = m.group(2)
        if len(m.group(1)) > 2 * WEIGHT_EXP or exp is not None and (
                len(exp.lstrip("+-")) > 6 or abs(int(exp)) > 2 * WEIGHT_EXP):
            raise _out_of_range(value)  # before 10**exp or a long digit string is computed
        w = Fraction(text)
    else:
        raise bad
    if w < 0:
        raise UsageError(f"--mix: bad weight {_short(value)}: weights must not be negative")
    if w and not (_WEIGHT_MIN <= w <= _WEIGHT_MAX and w.denominator <= _WEIGHT_MAX):
        raise _out_of_range(value)
    return w


def _short(value: Any) -> str:
    """A weight as the message shows it (at most 40 characters)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _out_of_range(value: Any) -> UsageError:
    return UsageError(f"--mix: weight {_short(value)} out of range (0, or between 1e-{WEIGHT_EXP} and "
                      f"1e{WEIGHT_EXP} in at most {2 * WEIGHT_EXP} digits)")


def split_value(part: SplitPart) -> float:
    """The number of a split part (a count or a fraction; 0 for the rest)."""
    return 0.0 if part[2] is None else float(part[2])


def _split_part(name: str, spec: Any) -> SplitPart:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise UsageError(f"--split: bad split name {name!r} (letters, digits, '_', '-', '.')")
    if spec == SPLIT_REST:
        return (name, "rest", None)
    if isinstance(spec, bool):
        raise UsageError(f"--split: bad size for {name}: {spec!r}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return (name, "count", int(spec))
    try:
        frac = float(spec)
    except (TypeError, ValueError):
        frac = -1.0
    if not 0 <= frac <= 1:
        raise UsageError(f"--split: bad size for {name}: {spec!r} (a fraction such as 0.01, a "
                         f"line count such as 10000, or '{SPLIT_REST}')")
    return (name, "fraction", frac)


def seed_from_random_source(path: Any) -> int:
    """The seed a --random-source file gives: its first RANDOM_SOURCE_BYTES bytes (see
    bigshuf.common.randomness)."""
    name = os.fspath(path)
    check_readable(name)  # missing, a directory, unreadable: the usual one-line input errors
    try:
        with open(name, "rb") as f:  # a pipe or a device may return less per read
            data = b""
            while len(data) < RANDOM_SOURCE_BYTES:
                more = f.read(RANDOM_SOURCE_BYTES - len(data))
                if not more:
                    break
                data += more
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), name) from None
    if len(data) < RANDOM_SOURCE_BYTES:
        raise InputError(f"end of file: a --random-source must hold at least "
                         f"{RANDOM_SOURCE_BYTES} bytes", name)
    return seed_from_bytes(data)
