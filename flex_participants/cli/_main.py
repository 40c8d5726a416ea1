"""From the command line to a command: the exit codes and the errors a command ends with, the
argument parser, the client the options describe, and how a failure is reported.

Each error a command ends with is one line on stderr and an exit code. Nothing here imports
rich at import time: `main` checks for it first, so that without it the command line says
how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal, NoReturn

from flex_participants import FlexClient, FlexError, InvalidArgumentError, __version__
from flex_participants._arguments import check_count, check_quantity, check_rate, option_type
from flex_participants._request import check_limit, check_page_size
from flex_participants.emulator import MAX_CHANNELS, add_program_arguments

__all__ = [
    "MEANINGS",
    "PROG",
    "CommandError",
    "ExitCode",
    "OutputLockedError",
    "UsageError",
    "client_from_args",
    "main",
    "os_error_text",
    "printable",
    "read_secret_files",
]

PROG: Final = "flex-participants"
_NEEDS_RICH = f"{PROG}: the command line needs rich: pip install 'flex-participants[cli]'"

# -- exit codes and errors ----------------------------------------------------------------


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


def os_error_text(exc: OSError) -> str:
    """What failed, and on which file: the line a command that meets ``exc`` ends with."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


# C0 and C1 controls (ESC, CSI, BEL, CR, ...) and DEL; the bidirectional controls, which can
# make a line read other than it is ("Trojan Source"); line and paragraph separators; and
# lone surrogates, which no terminal encoding can carry.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character, bidi control and lone surrogate escaped (``\\x1b``)."""
    return _UNSAFE.sub(_escape, text)


# -- option types -------------------------------------------------------------------------

RateLimit = float | Literal["adaptive"] | None
"""What ``--rate-limit`` gives `FlexClient`: requests per second, ``"adaptive"``, or none."""


def _count(name: str, *, minimum: int) -> Callable[[str], int]:
    """The type of an option that sets the library's count ``name``, held to its rule."""
    return option_type(int, lambda value: check_count(name, value, minimum=minimum))


# Each option is held to the rule the library holds its argument to, under the library's name
# for it, so that the parser refuses first, in the same words, what the library would refuse.
_page_size = option_type(int, check_page_size)
_limit = option_type(int, check_limit)
_timeout = option_type(
    float, lambda value: check_quantity("timeout", value, strict=True, unit="seconds")
)


def _rate_limit(text: str) -> RateLimit:
    """A number of requests per second (as `FlexClient` takes it), ``adaptive``, or ``off``."""
    word = text.strip().lower()
    if word == "adaptive":
        return "adaptive"
    if word == "off":
        return None
    try:
        value = float(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a number of requests per second, 'adaptive' or 'off': {text!r}"
        ) from None
    try:
        return check_rate("rate_limit", value)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate_options_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--rate-limit`` and ``--burst`` together, if anything: a burst
    sizes a given rate's bucket, so it needs ``--rate-limit`` to be a number."""
    if getattr(args, "burst", None) is None or isinstance(args.rate_limit, float):
        return None
    given = "" if args.rate_limit is None else f", not {args.rate_limit}"
    return f"--burst needs --rate-limit R, a number of requests per second{given}"


# -- the parser ---------------------------------------------------------------------------


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
    _add_connection_arguments(connection)

    listing = commands.add_parser(
        "list",
        parents=[connection],
        help="list one channel's participants",
        description="List the participants of one channel, in server order, to stdout.",
    )
    listing.add_argument("interaction_sid", metavar="INTERACTION_SID", help="KD...")
    listing.add_argument("channel_sid", metavar="CHANNEL_SID", help="UO...")
    _add_page_size(listing)
    listing.add_argument("--limit", type=_limit, metavar="N", help="at most N")
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
        type=_count("concurrency", minimum=1),
        metavar="N",
        help="channels fetched at once (default: --max-concurrency)",
    )
    _add_page_size(export)
    again = export.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="continue an interrupted export of OUT"
    )
    again.add_argument("--force", action="store_true", help="overwrite OUT if it exists")

    # The program of `python -m flex_participants.emulator`: its options, defaults and output.
    emulator = commands.add_parser(
        "emulator",
        help="serve the emulator until Ctrl-C",
        description="Serve an emulator of the endpoint, with seeded data, until Ctrl-C.",
    )
    add_program_arguments(emulator)

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
        "--channels",
        type=option_type(
            int, lambda value: check_count("channels", value, minimum=1, maximum=MAX_CHANNELS)
        ),
        default=20,
        metavar="N",
        help="default: %(default)s",
    )
    demo.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    demo.add_argument("--out", metavar="FILE", help="default: a temporary file")
    demo.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_format(demo)
    _add_page_size(demo)
    demo.add_argument(
        "--max-concurrency",
        type=_count("max_concurrency", minimum=1),
        default=16,
        metavar="N",
        help="default: 16",
    )
    return parser, commands.choices


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="default: jsonl"
    )


