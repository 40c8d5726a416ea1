"""Arguments -> a validated request URL; and the rules for which URLs may receive credentials."""

from __future__ import annotations

import ipaddress
import re
import warnings
from typing import Final, TypeGuard

from yarl import URL

from ._arguments import check_count
from ._errors import InvalidArgumentError, UnsafeURLError

__all__ = [
    "DEFAULT_BASE_URL",
    "FLEX_REGION",
    "MAX_BASE_URL_LENGTH",
    "MAX_PAGE_SIZE",
    "MAX_PAGE_URL_LENGTH",
    "FlexHostWarning",
    "build_base_url",
    "channel_of",
    "check_limit",
    "check_page_size",
    "check_same_origin",
    "check_sids",
    "is_sid",
    "participants_url",
    "sid_problem",
]

DEFAULT_BASE_URL = "https://flex-api.twilio.com"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50

MAX_PAGE_URL_LENGTH: Final = 4096
"""The longest URL of a page a stream fetches, as it sends it: a ``next_page_url`` that
resolves to a longer one is a broken answer, and a cursor holds no longer one. Twilio's are a
few hundred characters."""
MAX_BASE_URL_LENGTH: Final = 1024
"""The longest origin a client takes (``base_url``), so that its first page's URL stays well
within `MAX_PAGE_URL_LENGTH`."""

_INTERACTION_SID = re.compile(r"KD[0-9a-fA-F]{32}")
_CHANNEL_SID = re.compile(r"UO[0-9a-fA-F]{32}")
_ANY_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")


# What a SID of another kind is, by its prefix: the SIDs met next to a channel's in Flex.
_OTHER_SIDS = {
    "WT": "a TaskSid: the task's attributes hold its flexInteractionSid and "
    "flexInteractionChannelSid",
    "CH": "a Conversation SID: the task's attributes hold the flexInteractionSid and "
    "flexInteractionChannelSid beside it",
    "UT": "a participant's SID",
    "AC": "an Account SID",
    "SK": "an API key SID",
}


def is_sid(value: object, prefix: str) -> TypeGuard[str]:
    """Whether ``value`` is a SID of ``prefix`` (``KD`` or ``UO``): it and 32 hex digits."""
    pattern = _INTERACTION_SID if prefix == "KD" else _CHANNEL_SID
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def sid_problem(name: str, value: object, prefix: str) -> str | None:
    """What is wrong with ``value`` as the SID argument ``name``, whose SIDs are ``prefix``
    (``KD`` or ``UO``) and 32 hex digits; ``None`` if nothing is."""
    if is_sid(value, prefix):
        return None
    kind = "an InteractionSid" if prefix == "KD" else "a ChannelSid"
    problem = f"{name} must be {kind}, {prefix!r} and 32 hex digits, got {value!r}"
    if isinstance(value, str) and _ANY_SID.fullmatch(value):
        other = _OTHER_SIDS.get(value[:2])
        if other is not None:
            problem += f", which is {other}"
    return problem


def check_sids(interaction_sid: object, channel_sid: object) -> tuple[str, str]:
    """Return the two SIDs if they are an InteractionSid (``KD`` and 32 hex digits) and a
    ChannelSid (``UO`` and 32 hex digits), else raise `InvalidArgumentError`, which says
    what is wrong, and whether the two were given the other way round."""
    if is_sid(interaction_sid, "KD") and is_sid(channel_sid, "UO"):
        return interaction_sid, channel_sid
    if is_sid(interaction_sid, "UO") and is_sid(channel_sid, "KD"):
        raise InvalidArgumentError(
            f"interaction_sid and channel_sid are swapped: got the ChannelSid "
            f"{interaction_sid!r} as interaction_sid and the InteractionSid {channel_sid!r} "
            f"as channel_sid"
        )
    problems = (
        sid_problem("interaction_sid", interaction_sid, "KD"),
        sid_problem("channel_sid", channel_sid, "UO"),
    )
    raise InvalidArgumentError(next(problem for problem in problems if problem is not None))


def check_page_size(page_size: object) -> int | None:
    """Return ``page_size`` if it is ``None`` or an integer in 1..1000."""
    if page_size is None:
        return None
    return check_count("page_size", page_size, minimum=1, maximum=MAX_PAGE_SIZE)


def check_limit(limit: object) -> int | None:
    """Return ``limit`` if it is ``None`` or an integer >= 0."""
    if limit is None:
        return None
    return check_count("limit", limit, minimum=0)


def participants_url(
    base: URL,
    interaction_sid: str,
    channel_sid: str,
    *,
    page_size: int | None = None,
    page: int | None = None,
    page_token: str | None = None,
) -> URL:
    """The URL of one page of a channel's participants (SIDs already checked)."""
    # One with_path() rather than six `/`: this runs once per channel of a batch, and the
    # SIDs were checked to be letters and hex digits, so nothing needs encoding.
    url = base.with_path(
        f"{base.path.rstrip('/')}/v1/Interactions/{interaction_sid}/Channels/{channel_sid}"
        "/Participants",
        encoded=True,
    )
    query: dict[str, str | int] = {}
    if page_size is not None:
        query["PageSize"] = page_size
    if page is not None:
        query["Page"] = check_count("page", page, minimum=0)
    if page_token is not None:
        if not isinstance(page_token, str) or not page_token:
            raise InvalidArgumentError(f"page_token must be a non-empty string, got {page_token!r}")
        query["PageToken"] = page_token
    return url.with_query(query) if query else url


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class FlexHostWarning(UserWarning):
    """``region`` (or ``TWILIO_REGION``) was given without an edge: the client uses Flex's
    default host instead, as Twilio advises (give both edge and region, or neither)."""


