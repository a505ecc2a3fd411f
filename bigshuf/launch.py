"""The ``bigshuf`` command's entry point: the signal policy holds from its first instruction.

Importing the command line (click, numpy) takes a moment; a Ctrl-C or a SIGTERM/SIGHUP/SIGUSR1
in that moment must not print a traceback or kill the process without a word. Until a run
installs its own policy (bigshuf.common.signals), a stopping signal raises Interrupted, which
the command reports in one line with exit status 128 + the signal number. Nothing has been
written then, and context managers still clean up whatever a command had started.
"""
from __future__ import annotations

import os
import signal
import sys
import warnings
from types import FrameType
from typing import Optional

from bigshuf.common.errors import BigshufError, Interrupted, one_line
from bigshuf.common.signals import IGNORED_AT_START, STOPPING


def _stop(signum: int, frame: Optional[FrameType]) -> None:
    raise Interrupted(signum, signal.Signals(signum).name)


#: Commands that make no BLAS calls: OpenBLAS's helper threads would only spin at start-up,
#: on the core the shuffle's workers need (~0.05-0.1 s of CPU a run, measured with perf).
NO_BLAS = ("shuffle", "verify")


def main() -> None:
    # Everything from the first handler on is inside the try: a signal landing between two
    # statements here (setting the environment, say) printed a traceback.
    try:
        for sig in STOPPING:
            if sig not in IGNORED_AT_START:  # nohup, a background job: left ignored
                signal.signal(sig, _stop)
        if len(sys.argv) > 1 and sys.argv[1] in NO_BLAS:  # before numpy is first imported
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        # Numerical edge cases (overflow in exp of a 1e300 logit, ...) are handled where they
        # occur; numpy's RuntimeWarnings would only add lines of source to the one-line contract.
        warnings.simplefilter("ignore", RuntimeWarning)
        from bigshuf.cli import main as cli

        cli()
    except BigshufError as exc:  # raised before a command's own error reporting took over
        for sig in STOPPING:  # only the first signal counts
            signal.signal(sig, signal.SIG_IGN)
        print(f"bigshuf: error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
