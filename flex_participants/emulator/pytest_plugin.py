"""The pytest plugin of flex-participants: the ``flex_emulator`` fixture.

Installed with the package (entry point ``pytest11``), so it is loaded in every pytest
session of every user: it imports nothing heavy at load time and never fails there. The
emulator is imported when a test asks for the fixture.

The fixture needs pytest-asyncio, which runs the emulator on the test's event loop; without
it, a test that asks for ``flex_emulator`` is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from . import FlexEmulator

try:
    import pytest_asyncio as _pytest_asyncio
except ImportError:  # pragma: no cover - exercised in a subprocess by the plugin's tests
    _pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["flex_emulator"]

_NEEDS_PYTEST_ASYNCIO = (
    "the flex_emulator fixture needs pytest-asyncio to run the emulator on the test's "
    "event loop: pip install pytest-asyncio"
)


async def _started_emulator() -> AsyncIterator[FlexEmulator]:
    from . import FlexEmulator

    async with FlexEmulator() as emulator:
        yield emulator


if _pytest_asyncio is not None:
    flex_emulator = _pytest_asyncio.fixture(_started_emulator, name="flex_emulator")
else:  # pragma: no cover - exercised in a subprocess by the plugin's tests

    @pytest.fixture(name="flex_emulator")
    def flex_emulator() -> FlexEmulator:
        """Skips the test: pytest-asyncio is not installed."""
        pytest.skip(_NEEDS_PYTEST_ASYNCIO)


flex_emulator.__doc__ = """A started `FlexEmulator` with no channels, stopped after the test.

Use it in an async test: ``FlexClient(**flex_emulator.client_kwargs())`` talks to it. Skips the
test, with the reason, if pytest-asyncio is not installed.
"""
