"""``flex-participants emulator``: the program of ``python -m flex_participants.emulator``."""

from __future__ import annotations

import argparse
import sys

from flex_participants.emulator import ProgramError, serve_program

from ._main import CommandError, ExitCode, UsageError, printable

__all__ = ["run_emulator"]


def run_emulator(args: argparse.Namespace) -> int:
    """Serve a `FlexEmulator` as ``args`` describe until SIGINT or SIGTERM (`serve_program`).

    Its channels are written to ``args.channel_list`` (default: a temporary file removed on
    exit), ready for ``flex-participants export --channels``; its settings go to stdout as
    ``name=value`` lines, and how to use it to stderr, exactly as the module prints them.

    Raises:
        UsageError: options the emulator refuses, or it cannot listen where asked.
        CommandError: the channel list cannot be written.
    """
    try:
        serve_program(args, say=_say)
    except ProgramError as exc:
        error = UsageError if exc.exit_code == ExitCode.USAGE else CommandError
        raise error(str(exc)) from None
    return 0


def _say(line: str) -> None:
    # The path of the channel list is the user's text: inert on the terminal.
    print(printable(line), file=sys.stderr, flush=True)
