"""The data the endpoint returns, as frozen attrs classes; conversion lives in `_convert`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._errors import FlexError

__all__ = ["ChannelResult", "PageMeta", "Participant", "ParticipantPage", "ParticipantType"]


class ParticipantType(enum.StrEnum):
    """The kind of a participant.

    A value the API adds later is not an error: it becomes a member that is not
    one of the five below, whose ``value`` (and ``str()``) is the raw string.
    """

    AGENT = "agent"
    CUSTOMER = "customer"
    SUPERVISOR = "supervisor"
    EXTERNAL = "external"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> ParticipantType | None:
        if not isinstance(value, str):
            return None
        member = _UNLISTED_TYPES.get(value)
        if member is None:
            member = str.__new__(cls, value)
            member._name_ = value
            member._value_ = value
            if len(_UNLISTED_TYPES) < _UNLISTED_TYPES_CACHED:
                _UNLISTED_TYPES[value] = member
        return member

    @property
    def is_listed(self) -> bool:
        """Whether this is one of the five types the API documents."""
        # By identity: a raw value such as "AGENT" gets a member whose name is a listed name.
        return type(self).__members__.get(self._name_) is self


# Members made for values the API documents none of, cached so that a value keeps one member;
# bounded, so that a server sending endless new values cannot grow it without end.
_UNLISTED_TYPES: dict[str, ParticipantType] = {}
_UNLISTED_TYPES_CACHED = 256


@attrs.frozen
class Participant:
    """One participant of an interaction channel.

    Attributes:
        sid: the participant SID (``UT...``), or ``None``.
        type: the participant type; see `ParticipantType` for values the API adds later.
        interaction_sid: the interaction SID (``KD...``), or ``None``.
        channel_sid: the channel SID (``UO...``), or ``None``.
        url: the absolute URL of the participant resource, or ``None``.
        routing_properties: a read-only mapping (nested objects read-only too), or ``None``.
    """

    sid: str | None
    type: ParticipantType
    interaction_sid: str | None
    channel_sid: str | None
    url: str | None
    # Compared, but left out of the hash: a read-only mapping has no hash, and equal
    # participants still hash equal without it.
    routing_properties: Mapping[str, Any] | None = attrs.field(hash=False)


@attrs.frozen
class PageMeta:
    """The ``meta`` object of a page: where it is and where the next one is.

    Attributes:
        key: the name of the list in the page (``"participants"``).
        url: the URL of this page.
        page: the page index.
        page_size: the page size the server used.
        first_page_url: the URL of the first page.
        next_page_url: the URL of the next page, or ``None`` on the last page.
        previous_page_url: the URL of the previous page, or ``None`` on the first page.
    """

    key: str
    url: str
    page: int
    page_size: int
    first_page_url: str
    next_page_url: str | None = None
    previous_page_url: str | None = None


@attrs.frozen
class ParticipantPage:
    """One page of participants, in server order, with its `PageMeta`."""

    participants: tuple[Participant, ...]
    meta: PageMeta


@attrs.frozen
class ChannelResult:
    """What a batch delivers for one channel: all of its participants, or the error that ended it.

    Attributes:
        interaction_sid: the interaction SID as given.
        channel_sid: the channel SID as given.
        participants: every participant of the channel, in server order; empty when ``error`` is set.
        error: the `FlexError` that made this channel fail, or ``None``.
    """

    interaction_sid: str
    channel_sid: str
    participants: tuple[Participant, ...] = ()
    error: FlexError | None = None

    @property
    def ok(self) -> bool:
        """Whether the channel was fetched completely."""
        return self.error is None
