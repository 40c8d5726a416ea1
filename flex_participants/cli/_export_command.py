"""``flex-participants export``: `export_file` under a progress bar, then its report."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from flex_participants import FlexClient

from ._channels import STDIN, ChannelSource
from ._connection import client_from_args, read_secret_files
from ._console import stderr_console
from ._errors import ExitCode, UsageError
from ._export import ExportReport, export_file, locked_source
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
    read_secret_files(args, stdin_taken_by="--channels -" if args.channels == STDIN else None)
    client = client_from_args(args)
    out = Path(args.out)
    with locked_source(args.channels, out) as source:
        return asyncio.run(_export(args, client, source, out))


async def _export(
    args: argparse.Namespace, client: FlexClient, source: ChannelSource, out: Path
) -> int:
    report = ExportReport(out, args.format)
    console = stderr_console()
    async with client:
        try:
            with ExportProgress(console, client) as progress:
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
