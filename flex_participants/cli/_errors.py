"""The exit codes of the command line, and the errors a command ends with: each is one line on
stderr and an exit code.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["MEANINGS", "CommandError", "ExitCode", "OutputLockedError", "UsageError"]


class ExitCode(enum.IntEnum):
    """What the exit status of ``flex-participants`` means: see `MEANINGS`."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERNAL = 70
    LOCKED = 75
    INTERRUPTED = 130


MEANINGS: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "success: for export, every channel of the input is in the output",
    ExitCode.FAILED: (
        "some channels were not written (each is named on stderr), or the command failed: "
        "the API, the network, or writing the output"
    ),
    ExitCode.USAGE: (
        "a usage or configuration error: options, credentials, the channel list, an output "
        "in the way or that cannot be resumed"
    ),
    ExitCode.INTERNAL: "a bug in flex-participants, named in one line; -v shows the traceback",
    ExitCode.LOCKED: (
        "another export is writing the same output; nothing was touched: run again once it "
        "has ended"
    ),
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); an export continues with --resume",
}
"""One line per exit code, for ``--help``; docs/cli.md has the same table (a test checks)."""


class CommandError(Exception):
    """The command failed (exit code 1)."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(CommandError):
    """The command line, a file it names or the configuration is wrong (exit code 2)."""

    exit_code = ExitCode.USAGE


class OutputLockedError(CommandError):
    """Another export holds the lock on the output (exit code 75)."""

    exit_code = ExitCode.LOCKED
