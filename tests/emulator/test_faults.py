"""The emulator's hostile faults, each served exactly as `Fault` documents it.

Requests are made with plain aiohttp, never the SDK's client: what is checked is what goes
over the wire.
"""

from __future__ import annotations

import email.utils
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from flex_participants.emulator import Fault, FlexEmulator

from .helpers import MIB, Answer, AnswerWith, fetch, opened, participants_url

SPACES = b" " * MIB


async def walk(session: aiohttp.ClientSession, url: str, steps: int) -> list[dict[str, Any]]:
    """The pages met by following ``next_page_url`` from ``url``, at most ``steps`` of them."""
    pages: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url is not None and len(pages) < steps:
        answer = await fetch(session, next_url)
        assert answer.status == 200, answer.body
        pages.append(answer.json())
        next_url = pages[-1]["meta"]["next_page_url"]
    return pages


class Inflated:
    """What a large body held, counted a chunk at a time without holding it.

    ``text`` is the body without its spaces: the page itself, as the emulator's JSON has none
    but the padding.
    """

    def __init__(self) -> None:
        self.size = 0
        self._parts: list[bytes] = []

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        # Most chunks are all padding; comparing is far cheaper than removing the spaces.
        if chunk != SPACES[: len(chunk)]:
            self._parts.append(chunk.replace(b" ", b""))

    @property
    def text(self) -> bytes:
        return b"".join(self._parts)


def inflate(compressed: bytes, wbits: int) -> Inflated:
    decompressor = zlib.decompressobj(wbits)
    inflated, pending = Inflated(), compressed
    while pending:
        inflated.add(decompressor.decompress(pending, MIB))
        pending = decompressor.unconsumed_tail
    inflated.add(decompressor.flush())
    # A wrong checksum or length would have raised zlib.error on the way.
    assert decompressor.eof
    assert not decompressor.unused_data
    return inflated


