"""Command-line interface: parses options, calls the library, reports.

Every command is a thin wrapper over a library function of the same name (``bigshuf.shuffle``,
``bigshuf.verify``, ``bigshuf.can``, ``bigshuf.threshold``). Errors are reported as one line on
stderr with the exit status carried by the exception (see ``bigshuf.common.errors``).
"""
from bigshuf.cli import shuffle_commands  # noqa: F401  (registers its commands)
from bigshuf.cli.base import main  # can and threshold register when asked for (LAZY_COMMANDS)

__all__ = ["main"]

