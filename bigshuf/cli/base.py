"""Command-line interface: the group, error reporting and shared parameter types.

Every command is a thin wrapper over a library function of the same name (``bigshuf.shuffle``,
``bigshuf.verify``, ``bigshuf.predict.can``, ``bigshuf.threshold``). Errors are reported as one line on
stderr with the exit status carried by the exception (see ``bigshuf.common.errors``); no traceback.
"""
from __future__ import annotations

import errno
import functools
import importlib
import os
import sys
import threading
from typing import Callable, NoReturn

import click

from bigshuf import __version__
from bigshuf.common import signals
from bigshuf.common.errors import BigshufError, UsageError, one_line
from bigshuf.common.sizes import parse_size


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"bigshuf: error: {one_line(message)}", err=True)
    _exit(code)


def _exit(code: int) -> NoReturn:
    """Exit; without waiting for a worker thread still blocked in a write to a stalled reader
    (the run has cleaned up already; such a thread would hold the interpreter's exit forever)."""
    if _PROCESS[0] and threading.active_count() > 1:
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


#: Set when the group runs as the process's command (args from sys.argv), not in CliRunner.
_PROCESS = [False]


#: What a run that ran out of memory says, however the system said it.
OUT_OF_MEMORY = "out of memory; lower --memory or raise the process memory limit"


def reports_errors(func: Callable) -> Callable:
    """Turn library exceptions into one-line messages with the right exit status."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BigshufError as exc:
            _fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            # The reader went away (e.g. `bigshuf shuffle big.txt | head`): quiet, like coreutils.
            try:
                sys.stdout = None  # type: ignore[assignment]
            finally:
                sys.exit(141)
        except KeyboardInterrupt:
            _fail("interrupted by SIGINT; no output written, temporary files removed", 130)
        except MemoryError:
            _fail(OUT_OF_MEMORY, 1)
        except OSError as exc:
            if exc.errno == errno.ENOMEM:  # a thread or a mapping refused (prlimit --as)
                _fail(OUT_OF_MEMORY, 1)
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            _fail(f"{exc.strerror or exc}{where}", 1)
        except Exception as exc:  # a bug: say so in one line; BIGSHUF_DEBUG=1 shows the trace
            if os.environ.get("BIGSHUF_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} "
                  "(please report it; BIGSHUF_DEBUG=1 shows the traceback)", 1)

    return wrapper


class SizeParam(click.ParamType):
    """A byte count such as 1G, 256M, 512K or 1000000."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeParam()


#: Commands whose module is imported only when one of them is asked for: `bigshuf shuffle`
#: starts ~15 ms sooner without the prediction commands.
LAZY_COMMANDS = {"can": "bigshuf.cli.predict_commands", "threshold": "bigshuf.cli.predict_commands"}


class _OneLineErrorsGroup(click.Group):
    """Click reports usage errors on several lines; we keep to one line on stderr, exit 2.
    Commands of LAZY_COMMANDS register themselves when first asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str):  # type: ignore[override]
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            importlib.import_module(LAZY_COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context):  # type: ignore[override]
        for module in sorted(set(LAZY_COMMANDS.values())):
            importlib.import_module(module)
        return super().list_commands(ctx)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        if args is None:  # the real command line: this process is bigshuf
            _PROCESS[0] = True
            signals.own_process()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("aborted", 1)
        except click.ClickException as exc:
            msg = exc.format_message().replace("\n", " ")
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                msg += f" Try '{ctx.command_path} --help'."
            _fail(msg, exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


MAIN_EXAMPLES = """\b
Examples:
  bigshuf shuffle big.txt -o shuffled.txt -S 256M --seed 1
  bigshuf verify big.txt shuffled.txt
  bigshuf can test.jsonl --prior train_labels.txt -o adjusted.jsonl
  bigshuf threshold dev.jsonl --save-params weights.json
Each command has its own --help with examples. Full documentation: bigshuf readme
"""


@click.group(cls=_OneLineErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=MAIN_EXAMPLES)
@click.version_option(__version__, prog_name="bigshuf")
def main() -> None:
    """Shuffle huge line files exactly uniformly in bounded memory, and post-process
    classifier predictions (CAN re-balancing, threshold search)."""




@main.command()
def readme() -> None:
    """Print the full documentation (the README, shipped as the package description).

    \b
    Example:
      bigshuf readme | less
    """
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        text = metadata("bigshuf").get_payload()  # type: ignore[attr-defined]
    except PackageNotFoundError:
        text = None
    if not text:
        _fail("the documentation is not installed with this copy; see README.md in the source tree", 1)
    click.echo_via_pager(text) if sys.stdout.isatty() else click.echo(text)
