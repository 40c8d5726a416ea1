"""`_convert` and `_models`: JSON bytes -> `ParticipantPage`, and models -> plain data."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flex_participants import _convert
from flex_participants._convert import MAX_NESTING, loads, parse_page, to_dict
from flex_participants._errors import InvalidResponseError
from flex_participants._models import (
    ChannelResult,
    PageMeta,
    Participant,
    ParticipantPage,
    ParticipantType,
)

KD = "KDaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
UO = "UOaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
BASE = f"https://flex-api.twilio.com/v1/Interactions/{KD}/Channels/{UO}/Participants"
FIRST_PAGE = f"{BASE}?PageSize=50&Page=0"

FIELDS = ("sid", "type", "interaction_sid", "channel_sid", "url", "routing_properties")
OPTIONAL_FIELDS = ("sid", "interaction_sid", "channel_sid", "url", "routing_properties")
LISTED = ("agent", "customer", "supervisor", "external", "unknown")


def parse(body: bytes) -> ParticipantPage:
    """The page of ``body``, as the body of a 200 from the first page's URL."""
    return parse_page(body, FIRST_PAGE)


def problem_of(body: bytes) -> str:
    """What is wrong with ``body``, JSON that is no page: the `InvalidResponseError` it is,
    of the page's URL, told after "not a page of participants: "."""
    with pytest.raises(InvalidResponseError) as caught:
        parse(body)
    error = caught.value
    assert (error.url, error.status, error.is_json) == (FIRST_PAGE, 200, True)
    prefix = "not a page of participants: "
    assert error.message.startswith(prefix)
    return error.message.removeprefix(prefix)


