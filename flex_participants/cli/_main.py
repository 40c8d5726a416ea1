"""The argument parser, the dispatch to each command, and how a command's failure is reported.

Nothing here imports rich at import time: `main` checks for it first, so that without it the
command line says how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from flex_participants import FlexError, InvalidArgumentError, __version__

from ._connection import add_connection_arguments, non_negative_int, positive_int
from ._errors import CommandError, UsageError

__all__ = ["main"]

PROG = "flex-participants"
_NEEDS_RICH = f"{PROG}: the command line needs rich: pip install 'flex-participants[cli]'"

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="List and export the participants of Twilio Flex interaction channels.",
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
            "that --resume after a crash or interruption skips the channels already written."
        ),
    )
    export.add_argument(
        "--channels",
        required=True,
        metavar="FILE",
        help="CSV (interaction_sid,channel_sid; header optional) or JSON lines; - for stdin",
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
        "--max-in-flight",
        type=positive_int,
        metavar="N",
        help="answer 429 above N requests at once",
    )
    emulator.add_argument(
        "--channel-list",
        metavar="FILE",
        help="where to write the channels, for export --channels (default: a temporary file)",
    )

    demo = commands.add_parser(
        "demo",
        parents=[logs],
        help="export a few hundred channels from an embedded emulator",
        description=(
            "Run an export against an embedded emulator with seeded data, latency, a few "
            "faults and a few unknown channels, and summarize it."
        ),
    )
    demo.add_argument(
        "--channels", type=positive_int, default=300, metavar="N", help="default: %(default)s"
    )
    demo.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    demo.add_argument("--out", metavar="FILE", help="default: a temporary file")
    demo.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_format(demo)
    demo.add_argument("--page-size", type=positive_int, metavar="N", help="1 to 1000")
    demo.add_argument(
        "--max-concurrency", type=positive_int, default=16, metavar="N", help="default: 16"
    )
    return parser


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
    """The coroutine function of a command, imported only now (it needs rich)."""
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


def _configure_logging(verbosity: int) -> None:
    """Send the client's retry warnings (``-v``) or request log (``-vv``) to stderr."""
    logger = logging.getLogger("flex_participants")
    logger.propagate = False
    if verbosity <= 0:
        logger.addHandler(logging.NullHandler())
        return
    from rich.logging import RichHandler

    from ._console import stderr_console

    logger.addHandler(RichHandler(console=stderr_console(), show_path=False))
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    0: success. 1: the command failed (a channel, the API, the network, a file). 2: a usage
    or configuration error (options, SIDs, credentials, input files), or rich is missing.
    130: interrupted.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        import rich  # noqa: F401
    except ImportError:
        print(_NEEDS_RICH, file=sys.stderr)
        return 2
    _configure_logging(getattr(args, "verbose", 0))
    try:
        return asyncio.run(_command(args.command)(args))
    except (UsageError, InvalidArgumentError) as exc:
        return _fail(str(exc), 2)
    except CommandError as exc:
        return _fail(str(exc), 1)
    except FlexError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", 1)
    except KeyboardInterrupt:
        hint = "; run again with --resume to continue" if args.command == "export" else ""
        return _fail(f"interrupted{hint}", 130)
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 1)
