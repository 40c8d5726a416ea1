"""`_request`: arguments -> a validated request URL, and which URLs may receive credentials."""

from __future__ import annotations

import pytest
from yarl import URL

from flex_participants._errors import InvalidArgumentError, UnsafeURLError
from flex_participants._request import (
    DEFAULT_BASE_URL,
    MAX_BASE_URL_LENGTH,
    MAX_PAGE_SIZE,
    build_base_url,
    check_limit,
    check_page_size,
    check_same_origin,
    check_sids,
    participants_url,
)

KD = "KD" + "0123456789abcdef" * 2
UO = "UO" + "fedcba9876543210" * 2
ORIGIN = URL(DEFAULT_BASE_URL)
PASSWORD = "s3cr3t-password"


# SIDs


@pytest.mark.parametrize(
    ("interaction_sid", "channel_sid"),
    [
        (KD, UO),
        ("KD" + "A" * 32, "UO" + "F" * 32),
        ("KD" + "aBcDeF0123456789" * 2, "UO" + "0" * 32),
    ],
    ids=["lowercase", "uppercase", "mixed-case"],
)
def test_valid_sids_are_returned_unchanged(interaction_sid: str, channel_sid: str) -> None:
    assert check_sids(interaction_sid, channel_sid) == (interaction_sid, channel_sid)


BAD_INTERACTION_SIDS: list[tuple[str, object]] = [
    ("wrong-prefix", "UO" + "a" * 32),
    ("lowercase-prefix", "kd" + "a" * 32),
    ("too-short", "KD" + "a" * 31),
    ("too-long", "KD" + "a" * 33),
    ("non-hex", "KD" + "g" * 32),
    ("empty", ""),
    ("trailing-newline", "KD" + "a" * 32 + "\n"),
    ("leading-space", " KD" + "a" * 32),
    ("unicode-digits", "KD" + "\u0661" * 32),
    ("bytes", b"KD" + b"a" * 32),
    ("none", None),
    ("int", 5),
]


@pytest.mark.parametrize(
    "bad", [bad for _, bad in BAD_INTERACTION_SIDS], ids=[name for name, _ in BAD_INTERACTION_SIDS]
)
def test_a_malformed_interaction_sid_is_rejected(bad: object) -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"^interaction_sid must be an InteractionSid, 'KD' and 32 hex digits, got ",
    ):
        check_sids(bad, UO)


BAD_CHANNEL_SIDS: list[tuple[str, object]] = [
    ("wrong-prefix", "KD" + "a" * 32),
    ("lowercase-prefix", "uo" + "a" * 32),
    ("too-short", "UO" + "a" * 31),
    ("too-long", "UO" + "a" * 33),
    ("non-hex", "UO" + "z" * 32),
    ("empty", ""),
    ("trailing-newline", "UO" + "a" * 32 + "\n"),
    ("bytes", b"UO" + b"a" * 32),
    ("none", None),
]


@pytest.mark.parametrize(
    "bad", [bad for _, bad in BAD_CHANNEL_SIDS], ids=[name for name, _ in BAD_CHANNEL_SIDS]
)
def test_a_malformed_channel_sid_is_rejected(bad: object) -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"^channel_sid must be a ChannelSid, 'UO' and 32 hex digits, got ",
    ):
        check_sids(KD, bad)


def test_a_sid_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="interaction_sid"):
        check_sids("nope", UO)


def test_a_sid_error_shows_the_value_given() -> None:
    with pytest.raises(InvalidArgumentError, match=r"got 'KD1'"):
        check_sids("KD1", UO)


def test_swapped_sids_are_named_as_swapped() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^interaction_sid and channel_sid are swapped"):
        check_sids(UO, KD)


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [("WT", "a TaskSid"), ("CH", "a Conversation SID"), ("UT", "a participant's SID")],
)
def test_a_sid_of_another_kind_is_named_for_what_it_is(prefix: str, kind: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"got '{prefix}a{{32}}', which is {kind}"):
        check_sids(prefix + "a" * 32, UO)


def test_an_unknown_prefix_gets_no_guess() -> None:
    with pytest.raises(InvalidArgumentError, match=r"got 'ZZa{32}'$"):
        check_sids(KD, "ZZ" + "a" * 32)


# page_size and limit


@pytest.mark.parametrize("page_size", [None, 1, 50, MAX_PAGE_SIZE])
def test_page_size_from_1_to_1000_or_none_is_accepted(page_size: int | None) -> None:
    assert check_page_size(page_size) == page_size


def test_the_maximum_page_size_is_1000() -> None:
    assert MAX_PAGE_SIZE == 1000


@pytest.mark.parametrize("page_size", [0, -1, 1001, True, False, 1.5, 50.0, "5"], ids=repr)
def test_page_size_outside_1_to_1000_or_not_an_int_is_rejected(page_size: object) -> None:
    with pytest.raises(InvalidArgumentError, match="page_size must be an integer from 1 to 1000"):
        check_page_size(page_size)