@pytest_asyncio.fixture
async def raw_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that leaves compressed bodies compressed."""
    async with aiohttp.ClientSession(auto_decompress=False) as client_session:
        yield client_session


async def normal_page(session: aiohttp.ClientSession, url: str) -> Answer:
    """The first page at ``url``, as it is served without a fault."""
    answer = await fetch(session, url)
    assert answer.status == 200
    return answer


# -- "cycle" ------------------------------------------------------------------------------


async def test_a_cycle_of_period_1_names_the_page_itself_once_per_time(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel: tuple[str, str],
    channel_url: str,
) -> None:
    emulator.add_fault(Fault("cycle", times=3))
    pages = await walk(session, f"{channel_url}?PageSize=50", 6)
    assert [page["meta"]["page"] for page in pages] == [0, 0, 0, 0, 1, 2]
    for page in pages[:3]:
        assert page["meta"]["next_page_url"] == page["meta"]["url"]
        assert page["participants"] == emulator.participants_of(*channel)[:50]
    assert emulator.stats.faults_fired == 3
    assert [record.fault for record in emulator.stats.log] == ["cycle"] * 3 + [None] * 3


async def test_a_cycle_of_period_2_leads_page_b_back_to_page_a(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel: tuple[str, str],
    channel_url: str,
) -> None:
    emulator.add_fault(Fault("cycle", period=2, times=3))
    pages = await walk(session, f"{channel_url}?PageSize=20", 12)
    assert [page["meta"]["page"] for page in pages] == [0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 4, 5]
    # Page 1 leads back to the URL the server names page 0 by.
    assert pages[1]["meta"]["next_page_url"] == pages[0]["meta"]["first_page_url"]
    everyone = emulator.participants_of(*channel)
    for page in pages:
        start = page["meta"]["page"] * 20
        assert page["participants"] == everyone[start : start + 20]
    assert emulator.stats.faults_fired == 3
    assert emulator.pending_faults == []


async def test_a_cycle_leads_back_to_the_url_the_client_followed_to_that_page(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("cycle", period=3, page=3, times=2))
    pages = await walk(session, f"{channel_url}?PageSize=10", 12)
    assert [page["meta"]["page"] for page in pages] == [0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 4, 5]
    assert pages[3]["meta"]["next_page_url"] == pages[0]["meta"]["next_page_url"]


async def test_a_cycle_goes_on_as_long_as_times_lasts(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel: tuple[str, str],
    channel_url: str,
) -> None:
    emulator.add_fault(Fault("cycle", period=2, times=10**9, channel_sid=channel[1]))
    pages = await walk(session, f"{channel_url}?PageSize=50", 40)
    assert [page["meta"]["page"] for page in pages] == [0, 1] * 20
    assert emulator.pending_faults[0][1] == 10**9 - 20


def test_a_cycle_matches_only_pages_it_can_lead_back_from() -> None:
    fault = Fault("cycle", period=3)
    assert [fault.matches("UO" + "1" * 32, page) for page in range(4)] == [
        False,
        False,
        True,
        True,
    ]
    assert not Fault("respelled", spelling="relative", period=2).matches("UO" + "1" * 32, 0)


# -- "respelled" --------------------------------------------------------------------------


def respelled(url: str, spelling: str, emulator: FlexEmulator) -> str:
    """``url`` spelled as the fault documents each spelling."""
    origin = emulator.base_url
    path_and_query = url.removeprefix(origin)
    path, _, query = path_and_query.partition("?")
    if spelling == "reordered":
        return f"{origin}{path}?{'&'.join(reversed(query.split('&')))}"
    if spelling == "relative":
        return path_and_query
    if spelling == "fragment":
        return f"{url}#participants"
    if spelling == "port":
        return f"http://127.0.0.1:0{emulator.port}{path_and_query}"
    assert spelling == "percent_encoded"
    return url.replace("/Participants?", "/%50articipants?")


@pytest.mark.parametrize(
    "spelling", ["reordered", "relative", "fragment", "port", "percent_encoded"]
)
async def test_respelled_names_the_page_itself_spelled_otherwise(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel: tuple[str, str],
    channel_url: str,
    spelling: str,
) -> None:
    first = await normal_page(session, channel_url)
    second_url = first.json()["meta"]["next_page_url"]
    emulator.add_fault(Fault("respelled", spelling=spelling, page=1))  # type: ignore[arg-type]
    second = (await fetch(session, second_url)).json()
    assert second["participants"] == emulator.participants_of(*channel)[50:100]
    served = second["meta"]["next_page_url"]
    assert served == respelled(second_url, spelling, emulator)
    assert served != second_url
    # Resolved as RFC 3986 says, it is the same page.
    again = (await fetch(session, str(URL(second_url).join(URL(served, encoded=True))))).json()
    assert again["participants"] == second["participants"]
    assert again["meta"]["url"] == second_url


async def test_respelled_with_a_period_leads_back_to_an_earlier_page(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("respelled", spelling="reordered", period=2, page=2))
    pages = await walk(session, f"{channel_url}?PageSize=30", 3)
    page_1_url = pages[0]["meta"]["next_page_url"]
    assert pages[2]["meta"]["next_page_url"] == respelled(page_1_url, "reordered", emulator)


# -- "other_channel" ----------------------------------------------------------------------


async def test_other_channel_next_page_url_leads_to_another_channels_next_page(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel: tuple[str, str],
    answer_with: AnswerWith,
) -> None:
    other = emulator.add_channel(participants=120)
    first = (
        await answer_with(Fault("other_channel", target="next_page_url", as_channel=other))
    ).json()
    assert first["participants"] == emulator.participants_of(*channel)[:50]
    next_url = first["meta"]["next_page_url"]
    assert next_url.startswith(
        f"{participants_url(emulator.base_url, other)}?PageSize=50&Page=1&PageToken="
    )
    followed = (await fetch(session, next_url)).json()
    assert followed["participants"] == emulator.participants_of(*other)[50:100]


async def test_other_channel_next_page_url_is_set_even_on_the_last_page(
    session: aiohttp.ClientSession, emulator: FlexEmulator
) -> None:
    small = emulator.add_channel(participants=3)
    other = emulator.add_channel(participants=3)
    emulator.add_fault(Fault("other_channel", target="next_page_url", as_channel=other))
    meta = (await fetch(session, participants_url(emulator.base_url, small))).json()["meta"]
    assert meta["next_page_url"].startswith(participants_url(emulator.base_url, other))


async def test_other_channel_defaults_to_the_complement_of_the_requested_sids(
    session: aiohttp.ClientSession, emulator: FlexEmulator
) -> None:
    channel = emulator.add_channel("KD" + "0123456789abcdef" * 2, "UO" + "fedcba98" * 4, 60)
    emulator.add_fault(Fault("other_channel", target="next_page_url"))
    next_url = (await fetch(session, participants_url(emulator.base_url, channel))).json()["meta"][
        "next_page_url"
    ]
    complement = ("KD" + "fedcba9876543210" * 2, "UO" + "01234567" * 4)
    assert next_url.startswith(participants_url(emulator.base_url, complement))
    assert (await fetch(session, next_url)).status == 404


async def test_other_channel_participants_name_another_channel_and_nothing_else(
    session: aiohttp.ClientSession,
    channel: tuple[str, str],
    channel_url: str,
    answer_with: AnswerWith,
) -> None:
    normal = (await normal_page(session, channel_url)).json()
    other = ("KD" + "e" * 32, "UO" + "e" * 32)
    served = (
        await answer_with(Fault("other_channel", target="participants", as_channel=other))
    ).json()
    assert served["meta"] == normal["meta"]
    own_path = "/Interactions/{}/Channels/{}/".format(*channel)
    other_path = "/Interactions/{}/Channels/{}/".format(*other)
    for moved, real in zip(served["participants"], normal["participants"], strict=True):
        assert moved == {
            **real,
            "interaction_sid": other[0],
            "channel_sid": other[1],
            "url": real["url"].replace(own_path, other_path),
        }


async def test_other_channel_leaves_participants_given_by_the_user_unchanged(
    session: aiohttp.ClientSession, emulator: FlexEmulator
) -> None:
    given = [{"sid": "UT" + "1" * 32, "type": "agent", "url": None}]
    channel = emulator.add_channel(participants=given)
    emulator.add_fault(Fault("other_channel", target="participants"))
    served = (await fetch(session, participants_url(emulator.base_url, channel))).json()
    assert served["participants"][0]["channel_sid"] != channel[1]
    assert served["participants"][0]["url"] is None
    assert emulator.participants_of(*channel) == given


# -- "next_page_url" ----------------------------------------------------------------------


async def test_next_page_url_serves_the_url_given_as_is(
    emulator: FlexEmulator,
    channel: tuple[str, str],
    answer_with: AnswerWith,
) -> None:
    served = (await answer_with(Fault("next_page_url", url="ht tp://\u00e9\n"))).json()
    assert served["meta"]["next_page_url"] == "ht tp://\u00e9\n"
    assert served["participants"] == emulator.participants_of(*channel)[:50]


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        (None, "http:{path}"),
        ("no_host", "http:{path}"),
        ("empty_host", "http://{path}"),
        ("scheme_relative", "//evil.example{path}"),
        ("mailto", "mailto:participants@evil.example"),
        ("javascript", "javascript:alert(document.cookie)"),
        ("file", "file:///etc/passwd"),
    ],
)
async def test_next_page_url_forms_are_the_malformed_urls_documented(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel_url: str,
    answer_with: AnswerWith,
    form: str | None,
    expected: str,
) -> None:
    real_next = (await normal_page(session, channel_url)).json()["meta"]["next_page_url"]
    served = (await answer_with(Fault("next_page_url", form=form))).json()  # type: ignore[arg-type]
    path = real_next.removeprefix(emulator.base_url)
    assert path.startswith("/v1/Interactions/")
    assert served["meta"]["next_page_url"] == expected.format(path=path)


# -- "oversized" --------------------------------------------------------------------------


async def read_counting(response: aiohttp.ClientResponse) -> Inflated:
    served = Inflated()
    async for chunk in response.content.iter_chunked(MIB):
        served.add(chunk)
    return served


@pytest.mark.parametrize(
    ("size", "content_length"), [(3 * MIB, None), (3 * MIB + 17, True), (2 * MIB + 1, False)]
)
async def test_oversized_streams_a_page_of_size_bytes(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel_url: str,
    size: int,
    content_length: bool | None,
) -> None:
    normal = await normal_page(session, channel_url)
    emulator.add_fault(Fault("oversized", size=size, content_length=content_length))
    async with opened(session, channel_url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        if content_length is False:
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers
        else:
            assert int(response.headers["Content-Length"]) == size
        served = await read_counting(response)
    assert served.size == size
    assert served.text == normal.body
    assert emulator.stats.log[-1].fault == "oversized"


async def test_oversized_is_64_mib_by_default(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("oversized"))
    async with opened(session, channel_url) as response:
        assert int(response.headers["Content-Length"]) == 64 * MIB
        assert (await read_counting(response)).size == 64 * MIB


async def test_oversized_sends_a_page_longer_than_size_as_it_is(
    session: aiohttp.ClientSession, channel_url: str, answer_with: AnswerWith
) -> None:
    normal = await normal_page(session, channel_url)
    assert (await answer_with(Fault("oversized", size=10))).body == normal.body


async def test_oversized_ends_quietly_when_the_client_stops_reading(
    session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.add_fault(Fault("oversized", size=256 * MIB))
    async with opened(session, channel_url) as response:
        await response.content.readexactly(MIB)
        response.close()
    assert (await fetch(session, channel_url)).status == 200
    # Stopping waits for the handler that was streaming: it has ended, and logged no error.
    await emulator.stop()
    assert {(record.fault, record.status) for record in emulator.stats.log} == {
        (None, 200),
        ("oversized", 200),
    }
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


# -- "gzip_bomb" --------------------------------------------------------------------------


async def test_gzip_bomb_sends_about_200_kib_that_inflate_to_200_mib_of_the_page(
    session: aiohttp.ClientSession,
    raw_session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel_url: str,
) -> None:
    normal = await normal_page(session, channel_url)
    emulator.add_fault(Fault("gzip_bomb"))
    answer = await fetch(raw_session, channel_url)
    assert answer.status == 200
    assert answer.headers["Content-Encoding"] == "gzip"
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Content-Length"]) == len(answer.body) < 256 * 1024
    inflated = inflate(answer.body, wbits=16 + zlib.MAX_WBITS)
    assert inflated.size == 200 * MIB
    assert inflated.text == normal.body


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 16 + 15), ("deflate", 15)])
async def test_gzip_bomb_inflates_to_size_bytes_in_either_encoding(
    session: aiohttp.ClientSession,
    raw_session: aiohttp.ClientSession,
    emulator: FlexEmulator,
    channel_url: str,
    encoding: str,
    wbits: int,
) -> None:
    normal = await normal_page(session, channel_url)
    size = 5 * MIB + 3
    emulator.add_fault(Fault("gzip_bomb", size=size, encoding=encoding))  # type: ignore[arg-type]
    answer = await fetch(raw_session, channel_url)
    assert answer.headers["Content-Encoding"] == encoding
    assert len(answer.body) < 16 * 1024
    inflated = inflate(answer.body, wbits)
    assert inflated.size == size
    assert inflated.text == normal.body


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_gzip_bomb_is_a_body_aiohttp_itself_inflates_to_the_page(
    session: aiohttp.ClientSession,
    channel_url: str,
    answer_with: AnswerWith,
    encoding: str,
) -> None:
    normal = await normal_page(session, channel_url)
    answer = await answer_with(Fault("gzip_bomb", size=MIB, encoding=encoding))  # type: ignore[arg-type]
    assert len(answer.body) == MIB
    assert answer.json() == normal.json()


# -- "bad_retry_after" --------------------------------------------------------------------


async def test_bad_retry_after_is_a_429_with_a_date_8000_years_away_by_default(
    emulator: FlexEmulator, answer_with: AnswerWith
) -> None:
    answer = await answer_with(Fault("bad_retry_after"))
    assert answer.status == 429
    assert answer.json()["code"] == 20429
    assert answer.headers["Retry-After"] == "Fri, 31 Dec 9999 23:59:59 GMT"
    assert email.utils.parsedate_to_datetime(answer.headers["Retry-After"]).year == 9999
    assert emulator.stats.faults_fired == 1


@pytest.mark.parametrize(
    "value", ["Fri, 31 Dec 99999 23:59:59 GMT", "1e999", "nan", "-5", "99999999999999999999", ""]
)
async def test_bad_retry_after_sends_the_string_given(answer_with: AnswerWith, value: str) -> None:
    answer = await answer_with(Fault("bad_retry_after", status=503, retry_after=value))
    assert answer.status == 503
    assert answer.json()["code"] == 20503
    assert answer.headers["Retry-After"] == value


def test_a_99999_year_retry_after_overflows_parsedate_to_datetime() -> None:
    with pytest.raises(ValueError, match="year 99999 is out of range"):
        email.utils.parsedate_to_datetime("Fri, 31 Dec 99999 23:59:59 GMT")


# -- "oversized_header" -------------------------------------------------------------------


async def test_oversized_header_is_past_aiohttps_default_limit(
    session: aiohttp.ClientSession, emulator: FlexEmulator, channel_url: str
) -> None:
    emulator.add_fault(Fault("oversized_header"))
    with pytest.raises(aiohttp.ClientResponseError, match="8190"):
        await fetch(session, channel_url)


@pytest.mark.parametrize(("size", "expected"), [(None, 16384), (9000, 9000)])
async def test_oversized_header_carries_a_value_of_size_bytes_on_the_page(
    emulator: FlexEmulator, channel_url: str, size: int | None, expected: int
) -> None:
    async with aiohttp.ClientSession(max_field_size=32768) as lenient:
        normal = await normal_page(lenient, channel_url)
        emulator.add_fault(Fault("oversized_header", size=size))
        answer = await fetch(lenient, channel_url)
    assert answer.status == 200
    assert answer.headers["X-Padding"] == "x" * expected
    assert answer.body == normal.body


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "cycle", "period": 0}, "period must be an integer >= 1"),
        ({"kind": "cycle", "period": 1.5}, "period must be an integer >= 1"),
        ({"kind": "cycle", "period": True}, "period must be an integer >= 1"),
        ({"kind": "cycle", "spelling": "relative"}, "takes no spelling"),
        ({"kind": "status", "status": 500, "period": 2}, "takes no period"),
        ({"kind": "respelled"}, "spelling of a 'respelled' fault must be one of"),
        ({"kind": "respelled", "spelling": "upper"}, "spelling of a 'respelled' fault"),
        ({"kind": "other_channel"}, "target of a 'other_channel' fault must be one of"),
        ({"kind": "other_channel", "target": "meta"}, "target of a 'other_channel' fault"),
        ({"kind": "other_channel", "target": "participants", "as_channel": "UO1"}, "as_channel"),
        (
            {"kind": "other_channel", "target": "participants", "as_channel": ["KD", "UO"]},
            "as_channel",
        ),
        (
            {
                "kind": "other_channel",
                "target": "participants",
                "as_channel": ("UO" + "1" * 32, "KD" + "1" * 32),
            },
            "as_channel",
        ),
        ({"kind": "cycle", "target": "participants"}, "takes no target"),
        ({"kind": "cycle", "as_channel": ("KD" + "1" * 32, "UO" + "1" * 32)}, "takes no as_"),
        ({"kind": "next_page_url", "url": b"http://x"}, "url must be a string"),
        ({"kind": "next_page_url", "url": "x", "form": "file"}, "not both"),
        ({"kind": "next_page_url", "form": "ftp"}, "form of a 'next_page_url' fault"),
        ({"kind": "cycle", "url": "x"}, "takes no url"),
        ({"kind": "empty", "form": "file"}, "takes no form"),
        ({"kind": "oversized", "size": 0}, "size must be an integer >= 1"),
        ({"kind": "gzip_bomb", "size": -1}, "size must be an integer >= 1"),
        ({"kind": "oversized_header", "size": 1.0}, "size must be an integer >= 1"),
        ({"kind": "slow", "delay": 1, "size": 10}, "takes no size"),
        ({"kind": "oversized", "content_length": 1}, "content_length must be True or False"),
        ({"kind": "gzip_bomb", "content_length": False}, "takes no content_length"),
        ({"kind": "gzip_bomb", "encoding": "br"}, "encoding of a 'gzip_bomb' fault"),
        ({"kind": "oversized", "encoding": "gzip"}, "takes no encoding"),
        ({"kind": "bad_retry_after", "status": 500}, "must be 429 or 503"),
        ({"kind": "bad_retry_after", "retry_after": 5}, "must be a string"),
        ({"kind": "bad_retry_after", "retry_after": "1\r\nX-Evil: 1"}, "without CR, LF"),
        ({"kind": "status", "status": 429, "retry_after": "soon"}, "number of seconds"),
        ({"kind": "gzip_bomb", "retry_after": "soon"}, "takes no retry_after"),
        ({"kind": "oversized_header", "status": 200}, "takes no status"),
    ],
)
def test_a_hostile_fault_that_cannot_be_served_is_refused(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Fault(**arguments)


def test_hostile_faults_with_every_field_in_range_are_accepted() -> None:
    channel = ("KD" + "a" * 32, "UO" + "B" * 32)
    faults = [
        Fault("cycle", period=5, times=3, page=7),
        Fault("respelled", spelling="port", period=2),
        Fault("other_channel", target="next_page_url", as_channel=channel),
        Fault("next_page_url", url=""),
        Fault("next_page_url", form="scheme_relative"),
        Fault("oversized", size=1, content_length=False),
        Fault("gzip_bomb", size=1, encoding="deflate"),
        Fault("bad_retry_after", status=503, retry_after=""),
        Fault("oversized_header", size=1, delay=0),
    ]
    assert len(set(faults)) == len(faults)
