"""Stream cursors: where a stream stopped, as an opaque string, and the checks made on its use.

A cursor is the URL-safe base64 (unpadded) of a JSON object: a version, the endpoint, the
client's origin, the channel, the URL of the page to fetch next as the server gave it (or
``null`` when the stream had ended), how many participants of that page were already
delivered, and a checksum of all that. The checksum catches a cursor that was cut or edited
by mistake; it is no signature. What makes a cursor safe to use is what is checked on use:
its URL must lead to this channel's participants on this client's origin, so that nothing a
cursor says can send the credentials anywhere else or read another channel.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any, Final

from yarl import URL

from ._errors import FlexError, InvalidArgumentError
from ._request import MAX_PAGE_SIZE, channel_of, check_same_origin

__all__ = ["encode_cursor", "resume"]

_VERSION: Final = 1
_ENDPOINT: Final = "participants"
_KEYS: Final = frozenset({"v", "e", "o", "i", "c", "u", "s", "k"})
# A page URL with a PageToken is a few hundred characters; this bounds the work of a check.
_MAX_LENGTH: Final = 8192
_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]+")


def _checksum(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def encode_cursor(url: URL | None, skip: int, *, origin: URL, channel: tuple[str, str]) -> str:
    """The cursor of a stream whose next participant is number ``skip`` of the page at ``url``
    (``None``: the stream had ended)."""
    fields: dict[str, Any] = {
        "v": _VERSION,
        "e": _ENDPOINT,
        "o": str(origin),
        "i": channel[0],
        "c": channel[1],
        "u": None if url is None else str(url),
        "s": skip,
    }
    fields["k"] = _checksum(fields)
    raw = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _refused(why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"cursor refused: {why}")


def _decode(cursor: object) -> dict[str, Any]:
    if not isinstance(cursor, str):
        raise _refused(f"a cursor is a string, got {type(cursor).__name__}")
    if len(cursor) > _MAX_LENGTH or not _ALPHABET.fullmatch(cursor):
        raise _refused("not a cursor this client made (not URL-safe base64)")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _refused("not a cursor this client made (its content is not JSON)") from None
    if not isinstance(fields, dict):
        raise _refused("not a cursor this client made (not a JSON object)")
    version = fields.get("v")
    if version != _VERSION or type(version) is not int:
        raise _refused(f"version {version!r}; this client reads version {_VERSION}")
    if set(fields) != _KEYS:
        raise _refused("not a cursor this client made (wrong fields)")
    checksum = fields.pop("k")
    if checksum != _checksum(fields):
        raise _refused("its checksum does not match: it was cut or changed")
    return fields


def resume(
    cursor: object, origin: URL, channel: tuple[str, str], *, page_size: int | None
) -> tuple[URL | None, int]:
    """Check ``cursor`` for this client's ``origin`` and this ``channel``; return the URL of
    the page to fetch first (``None``: nothing is left) and how many of its participants to
    skip. With ``page_size``, that page and those after it are asked for in pages of that size.

    Raises:
        InvalidArgumentError: the cursor is mangled (not base64, not JSON, a bad checksum, an
            unknown version), or for another endpoint, origin or channel, or its URL leaves
            the origin or the channel's participants.
    """
    fields = _decode(cursor)
    if fields["e"] != _ENDPOINT:
        raise _refused(f"made for the {fields['e']!r} endpoint, not for {_ENDPOINT!r}")
    if fields["o"] != str(origin):
        raise _refused(f"made for a client of {fields['o']!r}, not of {str(origin)!r}")
    theirs = fields["i"], fields["c"]
    if not all(type(sid) is str for sid in theirs) or [s.lower() for s in theirs] != [
        s.lower() for s in channel
    ]:
        raise _refused(f"made for channel {theirs[0]}/{theirs[1]}, not {channel[0]}/{channel[1]}")
    skip = fields["s"]
    if type(skip) is not int or not 0 <= skip <= MAX_PAGE_SIZE:
        raise _refused(f"a skip of {skip!r} participants")
    text = fields["u"]
    if text is None:
        if skip:
            raise _refused("an ended stream with participants to skip")
        return None, 0
    if type(text) is not str:
        raise _refused(f"a page URL of {text!r}")
    try:
        url = URL(text)
        if not url.absolute:
            raise ValueError("not absolute")
        url = check_same_origin(url, origin)
        their_channel = channel_of(url, origin)
    except (TypeError, ValueError, FlexError) as exc:
        message = exc.message if isinstance(exc, FlexError) else str(exc)
        raise _refused(f"its page URL {text!r} is refused: {message}") from None
    if [s.lower() for s in their_channel] != [s.lower() for s in channel] or url.fragment:
        raise _refused(f"its page URL {text!r} is not of this channel's participants")
    if page_size is not None:
        url = _with_page_size(url, page_size)
    return url, skip


def _with_page_size(url: URL, page_size: int) -> URL:
    """``url`` asking for pages of ``page_size``, where that keeps the page's first participant:
    a page named by its ``PageToken``, or the first page."""
    query = url.query
    if "PageToken" not in query and query.get("Page", "0") != "0":
        raise InvalidArgumentError(
            "page_size cannot change with this cursor: its page is named by its index alone, "
            "which another page size would move; resume without page_size"
        )
    return url.update_query(PageSize=page_size)
