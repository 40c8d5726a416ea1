"""What the emulator's tests share: plain aiohttp requests to it, and the answers they saw.

Requests are made with plain aiohttp, never the SDK's client: what is checked is what goes
over the wire.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from flex_participants.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Fault, FlexEmulator

AUTH = aiohttp.encode_basic_auth(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
MIB = 1 << 20


@attrs.frozen
class Answer:
    """A response as the test saw it."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def participants_url(base_url: str, channel: tuple[str, str]) -> str:
    """The participants endpoint of ``channel`` on the emulator at ``base_url``."""
    kd, uo = channel
    return f"{base_url}/v1/Interactions/{kd}/Channels/{uo}/Participants"


def new_channel_url(emulator: FlexEmulator, participants: int = 2) -> str:
    """The participants URL of a new channel of ``participants`` participants."""
    return participants_url(emulator.base_url, emulator.add_channel(participants=participants))


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    authorization: str | None = AUTH,
    method: str = "GET",
    **query: str | int,
) -> Answer:
    """Request ``url`` exactly as spelled (percent-escapes and all), with ``query`` added and
    the emulator's credentials unless told otherwise (``None``: no ``Authorization``)."""
    target = URL(url, encoded=True)
    if query:
        target = target.update_query({k: str(v) for k, v in query.items()})
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with session.request(method, target, headers=headers) as response:
        return Answer(response.status, response.headers, await response.read())


@contextlib.asynccontextmanager
async def opened(session: aiohttp.ClientSession, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET ``url`` as `fetch` does, but yield the response as soon as its headers are in,
    its body left for the test to read (or not)."""
    async with session.get(URL(url, encoded=True), headers={"Authorization": AUTH}) as response:
        yield response


AnswerWith = Callable[[Fault], Awaitable[Answer]]
"""The ``answer_with`` fixture: add a fault, then GET the first page of the channel."""
