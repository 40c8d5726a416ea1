"""Starting an emulator from a command line: its options, the emulator they describe, and
serving it until a signal stops it.

The three programs that serve an emulator share this: ``python -m flex_participants.emulator``
(`main`, below), ``flex-participants emulator``, and the benchmark's server process. The first
two are one program (`add_program_arguments`, `serve_program`): the same options, the same
defaults, the same output. The benchmark says through its own ``ready`` where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from .._arguments import check_count, check_quantity, check_rate, option_type
from .._channel_list import write_channel_list
from ._app import CONCURRENCY_CODES
from ._budget import check_rate_schedule, parse_rate_schedule
from ._emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    MAX_CHANNELS,
    FlexEmulator,
    check_channels,
)

__all__ = [
    "DEFAULT_CHANNELS",
    "ProgramError",
    "add_emulator_arguments",
    "add_program_arguments",
    "emulator_from_arguments",
    "main",
    "serve_program",
    "serve_until_stopped",
]

DEFAULT_CHANNELS: Final = 100
"""How many channels the emulator programs generate unless told."""
DESCRIPTION: Final = (
    "Serve an emulator of Flex's 'List all Participants for a Channel' endpoint on "
    "loopback, with seeded data, until Ctrl-C or SIGTERM."
)

# The options whose destination is the `FlexEmulator` argument of that name, as parsed.
_AS_PARSED = (
    "host",
    "port",
    "seed",
    "channels",
    "rate_limit",
    "burst",
    "rate_schedule",
    "max_in_flight",
    "concurrency_code",
    "retry_after",
    "account_sid",
    "auth_token",
    "api_key",
    "api_secret",
)


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of a served emulator to ``parser``: where it listens, its data, its
    limits and its credentials.

    Each option's destination is named for the `FlexEmulator` argument it sets (``--latency``
    is in milliseconds). Values are checked as they are parsed, by the emulator's own rules;
    `emulator_from_arguments` checks what only the options together can say. Change a default
    with ``parser.set_defaults``.
    """
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=option_type(int, lambda value: check_count("port", value, minimum=0, maximum=65535)),
        default=0,
        help="port to listen on (default: a free one)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the generated data (default: %(default)s)"
    )
    parser.add_argument(
        "--channels",
        type=option_type(int, check_channels),
        default=0,
        metavar="N",
        help=f"channels to generate, at most {MAX_CHANNELS:,} (default: %(default)s)",
    )
    parser.add_argument(
        "--latency",
        type=option_type(
            float, lambda value: check_quantity("latency", value, unit="milliseconds")
        ),
        default=0.0,
        metavar="MS",
        help="milliseconds added to every request (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=option_type(float, lambda value: check_rate("rate_limit", value)),
        metavar="R",
        help=(
            "answer 429 (code 20429) above R requests a second, as a token bucket does; "
            "Twilio documents 20 (default: no limit)"
        ),
    )
    parser.add_argument(
        "--burst",
        type=option_type(int, lambda value: check_count("burst", value, minimum=1)),
        metavar="N",
        help="with --rate-limit: the most requests at once (default: R / 4, at least 1)",
    )
    parser.add_argument(
        "--rate-schedule",
        type=option_type(
            parse_rate_schedule,
            lambda steps: check_rate_schedule(steps, 1.0),  # --rate-limit is checked apart
            noun="SECONDS:RATE steps, comma-separated",
        ),
        metavar="S:R,...",
        help=(
            "with --rate-limit: the rate becomes R, S seconds after the first request; "
            "5:10,13:20 halves 20/s for 8 s from 5 s (default: none)"
        ),
    )
    parser.add_argument(
        "--max-in-flight",
        type=option_type(int, lambda value: check_count("max_in_flight", value, minimum=1)),
        metavar="N",
        help="answer 429 above N requests at once",
    )
    parser.add_argument(
        "--concurrency-code",
        type=int,
        choices=sorted(CONCURRENCY_CODES),
        default=20429,
        help="Twilio's code of the 429s for --max-in-flight (default: %(default)s)",
    )
    parser.add_argument(
        "--retry-after",
        type=option_type(float, lambda value: check_quantity("retry_after", value, unit="seconds")),
        metavar="SECONDS",
        help="Retry-After of the 429s of both limits (default: none, as Twilio sends)",
    )
    parser.add_argument(
        "--account-sid",
        default=DEFAULT_ACCOUNT_SID,
        metavar="SID",
        help="the account SID it accepts (default: %(default)s)",
    )
    parser.add_argument(
        "--auth-token",
        default=DEFAULT_AUTH_TOKEN,
        metavar="TOKEN",
        help="the auth token it accepts (default: %(default)s)",
    )
    parser.add_argument("--api-key", metavar="SID", help="an API key SID it accepts, too")
    parser.add_argument("--api-secret", metavar="SECRET", help="with --api-key: its secret")


