"""Data that cannot hurt: whatever a server sends is written, or fails its channel cleanly (and
a resume finishes); what reaches the terminal is inert; CSV cells are not formulas.

The emulator serves the hostile data: as participants given to ``add_channel``, or as raw
bytes (``Fault("body", ...)``) where the emulator's own JSON encoder would refuse them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flex_participants import _convert
from flex_participants.cli._main import _InertRecords
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import (
    add_channels,
    environment,
    export_of,
    journaled,
    journaled_failures,
    read_rows,
    run_cli,
    start_cli,
    write_channel_csv,
)

HOSTILE = [
    "[/]",
    "[link=https://evil.example]click[/link]",
    "[bold red]alarm",
    "\x1b[2J\x1b[31mred",  # clear the screen, then red
    "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07",  # an OSC 8 hyperlink
    "\x9b2J",  # CSI as one C1 control
    "abc\u202edcba",  # right-to-left override
    "line\nbreak\rreturn",
]
RAW_CONTROLS = ["\x1b", "\x07", "\x9b", "\u202e", "\r"]


def participant(kd: str, uo: str, number: int, **fields: Any) -> dict[str, Any]:
    """A participant of the channel ``kd``/``uo`` as the API sends it, with ``fields`` changed."""
    sid = f"UT{number:032x}"
    return {
        "sid": sid,
        "type": "agent",
        "interaction_sid": kd,
        "channel_sid": uo,
        "url": f"https://flex-api.twilio.com/v1/Interactions/{kd}/Channels/{uo}/Participants/{sid}",
        "routing_properties": None,
        **fields,
    }


def given_channel(
    emulator: FlexEmulator, number: int, values: list[str], *fields: str
) -> tuple[str, str]:
    """A channel of one participant per value, with that value in each of the ``fields``."""
    kd, uo = f"KD{number:032x}", f"UO{number:032x}"
    rows = [
        participant(kd, uo, n, **dict.fromkeys(fields, value)) for n, value in enumerate(values)
    ]
    return emulator.add_channel(kd, uo, participants=rows)


def page_body(participants: list[dict[str, Any]]) -> bytes:
    """A last page of ``participants`` as JSON, with ``\\u`` escapes (for lone surrogates)."""
    meta = {
        "key": "participants",
        "url": "https://flex-api.twilio.com/v1/page",
        "page": 0,
        "page_size": 50,
        "first_page_url": "https://flex-api.twilio.com/v1/page",
        "next_page_url": None,
        "previous_page_url": None,
    }
    return json.dumps({"meta": meta, "participants": participants}).encode()


def serve_raw(emulator: FlexEmulator, participants: list[dict[str, Any]]) -> tuple[str, str]:
    """A channel whose page is ``participants``, sent as given, however often it is asked for."""
    kd, uo = emulator.add_channel(participants=0)
    body = page_body([{**p, "interaction_sid": kd, "channel_sid": uo} for p in participants])
    emulator.add_fault(Fault("body", body=body, channel_sid=uo, times=100))
    return kd, uo


def without_orjson(tmp_path: Path, emulator: FlexEmulator) -> dict[str, str]:
    """An environment whose Python cannot import orjson: the package uses the stdlib's json."""
    shadow = tmp_path / "no-orjson"
    shadow.mkdir()
    (shadow / "orjson.py").write_text("raise ImportError('hidden by the test')\n")
    return environment(emulator, PYTHONPATH=str(shadow))


def assert_inert(text: str) -> None:
    for control in RAW_CONTROLS:
        assert control not in text


# -- what the writer cannot encode ------------------------------------------------------------


@pytest.mark.parametrize("command", ["export", "list"])
async def test_a_lone_surrogate_from_the_stdlib_json_is_written_as_a_json_escape(
    flex_emulator: FlexEmulator, tmp_path: Path, command: str
) -> None:
    kd, uo = serve_raw(
        flex_emulator, [participant("", "", 0, routing_properties={"name": "\ud800 é"})]
    )
    out = tmp_path / "out.jsonl"
    if command == "export":
        source = write_channel_csv(tmp_path / "channels.csv", [(kd, uo)])
        args = ["export", "--channels", str(source), "--out", str(out)]
    else:
        args = ["list", kd, uo, "--format", "jsonl"]
    run = await run_cli(*args, emulator=flex_emulator, env=without_orjson(tmp_path, flex_emulator))
    assert run.code == 0, run
    written = out.read_bytes() if command == "export" else run.stdout.encode()
    assert b'"name":"\\ud800 \\u00e9"' in written
    [row] = [json.loads(line) for line in written.splitlines()]
    assert row["routing_properties"] == {"name": "\ud800 é"}


