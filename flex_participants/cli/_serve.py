"""``flex-participants emulator``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from flex_participants.emulator import FlexEmulator

from ._channels import write_channel_list
from ._console import stdout_console
from ._errors import UsageError

__all__ = ["run_emulator"]


async def run_emulator(args: argparse.Namespace) -> int:
    """Serve a `FlexEmulator` as ``args`` describe until SIGINT or SIGTERM; print how to use it.

    The emulator's channels are written to ``args.channel_list`` (default: a temporary file
    removed on exit), ready for ``flex-participants export --channels``.

    Raises:
        UsageError: an option the emulator refuses.
    """
    try:
        emulator = FlexEmulator(
            host=args.host,
            port=args.port,
            seed=args.seed,
            channels=args.channels,
            latency=args.latency / 1000,
            max_in_flight=args.max_in_flight,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(signum, stop.set)
    with tempfile.TemporaryDirectory(prefix="flex-emulator-") as scratch:
        channel_list = Path(args.channel_list or Path(scratch) / "channels.csv")
        try:
            await emulator.start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        try:
            write_channel_list(channel_list, emulator.channels)
            _print_usage(stdout_console(), emulator, channel_list)
            await stop.wait()
        finally:
            await emulator.stop()
    return 0


def _print_usage(console: Console, emulator: FlexEmulator, channel_list: Path) -> None:
    command = shlex.join(
        [
            "flex-participants",
            "export",
            "--base-url",
            emulator.base_url,
            "--account-sid",
            emulator.account_sid,
            "--auth-token",
            emulator.auth_token,
            "--channels",
            str(channel_list),
            "--out",
            "participants.jsonl",
        ]
    )
    lines = [
        f"[bold]Flex emulator[/] serving {len(emulator.channels)} channels (seed {emulator.seed})",
        f"  base URL     {emulator.base_url}",
        f"  account SID  {emulator.account_sid}",
        f"  auth token   {emulator.auth_token}",
        f"  channels     {escape(str(channel_list))}",
        "Export every channel with:",
        f"  {escape(command)}",
        "Press Ctrl-C to stop.",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
