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
from ._request import (
    MAX_BASE_URL_LENGTH,
    MAX_PAGE_URL_LENGTH,
    channel_of,
    check_same_origin,
)

__all__ = ["encode_cursor", "resume"]

_VERSION: Final = 1
_ENDPOINT: Final = "participants"
# The type of each field, checked before anything else reads them.
_FIELDS: Final[dict[str, type | tuple[type, ...]]] = {
    "v": int,
    "e": str,
    "o": str,
    "i": str,
    "c": str,
    "u": (str, type(None)),
    "s": int,
    "k": str,
}
# Past any page a server can send (a skip counts participants of one page), and 19 digits.
_MAX_SKIP: Final = 2**63 - 1
_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]+")


def _checksum(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def _json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def _longest_cursor() -> int:
    """The length of the longest cursor a stream can give: its fields' JSON with the origin and
    the page URL at their longest (`MAX_BASE_URL_LENGTH`, `MAX_PAGE_URL_LENGTH`), every
    character of them escaped at worst (six characters, as ``\\u001f``), in unpadded base64.
    A longer string is refused unread; a shorter one, by what it says."""
    sid = "KD" + "0" * 32
    fields = {"v": _VERSION, "e": _ENDPOINT, "o": "", "i": sid, "c": sid, "u": "", "s": _MAX_SKIP}
    fields["k"] = _checksum(fields)
    json_length = len(_json(fields)) + 6 * (MAX_BASE_URL_LENGTH + MAX_PAGE_URL_LENGTH)
    return -(-json_length * 4 // 3)


_MAX_LENGTH: Final = _longest_cursor()


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
    return base64.urlsafe_b64encode(_json(fields)).rstrip(b"=").decode()


def _refused(why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"cursor refused: {why}")


def _shown(value: object) -> str:
    """``value`` for an error message, cut short: a cursor's fields are data from outside."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}..."


def _decode(cursor: object) -> dict[str, Any]:
    if not isinstance(cursor, str):
        raise _refused(f"a cursor is a string, got {type(cursor).__name__}")
    if len(cursor) > _MAX_LENGTH:
        raise _refused(f"longer ({len(cursor)} characters) than any cursor a stream gives")
    if not _ALPHABET.fullmatch(cursor):
        raise _refused("not a cursor this client made (not URL-safe base64)")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = json.loads(raw)
    # RecursionError: JSON nested deeper than the parser goes.
    except (binascii.Error, ValueError, RecursionError):
        raise _refused("not a cursor this client made (its content is not JSON)") from None
    if not isinstance(fields, dict):
        raise _refused("not a cursor this client made (not a JSON object)")
    version = fields.get("v")
    if version != _VERSION or type(version) is not int:
        raise _refused(f"version {_shown(version)}; this client reads version {_VERSION}")
    # Flat values of the right types only: nothing nested is read, checksummed or shown.
    if set(fields) != set(_FIELDS) or not all(
        type(fields[key]) in (kind if isinstance(kind, tuple) else (kind,))
        for key, kind in _FIELDS.items()
    ):
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

    Every cursor a stream gives is taken back: its page URL is one the stream fetched (at
    most `MAX_PAGE_URL_LENGTH` characters), its skip any count of that page's participants.

    Raises:
        InvalidArgumentError: the cursor is mangled (not base64, not JSON, nested, a field of
            the wrong type, a bad checksum, an unknown version, longer than any a stream
            gives), or for another endpoint, origin or channel, or its URL leaves the origin
            or the channel's participants; a ``page_size`` that would make its URL too long.
    """
    fields = _decode(cursor)
    if fields["e"] != _ENDPOINT:
        raise _refused(f"made for the {_shown(fields['e'])} endpoint, not for {_ENDPOINT!r}")
    if fields["o"] != str(origin):
        raise _refused(f"made for a client of {_shown(fields['o'])}, not of {str(origin)!r}")
    theirs = fields["i"], fields["c"]
    if [s.lower() for s in theirs] != [s.lower() for s in channel]:
        raise _refused(
            f"made for channel {_shown(theirs[0])}/{_shown(theirs[1])}, "
            f"not {channel[0]}/{channel[1]}"
        )
    skip = fields["s"]
    # A skip counts participants of one page, which a server may make longer than the
    # 1,000 a client asks for at most: any count is one a stream could have given.
    if not 0 <= skip <= _MAX_SKIP:
        raise _refused(f"a skip of {_shown(skip)} participants")
    text = fields["u"]
    if text is None:
        if skip:
            raise _refused("an ended stream with participants to skip")
        return None, 0
    if len(text) > MAX_PAGE_URL_LENGTH:
        raise _refused(f"its page URL is longer than {MAX_PAGE_URL_LENGTH} characters")
    try:
        url = URL(text)
        if not url.absolute:
            raise ValueError("not absolute")
        url = check_same_origin(url, origin)
        their_channel = channel_of(url, origin)
    except (TypeError, ValueError, FlexError) as exc:
        message = exc.message if isinstance(exc, FlexError) else str(exc)
        raise _refused(f"its page URL {_shown(text)} is refused: {message}") from None
    if [s.lower() for s in their_channel] != [s.lower() for s in channel] or url.fragment:
        raise _refused(f"its page URL {_shown(text)} is not of this channel's participants")
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
    url = url.update_query(PageSize=page_size)
    # Bounded as every URL a stream fetches is, so that its cursor comes back too.
    if len(str(url)) > MAX_PAGE_URL_LENGTH:
        raise InvalidArgumentError(
            "page_size cannot change with this cursor: its page URL would be longer than "
            f"{MAX_PAGE_URL_LENGTH} characters; resume without page_size"
        )
    return url
