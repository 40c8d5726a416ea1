"""What an export or a demo tells a person at its end, on stderr: a summary, then every
channel that was not written, by name, and whether the books balance.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from flex_participants import FlexAPIError, FlexError

from ._console import inert
from ._export import ChannelFailure, ExportReport
from ._formats import UnwritableError

__all__ = ["print_report", "summary_table"]


def summary_table(report: ExportReport, title: str, extra: Iterable[tuple[str, str]] = ()) -> Table:
    """A two-column table of what ``report`` counts, with the rows of ``extra`` last."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = report.requests / report.seconds if report.seconds > 0 else 0.0
    total = report.read if report.total is None else report.total
    rows = [
        ("channels", f"{report.exported:,} exported of {total:,}"),
        ("already exported (skipped)", f"{report.skipped:,}"),
        ("failed channels", f"{len(report.failures):,}"),
    ]
    if report.unreported:
        rows.append(("ended without a result", f"{len(report.unreported):,}"))
    rows += [
        ("participants", f"{report.participants:,}"),
        ("pages (requests)", f"{report.requests:,}"),
        ("retries", f"{report.retries:,}"),
        ("wall time", f"{report.seconds:.2f} s"),
        ("requests/s", f"{rate:,.0f}"),
        *extra,
    ]
    for name, value in rows:
        table.add_row(name, value)
    table.caption = inert(f"{report.file_format} written to {report.out}")
    return table


def print_report(
    console: Console,
    report: ExportReport,
    title: str,
    extra: Iterable[tuple[str, str]] = (),
    *,
    resumable: bool = True,
) -> None:
    """The summary table, then a line per channel not written, then what the books say.

    ``resumable`` says that the command can be run again with ``--resume``, and so says it.
    """
    console.print(summary_table(report, title, extra))
    _print_failures(console, report.failures)
    ended = f" ({_name(report.batch_error)}: {report.batch_error})" if report.batch_error else ""
    for interaction_sid, channel_sid in report.unreported:
        _line(
            console,
            ("not written ", "red"),
            inert(f"{interaction_sid} {channel_sid}: the export ended before its result{ended}"),
        )
    for interaction_sid, channel_sid in report.surplus:
        _line(
            console,
            ("ignored ", "yellow"),
            inert(f"{interaction_sid} {channel_sid}: a result the batch was not waiting for"),
        )
    if report.unaccounted:
        _line(
            console,
            ("the books do not balance: ", "red"),
            f"{report.read:,} channels read, {report.exported:,} written, "
            f"{report.skipped:,} skipped, {report.not_written:,} not written: "
            f"{report.unaccounted:,} unaccounted for",
        )
    if report.not_written:
        hint = "; run again with --resume to retry them" if resumable else ""
        _line(
            console,
            f"{report.not_written:,} of the {report.read:,} channels read were not written{hint}",
        )
    if report.input_error is not None:
        _line(console, "the channels after the bad line of the list were not read")


def _print_failures(console: Console, failures: Iterable[ChannelFailure]) -> None:
    """One line per failed channel: its SIDs, the error class and the message."""
    for failure in failures:
        _line(
            console,
            ("failed ", "red"),
            inert(f"{failure.interaction_sid} {failure.channel_sid} "),
            (_name(failure.error), "bold"),
            inert(f": {_describe(failure.error)}"),
        )


def _line(console: Console, *parts: str | Text | tuple[str, str]) -> None:
    console.print(Text.assemble(*parts), soft_wrap=True, highlight=False)


def _name(error: BaseException) -> str:
    return type(error).__name__


def _describe(error: FlexError | UnwritableError) -> str:
    """The error without the request URL, which the channel's SIDs already say."""
    if isinstance(error, FlexAPIError):
        code = f" [code {error.code}]" if error.code is not None else ""
        return f"HTTP {error.status}{code}: {FlexError.__str__(error)}"
    return str(error)
