"""``flex-participants export``: `export_file` under a progress bar, then its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._connection import client_from_args
from ._console import stderr_console, stdout_console
from ._errors import UsageError
from ._export import export_file
from ._progress import ExportProgress
from ._report import print_failures, summary_table

__all__ = ["run_export"]


async def run_export(args: argparse.Namespace) -> int:
    """Export the channels of ``args.channels`` to ``args.out``; 1 if any channel failed.

    Raises:
        UsageError: bad options, an unreadable channel list or an output that is in the way.
        CommandError: the output cannot be written.
    """
    out = Path(args.out)
    if args.out == "-":
        raise UsageError(f"--out must name a file, got {args.out!r}")
    async with client_from_args(args) as client:
        with ExportProgress(stderr_console(), client) as progress:
            report = await export_file(
                client,
                args.channels,
                out,
                file_format=args.format,
                observer=progress,
                resume=args.resume,
                force=args.force,
                concurrency=args.concurrency,
                page_size=args.page_size,
            )
    console = stdout_console()
    console.print(summary_table(report, "export"))
    print_failures(console, report.failures)
    if report.failures:
        console.print(
            f"{len(report.failures)} channels failed; run again with --resume to retry them",
            highlight=False,
        )
    if report.input_error is not None:
        raise report.input_error
    return 0 if report.ok else 1
