"""The live progress bar of an export, drawn by rich on stderr."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

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

__all__ = ["ExportProgress", "pages_of", "time_left"]

_SERVER_PAGE_SIZE: Final = 50
"""Participants per page when the export asks for no page size: Twilio's default."""


def pages_of(participants: int, page_size: int) -> int:
    """The requests a channel of ``participants`` takes at ``page_size``: a page each, at least one."""
    return max(1, math.ceil(participants / page_size))


def time_left(
    estimate: float | None,
    channels_left: int,
    rate: float | None,
    *,
    pages_per_channel: float = 1.0,
) -> float | None:
    """Seconds an export has left, or ``None`` if nothing says yet.

    Args:
        estimate: seconds left at the pace of the channels done so far, if known.
        channels_left: channels not yet done; each takes ``pages_per_channel`` requests, and
            at least one.
        rate: the requests per second the client's limiter allows, if it has a rate: no
            export ends sooner than its requests at that rate.
        pages_per_channel: the requests a channel took on average so far.
    """
    if rate is None or not 0 < rate < math.inf:
        return estimate
    budgeted = channels_left * max(1.0, pages_per_channel) / rate
    return budgeted if estimate is None else max(estimate, budgeted)


def _clock(seconds: float) -> str:
    """``H:MM:SS``, as rich shows time left."""
    minutes, whole_seconds = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{whole_seconds:02d}"


def _fixed() -> Column:
    return Column(no_wrap=True)


def _squeezable() -> Column:
    # Gives way first, with an ellipsis, when the terminal is narrow.
    return Column(no_wrap=True, overflow="ellipsis", ratio=1)


class _RequestsColumn(ProgressColumn):
    """Requests per second, retries and 429s, read from `FlexClient.stats` at every refresh."""

    def __init__(self, client: FlexClient) -> None:
        super().__init__(table_column=_squeezable())
        self._client = client
        self._first = client.stats().requests

    def render(self, task: Task) -> Text:
        stats = self._client.stats()
        requests = stats.requests - self._first
        elapsed = task.elapsed or 0.0
        rate = requests / elapsed if elapsed > 0 else 0.0
        participants = task.fields["participants"]
        throttled = f"{stats.throttled:,} x 429  " if stats.throttled else ""
        text = Text(
            f"{participants:,} participants  {rate:,.0f} req/s  {stats.retries:,} retries  "
            + throttled,
            style="cyan",
            no_wrap=True,
            overflow="ellipsis",
        )
        text.append_text(Text.from_markup(task.fields["errors"]))
        return text


class _TimeLeftColumn(TimeRemainingColumn):
    """Time left: rich's estimate from the pace so far, but never less than the requests
    still to make take at the rate of the client's limiter, once it has one.
    """

    def __init__(self, client: FlexClient, pages_per_channel: Callable[[], float]) -> None:
        super().__init__(table_column=_fixed())
        self._client = client
        self._pages_per_channel = pages_per_channel

    def render(self, task: Task) -> Text:
        style = "progress.remaining"
        if task.total is None:
            return Text("", style=style)
        remaining = task.remaining
        seconds = time_left(
            task.time_remaining,
            0 if remaining is None or task.finished else max(0, math.ceil(remaining)),
            self._client.stats().rate,
            pages_per_channel=self._pages_per_channel(),
        )
        return Text("-:--:--" if seconds is None else _clock(seconds), style=style)


class ExportProgress:
    """An `ExportObserver` that shows channels done of total, participants, requests per
    second, retries, errors and the time left; use it as ``with ExportProgress(...)``.

    Once the client's limiter has a rate (``limiter.rate``, requests per second), the time
    left is never less than the requests still to make take at that rate: a page for each
    channel not yet done, or as many as the channels done took on average.
    """

    def __init__(
        self,
        console: Console,
        client: FlexClient,
        description: str = "export",
        *,
        page_size: int | None = None,
    ) -> None:
        """Draw on ``console``, reading ``client``'s counters and limiter; ``page_size`` is
        the export's, for the requests a channel takes (default: the server's).
        """
        self._description = description
        self._page_size = page_size or _SERVER_PAGE_SIZE
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}", table_column=_fixed()),
            # Most important first and never squeezed: the bar, channels done, time left. The
            # counters come last and give way, with an ellipsis, in a narrow terminal.
            BarColumn(bar_width=12, table_column=_fixed()),
            MofNCompleteColumn(table_column=_fixed()),
            TextColumn("channels", table_column=_fixed()),
            _TimeLeftColumn(client, self._pages_per_channel),
            _RequestsColumn(client),
            console=console,
            expand=True,
            refresh_per_second=8,
        )
        self._task: TaskID | None = None
        self._participants = 0
        self._errors = 0
        self._fetched = 0
        self._pages = 0

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
        self._fetched += 1
        self._pages += pages_of(participants, self._page_size)
        if self._task is not None:
            self._progress.update(
                self._task,
                advance=1,
                participants=self._participants,
                errors=self._errors_text(),
            )

    def _pages_per_channel(self) -> float:
        return self._pages / self._fetched if self._fetched else 1.0

    def _errors_text(self) -> str:
        noun = "error" if self._errors == 1 else "errors"
        return f"[red]{self._errors} {noun}[/]" if self._errors else "0 errors"
