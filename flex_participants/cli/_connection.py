"""The options every command that talks to the API shares, and the `FlexClient` they make."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Literal

from flex_participants import FlexClient, InvalidArgumentError

from ._errors import UsageError

__all__ = [
    "RateLimit",
    "add_connection_arguments",
    "client_from_args",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "rate_limit",
    "rate_options_problem",
    "read_secret_files",
]

RateLimit = float | Literal["adaptive"] | None
"""What ``--rate-limit`` gives `FlexClient`: requests per second, ``"adaptive"``, or none."""

_CREDENTIAL_VARIABLES = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1)
"""An argparse type: an integer >= 1."""

non_negative_int = _int_at_least(0)
"""An argparse type: an integer >= 0."""


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def rate_limit(text: str) -> RateLimit:
    """An argparse type: a number of requests per second > 0, ``adaptive``, or ``off`` (None)."""
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
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(
            f"must be a number of requests per second > 0, 'adaptive' or 'off', got {text}"
        )
    return value


def rate_options_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--rate-limit`` and ``--burst`` together, if anything: a burst
    sizes a given rate's bucket, so it needs ``--rate-limit`` to be a number."""
    if getattr(args, "burst", None) is None or isinstance(args.rate_limit, float):
        return None
    given = "" if args.rate_limit is None else f", not {args.rate_limit}"
    return f"--burst needs --rate-limit R, a number of requests per second{given}"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the credential, origin, concurrency and rate options to ``parser``.

    ``--burst`` without a number for ``--rate-limit`` is no error argparse can see: check
    the parsed options with `rate_options_problem`.
    """
    group = parser.add_argument_group(
        "connection",
        "Prefer the environment variables, or --auth-token-file / --api-secret-file, to "
        "--auth-token and --api-secret: the options of a command are visible to every user "
        "of the machine (in ps, /proc), and stay in the shell's history.",
    )
    group.add_argument("--account-sid", metavar="SID", help="default: $TWILIO_ACCOUNT_SID")
    token = group.add_mutually_exclusive_group()
    token.add_argument(
        "--auth-token",
        metavar="TOKEN",
        help="default: $TWILIO_AUTH_TOKEN (visible to other users in ps: see above)",
    )
    token.add_argument(
        "--auth-token-file",
        metavar="FILE",
        help="read the auth token from FILE (- for stdin), which ps does not show",
    )
    group.add_argument("--api-key", metavar="SID", help="default: $TWILIO_API_KEY")
    secret = group.add_mutually_exclusive_group()
    secret.add_argument(
        "--api-secret",
        metavar="SECRET",
        help="default: $TWILIO_API_SECRET (visible to other users in ps: see above)",
    )
    secret.add_argument(
        "--api-secret-file",
        metavar="FILE",
        help="read the API secret from FILE (- for stdin), which ps does not show",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="the API origin; default: $FLEX_PARTICIPANTS_BASE_URL, else https://flex-api.twilio.com",
    )
    group.add_argument("--region", help="Twilio region; default: $TWILIO_REGION")
    group.add_argument("--edge", help="Twilio edge location; default: $TWILIO_EDGE")
    group.add_argument(
        "--max-concurrency",
        type=positive_int,
        default=10,
        metavar="N",
        help="most requests in flight at once (default: %(default)s)",
    )
    group.add_argument(
        "--rate-limit",
        type=rate_limit,
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
        type=positive_int,
        metavar="N",
        help=(
            "with --rate-limit R: how many requests may start at once after a pause "
            "(default: R / 5, at least 1)"
        ),
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="seconds one attempt may take (default: %(default)s)",
    )


_SECRET_LIMIT = 4096
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
        UsageError: no credentials, or an option the client refuses.
    """
    given = [args.account_sid, args.auth_token, args.api_key, args.api_secret]
    if not any(given) and not any(os.environ.get(name) for name in _CREDENTIAL_VARIABLES):
        raise UsageError(
            "no credentials: pass --account-sid and --auth-token (or --api-key and "
            "--api-secret), or set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
    try:
        return FlexClient(
            args.account_sid,
            args.auth_token,
            api_key=args.api_key,
            api_secret=args.api_secret,
            base_url=args.base_url,
            region=args.region,
            edge=args.edge,
            max_concurrency=args.max_concurrency,
            timeout=args.timeout,
            rate_limit=args.rate_limit,
            burst=args.burst,
        )
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from None
