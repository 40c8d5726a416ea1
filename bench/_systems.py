"""The three systems under test, each behind the same small interface.

Every system opens its client in ``__aenter__`` (not timed) and closes it in ``__aexit__``;
`stream` and `batch` are what is timed. A system hands each participant SID to ``sink`` (a
`list.append` or a `Fingerprint.add`), so that what it returned can be checked against the
dataset without the check costing the same for a million SIDs as for a thousand.

- ``sdk``: this package's `FlexClient` (``participants``, ``participants_for_channels``);
  options are `FlexClient`'s keyword arguments. Given a concurrency, it has no rate limit,
  as for a server without one; given none, it is `FlexClient`'s defaults.
- ``twilio``: the official ``twilio`` package with its aiohttp client, ``stream_async``;
  option ``max_retries``, as `AsyncTwilioHttpClient` takes it.
- ``reference``: the least hand-written code that does the job: one aiohttp session, a
  semaphore, orjson, dicts only, the next page requested while this one is consumed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp

from flex_participants import ClientStats, FlexClient
from flex_participants.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

__all__ = [
    "SYSTEMS",
    "BatchSink",
    "FailSink",
    "SdkSystem",
    "Sink",
    "System",
    "import_all",
    "open_system",
    "quiet_sdk_log",
]

CONCURRENCY_DEFAULT = 10
"""Channels at a time for a peer given no concurrency: `FlexClient`'s own default."""

Sink = Callable[[str | None], None]
BatchSink = Callable[[str, list[str | None]], None]
"""Called once per channel with its channel SID and the SIDs of its participants."""
FailSink = Callable[[str, BaseException], None]
"""Called once per channel that failed, with its channel SID and the error."""


class System(Protocol):
    """What every system offers the scenarios."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def stream(
        self, channel: tuple[str, str], page_size: int, consume: float, sink: Sink
    ) -> None:
        """Stream one channel; sleep ``consume`` seconds after each ``page_size`` participants."""

    async def batch(
        self,
        channels: Iterable[tuple[str, str]],
        page_size: int,
        sink: BatchSink,
        failed: FailSink | None = None,
    ) -> None:
        """Fetch every channel, ``concurrency`` at a time.

        A channel that fails raises, ending the batch; with ``failed``, it is handed to
        ``failed`` instead and the batch goes on.
        """


async def _consume(records: AsyncIterator[Any], page_size: int, consume: float, sink: Sink) -> None:
    """Sink each record's SID, pausing ``consume`` seconds after each page's worth: the same
    consumer for the SDK and twilio, so that neither is timed with a different loop."""
    count = 0
    async for record in records:
        sink(record.sid)
        count += 1
        if consume and count % page_size == 0:
            await asyncio.sleep(consume)
    if consume and count % page_size:
        await asyncio.sleep(consume)


class _Closing:
    name = ""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SdkSystem(_Closing):
    """This package."""

    name = "sdk"

    def __init__(self, base_url: str, concurrency: int | None, **options: Any) -> None:
        """``concurrency`` ``None``: the client's own defaults, as a new user builds it. Given:
        that many requests in flight, and no rate limit unless ``options`` say otherwise,
        for a server that has no budget to find (every scenario's but the budget's)."""
        self._base_url = base_url
        self._concurrency = concurrency
        self._options = options
        if concurrency is not None:
            self._options["max_concurrency"] = concurrency
            self._options.setdefault("rate_limit", None)
        self._client: FlexClient | None = None

    async def __aenter__(self) -> Self:
        self._client = FlexClient(
            DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, base_url=self._base_url, **self._options
        )
        await self._client.__aenter__()
        return self

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def client_stats(self) -> ClientStats:
        """The client's counters (`FlexClient.stats`): its requests and 429s so far."""
        assert self._client is not None
        return self._client.stats()

    async def stream(
        self, channel: tuple[str, str], page_size: int, consume: float, sink: Sink
    ) -> None:
        assert self._client is not None
        async with self._client.participants(*channel, page_size=page_size) as stream:
            await _consume(stream, page_size, consume, sink)

    async def batch(
        self,
        channels: Iterable[tuple[str, str]],
        page_size: int,
        sink: BatchSink,
        failed: FailSink | None = None,
    ) -> None:
        assert self._client is not None
        async with self._client.participants_for_channels(
            channels, page_size=page_size, concurrency=self._concurrency
        ) as results:
            async for result in results:
                if result.error is None:
                    sink(result.channel_sid, [p.sid for p in result.participants])
                elif failed is None:
                    raise result.error
                else:
                    failed(result.channel_sid, result.error)


class _Peer(_Closing):
    """A peer's batch: each channel's SIDs fetched by ``_sids``, scheduled by ``_each``; a
    channel that fails raises, or goes to ``failed``."""

    async def _sids(self, channel: tuple[str, str], page_size: int) -> list[str | None]:
        raise NotImplementedError

    async def _each(
        self, channels: Iterable[tuple[str, str]], one: Callable[[tuple[str, str]], Awaitable[None]]
    ) -> None:
        raise NotImplementedError

    async def batch(
        self,
        channels: Iterable[tuple[str, str]],
        page_size: int,
        sink: BatchSink,
        failed: FailSink | None = None,
    ) -> None:
        async def one(channel: tuple[str, str]) -> None:
            try:
                sids = await self._sids(channel, page_size)
            except Exception as exc:
                if failed is None:
                    raise
                failed(channel[1], exc)
                return
            sink(channel[1], sids)

        await self._each(channels, one)


