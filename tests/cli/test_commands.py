"""The ``flex-participants`` command line, run as the installed console script against an
emulator serving on the test's own event loop; and its journaled writer and channel lists.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import signal
import sys
from pathlib import Path

import pytest

from flex_participants.cli._channels import ChannelInputError, ChannelSource
from flex_participants.cli._journal import JournaledOutput, journal_path
from flex_participants.cli._main import UsageError
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import (
    KD_UNKNOWN,
    UO_UNKNOWN,
    add_channels,
    assert_grouped_exactly_once,
    assert_one_line_error,
    environment,
    export_of,
    from_csv,
    journaled,
    journaled_failures,
    read_rows,
    run_cli,
    start_cli,
    write_channel_csv,
)


async def test_list_jsonl_prints_every_participant_in_server_order(
    emulator: FlexEmulator,
) -> None:
    kd, uo = emulator.add_channel(participants=120)
    run = await run_cli("list", kd, uo, "--format", "jsonl", "--page-size", "50", emulator=emulator)
    assert run.code == 0, run
    assert [json.loads(line) for line in run.stdout.splitlines()] == emulator.participants_of(
        kd, uo
    )
    assert [r.page for r in emulator.stats.log] == [0, 1, 2]


async def test_list_csv_has_the_columns_and_json_routing_properties(
    emulator: FlexEmulator,
) -> None:
    kd, uo = emulator.add_channel(participants=60)
    run = await run_cli("list", kd, uo, "--format", "csv", emulator=emulator)
    assert run.code == 0, run
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [from_csv(row) for row in rows] == emulator.participants_of(kd, uo)
    assert any(row["routing_properties"].startswith("{") for row in rows)


async def test_list_table_shows_every_sid_in_order(emulator: FlexEmulator) -> None:
    kd, uo = emulator.add_channel(participants=12)
    run = await run_cli("list", kd, uo, emulator=emulator)
    assert run.code == 0, run
    expected = [p["sid"] for p in emulator.participants_of(kd, uo)]
    assert re.findall(r"UT[0-9a-f]{32}", run.stdout) == expected
    assert "12 participants" in run.stdout


async def test_list_limit_stops_after_that_many(emulator: FlexEmulator) -> None:
    kd, uo = emulator.add_channel(participants=30)
    run = await run_cli("list", kd, uo, "--format", "jsonl", "--limit", "3", emulator=emulator)
    assert run.code == 0, run
    sids = [json.loads(line)["sid"] for line in run.stdout.splitlines()]
    assert sids == [p["sid"] for p in emulator.participants_of(kd, uo)[:3]]


async def test_list_of_an_unknown_channel_fails_with_one_line(emulator: FlexEmulator) -> None:
    run = await run_cli("list", KD_UNKNOWN, UO_UNKNOWN, emulator=emulator)
    assert_one_line_error(run, 1, "NotFoundError", "404")


# -- usage and configuration errors ------------------------------------------------------


async def test_a_bad_sid_is_one_line_on_stderr_and_exit_code_2(emulator: FlexEmulator) -> None:
    run = await run_cli("list", "KDnothex", UO_UNKNOWN, emulator=emulator)
    assert_one_line_error(run, 2, "interaction_sid", "KDnothex")
    assert emulator.stats.requests == 0


async def test_missing_credentials_are_one_line_on_stderr_and_exit_code_2(
    emulator: FlexEmulator,
) -> None:
    run = await run_cli(
        "list", KD_UNKNOWN, UO_UNKNOWN, "--base-url", emulator.base_url, emulator=None
    )
    assert_one_line_error(run, 2, "--account-sid", "TWILIO_ACCOUNT_SID")
    assert emulator.stats.requests == 0


async def test_a_bad_option_is_one_line_on_stderr_and_exit_code_2() -> None:
    run = await run_cli("list", KD_UNKNOWN, UO_UNKNOWN, "--page-size", "0", emulator=None)
    assert_one_line_error(run, 2, "--page-size")


async def test_refused_credentials_fail_with_exit_code_1(emulator: FlexEmulator) -> None:
    kd, uo = emulator.add_channel(participants=1)
    run = await run_cli("list", kd, uo, "--auth-token", "wrong", emulator=emulator)
    assert_one_line_error(run, 1, "AuthenticationError", "401")


async def test_without_rich_the_command_line_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['rich'] = None; "
        "from flex_participants.cli import main; sys.exit(main(['demo']))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE, env=environment(None)
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode().strip() == (
        "flex-participants: the command line needs rich: pip install 'flex-participants[cli]'"
    )


async def test_the_library_and_the_emulator_do_not_import_rich() -> None:
    code = (
        "import sys, flex_participants, flex_participants.emulator, flex_participants.cli; "
        "sys.exit('rich' in sys.modules)"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await process.wait() == 0


# -- export -------------------------------------------------------------------------------

SIZES = [0, 1, 3, 49, 50, 51, 7, 130, 2, 0, 5, 99]


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
async def test_export_writes_every_participant_of_every_channel_once_grouped_by_channel(
    emulator: FlexEmulator, tmp_path: Path, file_format: str
) -> None:
    channels = add_channels(emulator, SIZES)
    export, out = export_of(tmp_path, channels, f"out.{file_format}")
    run = await run_cli(
        *export,
        "--format",
        file_format,
        "--concurrency",
        "4",
        "--page-size",
        "50",
        emulator=emulator,
    )
    assert run.code == 0, run
    assert_grouped_exactly_once(read_rows(out, file_format), emulator, channels)
    assert sorted(journaled(out)) == sorted(channels)
    assert "12 exported of 12" in run.stderr
    assert run.stdout == ""


async def test_export_reads_json_lines_from_stdin(emulator: FlexEmulator, tmp_path: Path) -> None:
    channels = add_channels(emulator, [4, 0, 60, 2])
    lines = "".join(
        json.dumps({"interaction_sid": kd, "channel_sid": uo}) + "\n" for kd, uo in channels
    )
    out = tmp_path / "out.jsonl"
    run = await run_cli(
        "export", "--channels", "-", "--out", str(out), emulator=emulator, stdin=lines
    )
    assert run.code == 0, run
    assert_grouped_exactly_once(read_rows(out, "jsonl"), emulator, channels)


async def test_an_unknown_channel_is_listed_at_the_end_and_fails_the_export(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(emulator, [3, 4, 5])
    source = write_channel_csv(
        tmp_path / "channels.csv", [*channels[:2], (KD_UNKNOWN, UO_UNKNOWN), channels[2]]
    )
    out = tmp_path / "out.jsonl"
    run = await run_cli("export", "--channels", str(source), "--out", str(out), emulator=emulator)
    assert run.code == 1, run
    assert "Traceback" not in run.stderr
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed")]
    assert len(failed) == 1
    assert f"{KD_UNKNOWN} {UO_UNKNOWN} NotFoundError: HTTP 404" in failed[0]
    assert_grouped_exactly_once(read_rows(out, "jsonl"), emulator, channels)
    assert (KD_UNKNOWN, UO_UNKNOWN) not in journaled(out)
    assert journaled_failures(out) == [(KD_UNKNOWN, UO_UNKNOWN, "NotFoundError")]


async def test_resume_skips_the_finished_channels_and_retries_the_failed_one(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(emulator, [3, 70, 5])
    source = write_channel_csv(tmp_path / "channels.csv", channels)
    emulator.add_fault(Fault("status", status=404, channel_sid=channels[1][1]))
    out = tmp_path / "out.jsonl"
    first = await run_cli("export", "--channels", str(source), "--out", str(out), emulator=emulator)
    assert first.code == 1, first
    assert sorted(journaled(out)) == sorted([channels[0], channels[2]])

    emulator.reset_stats()
    again = await run_cli(
        "export", "--channels", str(source), "--out", str(out), "--resume", emulator=emulator
    )
    assert again.code == 0, again
    assert {(r.interaction_sid, r.channel_sid) for r in emulator.stats.log} == {channels[1]}
    assert_grouped_exactly_once(read_rows(out, "jsonl"), emulator, channels)


async def test_export_refuses_an_existing_output_without_resume_or_force(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    source = write_channel_csv(tmp_path / "channels.csv", add_channels(emulator, [2]))
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    run = await run_cli("export", "--channels", str(source), "--out", str(out), emulator=emulator)
    assert_one_line_error(run, 2, "already exists", "--resume", "--force")
    assert out.read_text() == "precious\n"
    forced = await run_cli(
        "export", "--channels", str(source), "--out", str(out), "--force", emulator=emulator
    )
    assert forced.code == 0, forced
    assert len(read_rows(out, "jsonl")) == 2


async def test_a_bad_line_in_the_channel_file_stops_before_any_request(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    source = tmp_path / "channels.jsonl"
    first = json.dumps({"interaction_sid": KD_UNKNOWN, "channel_sid": UO_UNKNOWN})
    source.write_text(f"{first}\nnot json\n")
    run = await run_cli(
        "export", "--channels", str(source), "--out", str(tmp_path / "o"), emulator=emulator
    )
    assert_one_line_error(run, 2, "line 2", "not JSON")
    assert emulator.stats.requests == 0
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("KD-not-a-sid,UO-not-a-sid", "interaction_sid"),
        (f"{KD_UNKNOWN},UO1", "channel_sid"),
    ],
    ids=["not-a-sid", "short-channel-sid"],
)
async def test_a_malformed_sid_in_the_channel_file_is_a_usage_error_before_any_request(
    emulator: FlexEmulator, tmp_path: Path, line: str, problem: str
) -> None:
    # Not a failed channel that --resume would retry for ever: the list itself is wrong.
    [(kd, uo)] = add_channels(emulator, [3])
    source = tmp_path / "channels.csv"
    source.write_text(f"interaction_sid,channel_sid\n{kd},{uo}\n{line}\n")
    out = tmp_path / "o"
    run = await run_cli("export", "--channels", str(source), "--out", str(out), emulator=emulator)
    assert_one_line_error(run, 2, "line 3", problem)
    assert emulator.stats.requests == 0
    assert not out.exists()


async def test_resume_after_sigkill_holds_every_channel_exactly_once(
    emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(emulator, [3, 1, 4, 1, 5, 9, 2, 6, 5, 3] * 3)
    # The last channels hang, so the run cannot end before it is killed.
    for _, uo in channels[-6:]:
        emulator.add_fault(Fault("slow", delay=30, channel_sid=uo))
    export, out = export_of(tmp_path, channels, header=False)
    process = await start_cli(*export, "--concurrency", "2", emulator=emulator)
    async with asyncio.timeout(30):
        while not journal_path(out).exists() or len(journaled(out)) < 5:
            assert process.returncode is None
            await asyncio.sleep(0.01)
    process.kill()
    assert await process.wait() == -signal.SIGKILL
    finished = journaled(out)
    assert 5 <= len(finished) < len(channels)
    # A crash in the middle of a write leaves a torn channel and a torn journal line.
    with out.open("a") as torn:
        torn.write('{"sid":"UT00')
    with journal_path(out).open("a") as torn:
        torn.write(f"{channels[-1][0]},UO")

    emulator.clear_faults()
    emulator.reset_stats()
    run = await run_cli(*export, "--resume", emulator=emulator)
    assert run.code == 0, run
    assert_grouped_exactly_once(read_rows(out, "jsonl"), emulator, channels)
    assert sorted(journaled(out)) == sorted(channels)
    requested = {(r.interaction_sid, r.channel_sid) for r in emulator.stats.log}
    assert requested == set(channels) - set(finished)


# -- demo -------------------------------------------------------------------------------


def gone(paths: list[str]) -> list[str]:
    """The ``paths`` that name no file."""
    return [path for path in paths if not Path(path).exists()]


async def test_demo_without_out_names_no_file_that_is_gone_when_it_exits() -> None:
    run = await run_cli("demo", "--channels", "5", emulator=None)
    assert run.code == 0, run
    printed = " ".join(run.stderr.split())  # rich may wrap the caption
    assert gone(re.findall(r"(/\S+?\.(?:jsonl|csv))\b", printed)) == []
    assert "written to a temporary file, removed on exit (--out FILE keeps it)" in printed


async def test_demo_runs_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    run = await run_cli("demo", "--channels", "20", "--out", str(out), emulator=None)
    assert run.code == 0, run
    assert "Traceback" not in run.stderr
    assert run.stdout == ""  # stdout carries only data; the demo's report is for a person
    assert "20 exported of 23" in run.stderr
    assert "every participant exactly once" in run.stderr
    assert "deliberately unknown" in run.stderr
    assert len([line for line in run.stderr.splitlines() if line.startswith("failed")]) == 3
    assert journal_path(out).exists()


async def test_demo_names_its_output_as_export_does_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.touch()
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    run = await run_cli("demo", "--channels", "2", "--out", str(link), "--force", emulator=None)
    assert run.code == 0, run
    assert journal_path(real).exists()
    assert not journal_path(link).exists()
    assert real.stat().st_size > 0


# -- the journaled writer ----------------------------------------------------------------


def test_resume_truncates_a_half_written_channel_and_journal_line(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    with JournaledOutput.create(out, file_format="csv", header=b"h\n", force=False) as output:
        output.commit("KD1", "UO1", b"a\nb\n")
        output.commit("KD2", "UO2", b"")
        output.commit("KD3", "UO3", b"c\n")
    with out.open("ab") as file:
        file.write(b"half a ch")
    with journal_path(out).open("ab") as file:
        file.write(b"KD4,UO4,1")
    with JournaledOutput.resume(out, file_format="csv", header=b"h\n") as output:
        assert output.finished == {("KD1", "UO1"), ("KD2", "UO2"), ("KD3", "UO3")}
        assert out.read_bytes() == b"h\na\nb\nc\n"
        output.commit("KD4", "UO4", b"d\n")
    assert out.read_bytes() == b"h\na\nb\nc\nd\n"
    assert journal_path(out).read_text().splitlines()[1:] == [
        "KD1,UO1,6",
        "KD2,UO2,6",
        "KD3,UO3,8",
        "KD4,UO4,10",
    ]


def test_resume_with_no_channel_journaled_starts_over_with_the_header(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    JournaledOutput.create(out, file_format="csv", header=b"h\n", force=False).close()
    out.write_bytes(b"h\npartial")
    with JournaledOutput.resume(out, file_format="csv", header=b"h\n") as output:
        assert output.finished == set()
    assert out.read_bytes() == b"h\n"


def test_resume_of_a_run_killed_before_its_journal_was_written_starts_over(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.csv"
    out.write_bytes(b"h\n")
    journal_path(out).write_bytes(b"# flex-parti")
    with JournaledOutput.resume(out, file_format="csv", header=b"h\n") as output:
        output.commit("KD1", "UO1", b"a\n")
    assert out.read_bytes() == b"h\na\n"


def test_resume_without_any_file_starts_a_new_one(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with JournaledOutput.resume(out, file_format="jsonl", header=b"") as output:
        output.commit("KD1", "UO1", b"{}\n")
    assert out.read_bytes() == b"{}\n"


@pytest.mark.parametrize(
    ("journal", "message"),
    [
        (None, "has no journal"),
        (b"something else\n", "not a flex-participants journal"),
        (b"# flex-participants journal v1 format=jsonl start=0\n", "--format jsonl"),
        (b"# flex-participants journal v1 format=csv start=0\nKD1,UO1\n", "line 2 is corrupt"),
        (b"# flex-participants journal v1 format=csv start=0\nKD1,UO1,99\n", "holds 4 bytes"),
    ],
)
def test_resume_refuses_what_it_cannot_trust(
    tmp_path: Path, journal: bytes | None, message: str
) -> None:
    out = tmp_path / "out.csv"
    out.write_bytes(b"h\na\n")
    if journal is not None:
        journal_path(out).write_bytes(journal)
    with pytest.raises(UsageError, match=re.escape(message)):
        JournaledOutput.resume(out, file_format="csv", header=b"h\n")
    assert out.read_bytes() == b"h\na\n"


def test_create_refuses_an_existing_file_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"x\n")
    with pytest.raises(UsageError, match="already exists"):
        JournaledOutput.create(out, file_format="jsonl", header=b"", force=False)
    JournaledOutput.create(out, file_format="jsonl", header=b"", force=True).close()
    assert out.read_bytes() == b""


# -- channel lists -----------------------------------------------------------------------

KD1, UO1 = "KD" + "1" * 32, "UO" + "1" * 32
KD2, UO2 = "KD" + "2" * 32, "UO" + "2" * 32


async def channels_of(path: Path) -> list[tuple[str, str]]:
    with ChannelSource.open(str(path)) as source:
        return [channel async for channel in source.channels()]


def count_of(path: Path) -> int | None:
    with ChannelSource.open(str(path)) as source:
        return source.count()


@pytest.mark.parametrize(
    "text",
    [
        f"{KD1},{UO1}\n{KD2},{UO2}\n",
        f"interaction_sid,channel_sid\n{KD1},{UO1}\n\n{KD2},{UO2}",
        f"\ufeffchannel_sid,note,interaction_sid\n{UO1},x,{KD1}\n# a comment\n{UO2},y,{KD2}\n",
        f'{{"interaction_sid": "{KD1}", "channel_sid": "{UO1}"}}\n'
        f'{{"channel_sid": "{UO2}", "interaction_sid": "{KD2}", "extra": 1}}\n',
    ],
    ids=["csv", "csv-header", "csv-header-reordered", "jsonl"],
)
async def test_channel_lists_in_every_accepted_shape(tmp_path: Path, text: str) -> None:
    path = tmp_path / "channels"
    path.write_text(text, encoding="utf-8")
    assert await channels_of(path) == [(KD1, UO1), (KD2, UO2)]
    assert count_of(path) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{KD1}\n", "line 1 has too few columns"),
        (f'{{"interaction_sid": "{KD1}"}}\n', 'line 1 lacks the strings "interaction_sid"'),
        ('{"interaction_sid": 1}\n[1]\n', "line 1 lacks"),
        ('{"a": 1}\nnot json\n', "line 1 lacks"),
    ],
)
async def test_a_bad_channel_line_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "channels"
    path.write_text(text)
    with pytest.raises(ChannelInputError, match=re.escape(message)):
        await channels_of(path)
    with pytest.raises(ChannelInputError, match=re.escape(message)):
        count_of(path)


async def test_the_installed_flex_participants_command_runs_the_same_program(
    emulator: FlexEmulator,
) -> None:
    script = Path(sys.executable).with_name("flex-participants")
    if not script.exists():
        pytest.skip("the package is not installed with its console script in this environment")
    kd, uo = emulator.add_channel(participants=3)
    process = await asyncio.create_subprocess_exec(
        str(script),
        "list",
        kd,
        uo,
        "--format",
        "jsonl",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(emulator),
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err
    sids = [json.loads(line)["sid"] for line in out.decode().splitlines()]
    assert sids == [p["sid"] for p in emulator.participants_of(kd, uo)]
