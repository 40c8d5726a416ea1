"""Unit tests without any server: aiohttp's requests answered by aioresponses.

aioresponses 0.7.9 builds its responses without the ``stream_writer`` argument that aiohttp
3.14 made required (pnuckowski/aioresponses#289): every mocked request then fails with a
TypeError. Until a release with the fix is out, pass a response class that supplies it, with
aioresponses' own ``response_class=`` argument, as below.

Like the emulator's sample, the file needs no configuration (``pytestmark`` marks its tests
for pytest-asyncio's default strict mode):

    pip install flex-participants pytest pytest-asyncio aioresponses
    pytest testing_with_aioresponses.py
"""

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses

from flex_participants import FlexClient, NotFoundError

pytestmark = pytest.mark.asyncio


class _StreamWriterStandIn:
    """What a finished request's writer reports: nothing left to send."""

    output_size = 0


class CompatResponse(ClientResponse):
    """A ClientResponse that aioresponses 0.7.9 can build on aiohttp >= 3.14."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _StreamWriterStandIn())
        super().__init__(method, url, **kwargs)


KD = "KD" + "a" * 32
UO = "UO" + "b" * 32
URL = f"https://flex-api.twilio.com/v1/Interactions/{KD}/Channels/{UO}/Participants"


def page(*types: str, first: int = 0, next_page_url: str | None = None) -> dict[str, Any]:
    """A page as the API sends it, its participants numbered from ``first``.

    Participant SIDs are unique: a page that starts with a participant already delivered
    is refused as a paging loop, so number the pages' participants on.
    """
    return {
        "participants": [
            {"sid": f"UT{n:032x}", "type": kind} for n, kind in enumerate(types, start=first)
        ],
        "meta": {
            "key": "participants",
            "url": URL,
            "page": 0,
            "page_size": 50,
            "first_page_url": URL,
            "next_page_url": next_page_url,
            "previous_page_url": None,
        },
    }


@pytest.fixture
def mock_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-a-real-token")
    monkeypatch.delenv("FLEX_PARTICIPANTS_BASE_URL", raising=False)
    with aioresponses() as mocked:
        yield mocked


async def test_follows_next_page_url(mock_http: aioresponses) -> None:
    second = URL + "?PageSize=50&Page=1&PageToken=PT1"
    mock_http.get(URL, payload=page("agent", next_page_url=second), response_class=CompatResponse)
    mock_http.get(second, payload=page("customer", first=1), response_class=CompatResponse)
    async with FlexClient() as client:
        participants = await client.participants(KD, UO).collect()
    assert [str(p.type) for p in participants] == ["agent", "customer"]


async def test_a_missing_channel_is_not_found(mock_http: aioresponses) -> None:
    error = {"code": 20404, "message": "not found", "more_info": "", "status": 404}
    mock_http.get(URL, status=404, payload=error, response_class=CompatResponse)
    async with FlexClient() as client:
        with pytest.raises(NotFoundError) as caught:
            await client.participants(KD, UO).collect()
    assert caught.value.code == 20404
