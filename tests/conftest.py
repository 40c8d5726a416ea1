"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aioresponses import aioresponses

from flex_participants import FlexClient, RetryPolicy

from .helpers import ACCOUNT_SID, AUTH_TOKEN, Credentials
from .server import PagedServer, serve


class _StreamWriterStandIn:
    """What a finished request's writer reports: nothing left to send."""

    output_size = 0


class _CompatResponse(ClientResponse):
    """A ClientResponse that aioresponses can build on aiohttp >= 3.14.

    aioresponses 0.7.9 builds responses without the ``stream_writer`` argument that
    aiohttp 3.14 made required (pnuckowski/aioresponses#289). Drop this class, and the
    ``response_class`` default below, once a release with the fix is out.
    """

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _StreamWriterStandIn())
        super().__init__(method, url, **kwargs)


class _Mock(aioresponses):
    """aioresponses, with `_CompatResponse` passed as its own ``response_class=`` argument."""

    def add(self, url: Any, method: str = "GET", **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("response_class", _CompatResponse)
        super().add(url, method, **kwargs)


@pytest.fixture
def mock_http() -> Iterator[aioresponses]:
    """Intercept every aiohttp request of the test; see `aioresponses`."""
    with _Mock() as mocked:
        yield mocked


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> Credentials:
    """Test credentials, with every TWILIO_* variable of the environment removed."""
    for name in (
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
        "TWILIO_REGION",
        "TWILIO_EDGE",
        "FLEX_PARTICIPANTS_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}


@pytest_asyncio.fixture
async def paged_server() -> AsyncIterator[PagedServer]:
    """A running `PagedServer` on loopback, with no channels yet."""
    async with serve(PagedServer()) as server:
        yield server


@pytest.fixture
def client_for(credentials: Credentials) -> Callable[..., FlexClient]:
    """Build a `FlexClient` for a loopback server: ``client_for(server, **options)``."""

    def build(server: PagedServer, **options: Any) -> FlexClient:
        options.setdefault("retry", RetryPolicy(backoff_base=0.0))
        return FlexClient(**credentials, base_url=server.base_url, **options)

    return build
