"""``flex-participants emulator``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import functools
import shlex
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text

from flex_participants import write_channel_list
from flex_participants.emulator import FlexEmulator, emulator_from_arguments, serve_until_stopped

from ._main import CommandError, UsageError, os_error_text
from ._render import inert, stderr_console

__all__ = ["run_emulator"]


def run_emulator(args: argparse.Namespace) -> int:
    """Serve a `FlexEmulator` as ``args`` describe until SIGINT or SIGTERM; print how to use it.

    The emulator's channels are written to ``args.channel_list`` (default: a temporary file
    removed on exit), ready for ``flex-participants export --channels``. How to use it goes
    to stderr, as everything a person reads does. The other options are the emulator's own
    (`add_emulator_arguments`): ``args.rate_limit``, ``args.burst``, ``args.max_in_flight``
    and ``args.concurrency_code`` are the limits it enforces, as Twilio does.

    Raises:
        UsageError: options the emulator refuses, or it cannot listen where asked.
        CommandError: the channel list cannot be written.
    """
    try:
        emulator = emulator_from_arguments(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="flex-emulator-") as scratch:
        channel_list = Path(args.channel_list or Path(scratch) / "channels.csv")
        try:
            serve_until_stopped(emulator, functools.partial(_ready, channel_list=channel_list))
        except OSError as exc:  # `_ready` raises none: this is the listening socket's
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def _ready(emulator: FlexEmulator, *, channel_list: Path) -> None:
    try:
        write_channel_list(channel_list, emulator.channels)
    except OSError as exc:
        raise CommandError(os_error_text(exc)) from None
    _print_usage(stderr_console(), emulator, channel_list)


def _limits(emulator: FlexEmulator) -> list[Text]:
    """The limits it enforces, a line each; none without limits."""
    lines: list[Text] = []
    if emulator.rate_limit is not None:
        rate = f"{emulator.rate_limit:g} requests/s, burst {emulator.burst}"
        lines.append(inert(f"  rate limit   {rate}"))
    if emulator.max_in_flight is not None:
        at_once = f"{emulator.max_in_flight} at once (429 code {emulator.concurrency_code})"
        lines.append(inert(f"  concurrency  {at_once}"))
    return lines


def _print_usage(console: Console, emulator: FlexEmulator, channel_list: Path) -> None:
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
    command = shlex.join(
        [
            "flex-participants",
            "export",
            "--channels",
            str(channel_list),
            "--out",
            "participants.jsonl",
        ]
    )
    lines = [
        Text.assemble(
            ("Flex emulator", "bold"),
            f" serving {len(emulator.channels)} channels (seed {emulator.seed})",
        ),
        inert(f"  base URL     {emulator.base_url}"),
        inert(f"  account SID  {emulator.account_sid}"),
        inert(f"  auth token   {emulator.auth_token}"),
        inert(f"  channels     {channel_list}"),
        *_limits(emulator),
        Text("Export every channel with:"),
        inert(f"  export {environment}"),
        inert(f"  {command}"),
        Text("Press Ctrl-C to stop."),
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