# Flex runs in one Twilio region. Twilio retired the region-only hostnames
# (flex-api.{region}.twilio.com reaches US1 whatever the region, since April 2026) and
# asks for both edge and region, or neither.
FLEX_REGION = "us1"

_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _twilio_host(region: str | None, edge: str | None) -> str:
    """Flex's URL for ``region`` and ``edge`` (either may be ``None`` or empty)."""
    for name, value in (("region", region), ("edge", edge)):
        if value and not (isinstance(value, str) and _HOST_LABEL.fullmatch(value.lower())):
            raise InvalidArgumentError(
                f"{name} must be a Twilio {name} name such as "
                f"{'us1' if name == 'region' else 'ashburn'}, got {value!r}"
            )
    region = region.lower() if region else None
    edge = edge.lower() if edge else None
    if region is not None and region != FLEX_REGION:
        raise InvalidArgumentError(
            f"region {region!r} cannot reach Flex: Flex runs in the US1 region only. Leave "
            "region (and TWILIO_REGION) unset, or give region 'us1' with an edge"
        )
    if edge is None:
        if region is not None:
            warnings.warn(
                f"region {region!r} without an edge: using {DEFAULT_BASE_URL}, since Twilio "
                "retired the region-only hostnames; give both edge and region, or neither",
                FlexHostWarning,
                # FlexClient.__init__ calls build_base_url: point at the caller's line.
                stacklevel=4,
            )
        return DEFAULT_BASE_URL
    # An edge alone implies US1, as in the official SDK.
    return f"https://flex-api.{edge}.{FLEX_REGION}.twilio.com"


def build_base_url(base_url: str | None, region: str | None, edge: str | None) -> URL:
    """The client's origin: ``base_url``, or Flex's host for ``region`` and ``edge``.

    Neither: ``https://flex-api.twilio.com``. An edge (with region ``us1``, or none, which
    implies it): ``https://flex-api.{edge}.us1.twilio.com``. Region ``us1`` alone: the
    default host, with a `FlexHostWarning`. Region and edge are ignored with ``base_url``.

    Raises:
        InvalidArgumentError: a region other than ``us1`` (Flex runs in US1 only), a region
            or edge that is no host name label; a ``base_url`` that is not an absolute
            http(s) URL, ``http`` to a host that is not loopback, credentials, a query or a
            fragment in the URL, or one longer than `MAX_BASE_URL_LENGTH` characters.
    """
    if base_url is None:
        base_url = _twilio_host(region, edge)
    try:
        url = URL(base_url)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"base_url is not a URL: {exc}") from None
    # Checked first, so that no message below echoes a password.
    if url.user is not None or url.password is not None:
        raise InvalidArgumentError("base_url must not carry credentials; pass them as arguments")
    if not url.absolute or url.scheme not in {"http", "https"} or not url.host:
        raise InvalidArgumentError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    if url.scheme == "http" and not _is_loopback(url.host):
        raise InvalidArgumentError(
            f"base_url {base_url!r}: plain http is allowed only to a loopback host "
            "(localhost, 127.0.0.0/8, ::1); use https"
        )
    if url.query_string or url.fragment:
        raise InvalidArgumentError(f"base_url must not have a query or fragment, got {base_url!r}")
    origin = url.with_path(url.path.rstrip("/"))
    if len(str(origin)) > MAX_BASE_URL_LENGTH:
        raise InvalidArgumentError(
            f"base_url is {len(str(origin))} characters long; at most {MAX_BASE_URL_LENGTH} "
            "are taken"
        )
    return origin


def check_same_origin(url: URL, origin: URL, *, base: URL | None = None) -> URL:
    """Return ``url``, resolved against ``base`` (default ``origin``, RFC 3986), if it shares
    the origin's scheme, host and port.

    Raises:
        UnsafeURLError: it points anywhere else (another scheme, host or port; a scheme with
            no host, such as ``mailto:``, ``javascript:`` or ``https:/path``), or carries
            credentials of its own, so the client's credentials must not go there.
    """
    if url.scheme and not url.host:
        raise UnsafeURLError(
            f"refusing to send credentials to a {url.scheme}: URL without a host; it is not "
            f"on the client's origin {origin.origin()}"
        )
    if not url.absolute:
        try:
            url = (base or origin).join(url)
        except ValueError as exc:
            raise UnsafeURLError(f"refusing a URL that cannot be resolved: {exc}") from None
    if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
        raise UnsafeURLError(
            f"refusing to send credentials to {url.with_user(None).with_query(None)}: "
            f"it is not on the client's origin {origin.origin()}"
        )
    if url.user is not None or url.password is not None:
        raise UnsafeURLError("refusing a URL that carries its own credentials")
    return url


_PAGE_PATH = re.compile(
    r"/v1/Interactions/(KD[0-9a-fA-F]{32})/Channels/(UO[0-9a-fA-F]{32})/Participants"
)


def channel_of(url: URL, origin: URL) -> tuple[str, str]:
    """The ``(interaction_sid, channel_sid)`` of a participants URL on ``origin``.

    Raises:
        InvalidArgumentError: ``url``'s path is not that of a channel's participants.
    """
    prefix = origin.path.rstrip("/")
    match = _PAGE_PATH.fullmatch(url.path, len(prefix)) if url.path.startswith(prefix) else None
    if match is None:
        raise InvalidArgumentError(
            f"not a URL of a channel's participants: {url.path!r} is not "
            f"{prefix}/v1/Interactions/KD.../Channels/UO.../Participants"
        )
    return match[1], match[2]
