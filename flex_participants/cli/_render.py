"""What the command line shows: on the two consoles, in the file formats, and as the progress
and the report of an export.

stdout carries only data (``list``'s participants); everything a person reads (progress,
summaries, failures, warnings) goes to stderr. Text that comes from the server, the input or
the user (participant data, error messages, file names) is never given to rich as markup,
and its control characters are shown escaped (`printable`), so that it can neither style,
link, move the cursor nor hide what follows.

The file formats: a JSON line is ``to_dict(participant)``, the data as received, ending in
LF. A CSV row (RFC 4180, ending in CRLF) has the columns of `CSV_COLUMNS`, with
``routing_properties`` JSON-encoded and an absent value as an empty cell; a cell that a
spreadsheet would run as a formula is neutralised (see `neutralise`). Whatever the server
sent either is written or fails its channel with `UnwritableError`, never the program: a
string holding a lone surrogate (which the standard library's json accepts in a ``\\ud800``
escape, and UTF-8 cannot encode) is written as JSON ``\\u`` escapes where the cell or line is
JSON, and fails the channel in a plain CSV cell; data nested too deeply to encode fails the
channel.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

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
from rich.table import Column, Table
from rich.text import Text

from flex_participants import FlexAPIError, FlexClient, FlexError, Participant, to_dict

from ._main import printable

if TYPE_CHECKING:  # for types only: the export imports this module to write and show its books
    from ._export import ChannelFailure, ExportReport

__all__ = [
    "CSV_COLUMNS",
    "FILE_FORMATS",
    "ExportProgress",
    "FileFormat",
    "UnwritableError",
    "encode",
    "file_header",
    "inert",
    "neutralise",
    "pages_of",
    "print_report",
    "routing_json",
    "stderr_console",
    "stdout_console",
    "summary_table",
    "time_left",
]

# -- the consoles -------------------------------------------------------------------------


def inert(text: str, style: str = "") -> Text:
    """``text`` as a rich `Text` that no markup in it is read as, escaped by `printable`."""
    return Text(printable(text), style=style)


@functools.cache
def stdout_console() -> Console:
    """Where data goes: ``list``'s table."""
    return Console()


@functools.cache
def stderr_console() -> Console:
    """Where what a person reads goes: the progress bar, reports, warnings and logs."""
    return Console(stderr=True)


# -- the file formats ---------------------------------------------------------------------

FileFormat = Literal["jsonl", "csv"]
FILE_FORMATS: Final[tuple[FileFormat, ...]] = ("jsonl", "csv")
CSV_COLUMNS: Final = (
    "sid",
    "type",
    "interaction_sid",
    "channel_sid",
    "url",
    "routing_properties",
)
# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"), with the
# fullwidth forms that some of them fold to these.
_FORMULA_STARTS: Final = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


class UnwritableError(Exception):
    """A channel's data cannot be written in the file format asked for; it fails that channel."""


def neutralise(cell: str) -> str:
    """``cell``, with a ``'`` in front if it starts as a spreadsheet formula would.

    ``=``, ``+``, ``-``, ``@``, tab, CR and LF (and their fullwidth forms) start a formula
    in Excel, LibreOffice or Google Sheets, which a crafted value could use to run commands
    or send data away; the ``'`` makes the spreadsheet show the cell as text.
    """
    return "'" + cell if cell[:1] in _FORMULA_STARTS else cell


def _json(value: Any, *, ascii_only: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))


def _encodable_json(value: Any) -> str:
    """``value`` as compact JSON that UTF-8 can encode: ``\\u`` escapes only where needed."""
    text = _json(value)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON can still say it, escaped
        return _json(value, ascii_only=True)
    return text


def routing_json(routing: Mapping[str, Any] | None) -> str:
    """``routing_properties`` (of `to_dict`) as one line of JSON, or ``""`` when absent.

    Raises:
        UnwritableError: nested too deeply to encode.
    """
    if routing is None:
        return ""
    try:
        return _encodable_json(routing)
    except RecursionError:
        raise UnwritableError(_TOO_DEEP) from None


_TOO_DEEP: Final = "routing_properties is nested too deeply to write"