def emulator_from_arguments(args: argparse.Namespace, **settings: Any) -> FlexEmulator:
    """The emulator, not started, that options added by `add_emulator_arguments` describe.

    Args:
        args: the parsed options.
        **settings: further `FlexEmulator` arguments, which no option sets (``log_limit``,
            say).

    Raises:
        ValueError: the options do not go together (``--burst`` or ``--rate-schedule``
            without ``--rate-limit``, ``--api-key`` without ``--api-secret``).
    """
    parsed = {name: getattr(args, name) for name in _AS_PARSED}
    return FlexEmulator(latency=args.latency / 1000, **parsed, **settings)


def serve_until_stopped(
    emulator: FlexEmulator,
    ready: Callable[[FlexEmulator], object],
    *,
    until_stdin_closes: bool = False,
) -> None:
    """Start ``emulator``, call ``ready`` with it once it listens, and serve until SIGINT or
    SIGTERM; then stop it.

    Runs its own event loop. ``ready`` says where the emulator is (its URL, its
    credentials), as the program that runs it wants; what it raises stops the emulator and
    propagates. With ``until_stdin_closes``, the end of standard input stops it too: a parent
    process that holds the other end stops it so, even if it dies without a signal.

    Raises:
        OSError: the emulator cannot listen where it was asked to.
        ValueError: ``until_stdin_closes``, and standard input is a file or a device, whose
            end cannot be waited for.
    """
    asyncio.run(_serve(emulator, ready, until_stdin_closes=until_stdin_closes))


