"""What the command-line tests share: running the installed command against an emulator,
and reading what it wrote (exports, channel lists, journals)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from flex_participants.cli._journal import journal_path
from flex_participants.emulator import FlexEmulator

from ..helpers import without_client_variables

KD_UNKNOWN = "KD" + "0" * 31 + "1"
UO_UNKNOWN = "UO" + "0" * 31 + "1"
CSV_COLUMNS = ["sid", "type", "interaction_sid", "channel_sid", "url", "routing_properties"]


@attrs.frozen
class Run:
    """How a run of the command line ended."""

    code: int
    stdout: str
    stderr: str


SCRIPT = Path(sys.executable).with_name("flex-participants")
"""The installed console script, next to the interpreter running the tests."""


def cli_command() -> list[str]:
    """How to run the command line: its console script, or ``python -m`` where none is installed."""
    return [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "flex_participants"]


def environment(emulator: FlexEmulator | None, **extra: str) -> dict[str, str]:
    """The environment of a run: none of the caller's credentials, the emulator's if given."""
    env = without_client_variables(os.environ)
    env["COLUMNS"] = "250"  # so that rich wraps no SID
    if emulator is not None:
        env["FLEX_PARTICIPANTS_BASE_URL"] = emulator.base_url
        env["TWILIO_ACCOUNT_SID"] = emulator.account_sid
        env["TWILIO_AUTH_TOKEN"] = emulator.auth_token
    return {**env, **extra}


async def start_cli(
    *args: str,
    emulator: FlexEmulator | None,
    stdin: bool = False,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cli_command(),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(emulator) if env is None else dict(env),
    )


async def finish(process: asyncio.subprocess.Process, stdin: bytes | None = None) -> Run:
    """Wait for a started run to end (feeding it ``stdin``), and how it ended."""
    async with asyncio.timeout(60):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def run_cli(
    *args: str,
    emulator: FlexEmulator | None,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Run the command line to its end, while the emulator serves on this loop."""
    process = await start_cli(*args, emulator=emulator, stdin=stdin is not None, env=env)
    return await finish(process, stdin.encode() if isinstance(stdin, str) else stdin)


async def run_bash(script: str, env: Mapping[str, str], cwd: Path | None = None) -> Run:
    """Run ``script`` in bash, in the environment ``env``, to its end."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
    )
    return await finish(process)


def assert_one_line_error(run: Run, code: int, *fragments: str) -> None:
    assert run.code == code, run
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("flex-participants")
    for fragment in fragments:
        assert fragment in lines[0]


def add_channels(emulator: FlexEmulator, sizes: list[int]) -> list[tuple[str, str]]:
    return [emulator.add_channel(participants=size) for size in sizes]


def write_channel_csv(path: Path, channels: list[tuple[str, str]], *, header: bool = True) -> Path:
    lines = ["interaction_sid,channel_sid"] if header else []
    lines += [f"{kd},{uo}" for kd, uo in channels]
    path.write_text("\n".join(lines) + "\n")
    return path


def export_of(
    tmp_path: Path,
    channels: list[tuple[str, str]],
    out: str = "out.jsonl",
    *,
    header: bool = True,
) -> tuple[list[str], Path]:
    """``export --channels LIST --out OUT`` for ``channels``, written to a list in ``tmp_path``;
    and OUT, there."""
    source = write_channel_csv(tmp_path / "channels.csv", channels, header=header)
    path = tmp_path / out
    return ["export", "--channels", str(source), "--out", str(path)], path


def read_rows(path: Path, file_format: str) -> list[dict[str, Any]]:
    """The rows of an export, as the API's participant objects."""
    # Split at LF only, as a JSON-lines or CSV reader does: data may hold CR, U+2028, ...
    text = path.read_bytes().decode("utf-8")
    if file_format == "jsonl":
        return [json.loads(line) for line in text.split("\n")[:-1]]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert reader.fieldnames == CSV_COLUMNS
    return [from_csv(row) for row in reader]


def from_csv(row: Mapping[str, str]) -> dict[str, Any]:
    """A CSV row back as the API's participant object."""
    data: dict[str, Any] = {column: row[column] or None for column in CSV_COLUMNS}
    routing = row["routing_properties"]
    data["routing_properties"] = json.loads(routing) if routing else None
    return data


def assert_grouped_exactly_once(
    rows: list[dict[str, Any]], emulator: FlexEmulator, channels: list[tuple[str, str]]
) -> None:
    """Every participant of every channel exactly once, in order, each channel in one run."""
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for row in rows:
        if not runs or runs[-1][0] != row["channel_sid"]:
            runs.append((row["channel_sid"], []))
        runs[-1][1].append(row)
    by_channel = dict(runs)
    assert len(by_channel) == len(runs), "a channel's rows are split"
    expected = {uo: emulator.participants_of(kd, uo) for kd, uo in channels}
    assert by_channel == {uo: rows for uo, rows in expected.items() if rows}


def journaled(out: Path) -> list[tuple[str, str]]:
    """The channels the journal of ``out`` names as written."""
    lines = journal_path(out).read_text().splitlines()[1:]
    return [(kd, uo) for kd, uo, _ in (line.split(",") for line in lines if line[:1] != "#")]


def journaled_failures(out: Path) -> list[tuple[str, str, str]]:
    """The channels the journal of ``out`` notes as failed, each with its error's name."""
    notes = [
        line.removeprefix("# failed ").rsplit(" ", 1)
        for line in journal_path(out).read_text().splitlines()[1:]
        if line.startswith("# failed ")
    ]
    return [(*json.loads(sids), error) for sids, error in notes]


# -- list -------------------------------------------------------------------------------