def nested_lists(depth: int) -> Any:
    nested: Any = 1
    for _ in range(depth):
        nested = [nested]
    return nested


UNWRITABLE = {
    # Deeper than to_dict() or a writer could walk back: the SDK refuses it as it parses.
    "nested-too-deeply": (
        {"routing_properties": {"deep": nested_lists(400)}},
        "jsonl",
        "InvalidResponseError",
        "routing_properties: nested too deeply",
    ),
    # The stdlib's json decodes "\udc00"; UTF-8 cannot encode it, and a CSV cell is no JSON.
    "lone-surrogate-in-a-csv-cell": (
        {"type": "x\udc00"},
        "csv",
        "UnwritableError",
        "participant 2's type holds a lone surrogate (U+DC00), which a CSV file in UTF-8 "
        "cannot hold",
    ),
}


@pytest.mark.parametrize("unwritable", UNWRITABLE.values(), ids=UNWRITABLE.keys())
async def test_data_the_writer_cannot_encode_fails_its_channel_and_resume_finishes(
    flex_emulator: FlexEmulator, tmp_path: Path, unwritable: tuple[dict[str, Any], str, str, str]
) -> None:
    fields, file_format, error, problem = unwritable
    good = add_channels(flex_emulator, [3, 2])
    bad = serve_raw(flex_emulator, [participant("", "", 0), participant("", "", 1, **fields)])
    source = write_channel_csv(tmp_path / "channels.csv", [good[0], bad, good[1]])
    out = tmp_path / f"out.{file_format}"
    export = ["export", "--channels", str(source), "--out", str(out), "--format", file_format]
    env = without_orjson(tmp_path, flex_emulator)
    for again in ([], ["--resume"]):
        flex_emulator.reset_stats()
        run = await run_cli(*export, *again, emulator=flex_emulator, env=env)
        assert run.code == 1, run
        assert "Traceback" not in run.stderr
        [failed] = [line for line in run.stderr.splitlines() if line.startswith("failed")]
        assert failed.startswith(f"failed {bad[0]} {bad[1]} {error}: ")
        assert problem in failed
        assert "1 of the 3 channels read were not written" in run.stderr
    # The resume asked for the failed channel only, and failed it the same way.
    assert {(r.interaction_sid, r.channel_sid) for r in flex_emulator.stats.log} == {bad}
    assert sorted(journaled(out)) == sorted(good)
    assert journaled_failures(out) == [(*bad, error)] * 2
    assert {row["channel_sid"] for row in read_rows(out, file_format)} == {uo for _, uo in good}


