"""JSON bytes -> `ParticipantPage`: the one cattrs converter and its hooks, registered at import.

Everything the server sends is checked here. The hooks raise a `ValueError` naming the
offending place; `decode_page` and `structure_page`, the boundary, turn it into the typed
`InvalidResponseError` of the response it came from, so that no caller translates errors.
"""

from __future__ import annotations

import copyreg
import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from ._errors import InvalidResponseError
from ._models import PageMeta, Participant, ParticipantPage, ParticipantType

__all__ = [
    "converter",
    "decode_page",
    "loads",
    "parse_page",
    "structure_page",
    "to_dict",
]

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError, TypeError)
    JSON_LIBRARY = "orjson"
except ImportError:  # pragma: no cover - exercised by the stdlib-json test session

    def _reject_constant(name: str) -> Any:
        # JSON has no NaN or Infinity; orjson refuses them, and so must this path.
        raise ValueError(f"{name} is not JSON")

    def _loads(body: bytes) -> Any:
        return json.loads(body, parse_constant=_reject_constant)

    _JSON_ERRORS = (ValueError, TypeError, RecursionError)  # the stdlib recurses per level
    JSON_LIBRARY = "json"


def loads(body: bytes) -> Any:
    """Decode JSON bytes with the fastest library installed.

    Raises:
        ValueError: the bytes are not JSON (empty, cut off, HTML, not UTF-8).
    """
    try:
        return _loads(body)
    except _JSON_ERRORS as exc:
        raise ValueError(f"body is not valid JSON ({exc})") from None


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


# Routing properties nest a few levels; a hundred is no participant's, and what is accepted
# here must stay within what to_dict() and a writer can walk back (Python recurses per level).
MAX_NESTING = 100


def _freeze(value: Any, depth: int) -> Any:
    """Make a decoded JSON value read-only all the way down."""
    if type(value) is dict:
        return _freeze_object(value, depth)
    if type(value) is list:
        if depth > MAX_NESTING:
            raise ValueError(f"routing_properties: nested too deeply (over {MAX_NESTING} levels)")
        return tuple([_freeze(v, depth + 1) for v in value])
    return value


_CONTAINERS = frozenset({dict, list})


def _freeze_object(value: dict[str, Any], depth: int = 1) -> MappingProxyType[str, Any]:
    if _CONTAINERS.isdisjoint(map(type, value.values())):
        # Flat, as routing properties usually are: the dict was just decoded and nobody
        # else holds it, so a read-only view of it needs no copy.
        return MappingProxyType(value)
    if depth > MAX_NESTING:
        raise ValueError(f"routing_properties: nested too deeply (over {MAX_NESTING} levels)")
    return MappingProxyType({k: _freeze(v, depth + 1) for k, v in value.items()})


_TYPES: dict[str, ParticipantType] = {member.value: member for member in ParticipantType}

# Participant is built without its attrs __init__, by setting its slots directly: that
# __init__ was a fifth to a third of the cost of structuring a participant. It is right only
# while attrs would run nothing on the fields (no validator, converter, pre- or post-init, no
# hash cache); tests/test_convert.py proves it, and that the result equals the __init__'s.
_FIELDS = tuple(field.name for field in attrs.fields(Participant))
_STRING_FIELDS = frozenset(
    field.name
    for field in attrs.fields(attrs.resolve_types(Participant))
    if field.type == str | None
)
_SETTERS = {name: getattr(Participant, name).__set__ for name in _FIELDS}


