"""How a command fails: its exit codes, and the error reported as one line."""

from __future__ import annotations

EXIT_FAILURE = 1  # a failure at run time (CommandError)
EXIT_USAGE = 2  # bad arguments
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class CommandError(Exception):
    """A failure to report as one line and exit 1."""


class UsageError(Exception):
    """Arguments that cannot work, found after parsing (e.g. a file in a missing folder): one line, exit 2."""
