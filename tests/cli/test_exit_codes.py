"""An exit code that tells the truth: 0 only if every channel was written; every channel that
was not is named, whatever the reason (a library that loses one, an interruption); a bug is
one line and its own exit code, never a bare traceback; the table of codes is documented.

Two tests make the library misbehave inside the installed command: a ``sitecustomize``
module on ``PYTHONPATH``, which Python imports at startup, patches it there.
"""

from __future__ import annotations

import asyncio
import re
import signal
import textwrap
from pathlib import Path

import pytest

from flex_participants.cli._journal import journal_path, lock_path
from flex_participants.cli._main import MEANINGS, ExitCode
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import (
    Run,
    add_channels,
    assert_grouped_exactly_once,
    assert_one_line_error,
    environment,
    export_of,
    finish,
    journaled,
    journaled_failures,
    read_rows,
    run_cli,
    start_cli,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def patched(tmp_path: Path, emulator: FlexEmulator, code: str) -> dict[str, str]:
    """An environment in which Python runs ``code`` at startup, before the command line."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(code))
    return environment(emulator, PYTHONPATH=str(site))


def with_batch_step(tmp_path: Path, emulator: FlexEmulator, step: str) -> dict[str, str]:
    """An environment in which `ChannelBatch.__anext__` is the ``step`` that the code ``step``
    defines, an async function that may await ``original(self)``, the library's own."""
    return patched(
        tmp_path,
        emulator,
        "import flex_participants\n\noriginal = flex_participants.ChannelBatch.__anext__\n"
        f"{textwrap.dedent(step)}\nflex_participants.ChannelBatch.__anext__ = step\n",
    )


async def test_a_channel_the_library_never_reports_is_named_and_fails_the_export(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(flex_emulator, [3, 5, 2])
    lost = channels[1]
    env = with_batch_step(
        tmp_path,
        flex_emulator,
        f"""
        async def step(self):
            result = await original(self)
            if result.channel_sid == {lost[1]!r}:
                result = await original(self)  # a bug: this channel's result is dropped
            return result
        """,
    )
    export, out = export_of(tmp_path, channels)
    run = await run_cli(*export, emulator=flex_emulator, env=env)
    assert run.code == 1, run
    assert f"not written {lost[0]} {lost[1]}: the export ended before its result" in run.stderr
    assert "1 of the 3 channels read were not written" in run.stderr
    assert sorted(journaled(out)) == sorted([channels[0], channels[2]])


async def test_a_result_the_library_reports_twice_is_written_once_and_fails_the_export(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    channels = add_channels(flex_emulator, [3, 5])
    twice = channels[0]
    env = with_batch_step(
        tmp_path,
        flex_emulator,
        f"""
        repeated = []

        async def step(self):
            if len(repeated) == 1:
                return repeated.pop()  # a bug: this channel's result comes again
            result = await original(self)
            if result.channel_sid == {twice[1]!r}:
                repeated.append(result)
            return result
        """,
    )
    export, out = export_of(tmp_path, channels)
    run = await run_cli(*export, emulator=flex_emulator, env=env)
    assert run.code == 1, run
    assert f"ignored {twice[0]} {twice[1]}: a result the batch was not waiting for" in run.stderr
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "-v"])
async def test_an_unexpected_exception_is_one_line_with_exit_code_70(
    flex_emulator: FlexEmulator, tmp_path: Path, verbose: bool
) -> None:
    env = patched(
        tmp_path,
        flex_emulator,
        """
        import flex_participants

        def broken(self, *args, **kwargs):
            raise RuntimeError("boom\\x1b[2J")

        flex_participants.FlexClient.participants = broken
        """,
    )
    kd, uo = flex_emulator.add_channel(participants=1)
    run = await run_cli(
        "list", kd, uo, *(["-v"] if verbose else []), emulator=flex_emulator, env=env
    )
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("flex-participants: error: internal error: RuntimeError: boom\\x1b[2J")
    assert "\x1b" not in run.stderr
    if verbose:
        assert run.code == 70
        assert "Traceback (most recent call last)" in run.stderr
        assert 'raise RuntimeError("boom\\x1b[2J")' in run.stderr
    else:
        assert_one_line_error(run, 70, "a bug in flex-participants", "-v shows the traceback")


async def _interrupted_export(
    emulator: FlexEmulator, tmp_path: Path
) -> tuple[list[str], Path, list[tuple[str, str]], Run]:
    """An export of 8 channels, interrupted (SIGINT) with 4 written and 2 in flight: its
    options, its output, its channels, and how it ended."""
    channels = add_channels(emulator, [2, 3, 1, 4, 2, 6, 1, 3])
    for _, uo in channels[4:]:  # these hang: the export is still running when interrupted
        emulator.add_fault(Fault("slow", delay=30, channel_sid=uo))
    export, out = export_of(tmp_path, channels)
    process = await start_cli(*export, "--concurrency", "2", emulator=emulator)
    async with asyncio.timeout(30):
        while not (journal_path(out).exists() and len(journaled(out)) == 4):
            assert process.returncode is None
            await asyncio.sleep(0.01)
        while emulator.stats.in_flight < 2:  # both workers wait on a hanging channel
            assert process.returncode is None
            await asyncio.sleep(0.01)
    process.send_signal(signal.SIGINT)
    return export, out, channels, await finish(process)


def _named_not_written(run: Run) -> list[tuple[str, str]]:
    return re.findall(r"^not written (KD\w+) (UO\w+): the export ended", run.stderr, re.M)


async def test_an_interrupted_export_names_what_it_did_not_write_and_resume_finishes(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    export, out, channels, run = await _interrupted_export(flex_emulator, tmp_path)

    assert run.code == 130, run
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "flex-participants: error: interrupted; run again with --resume to continue"
    )
    unwritten = _named_not_written(run)
    assert len(unwritten) == 2
    assert set(unwritten) <= set(channels[4:])
    assert "4 exported of 8" in run.stderr
    assert not lock_path(out).exists()

    flex_emulator.clear_faults()
    again = await run_cli(*export, "--resume", emulator=flex_emulator)
    assert again.code == 0, again
    assert_grouped_exactly_once(read_rows(out, "jsonl"), flex_emulator, channels)


async def test_an_interrupted_export_notes_in_its_journal_each_channel_it_did_not_write(
    flex_emulator: FlexEmulator, tmp_path: Path
) -> None:
    _, out, _, run = await _interrupted_export(flex_emulator, tmp_path)
    assert run.code == 130, run
    unwritten = _named_not_written(run)
    assert len(unwritten) == 2
    assert journaled_failures(out) == [(kd, uo, "CancelledError") for kd, uo in unwritten]


async def test_help_lists_every_exit_code() -> None:
    run = await run_cli("--help", emulator=None)
    assert run.code == 0, run
    for code, meaning in MEANINGS.items():
        assert f"  {int(code):<4} {meaning}" in run.stdout
    assert set(MEANINGS) == set(ExitCode)


def test_the_docs_table_of_exit_codes_is_the_programs() -> None:
    rows = re.findall(r"^\| `(\d+)` \| (.+?) \|$", DOCS.read_text(encoding="utf-8"), re.M)
    assert [int(code) for code, _ in rows] == [int(code) for code in ExitCode]