def _structure_participants(raw: list[Any]) -> tuple[Participant, ...]:
    """Build the participants of a page, or raise `ValueError` for the first bad one.

    Written by hand, one loop for the whole page, rather than generated: this is the hot
    path, run once per participant, so the checks are inlined, names are local, and error
    messages are built only on failure.
    """
    new, model, listed, proxy = object.__new__, Participant, _TYPES, MappingProxyType
    containers = _CONTAINERS
    setters = _SETTERS
    set_sid, set_type, set_url = setters["sid"], setters["type"], setters["url"]
    set_interaction, set_channel = setters["interaction_sid"], setters["channel_sid"]
    set_routing = setters["routing_properties"]
    participants: list[Participant] = []
    append = participants.append
    for obj in raw:
        if type(obj) is not dict:
            raise ValueError(f"expected an object, got {_kind(obj)}")
        try:
            # Subscripts are cheaper than get() calls, and the API sends every field.
            sid = obj["sid"]
            kind = obj["type"]
            interaction_sid = obj["interaction_sid"]
            channel_sid = obj["channel_sid"]
            url = obj["url"]
            routing = obj["routing_properties"]
        except KeyError:  # a nullable field left out, or `type` missing (checked below)
            get = obj.get
            sid, kind, url = get("sid"), get("type"), get("url")
            interaction_sid, channel_sid = get("interaction_sid"), get("channel_sid")
            routing = get("routing_properties")
        member = listed.get(kind) if type(kind) is str else None
        if (
            member is None
            or (type(sid) is not str and sid is not None)
            or (type(interaction_sid) is not str and interaction_sid is not None)
            or (type(channel_sid) is not str and channel_sid is not None)
            or (type(url) is not str and url is not None)
            or (type(routing) is not dict and routing is not None)
        ):
            member = _check_participant(
                sid=sid,
                type=kind,
                interaction_sid=interaction_sid,
                channel_sid=channel_sid,
                url=url,
                routing_properties=routing,
            )
        if routing is not None:
            if containers.isdisjoint(map(type, routing.values())):
                routing = proxy(routing)
            else:
                routing = _freeze_object(routing)
        participant = new(model)
        set_sid(participant, sid)
        set_type(participant, member)
        set_interaction(participant, interaction_sid)
        set_channel(participant, channel_sid)
        set_url(participant, url)
        set_routing(participant, routing)
        append(participant)
    return tuple(participants)


def _check_participant(**fields: Any) -> ParticipantType:
    """The slow path: a type the API does not list, or a field of the wrong type."""
    kind, routing = fields["type"], fields["routing_properties"]
    if type(kind) is not str:
        raise ValueError(f"type: expected a string, got {_kind(kind)}")
    for name in _FIELDS:
        value = fields[name]
        if name in _STRING_FIELDS and value is not None and type(value) is not str:
            raise ValueError(f"{name}: expected a string or null, got {_kind(value)}")
    if routing is not None and type(routing) is not dict:
        raise ValueError(f"routing_properties: expected an object or null, got {_kind(routing)}")
    return ParticipantType(kind)


def _structure_participant(obj: Any, _: Any) -> Participant:
    return _structure_participants([obj])[0]


