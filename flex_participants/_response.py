"""The response step: an HTTP answer becomes a page of this channel, or the typed error.

`read_body` reads a body under the size cap; `error_from_response` builds the typed error of
an error status from Twilio's body; `decode_response` checks the content type and decodes a
success into a `FetchedPage`, whose paging fields are read at once and whose models are
built (and checked to be of the channel asked for) on `FetchedPage.build`.
"""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDictProxy

from ._convert import DecodedPage, _DecodeError, _ShapeError, build_page, decode_page, loads
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
    except _DecodeError:
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
    content_type = headers.get("Content-Type", "")
    if content_type and "json" not in content_type.lower():
        raise InvalidResponseError(
            f"expected JSON, got {content_type!r} ({len(body)} bytes)", url=url, status=status
        )
    try:
        return FetchedPage(decode_page(body), url, channel)
    except _DecodeError as exc:
        raise InvalidResponseError(str(exc), url=url, status=status) from None
    except _ShapeError as exc:
        raise _not_a_page(exc, url) from None


def _not_a_page(problem: _ShapeError, url: str) -> InvalidResponseError:
    return InvalidResponseError(
        f"not a page of participants: {problem}", url=url, status=200, is_json=True
    )


class FetchedPage:
    """A page as it arrived: paging reads it at once, its models are built on `build`."""

    __slots__ = ("_channel", "_decoded", "_url")

    def __init__(self, decoded: DecodedPage, url: str, channel: _Channel) -> None:
        self._decoded = decoded
        self._url = url
        self._channel = channel

    @property
    def next_page_url(self) -> str | None:
        return self._decoded.next_page_url

    @property
    def count(self) -> int:
        return self._decoded.count

    @property
    def first_sid(self) -> str | None:
        """The ``sid`` of the page's first participant, if it has a string one."""
        participants = self._decoded.data["participants"]
        first = participants[0] if participants else None
        sid = first.get("sid") if type(first) is dict else None
        return sid if type(sid) is str else None

    def build(self) -> ParticipantPage:
        try:
            page = build_page(self._decoded)
        except _ShapeError as exc:
            raise _not_a_page(exc, self._url) from None
        _check_channel(page, self._channel, self._url)
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
