"""What every way of running a shuffle shares: the job it runs, and the interface it offers.

A :class:`Method` says in one place when it applies (:meth:`Method.applies` returns the reason,
which ``-v`` prints) and how much temporary disk it needs; :func:`bigshuf.shuffler.methods.choose`
asks them in order. Whatever the method, the bytes are the same (the order contract of
:mod:`bigshuf.common.randomness`): the choice changes speed and disk use only.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Callable, ClassVar, List, Optional

from bigshuf.common.errors import warn_stderr
from bigshuf.common.randomness import Streams
from bigshuf.shuffler.dedup import Distinct, UniqueReader
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.plan import Geometry
from bigshuf.shuffler.records import RecordReader, Source
from bigshuf.shuffler.sources import record_inputs
from bigshuf.shuffler.stats import ShuffleStats


class MethodName(str, Enum):
    """How a run was done (``ShuffleStats.method``; compares equal to its text)."""

    ENGINE = "engine"          # two phases: scatter to RAM or the temporary file, gather
    INPUT = "input"            # no temporary copy: the inputs are read again per output window
    RESERVOIR = "reservoir"    # -n N: the N smallest keys kept in one pass
    RANGE = "range"            # -i LO-HI -n K: K distinct numbers drawn, the range never made
    REPEAT = "repeat"          # -r: draws with replacement
    NOTHING = "nothing"        # -n 0: no input is read
    CLUSTER = "cluster"        # --scheduler: the engine as a Dask task graph

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Job:
    """One run: its options, its plan, its randomness and what it reports; the reader of its
    inputs is made once, on first use (a second reading gets :meth:`fresh_reader`)."""

    def __init__(self, opts: ShuffleOptions, geo: Geometry, seed: int, reader: Optional[Any] = None):
        self.opts = opts
        self.geo = geo
        self.streams = Streams(seed)
        self.stats = ShuffleStats(seed=seed, workers=geo.workers(opts.jobs))
        self.warn = opts.warn or warn_stderr
        self._reader: Optional[RecordReader] = reader  # given: a virtual stream (--mix)
        self._size: Optional[int] = None if reader is None else reader.known_size()
        #: What a reading reads (--unique: stdin spooled, see run.py); with ``distinct``
        #: (--unique), the reader drops the duplicates it found.
        self.inputs: Callable[[], List[Any]] = lambda: record_inputs(opts)
        self.distinct: Optional[Distinct] = None
        #: Why a faster method did not take the job (``-v`` adds it to the engine's reason).
        self.declined: List[str] = []

    @property
    def reader(self) -> RecordReader:
        if self._reader is None:
            digest = self.opts.manifest is not None
            if self.distinct is not None:
                self._reader = UniqueReader(self.distinct, self.inputs(), self.opts.sep,
                                            header=self.opts.header, digest=digest)
            else:
                self._reader = RecordReader(self.inputs(), self.opts.sep,
                                            header=self.opts.header, warn=self.warn,
                                            digest=digest)
            self._size = self._reader.known_size()
        return self._reader

    def fresh_reader(self, sources: Optional[List[Source]] = None) -> RecordReader:
        """A reader for a second reading (of ``sources``, the inputs held open, if given);
        warnings already given are not repeated."""
        said = self.reader.quote_reported
        self._reader = RecordReader(sources or record_inputs(self.opts), self.opts.sep,
                                    header=self.opts.header, warn=self.warn,
                                    digest=self.opts.manifest is not None)
        self._reader.quote_reported = said
        self._size = self._reader.known_size()
        return self._reader

    @property
    def size(self) -> Optional[int]:
        """The inputs' total bytes if every one is a regular uncompressed file, else None."""
        _ = self.reader
        return self._size

    @property
    def output_path(self):
        """-o, or None when writing to standard output."""
        return None if self.opts.to_stdout else self.opts.output


class Method:
    """One way of running a job. Subclasses set :attr:`name` and implement :meth:`applies`
    and :meth:`run`."""

    name: ClassVar[MethodName]

    def __init__(self, job: Job, why: str):
        self.job = job
        self.why = why
        self.ran_as = self.name  # another method's name if it hands the job over

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        """Why this method would run ``job`` (for ``-v``), or None if it does not apply."""
        raise NotImplementedError

    def reads_inputs(self) -> bool:
        """Does it read input files (so the reader's checks and the free-space check run)?"""
        return True

    def temp_bytes(self) -> Optional[int]:
        """Bytes of temporary disk it needs, if known (None: cannot tell, e.g. stdin)."""
        return 0

    def run(self) -> ShuffleStats:
        raise NotImplementedError

    def _done(self) -> ShuffleStats:
        """The job's stats, marked with this method and why it ran."""
        stats = self.job.stats
        stats.method, stats.why = self.ran_as, self.why
        if self.job._reader is not None:  # what was read of each input (--manifest)
            stats.inputs = list(self.job._reader.input_entries)
        return stats