def _strict_str(value: Any, _: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {_kind(value)}")
    return value


def _strict_int(value: Any, _: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {_kind(value)}")
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, MappingProxyType):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _structure_meta(raw: Any, converter: cattrs.Converter) -> PageMeta:
    if type(raw) is not dict:
        raise ValueError(f"meta: expected an object, got {_kind(raw)}")
    try:
        meta: PageMeta = converter.structure(raw, PageMeta)
    except Exception as exc:  # cattrs raises a tree of errors: flatten it into one line
        problems = "; ".join(cattrs.transform_error(exc, path="meta"))
        raise ValueError(problems) from None
    return meta


def _structure_page(obj: Any, converter: cattrs.Converter) -> ParticipantPage:
    if type(obj) is not dict:
        raise ValueError(f"expected a JSON object, got {_kind(obj)}")
    meta = _structure_meta(obj.get("meta"), converter)
    raw = obj.get("participants")
    if type(raw) is not list:
        raise ValueError(f"participants: expected a list, got {_kind(raw)}")
    try:
        participants = _structure_participants(raw)
    except ValueError:
        # Only on the error path: find which item failed, to name it.
        for index, item in enumerate(raw):
            try:
                _structure_participants([item])
            except ValueError as exc:
                raise ValueError(f"participants[{index}]: {exc}") from None
        raise  # pragma: no cover - the loop above always finds the culprit
    return ParticipantPage(participants, meta)


def configure_converter(converter: cattrs.Converter) -> None:
    """Register every hook of this package on ``converter``, as cattrs' preconf converters do:
    strict strings and integers (no coercion of what the server sent), the hand-written
    participant loop, pages, and plain data back out of the models."""
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(Participant, _structure_participant)
    converter.register_structure_hook(PageMeta, make_dict_structure_fn(PageMeta, converter))
    converter.register_structure_hook(
        ParticipantPage, lambda obj, _: _structure_page(obj, converter)
    )
    converter.register_unstructure_hook(
        MappingProxyType, lambda m: {k: _thaw(v) for k, v in m.items()}
    )
    # A StrEnum is a str, so cattrs passes it through as is; plain data wants the plain string.
    converter.register_unstructure_hook(ParticipantType, lambda member: member.value)


converter = cattrs.Converter()
"""The one converter: structures pages from decoded JSON and unstructures models to plain dicts."""
configure_converter(converter)


def _participant_from_data(data: dict[str, Any]) -> Participant:
    """A participant rebuilt from `to_dict` data: how one is unpickled."""
    return _structure_participants([data])[0]


def _reduce_participant(participant: Participant) -> tuple[Any, ...]:
    # Read-only mappings cannot be pickled: a participant travels as the plain data the API
    # sent, and is rebuilt through this converter (worker queues such as arq pickle results).
    return (_participant_from_data, (to_dict(participant),))


# Registered with copyreg, which pickle and copy consult before the class itself, so that the
# model stays a plain attrs class.
copyreg.pickle(Participant, _reduce_participant)


# -- the boundary: a response body becomes a page, or InvalidResponseError --------------


def _not_a_page(problem: object, url: str) -> InvalidResponseError:
    return InvalidResponseError(
        f"not a page of participants: {problem}", url=url, status=200, is_json=True
    )


def decode_page(body: bytes, url: str) -> dict[str, Any]:
    """Decode the body of a 200 from ``url`` and check what paging relies on.

    Returns the decoded object, whose ``meta.next_page_url`` is a string or null and whose
    ``participants`` is a list; its models are built by `structure_page`.

    Raises:
        InvalidResponseError: the body is not JSON (``is_json`` false, so it is retried),
            or JSON that is not an object with a ``meta`` object, a ``next_page_url``
            string or null, and a ``participants`` list.
    """
    try:
        data = loads(body)
    except ValueError as exc:
        raise InvalidResponseError(str(exc), url=url, status=200) from None
    if type(data) is not dict:
        raise _not_a_page(f"expected a JSON object, got {_kind(data)}", url)
    meta = data.get("meta")
    if type(meta) is not dict:
        raise _not_a_page(f"meta: expected an object, got {_kind(meta)}", url)
    next_page_url = meta.get("next_page_url")
    if next_page_url is not None and type(next_page_url) is not str:
        raise _not_a_page(
            f"meta.next_page_url: expected a string or null, got {_kind(next_page_url)}", url
        )
    participants = data.get("participants")
    if type(participants) is not list:
        raise _not_a_page(f"participants: expected a list, got {_kind(participants)}", url)
    return data


def structure_page(data: dict[str, Any], url: str) -> ParticipantPage:
    """Build the models of a page that `decode_page` returned for ``url``.

    Raises:
        InvalidResponseError: a field is missing or of the wrong type.
    """
    try:
        page: ParticipantPage = converter.structure(data, ParticipantPage)
    except ValueError as exc:
        raise _not_a_page(exc, url) from None
    return page


def parse_page(body: bytes, url: str) -> ParticipantPage:
    """Build a `ParticipantPage` from the body of a 200 from ``url``.

    Raises:
        InvalidResponseError: the body is not JSON, or not a page of participants.
    """
    return structure_page(decode_page(body, url), url)


def to_dict(model: Participant | PageMeta | ParticipantPage) -> dict[str, Any]:
    """Turn a model into plain JSON-ready data: the shape the API sent, enums as their strings.

    Args:
        model: a `Participant`, `PageMeta` or `ParticipantPage`.

    Raises:
        TypeError: ``model`` is none of those.
    """
    if not isinstance(model, Participant | PageMeta | ParticipantPage):
        raise TypeError(
            f"to_dict() takes a Participant, PageMeta or ParticipantPage, not {_kind(model)}"
        )
    data: dict[str, Any] = converter.unstructure(model)
    return data