async def _serve(
    emulator: FlexEmulator, ready: Callable[[FlexEmulator], object], *, until_stdin_closes: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(signum, stop.set)
    if until_stdin_closes:
        try:
            loop.add_reader(sys.stdin.fileno(), stop.set)
        except (OSError, ValueError) as exc:  # a file or a device: there is no end to wait for
            raise ValueError(
                "until_stdin_closes needs standard input to be a pipe, a socket or a terminal"
            ) from exc
    async with emulator:
        ready(emulator)
        await stop.wait()


class ProgramError(Exception):
    """The emulator program cannot serve: ``exit_code`` 2 for its options or where it was
    asked to listen, 1 for the channel list it cannot write."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_program_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the emulator programs to ``parser``: those of
    `add_emulator_arguments`, `DEFAULT_CHANNELS` channels, and ``--channel-list``."""
    add_emulator_arguments(parser)
    parser.set_defaults(channels=DEFAULT_CHANNELS)
    parser.add_argument(
        "--channel-list",
        metavar="FILE",
        help=(
            "write the channels served to FILE, for export --channels (default: a temporary "
            "file, removed on exit)"
        ),
    )


def serve_program(args: argparse.Namespace, say: Callable[[str], object] | None = None) -> None:
    """Serve the emulator that ``args`` (`add_program_arguments`) describe until SIGINT or
    SIGTERM.

    Writes its channels to ``args.channel_list`` (a channel list), then, once it listens,
    prints ``name=value`` lines on stdout for a program to read (``base_url``,
    ``account_sid``, ``auth_token``, the API key and secret if given, ``channel_list``), and
    tells a person on stderr how to export from it, a line at a time through ``say``.

    Raises:
        ProgramError: the options do not go together, it cannot listen where asked, or the
            channel list cannot be written.
    """
    try:
        emulator = emulator_from_arguments(args)
    except ValueError as exc:
        raise ProgramError(str(exc), 2) from None
    with tempfile.TemporaryDirectory(prefix="flex-emulator-") as scratch:
        channel_list = Path(args.channel_list or Path(scratch) / "channels.csv")
        try:
            write_channel_list(channel_list, emulator.channels)
        except OSError as exc:
            raise ProgramError(
                f"cannot write the channel list {channel_list}: {exc.strerror}", 1
            ) from None
        ready = functools.partial(_ready, channel_list=channel_list, say=say or _say)
        try:
            serve_until_stopped(emulator, ready)
        except OSError as exc:  # `_ready` raises none: this is the listening socket's
            raise ProgramError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror}", 2
            ) from None
        except KeyboardInterrupt:  # before the signal handlers are in place, or on Windows
            pass


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _ready(emulator: FlexEmulator, *, channel_list: Path, say: Callable[[str], object]) -> None:
    settings = {
        "base_url": emulator.base_url,
        "account_sid": emulator.account_sid,
        "auth_token": emulator.auth_token,
        "api_key": emulator.api_key,
        "api_secret": emulator.api_secret,
        "channel_list": str(channel_list),
    }
    for name, value in settings.items():
        if value is not None:  # no API key unless one was given
            print(f"{name}={value}", flush=True)
    for line in _usage(emulator, channel_list):
        say(line)


def _usage(emulator: FlexEmulator, channel_list: Path) -> list[str]:
    """How a person uses the emulator, a line each."""
    # The credentials go in the environment, not on the command line, where every user of
    # the machine can read them (ps): the habit to teach, even for the emulator's.
    environment = " ".join(
        f"{name}={shlex.quote(value)}"
        for name, value in (
            ("FLEX_PARTICIPANTS_BASE_URL", emulator.base_url),
            ("TWILIO_ACCOUNT_SID", emulator.account_sid),
            ("TWILIO_AUTH_TOKEN", emulator.auth_token),
        )
    )
    export = ["flex-participants", "export", "--channels", str(channel_list)]
    lines = [
        f"Flex emulator serving {len(emulator.channels)} channels (seed {emulator.seed})",
        f"  base URL     {emulator.base_url}",
        f"  account SID  {emulator.account_sid}",
        f"  auth token   {emulator.auth_token}",
        f"  channels     {channel_list}",
    ]
    if emulator.rate_limit is not None:
        lines.append(f"  rate limit   {emulator.rate_limit:g} requests/s, burst {emulator.burst}")
    if emulator.rate_schedule:
        steps = ", ".join(
            f"{rate:g}/s from {seconds:g} s" for seconds, rate in emulator.rate_schedule
        )
        lines.append(f"  schedule     {steps} (after the first request)")
    if emulator.max_in_flight is not None:
        lines.append(
            f"  concurrency  {emulator.max_in_flight} at once "
            f"(429 code {emulator.concurrency_code})"
        )
    return [
        *lines,
        "Export every channel with:",
        f"  export {environment}",
        f"  {shlex.join([*export, '--out', 'participants.jsonl'])}",
        "Press Ctrl-C to stop.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until SIGINT or SIGTERM, and return the exit status.

    The program of `serve_program`: ``flex-participants emulator`` is the same.
    """
    parser = argparse.ArgumentParser(
        prog="python -m flex_participants.emulator",
        description=DESCRIPTION,
    )
    add_program_arguments(parser)
    args = parser.parse_args(argv)
    try:
        serve_program(args)
    except ProgramError as exc:
        if exc.exit_code == 2:
            parser.error(str(exc))
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
