"""A refusal always says why: every value the library would refuse is refused by the parser
first, in the library's own words, before any file is touched; and whatever ends an export's
batch early is printed, never a bare exit code 1."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from flex_participants import FlexClient, InvalidArgumentError
from flex_participants.cli._export import ExportReport
from flex_participants.cli._main import main
from flex_participants.cli._render import print_report
from flex_participants.emulator import MAX_CHANNELS

from ..helpers import KD, UO

SID, TOKEN = "AC" + "0" * 32, "token"
CREDENTIALS = ["--account-sid", SID, "--auth-token", TOKEN]


def _client(**options: object) -> FlexClient:
    return FlexClient(SID, TOKEN, **options)  # type: ignore[arg-type]


# What the library says of each value: the call it refuses, as a caller of the SDK makes it.
LIBRARY: dict[str, Callable[[], object]] = {
    "page_size=1001": lambda: _client().participants(KD, UO, page_size=1001),
    "page_size=0": lambda: _client().participants(KD, UO, page_size=0),
    "limit=-1": lambda: _client().participants(KD, UO, limit=-1),
    "concurrency=0": lambda: _client().participants_for_channels([], concurrency=0),
    "max_concurrency=0": lambda: _client(max_concurrency=0),
    "timeout=0": lambda: _client(timeout=0.0),
    "timeout=inf": lambda: _client(timeout=float("inf")),
    "rate_limit=1e-9": lambda: _client(rate_limit=1e-9),
    "rate_limit=nan": lambda: _client(rate_limit=float("nan")),
    "burst=0": lambda: _client(rate_limit=20.0, burst=0),
}
LIST = ["list", KD, UO]
EXPORT = ["export", "--channels", "channels.csv", "--out", "out.jsonl"]
CASES = [
    ("page_size=1001", [*EXPORT, "--page-size", "1001"]),
    ("page_size=1001", [*LIST, "--page-size", "1001"]),
    ("page_size=1001", ["demo", "--page-size", "1001"]),
    ("page_size=0", [*EXPORT, "--page-size", "0"]),
    ("limit=-1", [*LIST, "--limit", "-1"]),
    ("concurrency=0", [*EXPORT, "--concurrency", "0"]),
    ("max_concurrency=0", [*EXPORT, "--max-concurrency", "0"]),
    ("max_concurrency=0", ["demo", "--max-concurrency", "0"]),
    ("timeout=0", [*LIST, "--timeout", "0"]),
    ("timeout=inf", [*EXPORT, "--timeout", "inf"]),
    ("rate_limit=1e-9", [*EXPORT, "--rate-limit", "1e-9"]),
    ("rate_limit=nan", [*LIST, "--rate-limit", "nan"]),
    ("burst=0", [*EXPORT, "--rate-limit", "20", "--burst", "0"]),
]


def _library_says(case: str) -> str:
    with pytest.raises(InvalidArgumentError) as refused:
        LIBRARY[case]()
    return str(refused.value)


@pytest.mark.parametrize(("case", "argv"), CASES, ids=[" ".join(argv) for _, argv in CASES])
def test_a_value_the_library_refuses_is_refused_by_the_parser_in_its_words(
    case: str,
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    words = _library_says(case)
    credentials = [] if argv[0] == "demo" else CREDENTIALS
    assert main([*argv, *credentials]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"flex-participants {argv[0]}: error: argument ")
    assert words in err
    assert list(tmp_path.iterdir()) == []  # no output, no journal, no lock


@pytest.mark.parametrize(("command", "minimum"), [("emulator", 0), ("demo", 1)])
def test_the_commands_that_build_an_emulator_refuse_more_channels_than_it_can_build(
    command: str, minimum: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--channels", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert f"channels must be an integer from {minimum} to {MAX_CHANNELS}, got {10**12}" in err


def test_an_error_that_ended_the_batch_is_printed_even_with_no_channel_under_way() -> None:
    report = ExportReport(Path("out.jsonl"), "jsonl", started=True)
    report.batch_error = InvalidArgumentError("page_size must be an integer from 1 to 1000")
    console = Console(file=io.StringIO(), width=200)
    print_report(console, report, "export")
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert (
        "the export ended early: InvalidArgumentError: page_size must be an integer from 1 to 1000"
        in text
    )