def _add_page_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page-size", type=_page_size, metavar="N", help="1 to 1000")


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the credential, origin, concurrency and rate options of the commands that talk to
    the API.

    ``--burst`` without a number for ``--rate-limit`` is no error argparse can see: `main`
    checks the parsed options with `_rate_options_problem`.
    """
    group = parser.add_argument_group(
        "connection",
        "Prefer the environment variables, or --auth-token-file / --api-secret-file, to "
        "--auth-token and --api-secret: the options of a command are visible to every user "
        "of the machine (in ps, /proc), and stay in the shell's history.",
    )
    # Each identity and its secret: the secret from an option, or from a file ps does not show.
    for identity, secret, noun, metavar in (
        ("--account-sid", "--auth-token", "auth token", "TOKEN"),
        ("--api-key", "--api-secret", "API secret", "SECRET"),
    ):
        group.add_argument(identity, metavar="SID", help=f"default: ${_variable(identity)}")
        either = group.add_mutually_exclusive_group()
        either.add_argument(
            secret,
            metavar=metavar,
            # Self-contained: argparse may list these apart from the group and its note.
            help=(
                f"default: ${_variable(secret)}; on the command line it is visible to other "
                f"users in ps: prefer ${_variable(secret)} or {secret}-file"
            ),
        )
        either.add_argument(
            f"{secret}-file",
            metavar="FILE",
            help=f"read the {noun} from FILE (- for stdin), which ps does not show",
        )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="the API origin; default: $FLEX_PARTICIPANTS_BASE_URL, else https://flex-api.twilio.com",
    )
    group.add_argument(
        "--region",
        help=(
            "Twilio region; default: $TWILIO_REGION. Flex runs in us1 only: another region is "
            "refused, and us1 without --edge warns and uses the default host (Twilio retired "
            "the region-only hosts)"
        ),
    )
    group.add_argument(
        "--edge",
        help=(
            "Twilio edge location, such as ashburn: the API is then "
            "https://flex-api.EDGE.us1.twilio.com (an edge implies region us1); "
            "default: $TWILIO_EDGE"
        ),
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        help=(
            "an http:// proxy for every request (http://user:password@host:port; the "
            "credentials go to the proxy alone); an https origin is reached through it with "
            "CONNECT. Default: none (HTTPS_PROXY is not read)"
        ),
    )
    group.add_argument(
        "--max-concurrency",
        type=_count("max_concurrency", minimum=1),
        default=10,
        metavar="N",
        help="most requests in flight at once (default: %(default)s)",
    )
    group.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default="adaptive",
        metavar="R|adaptive|off",
        help=(
            "the account's budget of requests per second (Twilio documents 20): R sends at "
            "most R a second, as a token bucket; adaptive (the default) starts at 20 and "
            "adapts the rate to the 429s the server answers; off sends as fast as "
            "--max-concurrency allows"
        ),
    )
    group.add_argument(
        "--burst",
        type=_count("burst", minimum=1),
        metavar="N",
        help=(
            "with --rate-limit R: how many requests may start at once after a pause "
            "(default: R / 5, at least 1)"
        ),
    )
    group.add_argument(
        "--timeout",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="seconds one attempt may take (default: %(default)s)",
    )


def _variable(option: str) -> str:
    """The environment variable an option defaults to: ``--auth-token``, TWILIO_AUTH_TOKEN."""
    return "TWILIO_" + option.removeprefix("--").replace("-", "_").upper()


# -- the client the options describe ------------------------------------------------------

_CREDENTIAL_OPTIONS: Final = ("--account-sid", "--auth-token", "--api-key", "--api-secret")
# The options passed on to `FlexClient` as the keyword argument of the same name.
_CLIENT_OPTIONS: Final = (
    "api_key",
    "api_secret",
    "base_url",
    "region",
    "edge",
    "proxy",
    "max_concurrency",
    "timeout",
    "rate_limit",
    "burst",
)
_SECRET_LIMIT: Final = 4096
"""The most bytes a secret file may hold: a token is some 32."""


def read_secret_files(args: argparse.Namespace, *, stdin_taken_by: str | None = None) -> None:
    """Set ``args.auth_token`` and ``args.api_secret`` from the files their ``-file`` options name.

    Run before the event loop, since reading stdin or a FIFO may wait. A file holds the
    secret alone; surrounding whitespace (a final newline) is dropped.

    Raises:
        UsageError: a file cannot be read, is empty or too long, or stdin is taken already
            (``stdin_taken_by`` names the option that reads it).
    """
    for option, attribute in (
        ("--auth-token-file", "auth_token"),
        ("--api-secret-file", "api_secret"),
    ):
        path = getattr(args, attribute + "_file")
        if path is None:
            continue
        if path == "-":
            if getattr(args, "stdin_closed", False):
                raise UsageError(f"{option} - reads stdin, which is closed")
            if stdin_taken_by is not None:
                raise UsageError(f"{option} and {stdin_taken_by} cannot both read stdin")
            stdin_taken_by = option
        setattr(args, attribute, _read_secret(option, path))


def _read_secret(option: str, path: str) -> str:
    try:
        if path == "-":
            data = _read_all(0)
        else:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = _read_all(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None
    if len(data) > _SECRET_LIMIT:
        raise UsageError(f"{option}: {path} holds more than {_SECRET_LIMIT} bytes; not a secret")
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {path} is not UTF-8 text") from None
    if not secret:
        raise UsageError(f"{option}: {path} is empty")
    return secret


def _read_all(fd: int) -> bytes:
    """Up to one byte over `_SECRET_LIMIT` from ``fd``, to its end (a pipe gives it in parts)."""
    chunks: list[bytes] = []
    size = 0
    while size <= _SECRET_LIMIT and (chunk := os.read(fd, _SECRET_LIMIT + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def client_from_args(args: argparse.Namespace) -> FlexClient:
    """The client the options of ``args`` describe (environment variables fill the gaps).

    Raises:
        UsageError: no credentials, or an option the client refuses (a bad URL or proxy).
    """
    given = [args.account_sid, args.auth_token, args.api_key, args.api_secret]
    variables = [_variable(option) for option in _CREDENTIAL_OPTIONS]
    if not any(given) and not any(os.environ.get(name) for name in variables):
        raise UsageError(
            "no credentials: pass --account-sid and --auth-token (or --api-key and "
            "--api-secret), or set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
    options = {name: getattr(args, name) for name in _CLIENT_OPTIONS}
    try:
        return FlexClient(args.account_sid, args.auth_token, **options)
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from None


# -- running a command --------------------------------------------------------------------

Command = Callable[[argparse.Namespace], int]
"""A command: it runs its own event loop, after what must come before it (reading stdin)."""


def _command(name: str) -> Command:
    """The function of a command, imported only now (it needs rich)."""
    if name == "list":
        from ._list import run_list

        return run_list
    if name == "export":
        from ._export import run_export

        return run_export
    if name == "emulator":
        from ._emulator import run_emulator

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

    from ._render import stderr_console

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


def _escape_what_stdout_cannot_encode() -> None:
    """Make stdout show a character its encoding lacks (an ASCII or Latin-1 terminal) as a
    backslash escape, as Python's stderr does, instead of failing the command."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


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
    _escape_what_stdout_cannot_encode()
    parser, commands = _parser()
    try:
        args = parser.parse_args(argv)
        if (problem := _rate_options_problem(args)) is not None:
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
        return _fail(os_error_text(exc), ExitCode.FAILED)
    except Exception as exc:
        # A traceback is a bug of ours: one line says what failed, -v shows where.
        if verbosity > 0:
            _say("".join(traceback.format_exception(exc)).rstrip())
        hint = "" if verbosity > 0 else "; -v shows the traceback"
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (a bug in {PROG} {__version__}{hint})",
            ExitCode.INTERNAL,
        )
