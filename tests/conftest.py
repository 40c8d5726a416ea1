"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aioresponses import aioresponses

from bench._fleet import RedisServer as _RedisServer
from bench._fleet import free_port as free_port
from bench._fleet import redis_binary
from flex_participants import FlexClient, RetryPolicy

from .helpers import ACCOUNT_SID, AUTH_TOKEN, CLIENT_VARIABLES, Credentials
from .server import PagedServer, serve

if TYPE_CHECKING:
    # The redis extra is optional: only the tests that talk to Redis import it at run time.
    import redis.asyncio as aioredis


# A run of the tests started in the background (`nox &` in a script) inherits SIGINT ignored,
# and so would every program the tests start and then interrupt with it: their Pythons would
# never raise KeyboardInterrupt. A handler, unlike an ignored signal, is not inherited.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
    for name in CLIENT_VARIABLES:
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
        # Unpaced unless a test asks for a rate: the rate's own tests are in test_limit.py
        # and test_rate_budget.py; here it would only slow tests of other behaviour down.
        options.setdefault("rate_limit", None)
        return FlexClient(**credentials, base_url=server.base_url, **options)

    return build


# -- a redis-server per session, and short-lived ones for the failure tests ---------------


class RedisServer(_RedisServer):
    """The benchmark's redis-server (a free loopback port, no persistence), with the clients
    the tests connect through."""

    def url(self, db: int = 0) -> str:
        """The server's ``redis://`` URL, for database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> aioredis.Redis:
        """A new asyncio client of the server; the caller closes it."""
        import redis.asyncio as aioredis  # here: the redis extra is optional

        return aioredis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def stop(self) -> None:
        """Stop the server now, as a failure test does mid-test; the block's end then does
        nothing more."""
        self.close()


@contextlib.contextmanager
def redis_server_or_skip() -> Iterator[RedisServer]:
    """A redis-server of its own, stopped on exit; the test is skipped if none can start."""
    if redis_binary() is None:
        pytest.skip(
            "no redis-server on PATH or at /usr/bin/redis-server (apt-get install redis-server)"
        )
    server = RedisServer()
    try:
        server.__enter__()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"redis-server could not be started: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests that use it are skipped without one."""
    with redis_server_or_skip() as server:
        yield server


# -- an optional dependency, as if it were not installed ---------------------------------


@contextlib.contextmanager
def uninstalled(package: str, *importers: str) -> Iterator[None]:
    """Within the block, ``package`` cannot be imported, as if it were not installed, and the
    modules ``importers`` (with their submodules) are imported afresh; all are put back after."""

    def hidden(name: str) -> bool:
        return any(name == top or name.startswith(f"{top}.") for top in (package, *importers))

    saved = {name: module for name, module in sys.modules.items() if hidden(name)}
    for name in saved:
        del sys.modules[name]
    # What an absent package looks like to the import system.
    sys.modules[package] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in [name for name in sys.modules if hidden(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
