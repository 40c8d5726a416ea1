"""The argument parser, the dispatch to each command, and how a command's failure is reported.

Nothing here imports rich at import time: `main` checks for it first, so that without it the
command line says how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from flex_participants import FlexError, InvalidArgumentError, __version__

from ._connection import (
    add_connection_arguments,
    non_negative_int,
    positive_float,
    positive_int,
    rate_options_problem,
)
from ._console import printable
from ._errors import MEANINGS, CommandError, ExitCode

__all__ = ["main"]

PROG = "flex-participants"
_NEEDS_RICH = f"{PROG}: the command line needs rich: pip install 'flex-participants[cli]'"

Command = Callable[[argparse.Namespace], int]
"""A command: it runs its own event loop, after what must come before it (reading stdin)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> tuple[argparse.ArgumentParser, Mapping[str, argparse.ArgumentParser]]:
    """The program's parser, and each command's, by name."""
    parser = _Parser(
        prog=PROG,
        description="List and export the participants of Twilio Flex interaction channels.",
        epilog="exit codes:\n"
        + "\n".join(f"  {int(code):<4} {meaning}" for code, meaning in MEANINGS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    logs = _Parser(add_help=False)
    logs.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log retries (-v) or every request (-vv) to stderr",
    )
    connection = _Parser(add_help=False, parents=[logs])
    add_connection_arguments(connection)

    listing = commands.add_parser(
        "list",
        parents=[connection],
        help="list one channel's participants",
        description="List the participants of one channel, in server order, to stdout.",
    )
    listing.add_argument("interaction_sid", metavar="INTERACTION_SID", help="KD...")
    listing.add_argument("channel_sid", metavar="CHANNEL_SID", help="UO...")
    listing.add_argument("--page-size", type=positive_int, metavar="N", help="1 to 1000")
    listing.add_argument("--limit", type=non_negative_int, metavar="N", help="at most N")
    listing.add_argument(
        "--format",
        choices=("table", "jsonl", "csv"),
        default="table",
        help="default: %(default)s; jsonl and csv are written as pages arrive",
    )

    export = commands.add_parser(
        "export",
        parents=[connection],
        help="export many channels to a file",
        description=(
            "Fetch every channel of a list concurrently into one file, grouped by channel. "
            "Each channel is written whole once fetched, and journaled in OUT.journal, so "
            "that --resume after a crash or interruption skips the channels already written. "
            "An export holds a lock on OUT (OUT.lock) while it runs: a second export of the "
            "same OUT stops at once with exit code 75. Exit code 0 means every channel was "
            "written; 1 names on stderr each one that was not."
        ),
    )
    export.add_argument(
        "--channels",
        required=True,
        metavar="FILE",
        help=(
            "CSV (interaction_sid,channel_sid; header optional) or JSON lines: a file, a "
            "pipe or FIFO, <(command), or - for stdin; read once"
        ),
    )
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    _add_format(export)
    export.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="channels fetched at once (default: --max-concurrency)",
    )
    export.add_argument("--page-size", type=positive_int, metavar="N", help="1 to 1000")
    again = export.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="continue an interrupted export of OUT"
    )
    again.add_argument("--force", action="store_true", help="overwrite OUT if it exists")

    emulator = commands.add_parser(
        "emulator",
        parents=[logs],
        help="serve the emulator until Ctrl-C",
        description="Serve an emulator of the endpoint, with seeded data, until Ctrl-C.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    emulator.add_argument("--port", type=non_negative_int, default=0, help="default: a free port")
    emulator.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    emulator.add_argument(
        "--channels", type=non_negative_int, default=100, metavar="N", help="default: %(default)s"
    )
    emulator.add_argument(
        "--latency", type=_milliseconds, default=0.0, metavar="MS", help="added to each request"
    )
    emulator.add_argument(
        "--rate-limit",
        type=positive_float,
        metavar="R",
        help=(
            "answer 429 (code 20429) above R requests a second, as a token bucket does; "
            "Twilio documents 20 (default: no limit)"
        ),
    )
    emulator.add_argument(
        "--burst",
        type=positive_int,
        metavar="N",
        help="with --rate-limit: the most requests at once (default: R / 4, at least 1)",
    )
    emulator.add_argument(
        "--max-in-flight",
        type=positive_int,
        metavar="N",
        help="answer 429 above N requests at once",
    )
    emulator.add_argument(
        "--concurrency-code",
        type=int,
        choices=(20429, 45780),
        default=20429,
        help="Twilio's code of the 429s for --max-in-flight (default: %(default)s)",
    )
    emulator.add_argument(
        "--channel-list",
        metavar="FILE",
        help="where to write the channels, for export --channels (default: a temporary file)",
    )

    demo = commands.add_parser(
        "demo",
        parents=[logs],
        help="export a few dozen channels from an embedded emulator, under a rate budget",
        description=(
            "Run an export against an embedded emulator with seeded data, latency, a budget "
            "of 10 requests/s that the client is not told (it starts at Twilio's documented "
            "20 and adapts), a few faults and a few unknown channels, and summarize it. At "
            "that budget, every 10 requests take a second."
        ),
    )
    demo.add_argument(
        "--channels", type=positive_int, default=20, metavar="N", help="default: %(default)s"
    )
    demo.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    demo.add_argument("--out", metavar="FILE", help="default: a temporary file")
    demo.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_format(demo)
    demo.add_argument("--page-size", type=positive_int, metavar="N", help="1 to 1000")
    demo.add_argument(
        "--max-concurrency", type=positive_int, default=16, metavar="N", help="default: 16"
    )
    return parser, commands.choices


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="default: jsonl"
    )


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _command(name: str) -> Command:
    """The function of a command, imported only now (it needs rich)."""
    if name == "list":
        from ._list import run_list

        return run_list
    if name == "export":
        from ._export_command import run_export

        return run_export
    if name == "emulator":
        from ._serve import run_emulator

        return run_emulator
    from ._demo import run_demo

    return run_demo


