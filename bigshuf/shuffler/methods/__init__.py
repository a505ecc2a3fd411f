"""The ways a shuffle can be done, and the one place that chooses among them.

Each method (one module each) says when it applies and why; :func:`choose` asks them in the
order of :data:`METHODS` and the first that applies runs the job. The two-phase engine always
applies, so it takes whatever the others leave. ``-v`` prints the method and the reason. The
bytes never depend on the choice (the order contract): it decides speed and disk use only.
"""
from __future__ import annotations

from typing import Tuple, Type

from bigshuf.shuffler.methods.base import Job, Method, MethodName
from bigshuf.shuffler.methods.cluster import Cluster
from bigshuf.shuffler.methods.direct import NothingToRead, RangeSample
from bigshuf.shuffler.methods.repeat import Repeat
from bigshuf.shuffler.methods.reread import InputMethod
from bigshuf.shuffler.methods.reservoir import Reservoir
from bigshuf.shuffler.methods.two_phase import TwoPhase

#: Asked in this order: the first that applies runs the job.
METHODS: Tuple[Type[Method], ...] = (Cluster, NothingToRead, Repeat, RangeSample, Reservoir,
                                     InputMethod, TwoPhase)


def choose(job: Job) -> Method:
    """The method that runs ``job``, with the reason it was chosen."""
    for cls in METHODS:
        why = cls.applies(job)
        if why is not None:
            return cls(job, why)
    raise AssertionError("the two-phase engine takes every job")


__all__ = ["Job", "Method", "MethodName", "METHODS", "choose"]
