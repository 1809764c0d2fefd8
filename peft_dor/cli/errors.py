"""User mistakes on the command line: one line that names the flag and the fix, exit code 2, no traceback.

Everything the ``peft-dor`` command checks before it does any work raises :class:`UsageError`; :func:`run_command`
turns it into ``peft-dor <command>: error: <message>`` on stderr and exit code 2 (argparse's code for bad usage).
Mistakes found later by the library itself (a config field out of range, a data folder without a class) arrive as
``ValueError`` / ``FileNotFoundError`` while the command is still setting up; :func:`usage_errors` converts those too,
so the user never sees a traceback for something they can fix by changing a flag.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: exit code of a refused command line (argparse's)
USAGE_EXIT_CODE = 2


class UsageError(Exception):
    """A mistake in the command line, a config file or the data it names; the message says what to change."""


@contextmanager
def usage_errors(context: str | None = None) -> Iterator[None]:
    """Re-raise ``ValueError``, ``TypeError``, ``FileNotFoundError`` and ``NotADirectoryError`` as :class:`UsageError`.

    Used only around set-up steps whose failures are the user's to fix (building configs, reading data folders);
    errors during training keep their traceback.
    """
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError) as error:
        message = " ".join(str(error).split())  # one line, however the library wrapped it
        raise UsageError(f"{context}: {message}" if context else message) from error


def run_command(prog: str, function: Callable[[], Any]) -> Any:
    """Run ``function``; a :class:`UsageError` becomes one line on stderr and ``SystemExit(2)``."""
    try:
        return function()
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(USAGE_EXIT_CODE) from None
