"""The pytest plugin of flex-participants: the ``flex_emulator`` fixture.

Installed with the package (entry point ``pytest11``), so it is loaded in every pytest session
of every user who has the package: loading it must never fail or warn. The emulator itself is
imported only when a test asks for the fixture.

The fixture needs pytest-asyncio, which runs the emulator on the test's event loop; without it,
a test that asks for ``flex_emulator`` is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from . import FlexEmulator

try:
    import pytest_asyncio as _pytest_asyncio
except ImportError:  # pragma: no cover - run in a subprocess by the plugin's tests
    _pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["flex_emulator"]

NEEDS_PYTEST_ASYNCIO = (
    "the flex_emulator fixture needs pytest-asyncio, to run the emulator on the test's "
    "event loop: pip install pytest-asyncio"
)
"""Why a test that asks for ``flex_emulator`` is skipped when pytest-asyncio is missing."""


async def _running_emulator() -> AsyncIterator[FlexEmulator]:
    """A running `FlexEmulator` with no channels, stopped after the test.

    Use it in an async test: ``FlexClient(**flex_emulator.client_kwargs())`` talks to it, and
    ``flex_emulator.add_channel(...)`` gives it data. The test is skipped, with the reason, if
    pytest-asyncio is not installed.
    """
    from . import FlexEmulator

    async with FlexEmulator() as emulator:
        yield emulator


def _skip_without_pytest_asyncio() -> FlexEmulator:
    """Skips the test that asks for it: pytest-asyncio is not installed."""
    pytest.skip(NEEDS_PYTEST_ASYNCIO)


if _pytest_asyncio is not None:
    flex_emulator = _pytest_asyncio.fixture(_running_emulator, name="flex_emulator")
else:  # pragma: no cover - run in a subprocess by the plugin's tests
    flex_emulator = pytest.fixture(_skip_without_pytest_asyncio, name="flex_emulator")
