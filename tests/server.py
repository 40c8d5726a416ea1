"""A small loopback server of the endpoint whose every request the tests can see and steer.

The product's emulator covers the API; this one exists so that a test can hold a response
until it says so (`hold`), and read the exact order of events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from flex_participants import Participant

from .helpers import participant, sid, twilio_error


@attrs.define
class Seen:
    """One request as the server saw it."""

    channel_sid: str
    page: int
    query: dict[str, str]
    authorization: str | None
    at: float = attrs.field(eq=False)
    """The loop time when the request arrived."""
    request: web.Request = attrs.field(eq=False, repr=False)


Hook = Callable[[Seen], Awaitable[web.StreamResponse | None]]


@attrs.define
class PagedServer:
    """Serves channels of numbered participants, paged by ``Page`` and ``PageSize``."""

    channels: dict[str, int] = attrs.field(factory=dict)
    """channel SID -> number of participants."""
    hook: Hook | None = None
    """Awaited before each response; may return a response to send instead."""
    seen: list[Seen] = attrs.field(factory=list)
    events: list[str] = attrs.field(factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    base_url: str = ""
    _arrived: asyncio.Condition = attrs.field(factory=asyncio.Condition)

    async def wait_for_requests(self, count: int) -> None:
        """Wait until the server has seen ``count`` requests (fails the test after 10 s)."""
        async with asyncio.timeout(10), self._arrived:
            await self._arrived.wait_for(lambda: len(self.seen) >= count)

    def add_channel(self, n: int, count: int) -> str:
        channel_sid = sid("UO", n)
        self.channels[channel_sid] = count
        return channel_sid

    def requests_for(self, channel_sid: str) -> list[Seen]:
        return [s for s in self.seen if s.channel_sid == channel_sid]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        channel_sid = request.match_info["channel"]
        page = int(request.query.get("Page", "0"))
        seen = Seen(
            channel_sid,
            page,
            dict(request.query),
            request.headers.get("Authorization"),
            asyncio.get_running_loop().time(),
            request,
        )
        self.seen.append(seen)
        self.events.append(f"request {channel_sid[-4:]} page {page}")
        async with self._arrived:
            self._arrived.notify_all()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.hook is not None:
                replacement = await self.hook(seen)
                if replacement is not None:
                    return replacement
            if channel_sid not in self.channels:
                return web.json_response(twilio_error(404, 20404, "not found"), status=404)
            return web.json_response(self._page(request, channel_sid, page))
        finally:
            self.in_flight -= 1

    def _page(self, request: web.Request, channel_sid: str, page: int) -> dict[str, Any]:
        size = int(request.query.get("PageSize", "50"))
        total = self.channels[channel_sid]
        start = page * size
        numbers = range(start, min(start + size, total))
        url = f"{self.base_url}{request.path}"
        has_next = start + size < total
        return {
            "participants": [participant(n, channel_sid=channel_sid) for n in numbers],
            "meta": {
                "key": "participants",
                "url": f"{url}?PageSize={size}&Page={page}",
                "page": page,
                "page_size": size,
                "first_page_url": f"{url}?PageSize={size}&Page=0",
                "next_page_url": (
                    f"{url}?PageSize={size}&Page={page + 1}&PageToken=PT{page + 1}x"
                    if has_next
                    else None
                ),
                "previous_page_url": None,
            },
        }


@asynccontextmanager
async def serve(server: PagedServer) -> AsyncIterator[PagedServer]:
    """Run ``server`` on a free loopback port for the duration of the block."""
    app = web.Application()
    app.router.add_get(
        "/v1/Interactions/{interaction}/Channels/{channel}/Participants", server.handle
    )
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    server.base_url = str(test_server.make_url("")).rstrip("/")
    try:
        yield server
    finally:
        await test_server.close()


def idle_tasks() -> set[asyncio.Task[Any]]:
    """The SDK's tasks (all named ``flex_participants ...``) that have not finished."""
    return {
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("flex_participants") and not t.done()
    }


async def settle(rounds: int = 20) -> None:
    """Let cancelled tasks and callbacks run to their end."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def rewrite_next_page_url(
    server: PagedServer, channel_sid: str, to: Callable[[Seen], str | None]
) -> None:
    """Serve ``channel_sid``'s pages as usual, but with ``meta.next_page_url`` set by ``to``."""

    async def hook(seen: Seen) -> web.StreamResponse:
        body = server._page(seen.request, channel_sid, seen.page)
        body["meta"]["next_page_url"] = to(seen)
        return web.json_response(body)

    server.hook = hook


async def sids_until(
    error: type[Exception], participants: AsyncIterator[Participant], *, match: str
) -> list[str | None]:
    """The SIDs a stream yields before it raises ``error`` (failing the test if it does not)."""
    got: list[str | None] = []

    async def consume() -> None:
        async for item in participants:
            got.append(item.sid)

    with pytest.raises(error, match=match):
        await consume()
    return got