# The spec's response example, verbatim.
SPEC_EXAMPLE: dict[str, Any] = {
    "meta": {
        "key": "participants",
        "url": FIRST_PAGE,
        "page": 0,
        "page_size": 50,
        "next_page_url": None,
        "first_page_url": FIRST_PAGE,
        "previous_page_url": None,
    },
    "participants": [
        {
            "sid": "UTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
            "url": f"{BASE}/UTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
            "type": "customer",
            "channel_sid": UO,
            "interaction_sid": KD,
            "routing_properties": None,
        },
        {
            "sid": "UTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2",
            "url": f"{BASE}/UTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2",
            "type": "agent",
            "channel_sid": UO,
            "interaction_sid": KD,
            "routing_properties": {
                "task_sid": "WTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "worker_sid": "WKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "reservation_sid": "WRaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            },
        },
    ],
}


def example() -> dict[str, Any]:
    """A fresh deep copy of the spec's example, to mangle."""
    return copy.deepcopy(SPEC_EXAMPLE)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def page_with(*participants: Any, meta: Any = None) -> bytes:
    body = example()
    body["participants"] = list(participants)
    if meta is not None:
        body["meta"] = meta
    return encode(body)


def assert_plain_json(value: Any) -> None:
    """Only the types `json.loads` itself produces, all the way down."""
    if isinstance(value, dict):
        assert type(value) is dict
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        assert type(value) is list
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in {bool, int, float, str}, type(value)


# Parsing a valid page


def test_parse_page_builds_the_spec_example() -> None:
    page = parse(encode(SPEC_EXAMPLE))

    assert isinstance(page, ParticipantPage)
    assert page.meta == PageMeta(
        key="participants",
        url=FIRST_PAGE,
        page=0,
        page_size=50,
        first_page_url=FIRST_PAGE,
        next_page_url=None,
        previous_page_url=None,
    )
    customer, agent = page.participants
    assert customer == Participant(
        sid="UTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        type=ParticipantType.CUSTOMER,
        interaction_sid=KD,
        channel_sid=UO,
        url=f"{BASE}/UTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        routing_properties=None,
    )
    assert agent.type is ParticipantType.AGENT
    assert agent.routing_properties == {
        "task_sid": "WTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "worker_sid": "WKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "reservation_sid": "WRaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    }


def test_participants_is_a_tuple_in_server_order() -> None:
    sids = [f"UT{n:032x}" for n in (7, 3, 9, 1, 5)]
    page = parse(page_with(*({"sid": s, "type": "agent"} for s in sids)))

    assert isinstance(page.participants, tuple)
    assert [p.sid for p in page.participants] == sids


def test_an_empty_participants_list_gives_an_empty_page() -> None:
    assert parse(page_with()).participants == ()


def test_meta_next_and_previous_page_urls_may_be_absent() -> None:
    meta = {k: v for k, v in SPEC_EXAMPLE["meta"].items() if not k.endswith("_page_url")}
    meta["first_page_url"] = FIRST_PAGE

    page = parse(page_with(meta=meta))

    assert page.meta.next_page_url is None
    assert page.meta.previous_page_url is None


def test_meta_next_page_url_is_kept_when_present() -> None:
    body = example()
    body["meta"]["next_page_url"] = f"{BASE}?PageSize=50&Page=1&PageToken=PT1"

    assert parse(encode(body)).meta.next_page_url == f"{BASE}?PageSize=50&Page=1&PageToken=PT1"


def test_unknown_fields_are_ignored_everywhere() -> None:
    body = example()
    body["extra"] = {"anything": [1, 2]}
    body["meta"]["new_meta_field"] = "x"
    body["participants"][0]["date_created"] = "2026-01-01T00:00:00Z"
    body["participants"][1]["media_properties"] = {"a": 1}

    assert parse(encode(body)) == parse(encode(SPEC_EXAMPLE))


# Participant types


@pytest.mark.parametrize("value", LISTED)
def test_a_listed_type_maps_to_the_real_member(value: str) -> None:
    (participant,) = parse(page_with({"type": value})).participants

    assert participant.type is ParticipantType(value)
    assert participant.type in list(ParticipantType)
    assert participant.type.is_listed


def test_an_unlisted_type_keeps_its_raw_string() -> None:
    (participant,) = parse(page_with({"type": "bot"})).participants

    assert isinstance(participant.type, ParticipantType)
    assert participant.type.value == "bot"
    assert str(participant.type) == "bot"
    assert participant.type == "bot"


def test_an_unlisted_type_is_not_listed() -> None:
    assert not ParticipantType("bot").is_listed


def test_an_unlisted_type_is_not_among_the_documented_members() -> None:
    assert ParticipantType("bot") not in list(ParticipantType)
    assert len(ParticipantType) == len(LISTED)


def test_an_unlisted_type_spelled_like_a_member_name_is_not_listed() -> None:
    # "AGENT" is not the value "agent": it is a type the API does not document.
    member = ParticipantType("AGENT")

    assert member is not ParticipantType.AGENT
    assert member.value == "AGENT"
    assert not member.is_listed


def test_a_type_in_capitals_from_the_server_is_kept_as_sent_and_not_listed() -> None:
    (participant,) = parse(page_with({"type": "AGENT"})).participants

    assert participant.type is not ParticipantType.AGENT
    assert participant.type.value == "AGENT"
    assert not participant.type.is_listed
    assert to_dict(participant)["type"] == "AGENT"


def test_the_same_unlisted_value_gives_the_same_member() -> None:
    first, second = parse(page_with({"type": "robot"}, {"type": "robot"})).participants

    assert first.type is second.type
    assert ParticipantType("robot") is first.type


def test_different_unlisted_values_give_different_members() -> None:
    assert ParticipantType("bot") != ParticipantType("ivr")


def test_a_non_string_value_is_not_a_participant_type() -> None:
    with pytest.raises(ValueError, match="5"):
        ParticipantType(5)  # type: ignore[arg-type]


# Nullability, as in the spec


@pytest.mark.parametrize("field", OPTIONAL_FIELDS)
def test_an_optional_field_may_be_null(field: str) -> None:
    raw = SPEC_EXAMPLE["participants"][1] | {field: None}

    (participant,) = parse(page_with(raw)).participants

    assert getattr(participant, field) is None


@pytest.mark.parametrize("field", OPTIONAL_FIELDS)
def test_an_optional_field_may_be_absent(field: str) -> None:
    raw = {k: v for k, v in SPEC_EXAMPLE["participants"][1].items() if k != field}

    (participant,) = parse(page_with(raw)).participants

    assert getattr(participant, field) is None


def test_a_participant_with_only_a_type_is_valid() -> None:
    (participant,) = parse(page_with({"type": "external"})).participants

    assert participant == Participant(None, ParticipantType.EXTERNAL, None, None, None, None)


def test_type_is_required() -> None:
    raw = {k: v for k, v in SPEC_EXAMPLE["participants"][0].items() if k != "type"}

    assert problem_of(page_with(raw)) == "participants[0]: type: expected a string, got null"


# Read-only data


def routed(routing_properties: Any) -> Participant:
    (participant,) = parse(
        page_with({"type": "agent", "routing_properties": routing_properties})
    ).participants
    return participant


def test_routing_properties_is_a_read_only_mapping() -> None:
    routing = routed({"a": 1}).routing_properties
    assert routing is not None

    assert isinstance(routing, MappingProxyType)
    with pytest.raises(TypeError):
        routing["a"] = 2  # type: ignore[index]


def test_nested_objects_in_routing_properties_are_read_only_too() -> None:
    routing = routed({"outer": {"inner": {"x": 1}}}).routing_properties
    assert routing is not None

    assert isinstance(routing["outer"], MappingProxyType)
    assert isinstance(routing["outer"]["inner"], MappingProxyType)
    with pytest.raises(TypeError):
        routing["outer"]["inner"]["x"] = 2  # type: ignore[index]


def test_lists_in_routing_properties_become_tuples_all_the_way_down() -> None:
    routing = routed({"skills": ["en", {"levels": [1, [2, 3]]}]}).routing_properties
    assert routing is not None

    assert routing["skills"] == ("en", MappingProxyType({"levels": (1, (2, 3))}))
    assert isinstance(routing["skills"][1], MappingProxyType)


def test_an_empty_routing_properties_object_is_kept_empty() -> None:
    assert routed({}).routing_properties == MappingProxyType({})


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (Participant(None, ParticipantType.AGENT, None, None, None, None), "sid", "UT1"),
        (PageMeta("participants", "u", 0, 50, "u"), "page", 1),
        (ParticipantPage((), PageMeta("participants", "u", 0, 50, "u")), "participants", ()),
        (ChannelResult(KD, UO), "participants", ()),
    ],
    ids=["Participant", "PageMeta", "ParticipantPage", "ChannelResult"],
)
def test_models_are_frozen(model: object, field: str, value: object) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(model, field, value)


