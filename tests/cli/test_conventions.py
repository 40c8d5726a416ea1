"""The command line's conventions: what a person reads goes to stderr and stdout carries only
data; secrets stay off the command line, where every user sees them in ``ps``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest

from flex_participants.cli import main
from flex_participants.emulator import FlexEmulator

from .helpers import (
    SCRIPT,
    assert_one_line_error,
    cli_command,
    environment,
    finish,
    read_rows,
    run_bash,
    run_cli,
)


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")
async def test_the_emulator_teaches_environment_variables_and_its_command_works(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "emulator",
        "--channels",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(None),
        cwd=tmp_path,
    )
    assert process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not lines or lines[-1] != "Press Ctrl-C to stop.":
            lines.append((await process.stderr.readline()).decode().rstrip("\n"))
    usage = "\n".join(lines)
    assert "--auth-token" not in usage
    [setting] = [line.strip() for line in lines if line.startswith("  export ")]
    assert re.fullmatch(
        r"export FLEX_PARTICIPANTS_BASE_URL=\S+ TWILIO_ACCOUNT_SID=AC\w+ TWILIO_AUTH_TOKEN=\S+",
        setting,
    )
    [command] = [line.strip() for line in lines if line.startswith("  flex-participants ")]

    path = f"{SCRIPT.parent}{os.pathsep}{os.environ['PATH']}"
    run = await run_bash(f"{setting}\n{command}", environment(None, PATH=path), tmp_path)
    assert run.code == 0, run
    assert len(read_rows(tmp_path / "participants.jsonl", "jsonl")) > 0

    process.send_signal(signal.SIGINT)
    run = await finish(process)
    assert run.code == 0, run
    # stdout carries only data: the emulator's settings, for a program to read.
    assert [line.split("=")[0] for line in run.stdout.splitlines()] == [
        "base_url",
        "account_sid",
        "auth_token",
        "channel_list",
    ]


@pytest.mark.parametrize(
    "script",
    [
        "printf '%s\\n' \"$TOKEN\" > {dir}/token && $FLEX list {kd} {uo} --format jsonl --auth-token-file {dir}/token",
        "printf '%s' \"$TOKEN\" | $FLEX list {kd} {uo} --format jsonl --auth-token-file -",
        "$FLEX list {kd} {uo} --format jsonl --auth-token-file <(printf '%s\\n' \"$TOKEN\")",
    ],
    ids=["file", "stdin", "process-substitution"],
)
async def test_the_auth_token_can_be_read_from_a_file_stdin_or_a_pipe(
    flex_emulator: FlexEmulator, tmp_path: Path, script: str
) -> None:
    kd, uo = flex_emulator.add_channel(participants=3)
    env = environment(flex_emulator, FLEX=shlex.join(cli_command()), TOKEN=flex_emulator.auth_token)
    del env["TWILIO_AUTH_TOKEN"]
    run = await run_bash(script.format(dir=tmp_path, kd=kd, uo=uo), env)
    assert run.code == 0, run
    assert [json.loads(line) for line in run.stdout.splitlines()] == flex_emulator.participants_of(
        kd, uo
    )


async def test_an_empty_token_file_is_a_usage_error(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("\n")
    kd, uo = flex_emulator.add_channel(participants=1)
    run = await run_cli(
        "list", kd, uo, "--auth-token-file", str(tmp_path / "token"), emulator=flex_emulator
    )
    assert_one_line_error(run, 2, "--auth-token-file", "is empty")
    assert flex_emulator.stats.requests == 0


async def test_the_token_and_the_channel_list_cannot_both_come_from_stdin(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    run = await run_cli(
        "export",
        "--channels",
        "-",
        "--out",
        str(tmp_path / "out.jsonl"),
        "--auth-token-file",
        "-",
        emulator=flex_emulator,
        stdin="",
    )
    assert_one_line_error(run, 2, "--auth-token-file and --channels - cannot both read stdin")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["list", "export"])
async def test_help_says_why_secrets_belong_in_the_environment_or_a_file(command: str) -> None:
    run = await run_cli(command, "--help", emulator=None)
    assert run.code == 0, run
    text = " ".join(run.stdout.split())
    assert "visible to every user of the machine (in ps, /proc)" in text
    assert "--auth-token-file FILE" in text
    assert "--api-secret-file FILE" in text


@pytest.mark.parametrize("secret", ["--auth-token", "--api-secret"])
def test_the_help_of_a_secret_option_says_its_alternatives_itself(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    # argparse lists these options apart from the group's note, so "see above" pointed at
    # nothing: each help says the alternatives in its own words.
    assert main(["list", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    variable = "$TWILIO_" + secret.removeprefix("--").replace("-", "_").upper()
    # The entry runs to the next one, the option's -file twin.
    [entry] = re.findall(rf" {secret} [A-Z]+ (default: .*?) {secret}-file FILE ", text)
    assert "see above" not in entry
    assert f"visible to other users in ps: prefer {variable} or {secret}-file" in entry


@pytest.mark.parametrize("file_format", ["table", "jsonl", "csv"])
async def test_list_with_its_standard_output_closed_fails_before_any_request(
    flex_emulator: FlexEmulator, file_format: str
) -> None:
    # `>&-`: the participants would go nowhere; exit 0 would say they were written.
    kd, uo = flex_emulator.add_channel(participants=3)
    env = environment(flex_emulator, FLEX=shlex.join(cli_command()))
    run = await run_bash(f"$FLEX list {kd} {uo} --format {file_format} >&-", env)

    assert_one_line_error(run, 1, "standard output is closed")
    assert flex_emulator.stats.requests == 0


ROOT = Path(__file__).resolve().parents[2]
"""The repository, where the tests run from."""


async def test_a_test_run_started_with_sigint_ignored_still_interrupts_the_command() -> None:
    # A shell starts a background job (`nox &`) with SIGINT ignored, and the programs the tests
    # start would inherit it: the command would never see Ctrl-C, and a test that interrupts
    # it would hang. The suite's conftest gives SIGINT back; this runs one such test so.
    test = (
        "tests/cli/test_exit_codes.py::"
        "test_an_interrupted_export_names_what_it_did_not_write_and_resume_finishes"
    )
    pytest_run = shlex.join([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test])
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"trap '' INT; exec {pytest_run}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    async with asyncio.timeout(150):
        out, _ = await process.communicate()

    assert process.returncode == 0, out.decode()
    assert "1 passed" in out.decode()
