"""The emulator answers as Twilio does, over real loopback HTTP, and does what its faults say."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest
from yarl import URL

from flex_participants import FlexClient, InvalidArgumentError, RetryPolicy
from flex_participants.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    MAX_CHANNELS,
    Fault,
    FlexEmulator,
    RequestRecord,
)

from .helpers import Answer, AnswerWith, fetch, new_channel_url, opened, participants_url

TYPES = {"agent", "customer", "supervisor", "external", "unknown"}
KD_UNKNOWN = "KD" + "f" * 32
UO_UNKNOWN = "UO" + "f" * 32


async def walk(
    session: aiohttp.ClientSession, emulator: FlexEmulator, kd: str, uo: str, page_size: int
) -> list[dict[str, Any]]:
    """Every participant, by following ``next_page_url`` from the first page."""
    url: str | None = f"{participants_url(emulator.base_url, (kd, uo))}?PageSize={page_size}"
    participants: list[dict[str, Any]] = []
    expected_page = 0
    while url is not None:
        answer = await fetch(session, url)
        assert answer.status == 200, answer.body
        body = answer.json()
        assert body["meta"]["page"] == expected_page
        assert body["meta"]["page_size"] == page_size
        assert len(body["participants"]) <= page_size
        participants.extend(body["participants"])
        url = body["meta"]["next_page_url"]
        expected_page += 1
    return participants


def assert_twilio_error(answer: Answer, status: int, code: int) -> dict[str, Any]:
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = answer.json()
    assert body == {
        "code": code,
        "message": body["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


# -- paging -------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 7, 50, 1000])
async def test_walking_next_page_urls_returns_exactly_the_channel(
    session: aiohttp.ClientSession, emulator: FlexEmulator, page_size: int
) -> None:
    empty = emulator.add_channel(participants=0)
    small = emulator.add_channel(participants=3)
    exact = emulator.add_channel(participants=2 * page_size)
    large = emulator.add_channel(participants=2500 if page_size >= 50 else 230)
    for kd, uo in [empty, small, exact, large, *emulator.channels[:5]]:
        assert await walk(session, emulator, kd, uo, page_size) == emulator.participants_of(kd, uo)


async def test_first_page_meta_has_absolute_urls_on_the_emulator(
    session: aiohttp.ClientSession, channel_url: str
) -> None:
    answer = await fetch(session, channel_url, PageSize=50)
    meta = answer.json()["meta"]
    assert meta["key"] == "participants"
    assert meta["url"] == f"{channel_url}?PageSize=50&Page=0"
    assert meta["first_page_url"] == f"{channel_url}?PageSize=50&Page=0"
    assert meta["page"] == 0
    assert meta["page_size"] == 50
    assert meta["previous_page_url"] is None
    assert re.fullmatch(
        re.escape(channel_url) + r"\?PageSize=50&Page=1&PageToken=PT[\w-]+", meta["next_page_url"]
    )
    assert list(answer.json()) == ["participants", "meta"]


async def test_page_size_defaults_to_50(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel: tuple[str, str]
) -> None:
    body = (await fetch(session, participants_url(emulator.base_url, channel))).json()
    assert body["meta"]["page_size"] == 50
    assert body["participants"] == emulator.participants_of(*channel)[:50]


async def test_a_page_is_application_json(session: aiohttp.ClientSession, channel_url: str) -> None:
    answer = await fetch(session, channel_url)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Twilio-Request-Id"].startswith("RQ")


async def test_an_empty_channel_is_one_page_without_participants(
    session: aiohttp.ClientSession, emulator: FlexEmulator
) -> None:
    kd, uo = emulator.add_channel(participants=0)
    body = (await fetch(session, participants_url(emulator.base_url, (kd, uo)))).json()
    assert body["participants"] == []
    assert body["meta"]["next_page_url"] is None
    assert body["meta"]["previous_page_url"] is None


async def test_page_without_token_starts_at_page_times_page_size(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel: tuple[str, str]
) -> None:
    body = (
        await fetch(session, participants_url(emulator.base_url, channel), PageSize=20, Page=3)
    ).json()
    assert body["participants"] == emulator.participants_of(*channel)[60:80]
    assert body["meta"]["page"] == 3


async def test_a_page_past_the_end_is_empty_and_last(
    session: aiohttp.ClientSession, channel_url: str
) -> None:
    body = (await fetch(session, channel_url, PageSize=50, Page=9)).json()
    assert body["participants"] == []
    assert body["meta"]["next_page_url"] is None


async def test_previous_page_url_leads_back_to_the_page_before(
    session: aiohttp.ClientSession, channel_url: str
) -> None:
    first = (await fetch(session, channel_url, PageSize=30)).json()
    second = (await fetch(session, first["meta"]["next_page_url"])).json()
    back = (await fetch(session, second["meta"]["previous_page_url"])).json()
    assert back["participants"] == first["participants"]
    assert back["meta"]["page"] == 0
    assert second["meta"]["url"] == first["meta"]["next_page_url"]


async def test_flex_client_reads_every_participant_through_client_kwargs(
    emulator: FlexEmulator,
) -> None:
    kd, uo = emulator.add_channel(participants=260)
    async with FlexClient(**emulator.client_kwargs()) as client:
        participants = await client.participants(kd, uo, page_size=100).collect()
    assert [p.sid for p in participants] == [p["sid"] for p in emulator.participants_of(kd, uo)]


# -- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        aiohttp.encode_basic_auth(DEFAULT_ACCOUNT_SID, "wrong-token"),
        aiohttp.encode_basic_auth("AC" + "1" * 32, DEFAULT_AUTH_TOKEN),
        "Bearer " + DEFAULT_AUTH_TOKEN,
        "Basic not-base64!",
    ],
    ids=["missing", "wrong-token", "wrong-account", "not-basic", "garbled"],
)
async def test_bad_credentials_are_refused_with_401_code_20003(
    session: aiohttp.ClientSession,
    channel_url: str,
    authorization: str | None,
) -> None:
    answer = await fetch(session, channel_url, authorization=authorization)
    assert answer.status == 401
    assert answer.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


async def test_bad_credentials_come_before_not_found(
    session: aiohttp.ClientSession, emulator: FlexEmulator
) -> None:
    url = participants_url(emulator.base_url, (KD_UNKNOWN, UO_UNKNOWN))
    assert (await fetch(session, url, authorization=None)).status == 401


async def test_api_key_and_secret_are_accepted_as_well_as_the_auth_token(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(api_key="SK" + "2" * 32, api_secret="key-secret") as emulator:
        url = new_channel_url(emulator, participants=1)
        with_key = aiohttp.encode_basic_auth("SK" + "2" * 32, "key-secret")
        assert (await fetch(session, url, authorization=with_key)).status == 200
        assert (await fetch(session, url)).status == 200
        mixed = aiohttp.encode_basic_auth("SK" + "2" * 32, DEFAULT_AUTH_TOKEN)
        assert (await fetch(session, url, authorization=mixed)).status == 401


async def test_an_api_key_is_refused_when_none_is_configured(
    session: aiohttp.ClientSession, channel_url: str
) -> None:
    with_key = aiohttp.encode_basic_auth("SK" + "2" * 32, "key-secret")
    assert (await fetch(session, channel_url, authorization=with_key)).status == 401


# -- not found, bad requests --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kd", "uo"),
    [
        (KD_UNKNOWN, None),
        (None, UO_UNKNOWN),
        ("KD123", None),
        (None, "UO" + "g" * 32),
        (None, "XX" + "a" * 32),
    ],
    ids=["unknown-interaction", "unknown-channel", "short-kd", "non-hex-uo", "wrong-prefix"],
)
async def test_unknown_or_malformed_sids_are_404_code_20404(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel: tuple[str, str],
    kd: str | None,
    uo: str | None,
) -> None:
    path = f"/v1/Interactions/{kd or channel[0]}/Channels/{uo or channel[1]}/Participants"
    answer = await fetch(session, emulator.base_url + path)
    body = assert_twilio_error(answer, 404, 20404)
    assert body["message"] == f"The requested resource {path} was not found"


async def test_another_path_is_404_code_20404(
    session: aiohttp.ClientSession, emulator: FlexEmulator
) -> None:
    assert_twilio_error(await fetch(session, f"{emulator.base_url}/v1/Interactions"), 404, 20404)


async def test_a_method_other_than_get_is_405(
    session: aiohttp.ClientSession, channel_url: str
) -> None:
    answer = await fetch(session, channel_url, method="POST")
    assert_twilio_error(answer, 405, 20004)


@pytest.mark.parametrize(
    "query",
    [
        {"PageSize": "0"},
        {"PageSize": "1001"},
        {"PageSize": "abc"},
        {"PageSize": "-1"},
        {"PageSize": ""},
        {"Page": "-1"},
        {"Page": "abc"},
        {"PageToken": "forged"},
        {"PageToken": "PT" + "A" * 22},
    ],
    ids=lambda query: "&".join(f"{k}={v}" for k, v in query.items()),
)
async def test_bad_paging_parameters_are_400_code_20001(
    session: aiohttp.ClientSession,
    channel_url: str,
    query: dict[str, str],
) -> None:
    answer = await fetch(session, channel_url, **query)
    body = assert_twilio_error(answer, 400, 20001)
    assert next(iter(query)) in body["message"]


async def test_a_garbled_page_token_is_400(
    session: aiohttp.ClientSession, channel_url: str
) -> None:
    first = (await fetch(session, channel_url, PageSize=10)).json()
    token = URL(first["meta"]["next_page_url"]).query["PageToken"]
    garbled = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    answer = await fetch(session, channel_url, PageToken=garbled)
    assert_twilio_error(answer, 400, 20001)


async def test_a_page_token_of_another_channel_is_400(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    other = emulator.add_channel(participants=120)
    first = (await fetch(session, participants_url(emulator.base_url, other), PageSize=10)).json()
    token = URL(first["meta"]["next_page_url"]).query["PageToken"]
    answer = await fetch(session, channel_url, PageToken=token)
    assert_twilio_error(answer, 400, 20001)


# -- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [None, 2.0, 0.5])
async def test_requests_above_max_in_flight_are_429_code_20429(
    session: aiohttp.ClientSession, retry_after: float | None
) -> None:
    async with FlexEmulator(latency=0.5, max_in_flight=3, retry_after=retry_after) as emulator:
        url = new_channel_url(emulator)
        answers = await asyncio.gather(*(fetch(session, url) for _ in range(5)))
        statuses = sorted(answer.status for answer in answers)
        assert statuses == [200, 200, 200, 429, 429]
        for answer in answers:
            if answer.status == 429:
                body = assert_twilio_error(answer, 429, 20429)
                assert body["message"] == "Too many requests"
                expected = {None: None, 2.0: "2", 0.5: "0.5"}[retry_after]
                assert answer.headers.get("Retry-After") == expected
        assert emulator.stats.throttled == 2
        assert emulator.stats.requests == 5
        assert sum(record.throttled for record in emulator.stats.log) == 2


async def test_in_flight_counts_requests_until_they_are_answered(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(latency=0.3) as emulator:
        url = new_channel_url(emulator)
        answers = await asyncio.gather(*(fetch(session, url) for _ in range(6)))
        assert [answer.status for answer in answers] == [200] * 6
        assert emulator.stats.peak_in_flight == 6
        assert emulator.stats.in_flight == 0
        assert emulator.stats.throttled == 0


async def test_max_in_flight_admits_again_once_requests_finish(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(max_in_flight=1) as emulator:
        url = new_channel_url(emulator)
        for _ in range(4):
            assert (await fetch(session, url)).status == 200
        assert emulator.stats.throttled == 0


# -- faults -------------------------------------------------------------------------------


async def test_status_fault_answers_a_twilio_error_exactly_times_times(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("status", status=503, times=2, retry_after=1))
    answers = [await fetch(session, channel_url) for _ in range(3)]
    for answer in answers[:2]:
        assert_twilio_error(answer, 503, 20503)
        assert answer.headers["Retry-After"] == "1"
    assert answers[2].status == 200
    assert emulator.stats.faults_fired == 2
    assert [record.fault for record in emulator.stats.log] == ["status", "status", None]


async def test_html_fault_answers_a_proxy_502_page(answer_with: AnswerWith) -> None:
    answer = await answer_with(Fault("html"))
    assert answer.status == 502
    assert answer.headers["Content-Type"] == "text/html"
    assert b"502 Bad Gateway" in answer.body


async def test_reset_fault_cuts_the_connection_mid_body(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("reset"))
    async with opened(session, channel_url) as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) > 0
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert (await fetch(session, channel_url)).status == 200
    assert emulator.stats.log[0].fault == "reset"


async def test_truncated_fault_sends_half_the_json_with_a_matching_length(
    session: aiohttp.ClientSession, channel_url: str, answer_with: AnswerWith
) -> None:
    whole = await fetch(session, channel_url)
    answer = await answer_with(Fault("truncated"))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Content-Length"]) == len(answer.body) == len(whole.body) // 2
    assert whole.body.startswith(answer.body)
    with pytest.raises(json.JSONDecodeError):
        answer.json()


async def test_empty_fault_answers_200_without_a_body(answer_with: AnswerWith) -> None:
    answer = await answer_with(Fault("empty"))
    assert answer.status == 200
    assert answer.body == b""


async def test_slow_fault_answers_normally_after_its_delay(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel: tuple[str, str]
) -> None:
    emulator.add_fault(Fault("slow", delay=0.2))
    answer = await fetch(session, participants_url(emulator.base_url, channel))
    assert answer.status == 200
    assert answer.json()["participants"] == emulator.participants_of(*channel)[:50]
    # asyncio's clock may wake a hair early; the delay was still served.
    assert emulator.stats.log[0].duration >= 0.19


async def test_body_fault_answers_the_raw_body_given(answer_with: AnswerWith) -> None:
    answer = await answer_with(
        Fault("body", body=b'{"participants": 3}', content_type="text/plain")
    )
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/plain"
    assert answer.body == b'{"participants": 3}'


async def test_a_fault_for_a_channel_fires_only_for_that_channel(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel: tuple[str, str]
) -> None:
    other = emulator.add_channel(participants=5)
    emulator.add_fault(Fault("status", status=500, channel_sid=channel[1]))
    assert (await fetch(session, participants_url(emulator.base_url, other))).status == 200
    assert (await fetch(session, participants_url(emulator.base_url, channel))).status == 500
    assert (await fetch(session, participants_url(emulator.base_url, channel))).status == 200


async def test_a_fault_for_a_page_fires_only_for_that_page(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("status", status=500, page=1, times=2))
    first = await fetch(session, channel_url, PageSize=50)
    assert first.status == 200
    next_url = first.json()["meta"]["next_page_url"]
    assert [(await fetch(session, next_url)).status for _ in range(3)] == [500, 500, 200]
    assert (await fetch(session, channel_url, PageSize=50, Page=2)).status == 200


async def test_faults_do_not_fire_for_refused_requests(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("empty"))
    assert (await fetch(session, channel_url, authorization=None)).status == 401
    assert (await fetch(session, channel_url, PageSize=0)).status == 400
    assert emulator.pending_faults == [(Fault("empty"), 1)]


async def test_faults_fire_in_the_order_they_were_added(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("status", status=500))
    emulator.add_fault(Fault("status", status=503))
    assert [(await fetch(session, channel_url)).status for _ in range(3)] == [500, 503, 200]


async def test_clear_faults_drops_the_faults_not_fired(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("status", status=500, times=5))
    emulator.clear_faults()
    assert emulator.pending_faults == []
    assert (await fetch(session, channel_url)).status == 200


@pytest.mark.parametrize(
    "arguments",
    [
        {"kind": "boom"},
        {"kind": "status"},
        {"kind": "status", "status": 200},
        {"kind": "slow"},
        {"kind": "body"},
        {"kind": "empty", "status": 500},
        {"kind": "reset", "retry_after": 1},
        {"kind": "html", "times": 0},
        {"kind": "html", "page": -1},
        {"kind": "slow", "delay": -1},
        {"kind": "empty", "body": b"x"},
    ],
)
def test_a_fault_that_cannot_be_served_is_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are checked by eye
        Fault(**arguments)


# -- counters and the log -----------------------------------------------------------------


async def test_the_log_records_each_request(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel: tuple[str, str]
) -> None:
    url = participants_url(emulator.base_url, channel)
    await fetch(session, url, PageSize=20, Page=2)
    await fetch(session, url, authorization=None)
    await fetch(session, url, PageSize="abc")
    ok, refused, bad = emulator.stats.log
    assert isinstance(ok, RequestRecord)
    assert (ok.interaction_sid, ok.channel_sid) == channel
    assert (ok.page, ok.page_size, ok.status, ok.authorized) == (2, 20, 200, True)
    assert ok.query == {"PageSize": "20", "Page": "2"}
    assert ok.started <= ok.finished
    assert (refused.status, refused.authorized) == (401, False)
    assert (bad.status, bad.authorized, bad.page_size, bad.page) == (400, True, None, 0)


async def test_stats_count_requests_and_service_time(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.latency = 0.05
    for _ in range(3):
        await fetch(session, channel_url)
    stats = emulator.stats
    assert (stats.requests, stats.in_flight, stats.peak_in_flight) == (3, 0, 1)
    assert stats.service_time >= 3 * 0.049
    assert stats.service_time == pytest.approx(sum(r.duration for r in stats.log))


async def test_reset_stats_zeroes_the_counters_and_starts_a_new_log(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    await fetch(session, channel_url)
    old_log = emulator.stats.log
    emulator.reset_stats()
    assert emulator.stats.requests == 0
    assert emulator.stats.log == []
    assert len(old_log) == 1


async def test_the_log_stops_at_its_limit_and_counts_what_it_dropped(
    session: aiohttp.ClientSession,
) -> None:
    async with FlexEmulator(log_limit=2) as emulator:
        url = new_channel_url(emulator, participants=1)
        for _ in range(5):
            await fetch(session, url)
        assert len(emulator.stats.log) == 2
        assert emulator.stats.log_dropped == 3
        assert emulator.stats.requests == 5


async def test_stats_are_served_as_json_without_auth_and_reset_by_post(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    await fetch(session, channel_url, PageSize=5)
    served = await fetch(session, f"{emulator.base_url}/__emulator__/stats", authorization=None)
    data = served.json()
    assert data["requests"] == 1
    assert data["log"][0]["status"] == 200
    assert data["log"][0]["query"] == {"PageSize": "5"}
    counters = (await fetch(session, f"{emulator.base_url}/__emulator__/stats?log=0")).json()
    assert "log" not in counters
    reset = await fetch(
        session, f"{emulator.base_url}/__emulator__/reset", method="POST", authorization=None
    )
    assert reset.status == 204
    assert emulator.stats.requests == 0


# -- data ---------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_data() -> None:
    first, second = FlexEmulator(seed=11, channels=40), FlexEmulator(seed=11, channels=40)
    assert first.channels == second.channels
    assert first.add_channel(participants=30) == second.add_channel(participants=30)
    for kd, uo in first.channels:
        assert first.participants_of(kd, uo) == second.participants_of(kd, uo)


def test_a_different_seed_gives_different_data() -> None:
    first, second = FlexEmulator(seed=11, channels=40), FlexEmulator(seed=12, channels=40)
    assert set(first.channels).isdisjoint(second.channels)
    assert first.add_channel(participants=3) != second.add_channel(participants=3)


def test_seeded_data_covers_every_type_and_a_range_of_sizes() -> None:
    emulator = FlexEmulator(seed=7, channels=300)
    sizes = []
    sids = set()
    types = set()
    for kd, uo in emulator.channels:
        participants = emulator.participants_of(kd, uo)
        sizes.append(len(participants))
        for participant in participants:
            types.add(participant["type"])
            sids.add(participant["sid"])
            assert re.fullmatch(r"UT[0-9a-f]{32}", participant["sid"])
            assert (participant["interaction_sid"], participant["channel_sid"]) == (kd, uo)
            assert participant["url"] == (
                f"https://flex-api.twilio.com/v1/Interactions/{kd}/Channels/{uo}"
                f"/Participants/{participant['sid']}"
            )
            routing = participant["routing_properties"]
            if participant["type"] == "agent":
                assert set(routing) == {"task_sid", "worker_sid", "reservation_sid"}
                assert re.fullmatch(r"WT[0-9a-f]{32}", routing["task_sid"])
                assert re.fullmatch(r"WK[0-9a-f]{32}", routing["worker_sid"])
                assert re.fullmatch(r"WR[0-9a-f]{32}", routing["reservation_sid"])
            else:
                assert routing is None
    assert types == TYPES
    assert len(sids) == sum(sizes)
    assert 0 in sizes
    assert max(sizes) > 1000
    assert sorted(sizes)[len(sizes) // 2] <= 10


def test_twenty_thousand_channels_are_built_in_well_under_a_second() -> None:
    started = time.perf_counter()
    emulator = FlexEmulator(seed=1, channels=20_000)
    assert len(emulator.channels) == 20_000
    assert time.perf_counter() - started < 1.0


def test_participants_given_as_dicts_are_kept_as_given() -> None:
    given = [{"sid": "UT" + "1" * 32, "type": "robot", "extra": [1, 2]}]
    emulator = FlexEmulator()
    kd, uo = emulator.add_channel("KD" + "1" * 32, "UO" + "1" * 32, participants=given)
    given[0]["type"] = "changed later"
    assert emulator.participants_of(kd, uo) == [
        {"sid": "UT" + "1" * 32, "type": "robot", "extra": [1, 2]}
    ]
    assert (kd, uo) == ("KD" + "1" * 32, "UO" + "1" * 32)


async def test_participants_given_as_dicts_are_served_as_given(
    session: aiohttp.ClientSession, emulator: FlexEmulator
) -> None:
    given: list[dict[str, Any]] = [{"sid": None, "type": "robot"}, {"anything": {"nested": 1}}]
    kd, uo = emulator.add_channel(participants=given)
    served = (await fetch(session, participants_url(emulator.base_url, (kd, uo)))).json()
    assert served["participants"] == given


def test_generated_sids_match_their_patterns() -> None:
    kd, uo = FlexEmulator().add_channel()
    assert re.fullmatch(r"KD[0-9a-f]{32}", kd)
    assert re.fullmatch(r"UO[0-9a-f]{32}", uo)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"interaction_sid": "KD1"}, ValueError),
        ({"channel_sid": "UO" + "z" * 32}, ValueError),
        ({"participants": -1}, ValueError),
        ({"participants": "abc"}, TypeError),
        ({"participants": [1]}, TypeError),
        ({"participants": [{"x": object()}]}, TypeError),
    ],
)
def test_add_channel_refuses_what_cannot_be_served(
    arguments: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        FlexEmulator().add_channel(**arguments)


def test_add_channel_refuses_a_channel_that_exists() -> None:
    emulator = FlexEmulator()
    kd, uo = emulator.add_channel()
    with pytest.raises(ValueError, match="already exists"):
        emulator.add_channel(kd, uo)


def test_participants_of_an_unknown_channel_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        FlexEmulator().participants_of(KD_UNKNOWN, UO_UNKNOWN)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_iter_participants_yields_what_participants_of_holds_a_chunk_at_a_time(chunk: int) -> None:
    emulator = FlexEmulator(seed=5)
    generated = emulator.add_channel(participants=23)
    given = emulator.add_channel(participants=[{"sid": None, "type": "bot"}] * 3)
    for channel in (generated, given):
        assert list(emulator.iter_participants(*channel, chunk=chunk)) == emulator.participants_of(
            *channel
        )
        assert emulator.channel_size(*channel) == len(emulator.participants_of(*channel))


def test_iter_participants_and_channel_size_refuse_what_they_cannot_serve() -> None:
    emulator = FlexEmulator()
    kd, uo = emulator.add_channel(participants=2)
    with pytest.raises(KeyError):
        emulator.channel_size(KD_UNKNOWN, UO_UNKNOWN)
    with pytest.raises(KeyError):
        list(emulator.iter_participants(KD_UNKNOWN, UO_UNKNOWN))
    with pytest.raises(ValueError, match="chunk"):
        list(emulator.iter_participants(kd, uo, chunk=0))


# -- lifecycle ----------------------------------------------------------------------------


def test_base_url_before_start_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = FlexEmulator().base_url


async def test_client_kwargs_name_the_running_server() -> None:
    async with FlexEmulator(account_sid="AC" + "9" * 32, auth_token="t") as emulator:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", emulator.base_url)
        assert emulator.client_kwargs() == {
            "base_url": emulator.base_url,
            "account_sid": "AC" + "9" * 32,
            "auth_token": "t",
        }
        assert emulator.port == int(emulator.base_url.rsplit(":", 1)[1])


async def test_starting_twice_is_a_runtime_error() -> None:
    async with FlexEmulator() as emulator:
        with pytest.raises(RuntimeError, match="already running"):
            await emulator.start()


async def test_stop_is_idempotent_and_frees_the_port() -> None:
    emulator = FlexEmulator()
    await emulator.start()
    port = emulator.port
    await emulator.stop()
    await emulator.stop()
    assert not emulator.running
    async with FlexEmulator(port=port) as again:
        assert again.port == port


@pytest.mark.parametrize(
    "arguments",
    [
        {"port": -1},
        {"channels": -1},
        {"latency": -0.1},
        {"latency": float("nan")},
        {"max_in_flight": 0},
        {"retry_after": -1},
        {"api_key": "SK" + "1" * 32},
        {"seed": "seven"},
    ],
)
def test_settings_out_of_range_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are checked by eye
        FlexEmulator(**arguments)


def test_the_command_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "flex_participants.emulator", "--seed", "3", "--channels", "4"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:  # noqa: S603
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        assert re.fullmatch(r"base_url=http://127\.0\.0\.1:\d+", lines[0])
        assert lines[1:] == [
            f"account_sid={DEFAULT_ACCOUNT_SID}",
            f"auth_token={DEFAULT_AUTH_TOKEN}",
        ]
        base_url = lines[0].removeprefix("base_url=")

        async def read_stats() -> dict[str, Any]:
            async with aiohttp.ClientSession() as client_session:
                answer = await fetch(client_session, f"{base_url}/__emulator__/stats")
            data: dict[str, Any] = answer.json()
            return data

        assert asyncio.run(read_stats())["requests"] == 0
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


async def test_a_client_retries_through_faults_to_the_data(emulator: FlexEmulator) -> None:
    kd, uo = emulator.add_channel(participants=120)
    for kind in ("reset", "truncated", "html", "empty"):
        emulator.add_fault(Fault(kind, channel_sid=uo, page=1))
    retry = RetryPolicy(max_attempts=5, backoff_base=0.0)
    async with FlexClient(**emulator.client_kwargs(), retry=retry) as client:
        participants = await client.participants(kd, uo, page_size=50).collect()
    assert len(participants) == 120
    assert emulator.stats.faults_fired == 4


def test_an_emulator_refuses_more_channels_than_it_can_build() -> None:
    with pytest.raises(InvalidArgumentError, match=f"from 0 to {MAX_CHANNELS}, got"):
        FlexEmulator(channels=MAX_CHANNELS + 1)
