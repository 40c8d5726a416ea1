"""The errors a command ends with: each is one line on stderr and an exit code."""

from __future__ import annotations

__all__ = ["CommandError", "UsageError"]


class CommandError(Exception):
    """The command failed (exit code 1)."""

    exit_code = 1


class UsageError(CommandError):
    """The command line, a file it names or the configuration is wrong (exit code 2)."""

    exit_code = 2