@pytest.mark.parametrize("cls", [Participant, PageMeta, ParticipantPage, ChannelResult])
def test_models_are_slotted(cls: type) -> None:
    assert "__slots__" in vars(cls)
    assert attrs.has(cls)


# The fast path: participants are built without Participant's __init__ (see _convert).

_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
PARTICIPANT_FIELDS = st.fixed_dictionaries(
    {
        "sid": st.none() | st.text(),
        "type": st.sampled_from(LISTED) | st.text(),
        "interaction_sid": st.none() | st.text(),
        "channel_sid": st.none() | st.text(),
        "url": st.none() | st.text(),
        "routing_properties": st.none() | st.dictionaries(st.text(), _JSON_SCALARS, max_size=4),
    }
)


@settings(max_examples=200, deadline=None)
@given(PARTICIPANT_FIELDS)
def test_the_fast_path_builds_what_participants_init_builds(fields: dict[str, Any]) -> None:
    # Every field of the model is generated: a field added to it must be added here.
    assert set(fields) == {field.name for field in attrs.fields(Participant)}
    routing = fields["routing_properties"]
    expected = Participant(
        **{
            **fields,
            "type": ParticipantType(fields["type"]),
            "routing_properties": None if routing is None else MappingProxyType(dict(routing)),
        }
    )

    built = _convert.converter.structure(copy.deepcopy(fields), Participant)

    assert built == expected
    assert hash(built) == hash(expected)
    assert attrs.asdict(built, recurse=False) == attrs.asdict(expected, recurse=False)


def test_participant_has_nothing_that_attrs_runs_and_the_fast_path_would_skip() -> None:
    assert not hasattr(Participant, "__attrs_pre_init__")
    assert not hasattr(Participant, "__attrs_post_init__")
    assert all(f.validator is None and f.converter is None for f in attrs.fields(Participant))
    # A cached hash is a slot of its own, which the fast path would leave unset.
    assert set(vars(Participant)["__slots__"]) <= {f.name for f in attrs.fields(Participant)} | {
        "__weakref__"
    }


def test_a_parsed_participant_has_no_instance_dict() -> None:
    participant = routed(None)

    assert not hasattr(participant, "__dict__")
    with pytest.raises(AttributeError):
        participant.extra = 1  # type: ignore[attr-defined]


