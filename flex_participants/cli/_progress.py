"""The live progress bar of an export, drawn by rich on stderr."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from flex_participants import FlexClient

__all__ = ["ExportProgress"]


def _fixed() -> Column:
    return Column(no_wrap=True)


def _squeezable() -> Column:
    # Gives way first, with an ellipsis, when the terminal is narrow.
    return Column(no_wrap=True, overflow="ellipsis", ratio=1)


class _RequestsColumn(ProgressColumn):
    """Requests per second and retries, read from the client at every refresh."""

    def __init__(self, client: FlexClient) -> None:
        super().__init__(table_column=_squeezable())
        self._client = client
        self._first = client.requests_sent

    def render(self, task: Task) -> Text:
        requests = self._client.requests_sent - self._first
        elapsed = task.elapsed or 0.0
        rate = requests / elapsed if elapsed > 0 else 0.0
        participants = task.fields["participants"]
        text = Text(
            f"{participants:,} participants  {rate:,.0f} req/s  {self._client.retries:,} retries  ",
            style="cyan",
            no_wrap=True,
            overflow="ellipsis",
        )
        text.append_text(Text.from_markup(task.fields["errors"]))
        return text


class ExportProgress:
    """An `ExportObserver` that shows channels done of total, participants, requests per
    second, retries, errors and the time left; use it as ``with ExportProgress(...)``.
    """

    def __init__(self, console: Console, client: FlexClient, description: str = "export") -> None:
        self._description = description
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}", table_column=_fixed()),
            # Most important first and never squeezed: the bar, channels done, time left. The
            # counters come last and give way, with an ellipsis, in a narrow terminal.
            BarColumn(bar_width=12, table_column=_fixed()),
            MofNCompleteColumn(table_column=_fixed()),
            TextColumn("channels", table_column=_fixed()),
            TimeRemainingColumn(table_column=_fixed()),
            _RequestsColumn(client),
            console=console,
            expand=True,
            refresh_per_second=8,
        )
        self._task: TaskID | None = None
        self._participants = 0
        self._errors = 0

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def started(self, total: int | None) -> None:
        """Show the bar, for ``total`` channels if known."""
        self._task = self._progress.add_task(
            self._description, total=total, participants=0, errors=self._errors_text()
        )

    def skipped(self) -> None:
        """Count a channel already exported."""
        if self._task is not None:
            self._progress.advance(self._task)

    def finished(self, participants: int, *, failed: bool) -> None:
        """Count a channel written or failed."""
        self._participants += participants
        self._errors += failed
        if self._task is not None:
            self._progress.update(
                self._task,
                advance=1,
                participants=self._participants,
                errors=self._errors_text(),
            )

    def _errors_text(self) -> str:
        noun = "error" if self._errors == 1 else "errors"
        return f"[red]{self._errors} {noun}[/]" if self._errors else "0 errors"
