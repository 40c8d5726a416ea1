"""`_response`: an HTTP answer becomes a page of this channel or the typed error (HTTP mocked)."""

from __future__ import annotations

import json

import pytest
from aioresponses import aioresponses

from flex_participants import FlexClient, InvalidResponseError, RetryPolicy

from .helpers import KD, UO, Credentials, page_body, participant, participants_url

NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", "APPLICATION/JSON; charset=UTF-8", "application/hal+json"]
)
async def test_a_json_content_type_is_read_in_any_case(
    mock_http: aioresponses, credentials: Credentials, content_type: str
) -> None:
    body = json.dumps(page_body(range(2)))
    mock_http.get(participants_url(), body=body, content_type=content_type)
    async with FlexClient(**credentials, retry=NO_RETRY) as client:
        page = await client.fetch_page(KD, UO)

    assert [p.sid for p in page.participants] == [
        p["sid"] for p in json.loads(body)["participants"]
    ]


@pytest.mark.parametrize("status", [300, 301, 308, 399])
async def test_every_3xx_is_a_redirect_that_names_where_it_pointed(
    mock_http: aioresponses, credentials: Credentials, status: int
) -> None:
    mock_http.get(participants_url(), status=status, headers={"Location": "https://evil.example/"})
    async with FlexClient(**credentials) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.fetch_page(KD, UO)

    assert "unexpected redirect to 'https://evil.example/'" in str(caught.value)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [201, 204, 299])
async def test_a_2xx_other_than_200_is_an_unexpected_status(
    mock_http: aioresponses, credentials: Credentials, status: int
) -> None:
    mock_http.get(participants_url(), status=status, payload=page_body(range(1)))
    async with FlexClient(**credentials) as client:
        with pytest.raises(InvalidResponseError, match=f"unexpected status {status}") as caught:
            await client.fetch_page(KD, UO)

    assert caught.value.status == status


@pytest.mark.parametrize("sid", [[1], {"a": 1}, 7])
async def test_a_stream_whose_first_participant_has_a_sid_of_the_wrong_type_is_refused(
    mock_http: aioresponses, credentials: Credentials, sid: object
) -> None:
    # The stream reads the first sid before the page is built, to catch repeated pages: a
    # sid that is not a string must reach the shape check, not escape as a TypeError.
    body = page_body(range(0))
    body["participants"] = [participant(0, sid=sid), participant(1)]
    mock_http.get(participants_url(), payload=body)
    async with FlexClient(**credentials, retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError, match="sid"):
            async for _ in client.participants(KD, UO):
                pass