# Bodies that are not JSON


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        encode(SPEC_EXAMPLE)[:-1],
        encode(SPEC_EXAMPLE)[:40],
        b"<html><body>502 Bad Gateway</body></html>",
        b"\xff\xfe\x00{",
        b'{"participants": [], "meta": "\xff"}',
        b"{'participants': []}",
        b"NaN",
    ],
    ids=[
        "empty",
        "blank",
        "truncated-by-one",
        "truncated",
        "html",
        "invalid-utf8",
        "invalid-utf8-in-string",
        "single-quotes",
        "nan",
    ],
)
def test_a_body_that_is_not_json_is_an_invalid_response_that_is_not_json(body: bytes) -> None:
    with pytest.raises(InvalidResponseError, match="not valid JSON") as caught:
        parse(body)

    assert (caught.value.url, caught.value.status, caught.value.is_json) == (FIRST_PAGE, 200, False)


def test_loads_decodes_json_bytes() -> None:
    assert loads(b'{"a": [1, 2.5, null, true, "x"]}') == {"a": [1, 2.5, None, True, "x"]}


def test_loads_raises_value_error_for_bytes_that_are_not_json() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        loads(b"{")


def test_orjson_is_used_when_installed() -> None:
    if importlib.util.find_spec("orjson") is None:
        pytest.skip("orjson is not installed")
    import orjson

    assert _convert.JSON_LIBRARY == "orjson"
    assert _convert._loads is orjson.loads


# Bodies that are JSON of the wrong shape


def replace_participant(index: int, **fields: Any) -> bytes:
    body = example()
    body["participants"].append({"type": "agent"})
    body["participants"][index] |= fields
    return encode(body)


def replace_meta(**fields: Any) -> bytes:
    body = example()
    body["meta"] |= fields
    return encode(body)


def drop(mapping_path: tuple[str, ...], key: str) -> bytes:
    body = example()
    target = body
    for part in mapping_path:
        target = target[part]
    del target[key]
    return encode(body)


