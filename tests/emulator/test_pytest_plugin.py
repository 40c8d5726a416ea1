"""The ``flex_emulator`` fixture of the pytest plugin, in this session and in fresh ones."""

from __future__ import annotations

import textwrap

import aiohttp
import pytest

from flex_participants import FlexClient
from flex_participants.emulator import FlexEmulator
from flex_participants.emulator.pytest_plugin import NEEDS_PYTEST_ASYNCIO

pytest_plugins = ["pytester"]

_USES_THE_FIXTURE = """
    import pytest
    from flex_participants import FlexClient

    @pytest.mark.asyncio
    async def test_reads_a_channel(flex_emulator):
        kd, uo = flex_emulator.add_channel(participants=3)
        async with FlexClient(**flex_emulator.client_kwargs()) as client:
            assert len(await client.participants(kd, uo).collect()) == 3
"""


async def test_flex_emulator_is_running_and_has_no_channels(flex_emulator: FlexEmulator) -> None:
    assert flex_emulator.running
    assert flex_emulator.channels == []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{flex_emulator.base_url}/__emulator__/stats") as response:
            assert response.status == 200


async def test_flex_emulator_serves_a_flex_client(flex_emulator: FlexEmulator) -> None:
    kd, uo = flex_emulator.add_channel(participants=75)
    async with FlexClient(**flex_emulator.client_kwargs()) as client:
        participants = await client.participants(kd, uo).collect()
    assert len(participants) == 75


def test_flex_emulator_works_in_a_strict_mode_session_with_warnings_as_errors(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = strict
        asyncio_default_fixture_loop_scope = function
        asyncio_default_test_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(textwrap.dedent(_USES_THE_FIXTURE))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_flex_emulator_skips_with_the_reason_without_pytest_asyncio(
    pytester: pytest.Pytester,
) -> None:
    # pytest-asyncio is installed here, so the session hides it before the plugin is loaded:
    # the entry point's copy is disabled, and the conftest loads the plugin afterwards.
    pytester.makeconftest(
        """
        import sys

        sys.modules["pytest_asyncio"] = None
        pytest_plugins = ["flex_participants.emulator.pytest_plugin"]
        """
    )
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        """
        def test_needs_the_emulator(flex_emulator):
            raise AssertionError("not reached")
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:flex_participants", "-p", "no:asyncio", "-p", "no:cacheprovider", "-rs"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*{NEEDS_PYTEST_ASYNCIO}*"])