def _csv_cells(participant: Participant, *, surrogates: bool = False) -> list[str]:
    """The cells of a participant's row; with ``surrogates``, JSON escapes any lone one."""
    data = to_dict(participant)
    cells = ["" if data[column] is None else str(data[column]) for column in CSV_COLUMNS[:-1]]
    routing = data["routing_properties"]
    if routing is None:
        cells.append("")
    else:
        cells.append(_encodable_json(routing) if surrogates else _json(routing))
    return [neutralise(cell) for cell in cells]


def file_header(file_format: FileFormat) -> bytes:
    """What a file of this format starts with: the CSV header row, or nothing."""
    return _csv_text([list(CSV_COLUMNS)]).encode() if file_format == "csv" else b""


def encode(file_format: FileFormat, participants: Iterable[Participant]) -> bytes:
    """The lines (JSON lines or CSV rows) of ``participants`` in UTF-8, each ending in a newline.

    Raises:
        UnwritableError: a participant cannot be written in this format; the message names it.
    """
    participants = tuple(participants)
    try:
        try:
            if file_format == "jsonl":
                return "".join(_json_line(p) for p in participants).encode()
            return _csv_text(_csv_cells(p) for p in participants).encode()
        except UnicodeEncodeError:
            # Rare: only the standard library's json lets a lone surrogate through. Find it.
            return _encode_one_by_one(file_format, participants)
    except RecursionError:
        raise UnwritableError(_TOO_DEEP) from None


def _json_line(participant: Participant) -> str:
    return _json(to_dict(participant)) + "\n"


def _encode_one_by_one(file_format: FileFormat, participants: tuple[Participant, ...]) -> bytes:
    lines: list[bytes] = []
    for number, participant in enumerate(participants, start=1):
        if file_format == "jsonl":
            lines.append((_encodable_json(to_dict(participant)) + "\n").encode())
            continue
        cells = _csv_cells(participant, surrogates=True)
        for column, cell in zip(CSV_COLUMNS, cells, strict=True):
            try:
                cell.encode()
            except UnicodeEncodeError as exc:
                code = ord(cell[exc.start])
                raise UnwritableError(
                    f"participant {number}'s {column} holds a lone surrogate (U+{code:04X}), "
                    "which a CSV file in UTF-8 cannot hold"
                ) from None
        lines.append(_csv_text([cells]).encode())
    return b"".join(lines)


def _csv_text(rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    # CRLF, as RFC 4180 has it: the csv module then quotes a cell holding a CR or an LF,
    # which with a bare LF terminator it leaves unquoted (Python 3.11) to break the row.
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


# -- the progress of an export -----------------------------------------------------------

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


# -- the report of an export -------------------------------------------------------------


def summary_table(
    report: ExportReport,
    title: str,
    extra: Iterable[tuple[str, str]] = (),
    *,
    output_kept: bool = True,
) -> Table:
    """A two-column table of what ``report`` counts, with the rows of ``extra`` last.

    Its caption names the output, or, unless ``output_kept``, says that it is removed on exit.
    """
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
    if output_kept:
        table.caption = inert(f"{report.file_format} written to {report.out}")
    else:  # a path that is gone once the command exits is no use to print
        table.caption = inert(
            f"{report.file_format} written to a temporary file, removed on exit "
            "(--out FILE keeps it)"
        )
    return table


def print_report(
    console: Console,
    report: ExportReport,
    title: str,
    extra: Iterable[tuple[str, str]] = (),
    *,
    resumable: bool = True,
    output_kept: bool = True,
) -> None:
    """The summary table, then a line per channel not written, then what the books say.

    ``resumable`` says that the command can be run again with ``--resume``, and so says it;
    ``output_kept`` false, that the output is removed on exit (`summary_table`).
    """
    console.print(summary_table(report, title, extra, output_kept=output_kept))
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
    if report.batch_error is not None:
        # Also when it ended the batch before any channel was given to it: never a silent 1.
        error = report.batch_error
        _line(
            console,
            ("the export ended early: ", "red"),
            (_name(error), "bold"),
            inert(f": {error}"),
        )


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