SHAPE_ERRORS: list[tuple[str, bytes, str]] = [
    ("top-level-list", b"[]", r"^expected a JSON object, got list$"),
    ("top-level-null", b"null", r"^expected a JSON object, got null$"),
    ("top-level-string", b'"participants"', r"^expected a JSON object, got str$"),
    ("top-level-number", b"42", r"^expected a JSON object, got int$"),
    ("no-participants", drop((), "participants"), r"^participants: expected a list, got null$"),
    ("participants-object", encode(SPEC_EXAMPLE | {"participants": {}}), r"^participants: expected a list, got dict$"),
    ("participants-null", encode(SPEC_EXAMPLE | {"participants": None}), r"^participants: expected a list, got null$"),
    ("participant-not-object", page_with({"type": "agent"}, "UT1"), r"^participants\[1\]: expected an object, got str$"),
    ("participant-null", page_with(None), r"^participants\[0\]: expected an object, got null$"),
    ("sid-int", replace_participant(2, sid=5), r"^participants\[2\]: sid: expected a string or null, got int$"),
    ("url-list", replace_participant(0, url=[]), r"^participants\[0\]: url: expected a string or null, got list$"),
    ("interaction-sid-bool", replace_participant(1, interaction_sid=True), r"^participants\[1\]: interaction_sid: expected a string or null, got bool$"),
    ("channel-sid-object", replace_participant(1, channel_sid={}), r"^participants\[1\]: channel_sid: expected a string or null, got dict$"),
    ("type-null", replace_participant(1, type=None), r"^participants\[1\]: type: expected a string, got null$"),
    ("type-int", replace_participant(0, type=1), r"^participants\[0\]: type: expected a string, got int$"),
    ("routing-list", replace_participant(1, routing_properties=[]), r"^participants\[1\]: routing_properties: expected an object or null, got list$"),
    ("routing-string", replace_participant(2, routing_properties="{}"), r"^participants\[2\]: routing_properties: expected an object or null, got str$"),
    ("no-meta", drop((), "meta"), r"^meta: expected an object, got null$"),
    ("meta-list", encode(SPEC_EXAMPLE | {"meta": []}), r"^meta: expected an object, got list$"),
    ("meta-page-string", replace_meta(page="0"), r"meta\.page"),
    ("meta-page-bool", replace_meta(page=False), r"meta\.page"),
    ("meta-page-float", replace_meta(page=0.0), r"meta\.page"),
    ("meta-page-size-null", replace_meta(page_size=None), r"meta\.page_size"),
    ("meta-no-url", drop(("meta",), "url"), r"meta\.url"),
    ("meta-no-key", drop(("meta",), "key"), r"meta\.key"),
    ("meta-url-int", replace_meta(url=1), r"meta\.url"),
    ("meta-next-page-url-int", replace_meta(next_page_url=1), r"meta\.next_page_url"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [(body, message) for _, body, message in SHAPE_ERRORS],
    ids=[name for name, _, _ in SHAPE_ERRORS],
)
def test_json_of_the_wrong_shape_is_an_invalid_json_response_naming_the_place(
    body: bytes, message: str
) -> None:
    assert re.search(message, problem_of(body))


def test_meta_errors_are_one_line() -> None:
    problem = problem_of(replace_meta(page="0", page_size="50"))

    assert "\n" not in problem
    assert "meta.page" in problem
    assert "meta.page_size" in problem


def test_the_first_bad_participant_is_the_one_named() -> None:
    body = page_with({"type": "agent"}, {"type": 1}, {"sid": 2, "type": "agent"})

    assert problem_of(body).startswith("participants[1]: type")


def test_routing_properties_nested_deeper_than_the_stack_is_an_invalid_response() -> None:
    # Valid JSON, within orjson's depth limit, deeper than Python can copy recursively.
    nested = b"[" * 1000 + b"]" * 1000
    body = b'{"meta": %s, "participants": [{"type": "agent", "routing_properties": {"a": %s}}]}' % (
        encode(SPEC_EXAMPLE["meta"]),
        nested,
    )

    with pytest.raises(InvalidResponseError):
        parse(body)


def nested_body(levels: int) -> bytes:
    """A page whose participant's routing properties nest ``levels`` containers deep."""
    nested = b"[" * (levels - 1) + b"]" * (levels - 1)
    return b'{"meta": %s, "participants": [{"type": "agent", "routing_properties": {"a": %s}}]}' % (
        encode(SPEC_EXAMPLE["meta"]),
        nested,
    )


def test_routing_properties_nested_up_to_the_limit_parse_and_go_back_to_plain_data() -> None:
    (participant,) = parse(nested_body(MAX_NESTING)).participants
    data = to_dict(participant)["routing_properties"]
    levels = 1
    while isinstance(data, dict | list) and data:
        data = data["a"] if isinstance(data, dict) else data[0]
        levels += 1
    assert levels == MAX_NESTING


def test_routing_properties_nested_past_the_limit_are_an_invalid_response() -> None:
    # Accepted, they would overflow to_dict() and a writer walking them back.
    assert "nested too deeply" in problem_of(nested_body(MAX_NESTING + 1))


# to_dict


def test_to_dict_of_a_participant_equals_the_input() -> None:
    raw = SPEC_EXAMPLE["participants"][1]
    (participant,) = parse(page_with(raw)).participants

    assert to_dict(participant) == raw


def test_to_dict_gives_plain_json_data() -> None:
    raw = {"type": "agent", "routing_properties": {"a": [1, {"b": [True, None, 1.5]}], "c": {}}}
    (participant,) = parse(page_with(raw)).participants

    data = to_dict(participant)

    assert_plain_json(data)
    assert data["routing_properties"] == {"a": [1, {"b": [True, None, 1.5]}], "c": {}}


@pytest.mark.parametrize("kind", ["agent", "bot"])
def test_to_dict_gives_the_type_as_a_plain_string(kind: str) -> None:
    (participant,) = parse(page_with({"type": kind})).participants

    data = to_dict(participant)

    assert type(data["type"]) is str
    assert data["type"] == kind


def test_to_dict_of_meta_equals_the_input_meta() -> None:
    assert to_dict(parse(encode(SPEC_EXAMPLE)).meta) == SPEC_EXAMPLE["meta"]


def test_to_dict_of_a_page_equals_the_input_page() -> None:
    data = to_dict(parse(encode(SPEC_EXAMPLE)))

    assert_plain_json(data)
    assert data == SPEC_EXAMPLE


def test_to_dict_output_serialises_with_the_stdlib_json() -> None:
    data = to_dict(parse(encode(SPEC_EXAMPLE)))

    assert json.loads(json.dumps(data)) == SPEC_EXAMPLE


@pytest.mark.parametrize(
    "other",
    [None, {"type": "agent"}, "agent", ChannelResult(KD, UO), ParticipantType.AGENT],
    ids=["None", "dict", "str", "ChannelResult", "ParticipantType"],
)
def test_to_dict_of_anything_else_raises_type_error(other: Any) -> None:
    with pytest.raises(TypeError, match=r"^to_dict\(\) takes a Participant"):
        to_dict(other)


# Properties

TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=16,
)
# Anything the stdlib emits, including what orjson refuses: NaN, huge ints, lone surrogates.
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
NULLABLE_TEXT = st.none() | TEXT

