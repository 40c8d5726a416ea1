"""``flex-participants export``: `export_file` under a progress bar, then its report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

from flex_participants import FlexClient

from ._channels import STDIN, ChannelSource
from ._connection import client_from_args, read_secret_files
from ._console import stderr_console
from ._errors import ExitCode, UsageError
from ._export import ExportReport, export_file, locked_source
from ._journal import journal_path
from ._lock import lock_path
from ._progress import ExportProgress
from ._report import print_report

__all__ = ["run_export"]


def run_export(args: argparse.Namespace) -> int:
    """Export the channels of ``args.channels`` to ``args.out``; 1 if any channel was not written.

    The secret files are read, the output locked and the channel list opened before the
    event loop starts, since reading stdin or opening a FIFO waits for its writer.

    Raises:
        UsageError: bad options, an unreadable channel list or an output that is in the way.
        OutputLockedError: another export is writing the output.
        CommandError: the output cannot be written.
    """
    if args.out == STDIN:
        raise UsageError(f"--out must name a file, got {args.out!r}")
    if args.channels == STDIN and getattr(args, "stdin_closed", False):
        raise UsageError("--channels - reads stdin, which is closed")
    read_secret_files(args, stdin_taken_by="--channels -" if args.channels == STDIN else None)
    client = client_from_args(args)
    # Resolved once, so that the output, its journal and its lock are the same files
    # whichever path (a symlink, another working directory) names the output.
    out = Path(os.path.realpath(args.out))
    _refuse_list_that_is_the_output(args.channels, out)
    with locked_source(args.channels, out) as source:
        return asyncio.run(_export(args, client, source, out))


def _refuse_list_that_is_the_output(channels: str, out: Path) -> None:
    """The channel list must not be the output, its journal or its lock: writing would
    truncate the very list being read."""
    if channels == STDIN:
        return
    try:
        listed = os.stat(channels)
    except OSError:
        return  # opening it says why, in a moment
    for path in (out, journal_path(out), lock_path(out)):
        with contextlib.suppress(OSError):
            written = os.stat(path)
            if (listed.st_dev, listed.st_ino) == (written.st_dev, written.st_ino):
                raise UsageError(f"the channel list {channels} is {path}, which the export writes")


async def _export(
    args: argparse.Namespace, client: FlexClient, source: ChannelSource, out: Path
) -> int:
    report = ExportReport(out, args.format)
    console = stderr_console()
    async with client:
        try:
            with ExportProgress(console, client, page_size=args.page_size) as progress:
                await export_file(
                    client,
                    source,
                    report,
                    progress,
                    resume=args.resume,
                    force=args.force,
                    concurrency=args.concurrency,
                    page_size=args.page_size,
                )
        finally:
            # Also when interrupted or when writing failed: the channels not written are named.
            if report.started:
                print_report(console, report, "export")
    if report.input_error is not None:
        raise report.input_error
    return ExitCode.OK if report.ok else ExitCode.FAILED
