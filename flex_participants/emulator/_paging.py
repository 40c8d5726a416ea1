"""Paging as Twilio does it: ``PageSize``, ``Page``, the opaque ``PageToken``, and ``meta``.

A page token is ``PT`` and the URL-safe base64 of the offset of the page's first participant
and a checksum of that offset and the channel SID: a token is refused if it was garbled,
forged, or issued for another channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._responses import dumps

if TYPE_CHECKING:
    from ._data import StoredChannel

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "InvalidQueryError",
    "PageRequest",
    "RequestedPage",
    "page_meta",
    "page_token",
    "page_url",
    "parse_page_request",
    "participants_url",
    "peek_int",
]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000

_DIGITS: Final = re.compile(r"[0-9]{1,15}")
_TOKEN: Final = re.compile(r"PT[A-Za-z0-9_-]{22}")
_TOKEN_KEY: Final = b"flex-participants emulator page token"


class InvalidQueryError(Exception):
    """A query parameter is out of range or garbled; ``str()`` is the message for the body."""


@attrs.frozen
class PageRequest:
    """What a request asks for: the page index, its size, and the offset of its first item."""

    page: int
    page_size: int
    offset: int
    token: str | None


def _checksum(channel_sid: str, offset: int) -> bytes:
    message = f"{channel_sid}:{offset}".encode()
    return hashlib.blake2b(message, key=_TOKEN_KEY, digest_size=8).digest()


def page_token(channel_sid: str, offset: int) -> str:
    """The ``PageToken`` of the page of ``channel_sid`` that starts at ``offset``."""
    raw = offset.to_bytes(8, "big") + _checksum(channel_sid, offset)
    return "PT" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _offset_of(token: str, channel_sid: str) -> int:
    if not _TOKEN.fullmatch(token):
        raise InvalidQueryError(f"Invalid PageToken {token!r}: not a token this server issued")
    raw = base64.urlsafe_b64decode(token[2:] + "==")
    offset = int.from_bytes(raw[:8], "big")
    if not hmac.compare_digest(raw[8:], _checksum(channel_sid, offset)):
        raise InvalidQueryError(
            f"Invalid PageToken {token!r}: forged, garbled, or issued for another channel"
        )
    return offset


def peek_int(value: str | None) -> int | None:
    """``value`` as a non-negative integer if it is one, else ``None`` (for the request log)."""
    if value is None or not _DIGITS.fullmatch(value):
        return None
    return int(value)


def parse_page_request(query: Mapping[str, str], channel_sid: str) -> PageRequest:
    """Read ``PageSize``, ``Page`` and ``PageToken`` from a request's query.

    Without a token the page starts at ``Page * PageSize``; with one, where the token says,
    and ``Page`` is the client's own count (as Twilio documents it).

    Raises:
        InvalidQueryError: ``PageSize`` is not an integer in 1..1000, ``Page`` is not an integer
            >= 0, or ``PageToken`` is not one this server issued for the channel.
    """
    raw_size = query.get("PageSize")
    if raw_size is None:
        page_size = DEFAULT_PAGE_SIZE
    else:
        parsed_size = peek_int(raw_size)
        if parsed_size is None or not 1 <= parsed_size <= MAX_PAGE_SIZE:
            raise InvalidQueryError(
                f"Invalid PageSize {raw_size!r}: must be an integer from 1 to {MAX_PAGE_SIZE}"
            )
        page_size = parsed_size
    raw_page = query.get("Page")
    page: int | None = None
    if raw_page is not None:
        page = peek_int(raw_page)
        if page is None:
            raise InvalidQueryError(f"Invalid Page {raw_page!r}: must be an integer >= 0")
    token = query.get("PageToken")
    if token is None:
        page = page or 0
        return PageRequest(page, page_size, page * page_size, None)
    offset = _offset_of(token, channel_sid)
    if page is None:
        page = offset // page_size
    return PageRequest(page, page_size, offset, token)


def participants_url(origin: str, interaction_sid: str, channel_sid: str) -> str:
    """The URL of a channel's participants under ``origin`` (``scheme://host:port``)."""
    return f"{origin}/v1/Interactions/{interaction_sid}/Channels/{channel_sid}/Participants"


def page_url(participants_url: str, page_size: int, page: int, token: str | None) -> str:
    """The URL of a page, with its query parameters spelled as this server spells them."""
    url = f"{participants_url}?PageSize={page_size}&Page={page}"
    return url if token is None else f"{url}&PageToken={token}"


def page_meta(
    participants_url: str, channel_sid: str, request: PageRequest, total: int
) -> dict[str, Any]:
    """The ``meta`` object of a page, with absolute URLs under ``participants_url``.

    ``next_page_url`` is ``None`` on the last page; ``previous_page_url`` on the first.
    """
    size = request.page_size

    def link(page: int, token: str | None) -> str:
        return page_url(participants_url, size, page, token)

    offset = request.offset
    next_offset = offset + size
    next_url = None
    if next_offset < total:
        next_url = link(request.page + 1, page_token(channel_sid, next_offset))
    previous_url = None
    if offset > 0:
        previous_offset = max(0, offset - size)
        previous_url = link(max(0, request.page - 1), page_token(channel_sid, previous_offset))
    return {
        "key": "participants",
        "url": link(request.page, request.token),
        "page": request.page,
        "page_size": size,
        "first_page_url": link(0, None),
        "next_page_url": next_url,
        "previous_page_url": previous_url,
    }


@attrs.frozen
class RequestedPage:
    """A page a request asks for, built only when the answer needs it (a fault may not)."""

    origin: str
    channel: StoredChannel
    paging: PageRequest

    @property
    def participants_url(self) -> str:
        """The URL of the channel's participants, on the emulator's origin."""
        channel = self.channel
        return participants_url(self.origin, channel.interaction_sid, channel.channel_sid)

    def url_of(self, page: int) -> str:
        """The URL the server names page ``page`` of this page size by, in its ``meta``.

        Page 0 is ``first_page_url``; any other is the ``next_page_url`` of the page before.
        """
        size = self.paging.page_size
        token = page_token(self.channel.channel_sid, page * size) if page > 0 else None
        return page_url(self.participants_url, size, page, token)

    def content(self) -> dict[str, Any]:
        """The page as a JSON-ready dict: ``participants`` (the stored dicts), then ``meta``."""
        channel, paging = self.channel, self.paging
        start = paging.offset
        return {
            "participants": channel.page(start, start + paging.page_size),
            "meta": page_meta(self.participants_url, channel.channel_sid, paging, channel.size),
        }

    def body(self) -> bytes:
        """The page's JSON, as it is served."""
        return dumps(self.content())
