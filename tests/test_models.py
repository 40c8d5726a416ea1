"""`_models`: every participant, and every page, is hashable, with hash consistent with ==."""

from __future__ import annotations

import copy
import json
import pickle
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flex_participants import ChannelResult, PageMeta, Participant, ParticipantPage, ParticipantType
from flex_participants._convert import converter, parse_page

from .helpers import KD, UO, page_body, participant, participants_url, sid

ROUTING: dict[str, Any] = {
    "task_sid": "WT" + "a" * 32,
    "worker_sid": "WK" + "a" * 32,
    "skills": ["english", {"level": 3, "tags": ["a", "b"]}],
    "queue": {"sid": "WQ" + "a" * 32, "priority": {"value": 1.5, "boost": None}},
}


def agent(n: int = 1, routing: Any = ROUTING) -> Participant:
    """An agent as the client builds it from a response, with nested routing properties."""
    body = page_body([])
    body["participants"] = [participant(n, kind="agent", routing_properties=routing)]
    (built,) = parse_page(json.dumps(body).encode(), participants_url()).participants
    return built


def test_a_participant_with_nested_routing_properties_is_hashable() -> None:
    built = agent()
    assert isinstance(built.routing_properties, MappingProxyType)
    assert isinstance(built.routing_properties["queue"], MappingProxyType)
    assert isinstance(hash(built), int)


def test_a_participant_made_by_its_constructor_is_hashable() -> None:
    routing = MappingProxyType({"skills": ("english", MappingProxyType({"level": 3}))})
    made = Participant("UT1", ParticipantType.AGENT, KD, UO, None, routing)
    assert isinstance(hash(made), int)


def test_equal_participants_hash_equal() -> None:
    first, second = agent(), agent()
    assert first is not second
    assert first == second
    assert hash(first) == hash(second)


def test_routing_properties_still_decide_equality() -> None:
    first, other = agent(routing={"worker_sid": "WK1"}), agent(routing={"worker_sid": "WK2"})
    assert first != other
    assert len({first, other}) == 2


def test_participants_are_set_members_and_dict_keys() -> None:
    agents = [agent(n) for n in range(3)]
    again = [agent(n) for n in range(3)]
    assert set(agents) == set(again)
    assert len(set(agents + again)) == 3
    by_participant = {p: p.sid for p in agents}
    assert [by_participant[p] for p in again] == [sid("UT", n) for n in range(3)]


def test_a_page_of_agents_is_hashable_and_equal_pages_hash_equal() -> None:
    body = page_body(range(3))
    for raw in body["participants"]:
        raw.update(type="agent", routing_properties=ROUTING)
    first, second = (parse_page(json.dumps(body).encode(), participants_url()) for _ in range(2))
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


def test_a_page_built_by_hand_is_hashable() -> None:
    meta = PageMeta("participants", participants_url(), 0, 50, participants_url())
    page = ParticipantPage((agent(),), meta)
    assert hash(page) == hash(ParticipantPage((agent(),), meta))


# Properties: few distinct values, so that generated participants are often equal.

TEXT = st.sampled_from(["", "a", "UT1", "é"]) | st.text(max_size=4)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=12,
)
PARTICIPANTS = st.fixed_dictionaries(
    {
        "sid": st.none() | TEXT,
        "type": st.sampled_from([*ParticipantType, "bot", "AGENT"]).map(str),
        "interaction_sid": st.none() | TEXT,
        "channel_sid": st.none() | TEXT,
        "url": st.none() | TEXT,
        "routing_properties": st.none() | st.dictionaries(TEXT, JSON_VALUES, max_size=4),
    }
)


def build(raw: dict[str, Any]) -> Participant:
    """Structure a participant the way a page is built: without its __init__."""
    built: Participant = converter.structure(copy.deepcopy(raw), Participant)
    return built


@settings(max_examples=300, deadline=None)
@given(PARTICIPANTS, PARTICIPANTS)
def test_hash_never_raises_and_equal_participants_hash_equal(
    raw_a: dict[str, Any], raw_b: dict[str, Any]
) -> None:
    a, b, a_again = build(raw_a), build(raw_b), build(raw_a)
    assert a == a_again
    assert hash(a) == hash(a_again)
    if a == b:
        assert hash(a) == hash(b)
    assert len({a, b, a_again}) == (1 if a == b else 2)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_participant_with_nested_routing_properties_pickles_equal(protocol: int) -> None:
    built = agent()
    restored = pickle.loads(pickle.dumps(built, protocol))  # noqa: S301 - our own bytes
    assert restored == built
    assert isinstance(restored.routing_properties["queue"], MappingProxyType)
    assert copy.deepcopy(built) == built


def test_a_participant_of_a_type_added_later_pickles_with_its_raw_type() -> None:
    body = page_body([])
    body["participants"] = [participant(1, kind="a-kind-added-later")]
    (built,) = parse_page(json.dumps(body).encode(), participants_url()).participants
    restored = pickle.loads(pickle.dumps(built))  # noqa: S301 - our own bytes
    assert restored == built
    assert restored.type.value == "a-kind-added-later"
    assert not restored.type.is_listed


def test_a_successful_channel_result_pickles_whole() -> None:
    result = ChannelResult(KD, UO, (agent(1), agent(2)))
    assert pickle.loads(pickle.dumps(result)) == result  # noqa: S301 - our own bytes
