"""Fixtures of the emulator's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from flex_participants.emulator import Fault, FlexEmulator

from .helpers import Answer, AnswerWith, fetch, participants_url


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


@pytest.fixture
def channel_url(emulator: FlexEmulator, channel: tuple[str, str]) -> str:
    """The participants URL of `channel` on the running emulator."""
    return participants_url(emulator.base_url, channel)


@pytest.fixture
def answer_with(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> AnswerWith:
    """Add a fault to the emulator; the answer to a GET of `channel_url` made then."""

    async def answer(fault: Fault) -> Answer:
        emulator.add_fault(fault)
        return await fetch(session, channel_url)

    return answer
