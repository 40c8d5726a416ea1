"""``python -m flex_participants.emulator``: serve an emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ._app import CONCURRENCY_CODES
from ._emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FlexEmulator

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flex_participants.emulator",
        description=(
            "Serve Flex's 'List all Participants for a Channel' endpoint on loopback, "
            "with seeded data, until interrupted."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks one")
    parser.add_argument("--seed", type=int, default=None, help="seed of the generated data")
    parser.add_argument("--channels", type=int, default=0, metavar="N", help="channels to generate")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="milliseconds added to every request (as in `flex-participants emulator`)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="R",
        help=(
            "answer 429 (code 20429) above R requests a second, as a token bucket does; "
            "Twilio documents 20"
        ),
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=None,
        metavar="B",
        help="the most requests at once within --rate-limit (default: R / 4, at least 1)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        metavar="N",
        help="answer 429 above this many requests at once",
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
        type=float,
        default=None,
        metavar="SECONDS",
        help="Retry-After of the 429s of both limits (Twilio sends none)",
    )
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--api-secret", default=None)
    return parser


async def _serve(emulator: FlexEmulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with emulator:
        print(f"base_url={emulator.base_url}", flush=True)
        print(f"account_sid={emulator.account_sid}", flush=True)
        print(f"auth_token={emulator.auth_token}", flush=True)
        if emulator.api_key is not None:
            print(f"api_key={emulator.api_key}", flush=True)
            print(f"api_secret={emulator.api_secret}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until SIGINT or SIGTERM, and return the exit status.

    Prints ``base_url=...``, ``account_sid=...`` and ``auth_token=...`` on a line each once
    the server listens.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        emulator = FlexEmulator(
            host=args.host,
            port=args.port,
            seed=args.seed,
            channels=args.channels,
            latency=args.latency / 1000,
            rate_limit=args.rate_limit,
            burst=args.burst,
            max_in_flight=args.max_in_flight,
            concurrency_code=args.concurrency_code,
            retry_after=args.retry_after,
            account_sid=args.account_sid,
            auth_token=args.auth_token,
            api_key=args.api_key,
            api_secret=args.api_secret,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(emulator))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
