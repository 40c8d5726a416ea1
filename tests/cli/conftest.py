"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from flex_participants.emulator import FlexEmulator


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[FlexEmulator]:
    async with FlexEmulator(seed=11) as running:
        yield running