def test_a_page_size_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="page_size"):
        check_page_size(0)


@pytest.mark.parametrize("limit", [None, 0, 1, 10**9])
def test_a_limit_of_zero_or_more_or_none_is_accepted(limit: int | None) -> None:
    assert check_limit(limit) == limit


@pytest.mark.parametrize("limit", [-1, True, 2.0, "3"], ids=repr)
def test_a_negative_or_non_integer_limit_is_rejected(limit: object) -> None:
    with pytest.raises(InvalidArgumentError, match="limit must be an integer >= 0"):
        check_limit(limit)


# participants_url


def test_participants_url_builds_the_endpoint_path() -> None:
    url = participants_url(ORIGIN, KD, UO)

    assert str(url) == f"{DEFAULT_BASE_URL}/v1/Interactions/{KD}/Channels/{UO}/Participants"


def test_participants_url_has_no_query_when_none_is_given() -> None:
    assert participants_url(ORIGIN, KD, UO).query_string == ""


def test_participants_url_keeps_a_path_prefix_of_the_base() -> None:
    url = participants_url(URL("http://127.0.0.1:8080/flex"), KD, UO)

    assert url.path == f"/flex/v1/Interactions/{KD}/Channels/{UO}/Participants"


@pytest.mark.parametrize(
    ("kwargs", "query"),
    [
        ({"page_size": 20}, {"PageSize": "20"}),
        ({"page": 0}, {"Page": "0"}),
        ({"page_token": "PT1"}, {"PageToken": "PT1"}),
        ({"page_size": 1000, "page": 3}, {"PageSize": "1000", "Page": "3"}),
        (
            {"page_size": 5, "page": 1, "page_token": "a b&c"},
            {"PageSize": "5", "Page": "1", "PageToken": "a b&c"},
        ),
    ],
    ids=["page-size", "page", "page-token", "two", "all"],
)
def test_participants_url_sends_only_the_query_parameters_given(
    kwargs: dict[str, int | str], query: dict[str, str]
) -> None:
    url = participants_url(ORIGIN, KD, UO, **kwargs)  # type: ignore[arg-type]

    assert dict(url.query) == query


@pytest.mark.parametrize("page", [-1, True, 1.0, "1"], ids=repr)
def test_participants_url_rejects_a_page_that_is_not_an_integer_of_zero_or_more(
    page: object,
) -> None:
    with pytest.raises(InvalidArgumentError, match="page must be an integer >= 0"):
        participants_url(ORIGIN, KD, UO, page=page)  # type: ignore[arg-type]


@pytest.mark.parametrize("page_token", ["", 5], ids=repr)
def test_participants_url_rejects_an_empty_or_non_string_page_token(page_token: object) -> None:
    with pytest.raises(InvalidArgumentError, match="page_token must be a non-empty string"):
        participants_url(ORIGIN, KD, UO, page_token=page_token)  # type: ignore[arg-type]


# build_base_url


def test_the_default_base_url_is_twilios_flex_api() -> None:
    assert str(build_base_url(None, None, None)) == "https://flex-api.twilio.com"


@pytest.mark.parametrize(
    ("region", "edge", "expected"),
    [
        ("us1", "sydney", "https://flex-api.sydney.us1.twilio.com"),
        ("US1", "Ashburn", "https://flex-api.ashburn.us1.twilio.com"),
        (None, "sydney", "https://flex-api.sydney.us1.twilio.com"),
        ("", "", "https://flex-api.twilio.com"),
    ],
    ids=["region-and-edge", "any-case", "edge-implies-us1", "empty-strings"],
)
def test_region_and_edge_compose_flex_hosts_as_twilio_advises(
    region: str | None, edge: str | None, expected: str
) -> None:
    assert str(build_base_url(None, region, edge)) == expected


def test_an_explicit_base_url_wins_over_region_and_edge() -> None:
    assert str(build_base_url("https://proxy.example.com", "au1", "sydney")) == (
        "https://proxy.example.com"
    )


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost",
        "http://localhost:8080",
        "http://LOCALHOST:8080",
        "http://127.0.0.1:8080",
        "http://127.5.6.7",
        "http://[::1]:8080",
    ],
)
def test_plain_http_is_allowed_to_a_loopback_host(base_url: str) -> None:
    assert build_base_url(base_url, None, None).scheme == "http"


@pytest.mark.parametrize(
    "base_url",
    [
        "http://example.com",
        "http://10.0.0.1",
        "http://[::2]",
        "http://localhost.example.com",
        "http://127.0.0.1.example.com",
    ],
)
def test_plain_http_to_any_other_host_is_rejected(base_url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="loopback"):
        build_base_url(base_url, None, None)


