"""The summary printed at the end of an export or a demo."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from flex_participants import FlexAPIError, FlexError

from ._export import ChannelFailure, ExportReport

__all__ = ["print_failures", "summary_table"]


def summary_table(report: ExportReport, title: str, extra: Iterable[tuple[str, str]] = ()) -> Table:
    """A two-column table of what ``report`` counts, with the rows of ``extra`` last."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = report.requests / report.seconds if report.seconds > 0 else 0.0
    channels = f"{report.exported:,} exported"
    if report.total is not None:
        channels += f" of {report.total:,}"
    rows = [
        ("channels", channels),
        ("already exported (skipped)", f"{report.skipped:,}"),
        ("failed channels", f"{len(report.failures):,}"),
        ("participants", f"{report.participants:,}"),
        ("pages (requests)", f"{report.requests:,}"),
        ("retries", f"{report.retries:,}"),
        ("wall time", f"{report.seconds:.2f} s"),
        ("requests/s", f"{rate:,.0f}"),
        *extra,
    ]
    for name, value in rows:
        table.add_row(name, value)
    table.caption = f"{report.file_format} written to {report.out}"
    return table


def print_failures(console: Console, failures: Iterable[ChannelFailure]) -> None:
    """One line per failed channel: its SIDs, the error class and the message."""
    for failure in failures:
        line = Text.assemble(
            ("failed ", "red"),
            f"{failure.interaction_sid} {failure.channel_sid} ",
            (type(failure.error).__name__, "bold"),
            f": {_describe(failure.error)}",
        )
        console.print(line, soft_wrap=True, highlight=False)


def _describe(error: FlexError) -> str:
    """The error without the request URL, which the channel's SIDs already say."""
    if isinstance(error, FlexAPIError):
        code = f" [code {error.code}]" if error.code is not None else ""
        return f"HTTP {error.status}{code}: {FlexError.__str__(error)}"
    return str(error)
