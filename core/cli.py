"""One way for every CLI to report a typed error: one line, ``error: <message>``, on stderr, and a non-zero exit.

Each part's command line (`python -m client`, `python -m builder`, `python -m handler.stats`,
`python -m handler.samples`) runs its command through `run_command`, naming its own error base
classes (the core imports none of the parts) and the exit code they mean there. A typed error
is the user's to act on, so it gets its message and no traceback; any other exception is a bug
and keeps its traceback. A bad command line stays argparse's: usage, then its error, exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = 2  # argparse's exit code for a bad command line; the client's and the worker's CLIs use it for their errors
FAILED = 1  # a command that could not do its work


def report(exc: BaseException) -> None:
    """Print a typed error the one way every CLI does."""
    print(f"error: {exc}", file=sys.stderr)


def run_command(command: Callable[[], int], errors: tuple[type[Exception], ...], *, code: int = FAILED) -> int:
    """`command()`'s exit code; an error among `errors` is reported (`report`) and exits `code`."""
    if code == 0:
        raise ValueError("a reported error must exit non-zero")
    try:
        return int(command())
    except errors as exc:
        report(exc)
        return code
