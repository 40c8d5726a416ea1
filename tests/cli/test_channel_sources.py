"""``export --channels`` from anywhere: a pipe, a named FIFO, bash's process substitution, read
exactly once; and the lines of a channel list that are no channel, named, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

import pytest

from flex_participants.cli._channels import MAX_LINE
from flex_participants.emulator import FlexEmulator

from .helpers import (
    add_channels,
    assert_grouped_exactly_once,
    assert_one_line_error,
    cli_command,
    environment,
    finish,
    journaled,
    read_rows,
    run_bash,
    run_cli,
    start_cli,
    write_channel_csv,
)


@pytest.mark.parametrize(
    "script",
    [
        "$FLEX export --channels <(cat {list}) --out {out}",
        "cat {list} | $FLEX export --channels - --out {out}",
        "mkfifo {fifo} && {{ cat {list} > {fifo} & }} && $FLEX export --channels {fifo} --out {out}",
    ],
    ids=["process-substitution", "pipe-on-stdin", "named-fifo"],
)
async def test_a_channel_list_that_can_be_read_once_is_exported_whole(
    flex_emulator: FlexEmulator, tmp_path: Path, script: str
) -> None:
    channels = add_channels(flex_emulator, [3, 0, 51, 7, 120, 1])
    listed = write_channel_csv(tmp_path / "channels.csv", channels)
    out = tmp_path / "out.jsonl"
    run = await run_bash(
        script.format(list=listed, out=out, fifo=tmp_path / "fifo"),
        environment(flex_emulator, FLEX=shlex.join(cli_command())),
    )
    assert run.code == 0, run
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)
    assert sorted(journaled(out)) == sorted(channels)
    assert "6 exported of 6" in run.stderr
    assert "6/? channels" in run.stderr  # a progress bar without a total: none was known
    assert run.stdout == ""


async def test_a_fifo_whose_writer_comes_late_is_waited_for_and_read_once(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(flex_emulator, [2, 5])
    fifo = tmp_path / "channels"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    process = await start_cli(
        "export", "--channels", str(fifo), "--out", str(out), emulator=flex_emulator
    )
    # Opening the FIFO for writing waits until the export has opened it for reading.
    lines = "".join(f"{kd},{uo}\n" for kd, uo in channels)
    await asyncio.to_thread(fifo.write_text, lines)
    run = await finish(process)
    assert run.code == 0, run
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)
    assert "2 exported of 2" in run.stderr


# -- lines that are no channel -------------------------------------------------------------

KD, UO = "KD" + "1" * 32, "UO" + "1" * 32
BAD_LINES = {
    "over-long-line": (b"x" * (MAX_LINE + 10) + b"\n", f"line 2 is longer than {MAX_LINE:,} bytes"),
    "over-long-csv-field": (b'"' + b"y" * 200_000 + b'",UO1\n', "line 2 is not CSV (field larger"),
    "deeply-nested-json": (
        b"[" * 100_000 + b"]" * 100_000 + b"\n",
        "line 2 is JSON nested too deeply",
    ),
}


def with_a_channel_before(bad_line: bytes, kd: str, uo: str) -> bytes:
    """A channel list of one good line, in the format the bad line pretends to be, then it."""
    if bad_line.startswith(b"["):
        return f'{{"interaction_sid": "{kd}", "channel_sid": "{uo}"}}\n'.encode() + bad_line
    return f"{kd},{uo}\n".encode() + bad_line


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
async def test_a_bad_line_in_a_channel_file_is_one_line_naming_it_before_any_request(
    flex_emulator: FlexEmulator, tmp_path: Path, bad: tuple[bytes, str]
) -> None:
    line, message = bad
    source = tmp_path / "channels"
    source.write_bytes(with_a_channel_before(line, KD, UO))
    out = tmp_path / "out.jsonl"
    run = await run_cli(
        "export", "--channels", str(source), "--out", str(out), emulator=flex_emulator
    )
    assert_one_line_error(run, 2, message)
    assert flex_emulator.stats.requests == 0
    assert not out.exists()


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
async def test_a_bad_line_on_a_pipe_stops_the_export_naming_it_after_the_channels_before(
    flex_emulator: FlexEmulator, tmp_path: Path, bad: tuple[bytes, str]
) -> None:
    line, message = bad
    [(kd, uo)] = add_channels(flex_emulator, [4])
    out = tmp_path / "out.jsonl"
    run = await run_cli(
        "export",
        "--channels",
        "-",
        "--out",
        str(out),
        emulator=flex_emulator,
        stdin=with_a_channel_before(line, kd, uo),
    )
    assert run.code == 2, run
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("flex-participants: error: stdin line 2 ")
    assert message in last
    assert "the channels after the bad line of the list were not read" in run.stderr
    assert journaled(out) == [(kd, uo)]
