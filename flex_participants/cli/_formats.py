"""How participants are written as JSON lines or CSV rows.

A JSON line is ``to_dict(participant)``. A CSV row has the columns of `CSV_COLUMNS`, with
``routing_properties`` JSON-encoded and an absent value as an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any, Final, Literal

from flex_participants import Participant, to_dict

__all__ = ["CSV_COLUMNS", "FILE_FORMATS", "FileFormat", "encode", "file_header"]

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


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _csv_cells(participant: Participant) -> list[str]:
    data = to_dict(participant)
    cells = ["" if data[column] is None else str(data[column]) for column in CSV_COLUMNS[:-1]]
    routing = data["routing_properties"]
    cells.append("" if routing is None else _json(routing))
    return cells


def file_header(file_format: FileFormat) -> str:
    """What a file of this format starts with: the CSV header row, or nothing."""
    return _csv_text([list(CSV_COLUMNS)]) if file_format == "csv" else ""


def encode(file_format: FileFormat, participants: Iterable[Participant]) -> str:
    """The lines (JSON lines or CSV rows) of ``participants``, each ending in a newline."""
    if file_format == "jsonl":
        return "".join(_json(to_dict(p)) + "\n" for p in participants)
    return _csv_text(_csv_cells(p) for p in participants)


def _csv_text(rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