class _InertRecords(logging.Filter):
    """Escapes the control characters of a log message: it may quote what a server sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        return True


def _configure_logging(verbosity: int) -> None:
    """Send the client's retries (``-v``, INFO) or request log (``-vv``, DEBUG) to stderr."""
    logger = logging.getLogger("flex_participants")
    logger.propagate = False
    if verbosity <= 0:
        logger.addHandler(logging.NullHandler())
        return
    from rich.logging import RichHandler

    from ._console import stderr_console

    handler = RichHandler(console=stderr_console(), show_path=False)
    handler.addFilter(_InertRecords())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def _fail(message: str, code: ExitCode) -> int:
    # The message may carry a server's text: escaped whole, a line break in it cannot forge
    # a line of ours.
    _say(f"{PROG}: error: {printable(message)}")
    return code


def _reopen_closed_standard_streams() -> frozenset[int]:
    """Put /dev/null on any of fds 0, 1 and 2 that is closed; return those that were.

    Otherwise the next file opened (the output's lock) would get the lowest free fd, 0, and
    ``--channels -`` would read it as the list.
    """
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
    return frozenset(closed)


def _say(text: str) -> None:
    """One line on stderr, its control characters escaped; silent if stderr is gone."""
    # Lines break where this program says, and nowhere a message from elsewhere would.
    lines = "\n".join(printable(line) for line in text.split("\n"))
    with contextlib.suppress(OSError, ValueError):
        print(lines, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    The codes are those of `ExitCode`: 0 success; 1 some channels not written, or the
    command failed (the API, the network, a file); 2 a usage or configuration error, or rich
    is missing; 70 a bug, named in one line (``-v`` shows the traceback); 75 the output is
    locked by another export; 130 interrupted.
    """
    closed = _reopen_closed_standard_streams()
    parser, commands = _parser()
    try:
        args = parser.parse_args(argv)
        if (problem := rate_options_problem(args)) is not None:
            commands[args.command].error(problem)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    try:
        import rich  # noqa: F401
    except ImportError:
        _say(_NEEDS_RICH)
        return ExitCode.USAGE
    verbosity: int = getattr(args, "verbose", 0)
    args.stdin_closed = 0 in closed
    try:
        _configure_logging(verbosity)
        return _command(args.command)(args)
    except CommandError as exc:
        return _fail(str(exc), exc.exit_code)
    except InvalidArgumentError as exc:
        return _fail(str(exc), ExitCode.USAGE)
    except FlexError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", ExitCode.FAILED)
    except KeyboardInterrupt:
        hint = "; run again with --resume to continue" if args.command == "export" else ""
        return _fail(f"interrupted{hint}", ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", ExitCode.FAILED)
    except Exception as exc:
        # A traceback is a bug of ours: one line says what failed, -v shows where.
        if verbosity > 0:
            _say("".join(traceback.format_exception(exc)).rstrip())
        hint = "" if verbosity > 0 else "; -v shows the traceback"
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (a bug in {PROG} {__version__}{hint})",
            ExitCode.INTERNAL,
        )
