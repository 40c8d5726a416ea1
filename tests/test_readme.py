"""The README's quickstart runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hatchling.metadata.core import ProjectMetadata
from hatchling.plugin.manager import PluginManager

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_quickstart_streams_every_participant_of_the_emulated_channel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    quickstart = python_blocks()[0]
    assert "asyncio.run(main())" in quickstart
    exec(compile(quickstart, str(README), "exec"), {"__name__": "readme"})  # noqa: S102
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 120
    assert all(line.startswith("UT") for line in lines)


def test_the_batch_example_yields_one_result_per_channel_and_names_the_unknown_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    batch = python_blocks()[1]
    exec(compile(batch, str(README), "exec"), {"__name__": "readme"})  # noqa: S102
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 41
    [failure] = [line for line in lines if "failed:" in line]
    assert failure.startswith("UO" + "0" * 32)
    assert "20404" in failure


def test_every_python_block_of_the_readme_is_run_here() -> None:
    assert len(python_blocks()) == 2


def test_the_readme_opens_with_the_demo_and_the_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```console\n(.*?)```", text, re.DOTALL)
    assert first_block is not None
    demo, tests = first_block.group(1).strip().splitlines()
    assert demo.endswith("python3 -m flex_participants demo")
    assert tests == "python3 -m pip install nox && nox"
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "\nnox\n" in ci


def test_the_long_description_is_the_readme_from_its_pitch_without_the_clone_commands() -> None:
    # What an index shows: the opening commands install from a clone, not from the index.
    metadata = ProjectMetadata(str(README.parent), PluginManager())
    description = metadata.core.readme
    assert metadata.core.readme_content_type == "text/markdown"
    assert description.startswith("# flex-participants\n\nAn asyncio client for Twilio Flex's")
    assert "pip install '.[" not in description
    assert "nox" not in description.split("## Install")[0]
    assert description.endswith(README.read_text(encoding="utf-8").split("## Install", 1)[1])
