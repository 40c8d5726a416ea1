"""Fixtures of the emulator's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from flex_participants.emulator import FlexEmulator


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[FlexEmulator]:
    """A running emulator with 30 channels generated from its seed."""
    async with FlexEmulator(seed=7, channels=30) as running:
        yield running


@pytest.fixture
def channel(emulator: FlexEmulator) -> tuple[str, str]:
    """A channel of 120 participants."""
    return emulator.add_channel(participants=120)