@pytest.mark.parametrize(
    "base_url",
    [
        f"https://user:{PASSWORD}@flex-api.twilio.com",
        f"https://:{PASSWORD}@flex-api.twilio.com",
        "https://user@flex-api.twilio.com",
        f"http://user:{PASSWORD}@example.com",
        f"ftp://user:{PASSWORD}@example.com",
        f"https://user:{PASSWORD}@example.com/?q=1#f",
    ],
    ids=["user-and-password", "password", "user", "remote-http", "ftp", "with-query"],
)
def test_credentials_in_the_base_url_are_rejected_without_echoing_them(base_url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="must not carry credentials") as caught:
        build_base_url(base_url, None, None)

    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    "base_url",
    ["https://flex-api.twilio.com?x=1", "https://flex-api.twilio.com/#top"],
    ids=["query", "fragment"],
)
def test_a_query_or_fragment_in_the_base_url_is_rejected(base_url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="must not have a query or fragment"):
        build_base_url(base_url, None, None)


def test_a_base_url_longer_than_the_bound_is_rejected() -> None:
    longest = "https://flex-api.twilio.com/" + "p" * (MAX_BASE_URL_LENGTH - 28)
    assert str(build_base_url(longest, None, None)) == longest
    with pytest.raises(InvalidArgumentError, match="at most 1024"):
        build_base_url(longest + "p", None, None)


def test_an_empty_query_mark_in_the_base_url_is_dropped() -> None:
    assert str(build_base_url("https://flex-api.twilio.com/?", None, None)) == (
        "https://flex-api.twilio.com"
    )


@pytest.mark.parametrize(
    "base_url",
    ["flex-api.twilio.com", "/v1", "ftp://flex-api.twilio.com", "https://", "file:///etc"],
)
def test_a_base_url_that_is_not_an_absolute_http_url_is_rejected(base_url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="absolute http"):
        build_base_url(base_url, None, None)


def test_a_base_url_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="loopback"):
        build_base_url("http://example.com", None, None)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://flex-api.twilio.com/", "https://flex-api.twilio.com"),
        ("https://example.com/proxy/", "https://example.com/proxy"),
        ("http://127.0.0.1:8080//", "http://127.0.0.1:8080"),
    ],
)
def test_a_trailing_slash_is_stripped(base_url: str, expected: str) -> None:
    assert str(build_base_url(base_url, None, None)) == expected


# check_same_origin


@pytest.mark.parametrize(
    "url",
    [
        f"{DEFAULT_BASE_URL}/v1/Interactions/{KD}/Channels/{UO}/Participants?PageToken=PT1",
        "https://flex-api.twilio.com:443/v1/x",
        "https://FLEX-API.twilio.com/v1/x",
    ],
    ids=["same", "explicit-default-port", "host-case"],
)
def test_a_url_on_the_same_origin_passes(url: str) -> None:
    assert check_same_origin(URL(url), ORIGIN) == URL(url)


def test_a_relative_url_is_resolved_against_the_origin() -> None:
    url = check_same_origin(URL("/v1/Interactions/x?Page=1"), ORIGIN)

    assert str(url) == f"{DEFAULT_BASE_URL}/v1/Interactions/x?Page=1"


def test_a_relative_url_keeps_the_loopback_origins_port() -> None:
    origin = URL("http://127.0.0.1:8080")

    assert str(check_same_origin(URL("/v1/x"), origin)) == "http://127.0.0.1:8080/v1/x"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/v1/x",
        "https://flex-api.twilio.com.evil.example.com/v1/x",
        "https://flex-api.twilio.com@evil.example.com/v1/x",
        "http://flex-api.twilio.com/v1/x",
        "https://flex-api.twilio.com:8443/v1/x",
        "//evil.example.com/v1/x",
    ],
    ids=["host", "suffix-host", "userinfo-trick", "scheme", "port", "scheme-relative"],
)
def test_a_url_on_another_origin_raises_unsafe_url_error(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="refusing to send credentials"):
        check_same_origin(URL(url), ORIGIN)


def test_a_url_on_the_origin_with_its_own_credentials_is_refused() -> None:
    url = URL(f"https://user:{PASSWORD}@flex-api.twilio.com/v1/x")

    with pytest.raises(UnsafeURLError) as caught:
        check_same_origin(url, ORIGIN)

    assert PASSWORD not in str(caught.value)


def test_an_unsafe_url_message_never_contains_a_password() -> None:
    url = URL(f"https://user:{PASSWORD}@evil.example.com/v1/x?token={PASSWORD}")

    with pytest.raises(UnsafeURLError) as caught:
        check_same_origin(url, ORIGIN)

    assert PASSWORD not in str(caught.value)
    assert "evil.example.com" in str(caught.value)


def test_an_unsafe_url_error_is_not_a_value_error() -> None:
    # It is the server's answer that is wrong, not an argument of the caller.
    with pytest.raises(UnsafeURLError) as caught:
        check_same_origin(URL("https://evil.example.com/"), ORIGIN)

    assert not isinstance(caught.value, ValueError)