PARTICIPANTS = st.fixed_dictionaries(
    {"type": st.sampled_from(LISTED) | TEXT},
    optional={
        "sid": NULLABLE_TEXT,
        "interaction_sid": NULLABLE_TEXT,
        "channel_sid": NULLABLE_TEXT,
        "url": NULLABLE_TEXT,
        "routing_properties": st.none() | st.dictionaries(TEXT, JSON_VALUES, max_size=4),
        "date_created": JSON_VALUES,
    },
)
METAS = st.fixed_dictionaries(
    {
        "key": TEXT,
        "url": TEXT,
        "page": st.integers(min_value=0, max_value=2**31),
        "page_size": st.integers(min_value=1, max_value=1000),
        "first_page_url": TEXT,
    },
    optional={"next_page_url": NULLABLE_TEXT, "previous_page_url": NULLABLE_TEXT},
)
PAGES = st.fixed_dictionaries({"participants": st.lists(PARTICIPANTS, max_size=5), "meta": METAS})


@settings(max_examples=150, deadline=None)
@given(PAGES)
def test_to_dict_of_each_parsed_participant_equals_the_input_known_fields(
    page: dict[str, Any],
) -> None:
    parsed = parse(json.dumps(page).encode())

    expected = [{f: raw.get(f) for f in FIELDS} for raw in page["participants"]]
    actual = [to_dict(p) for p in parsed.participants]
    assert actual == expected
    # Equality would let True pass for 1, and a tuple never equals a list: compare the text too.
    assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)
    for data in actual:
        assert_plain_json(data)


def mangle_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value inside ``value``, the root excluded."""
    paths: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        paths.append((*path, key))
        paths.extend(mangle_paths(item, (*path, key)))
    return paths


def parses_or_fails_cleanly(body: bytes) -> None:
    try:
        result = parse(body)
    except InvalidResponseError:
        return
    assert isinstance(result, ParticipantPage)


@settings(max_examples=150, deadline=None)
@given(ANY_JSON)
def test_arbitrary_json_parses_or_is_only_an_invalid_response(value: Any) -> None:
    parses_or_fails_cleanly(json.dumps(value).encode())


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_are_only_an_invalid_response(body: bytes) -> None:
    parses_or_fails_cleanly(body)


@settings(max_examples=100, deadline=None)
@given(PAGES, st.data())
def test_a_truncated_page_parses_or_is_only_an_invalid_response(
    page: dict[str, Any], data: st.DataObject
) -> None:
    body = json.dumps(page).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))

    parses_or_fails_cleanly(body[:cut])


@settings(max_examples=100, deadline=None)
@given(PAGES, st.data())
def test_a_page_with_a_flipped_byte_parses_or_is_only_an_invalid_response(
    page: dict[str, Any], data: st.DataObject
) -> None:
    body = bytearray(json.dumps(page).encode())
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    body[index] ^= data.draw(st.integers(min_value=1, max_value=255))

    parses_or_fails_cleanly(bytes(body))


def mangled(
    page: dict[str, Any], data: st.DataObject, change: Callable[[Any, str | int], None]
) -> bytes:
    path = data.draw(st.sampled_from(mangle_paths(page)))
    *parents, last = path
    target: Any = page
    for part in parents:
        target = target[part]
    change(target, last)
    return json.dumps(page).encode()


@settings(max_examples=150, deadline=None)
@given(PAGES, st.data())
def test_a_page_with_a_key_deleted_parses_or_is_only_an_invalid_response(
    page: dict[str, Any], data: st.DataObject
) -> None:
    def delete(container: Any, key: str | int) -> None:
        del container[key]

    parses_or_fails_cleanly(mangled(page, data, delete))


@settings(max_examples=150, deadline=None)
@given(PAGES, st.data())
def test_a_page_with_a_value_replaced_parses_or_is_only_an_invalid_response(
    page: dict[str, Any], data: st.DataObject
) -> None:
    replacement = data.draw(ANY_JSON)

    def replace(container: Any, key: str | int) -> None:
        container[key] = replacement

    parses_or_fails_cleanly(mangled(page, data, replace))
