"""How participants are written as JSON lines or CSV rows, in UTF-8.

A JSON line is ``to_dict(participant)``, the data as received, ending in LF. A CSV row
(RFC 4180, ending in CRLF) has the columns of `CSV_COLUMNS`, with ``routing_properties``
JSON-encoded and an absent value as an empty cell; a cell that a spreadsheet would run as a
formula is neutralised (see `neutralise`).

Whatever the server sent either is written or fails its channel with `UnwritableError`,
never the program: a string holding a lone surrogate (which the standard library's json
accepts in a ``\\ud800`` escape, and UTF-8 cannot encode) is written as JSON ``\\u``
escapes where the cell or line is JSON, and fails the channel in a plain CSV cell; data
nested too deeply to encode fails the channel.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from flex_participants import Participant, to_dict

__all__ = [
    "CSV_COLUMNS",
    "FILE_FORMATS",
    "FileFormat",
    "UnwritableError",
    "encode",
    "file_header",
    "neutralise",
    "routing_json",
]

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