class TwilioSystem(_Peer):
    """The official ``twilio`` package, as its docs show it used from asyncio."""

    name = "twilio"

    def __init__(
        self, base_url: str, concurrency: int | None, *, max_retries: int | None = None
    ) -> None:
        self._base_url = base_url
        self._concurrency = concurrency or CONCURRENCY_DEFAULT
        self._max_retries = max_retries
        self._http: Any = None
        self._client: Any = None

    async def __aenter__(self) -> Self:
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        # Its aiohttp session is made in the constructor: inside the loop, then.
        self._http = AsyncTwilioHttpClient(max_retries=self._max_retries)
        self._client = Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, http_client=self._http)
        self._client.flex_api.base_url = self._base_url
        return self

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _participants(self, channel: tuple[str, str]) -> Any:
        interaction_sid, channel_sid = channel
        v1 = self._client.flex_api.v1
        return v1.interaction(interaction_sid).channels(channel_sid).participants

    async def stream(
        self, channel: tuple[str, str], page_size: int, consume: float, sink: Sink
    ) -> None:
        records = await self._participants(channel).stream_async(page_size=page_size)
        await _consume(records, page_size, consume, sink)

    async def _sids(self, channel: tuple[str, str], page_size: int) -> list[str | None]:
        records = await self._participants(channel).stream_async(page_size=page_size)
        return [record.sid async for record in records]

    async def _each(
        self, channels: Iterable[tuple[str, str]], one: Callable[[tuple[str, str]], Awaitable[None]]
    ) -> None:
        # One task per channel, as its docs show, under a semaphore.
        semaphore = asyncio.Semaphore(self._concurrency)

        async def bounded(channel: tuple[str, str]) -> None:
            async with semaphore:
                await one(channel)

        async with asyncio.TaskGroup() as group:
            for channel in channels:
                group.create_task(bounded(channel))


class ReferenceSystem(_Peer):
    """The least code that does the job: the yardstick of what Python + aiohttp can do."""

    name = "reference"

    def __init__(self, base_url: str, concurrency: int | None) -> None:
        self._base_url = base_url
        self._concurrency = concurrency or CONCURRENCY_DEFAULT
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(self._concurrency)
        self._headers = {
            "Authorization": aiohttp.BasicAuth(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN).encode(),
            "Accept": "application/json",
        }

    async def __aenter__(self) -> Self:
        import orjson

        self._loads = orjson.loads
        connector = aiohttp.TCPConnector(limit=self._concurrency)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _first_url(self, channel: tuple[str, str], page_size: int) -> str:
        interaction_sid, channel_sid = channel
        return (
            f"{self._base_url}/v1/Interactions/{interaction_sid}/Channels/{channel_sid}"
            f"/Participants?PageSize={page_size}"
        )

    async def _get(self, url: str) -> Any:
        assert self._session is not None
        async with (
            self._semaphore,
            self._session.get(url, headers=self._headers) as response,
        ):
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {response.status}")
        return self._loads(body)

    async def stream(
        self, channel: tuple[str, str], page_size: int, consume: float, sink: Sink
    ) -> None:
        page = await self._get(self._first_url(channel, page_size))
        while True:
            next_url = page["meta"]["next_page_url"]
            ahead = asyncio.create_task(self._get(next_url)) if next_url else None
            try:
                for participant in page["participants"]:
                    sink(participant["sid"])
                if consume:
                    await asyncio.sleep(consume)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                raise
            if ahead is None:
                return
            page = await ahead

    async def _sids(self, channel: tuple[str, str], page_size: int) -> list[str | None]:
        found: list[str | None] = []
        url: str | None = self._first_url(channel, page_size)
        while url:
            page = await self._get(url)
            found.extend([participant["sid"] for participant in page["participants"]])
            url = page["meta"]["next_page_url"]
        return found

    async def _each(
        self, channels: Iterable[tuple[str, str]], one: Callable[[tuple[str, str]], Awaitable[None]]
    ) -> None:
        # ``concurrency`` workers pulling from the one iterator of channels.
        source: Iterator[tuple[str, str]] = iter(channels)

        async def worker() -> None:
            for channel in source:
                await one(channel)

        async with asyncio.TaskGroup() as group:
            for _ in range(self._concurrency):
                group.create_task(worker())


SYSTEMS: dict[str, type[SdkSystem | TwilioSystem | ReferenceSystem]] = {
    "sdk": SdkSystem,
    "twilio": TwilioSystem,
    "reference": ReferenceSystem,
}


def import_all() -> None:
    """Import what every system needs, so that no import happens in a timed run.

    A worker process imports only the system it runs, so that its memory is that system's.
    """
    import importlib

    for module in (
        "orjson",
        "twilio.http.async_http_client",
        "twilio.rest",
        "twilio.rest.flex_api.v1.interaction.interaction_channel.interaction_channel_participant",
    ):
        importlib.import_module(module)


def quiet_sdk_log() -> None:
    """Keep the SDK's warnings (one per retried 429) off the benchmark's output: the table
    counts the 429s, and the record keeps the errors of the channels that failed."""
    logging.getLogger("flex_participants").addHandler(logging.NullHandler())


def open_system(name: str, base_url: str, concurrency: int | None, **options: Any) -> System:
    """The system called ``name``, not yet opened: ``async with open_system(...) as s``.

    ``concurrency`` ``None`` is the system's own default; ``options`` are the system's own
    settings (see the module's docstring).
    """
    system: System = SYSTEMS[name](base_url, concurrency, **options)
    return system
