"""Starting an emulator from a command line: its options, the emulator they describe, and
serving it until a signal stops it.

The three programs that serve an emulator share this: ``python -m flex_participants.emulator``
(`main`, below), ``flex-participants emulator``, and the benchmark's server process. Each says
in its own way, through ``ready``, where the emulator listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._arguments import check_count, check_quantity, check_rate, option_type
from ._app import CONCURRENCY_CODES
from ._emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    MAX_CHANNELS,
    FlexEmulator,
    check_channels,
)

__all__ = ["add_emulator_arguments", "emulator_from_arguments", "main", "serve_until_stopped"]

# The options whose destination is the `FlexEmulator` argument of that name, as parsed.
_AS_PARSED = (
    "host",
    "port",
    "seed",
    "channels",
    "rate_limit",
    "burst",
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
        ValueError: the options do not go together (``--burst`` without ``--rate-limit``,
            ``--api-key`` without ``--api-secret``).
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


def _print_settings(emulator: FlexEmulator) -> None:
    """``name=value`` lines on stdout, for a program or a person to read."""
    settings = {
        "base_url": emulator.base_url,
        "account_sid": emulator.account_sid,
        "auth_token": emulator.auth_token,
        "api_key": emulator.api_key,
        "api_secret": emulator.api_secret,
    }
    for name, value in settings.items():
        if value is not None:  # no API key unless one was given
            print(f"{name}={value}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until SIGINT or SIGTERM, and return the exit status.

    Prints ``base_url=...``, ``account_sid=...`` and ``auth_token=...`` (and the API key and
    secret, if given) on a line each once the server listens.
    """
    parser = argparse.ArgumentParser(
        prog="python -m flex_participants.emulator",
        description=(
            "Serve Flex's 'List all Participants for a Channel' endpoint on loopback, "
            "with seeded data, until interrupted."
        ),
    )
    add_emulator_arguments(parser)
    args = parser.parse_args(argv)
    try:
        emulator = emulator_from_arguments(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        serve_until_stopped(emulator, _print_settings)
    except KeyboardInterrupt:  # before the signal handlers are in place, or on Windows
        pass
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
