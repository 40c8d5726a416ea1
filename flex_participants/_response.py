"""The response step: an HTTP answer becomes a page of this channel, or the typed error.

`read_body` reads a body under the size cap; `error_from_response` builds the typed error of
an error status from Twilio's body; `decode_response` turns any other status into a
`FetchedPage` or `InvalidResponseError`. A `FetchedPage` is the one page type of the flow:
its paging fields are read at once, its models are built (and checked to be of the channel
asked for) on `FetchedPage.build`.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from ._convert import decode_page, loads, structure_page
from ._errors import (
    AuthenticationError,
    FlexAPIError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
)
from ._models import ParticipantPage
from ._retry import parse_retry_after

__all__ = [
    "FetchedPage",
    "concurrent_requests",
    "decode_response",
    "error_from_response",
    "read_body",
]

_Channel = tuple[str, str]


def error_from_response(
    url: str, status: int, reason: str | None, headers: CIMultiDictProxy[str], body: bytes
) -> FlexAPIError:
    """Build the typed error for an HTTP error status, from Twilio's error body if it has one."""
    code: int | None = None
    more_info: str | None = None
    message = reason or "error"
    try:
        data = loads(body)
    except ValueError:
        content_type = headers.get("Content-Type", "no content type")
        message = f"{message} (body is not JSON: {len(body)} bytes of {content_type})"
    else:
        if isinstance(data, dict):
            if isinstance(data.get("message"), str):
                message = data["message"]
            if type(data.get("code")) is int:
                code = data["code"]
            if isinstance(data.get("more_info"), str):
                more_info = data["more_info"]
    cls: type[FlexAPIError] = FlexAPIError
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    error = cls(message, status=status, url=url, code=code, more_info=more_info)
    if status in (429, 503):
        error.retry_after = parse_retry_after(headers.get("Retry-After"))
    return error


async def read_body(response: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """The whole body, or `ResponseTooLargeError` as soon as it passes ``limit`` bytes.

    Counted after decompression, chunk by chunk as aiohttp inflates it, so that neither a
    huge body nor a small compressed one that inflates without end is ever held whole.
    """
    declared = response.content_length
    if declared is not None and declared > limit and not response.headers.get("Content-Encoding"):
        raise _too_large(f"its Content-Length is {declared} bytes", limit, url, response.status)
    chunks: list[bytes] = []
    size = 0
    content = response.content
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"it passed {limit} bytes", limit, url, response.status)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(how: str, limit: int, url: str, status: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"response body refused: {how}, over max_body_size ({limit} bytes)", url=url, status=status
    )


def decode_response(
    url: str, status: int, headers: CIMultiDictProxy[str], body: bytes, channel: _Channel
) -> FetchedPage:
    """The page of a 200 from ``url``, for ``channel``; any other status below 400 (a
    redirect, which is never followed) is an `InvalidResponseError`.

    Raises:
        InvalidResponseError: not a 200, not JSON, or not a page of participants.
    """
    if status != 200:
        if 300 <= status < 400:
            location = headers.get("Location", "nowhere")
            raise InvalidResponseError(
                f"unexpected redirect to {location!r}; redirects are not followed, so that "
                "credentials go nowhere else",
                url=url,
                status=status,
            )
        raise InvalidResponseError(f"unexpected status {status}", url=url, status=status)
    content_type = headers.get("Content-Type", "")
    if content_type and "json" not in content_type.lower():
        raise InvalidResponseError(
            f"expected JSON, got {content_type!r} ({len(body)} bytes)", url=url, status=status
        )
    return FetchedPage(decode_page(body, url), url, channel)


class FetchedPage:
    """A page as it arrived: paging reads it at once, its models are built on `build`.

    Built only from a body `decode_page` checked, so that a stream can request the next page
    before it spends time on the models of this one.

    Attributes:
        url: the URL the page was fetched from.
        next_page_url: the page's ``meta.next_page_url`` (a string or ``None``).
        count: how many participants the page holds.
    """

    __slots__ = ("_channel", "_data", "count", "next_page_url", "url")

    def __init__(self, data: dict[str, Any], url: str, channel: _Channel) -> None:
        self._data = data
        self._channel = channel
        self.url = url
        self.next_page_url: str | None = data["meta"].get("next_page_url")
        self.count: int = len(data["participants"])

    @property
    def first_sid(self) -> str | None:
        """The ``sid`` of the page's first participant, if it has a string one."""
        participants = self._data["participants"]
        first = participants[0] if participants else None
        sid = first.get("sid") if type(first) is dict else None
        return sid if type(sid) is str else None

    def build(self) -> ParticipantPage:
        """The page's models, checked to be of the channel asked for.

        Raises:
            InvalidResponseError: a participant is not of the shape the API promises, or
                belongs to another channel.
        """
        page = structure_page(self._data, self.url)
        _check_channel(page, self._channel, self.url)
        return page


def _check_channel(page: ParticipantPage, channel: _Channel, url: str) -> None:
    """Refuse a page whose participants name another interaction or channel than the one
    requested: delivered, they would mix another channel's participants into this one.
    A SID left null is no claim, and passes."""
    interaction_sid, channel_sid = channel
    for index, participant in enumerate(page.participants):
        # Two comparisons per participant on the usual path; the rest only on a mismatch.
        if (
            participant.channel_sid == channel_sid
            and participant.interaction_sid == interaction_sid
        ):
            continue
        theirs = participant.interaction_sid, participant.channel_sid
        if _same_channel(theirs, channel):
            continue
        raise InvalidResponseError(
            f"not a page of this channel: participants[{index}] belongs to "
            f"{theirs[0]}/{theirs[1]}, not to {interaction_sid}/{channel_sid}",
            url=url,
            status=200,
            is_json=True,
        )


def _same_channel(theirs: tuple[str | None, str | None], channel: _Channel) -> bool:
    # Nulls, and hex digits in another case.
    return all(
        sid is None or sid.lower() == wanted.lower()
        for sid, wanted in zip(theirs, channel, strict=True)
    )


def concurrent_requests(headers: CIMultiDictProxy[str]) -> int | None:
    value = headers.get("Twilio-Concurrent-Requests", "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None