@pytest.mark.skipif(_convert.JSON_LIBRARY != "orjson", reason="orjson is not installed")
async def test_with_orjson_a_lone_surrogate_fails_its_channel_as_an_invalid_response(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    bad = serve_raw(flex_emulator, [participant("", "", 0, type="x\ud800")])
    export, out = export_of(tmp_path, [bad])
    run = await run_cli(*export, emulator=flex_emulator)
    assert run.code == 1, run
    assert f"failed {bad[0]} {bad[1]} InvalidResponseError" in run.stderr
    assert journaled_failures(out) == [(*bad, "InvalidResponseError")]


# -- what reaches the terminal ------------------------------------------------------------


async def test_list_shows_hostile_participant_data_as_plain_escaped_text(
    flex_emulator: FlexEmulator,
) -> None:
    kd, uo = given_channel(flex_emulator, 1, HOSTILE, "sid", "type")
    run = await run_cli("list", kd, uo, emulator=flex_emulator)
    assert run.code == 0, run
    assert_inert(run.stdout)
    for markup in ("[/]", "[link=https://evil.example]click[/link]", "[bold red]alarm"):
        assert markup in run.stdout
    for escaped in (
        "\\x1b[2J\\x1b[31mred",
        "\\x9b2J",
        "abc\\u202edcba",
        "line\\x0abreak\\x0dreturn",
    ):
        assert escaped in run.stdout
    assert f"{len(HOSTILE)} participants" in run.stdout


HOSTILE_ERROR = {
    "code": 20001,
    "message": "[/] [link=https://evil.example]x[/link] \x1b[2J\x1b]8;;https://e.example\x07y",
    "more_info": "https://www.twilio.com/docs/errors/20001",
    "status": 400,
}


@pytest.mark.parametrize("command", ["export", "list"])
async def test_a_server_error_message_is_quoted_inertly_on_stderr(
    flex_emulator: FlexEmulator, tmp_path: Path, command: str
) -> None:
    kd, uo = flex_emulator.add_channel(participants=2)
    body = json.dumps(HOSTILE_ERROR).encode()
    flex_emulator.add_fault(Fault("body", status=400, body=body, channel_sid=uo))
    if command == "export":
        source = write_channel_csv(tmp_path / "channels.csv", [(kd, uo)])
        args = ["export", "--channels", str(source), "--out", str(tmp_path / "out.jsonl")]
    else:
        args = ["list", kd, uo]
    run = await run_cli(*args, emulator=flex_emulator)
    assert run.code == 1, run
    assert "Traceback" not in run.stderr
    assert_inert(run.stderr)
    [line] = [line for line in run.stderr.splitlines() if "HTTP 400" in line]
    assert (
        "[/] [link=https://evil.example]x[/link] \\x1b[2J\\x1b]8;;https://e.example\\x07y" in line
    )


def test_log_records_reach_the_terminal_with_their_controls_escaped() -> None:
    record = logging.LogRecord(
        "flex_participants", logging.WARNING, "", 0, "retrying %s", ("\x1b[2J",), None
    )
    assert _InertRecords().filter(record)
    assert record.getMessage() == "retrying \\x1b[2J"


# -- CSV cells that a spreadsheet would run -------------------------------------------------

FORMULAS = [
    '=HYPERLINK("https://evil.example")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\tx",
    "\rx",
    "\uff1d1+1",
]


@pytest.mark.parametrize("command", ["export", "list"])
async def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote(
    flex_emulator: FlexEmulator, tmp_path: Path, command: str
) -> None:
    kd, uo = given_channel(flex_emulator, 2, FORMULAS, "sid", "type", "url")
    if command == "export":
        export, out = export_of(tmp_path, [(kd, uo)], "out.csv")
        run = await run_cli(*export, "--format", "csv", emulator=flex_emulator)
        text = out.read_bytes().decode()
    else:
        run = await run_cli("list", kd, uo, "--format", "csv", emulator=flex_emulator)
        text = run.stdout
    assert run.code == 0, run
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["sid"], r["type"], r["url"]) for r in rows] == [("'" + v,) * 3 for v in FORMULAS]
    assert all(r["interaction_sid"] == kd for r in rows)


async def test_jsonl_is_written_as_received_formulas_and_all(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channel = given_channel(flex_emulator, 3, FORMULAS + HOSTILE, "sid", "type", "url")
    export, out = export_of(tmp_path, [channel])
    run = await run_cli(*export, emulator=flex_emulator)
    assert run.code == 0, run
    assert read_rows(out, "jsonl") == flex_emulator.participants_of(*channel)


# -- terminals that cannot show the data --------------------------------------------------

UNENCODABLE = ["café", "日本語", "emoji \U0001f600"]


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
async def test_list_on_a_terminal_that_cannot_encode_the_data_shows_it_escaped(
    flex_emulator: FlexEmulator, encoding: str
) -> None:
    kd, uo = given_channel(flex_emulator, 2, UNENCODABLE, "type")
    env = environment(flex_emulator, PYTHONIOENCODING=encoding)
    process = await start_cli("list", kd, uo, emulator=flex_emulator, env=env)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err
    shown = out.decode(encoding)
    assert "\\u65e5\\u672c\\u8a9e" in shown
    assert "\\U0001f600" in shown
    assert "caf\\xe9" in shown or "café" in shown  # Latin-1 holds é
    assert f"{len(UNENCODABLE)} participants" in shown


async def test_an_error_line_reaches_a_stderr_that_cannot_encode_it(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    listed = write_channel_csv(tmp_path / "channels.csv", add_channels(flex_emulator, [1]))
    out = tmp_path / "données" / "out.jsonl"  # a directory that does not exist
    env = environment(flex_emulator, PYTHONIOENCODING="ascii")
    run = await run_cli(
        "export", "--channels", str(listed), "--out", str(out), emulator=flex_emulator, env=env
    )
    assert run.code != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("flex-participants: error: ")
    assert "donn\\xe9es" in last
