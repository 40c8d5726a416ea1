"""FlexClient: construction, credentials, one request and its errors (HTTP mocked)."""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

import flex_participants
from flex_participants import (
    AdaptiveLimiter,
    AuthenticationError,
    FlexAPIError,
    FlexClient,
    FlexError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ResponseTooLargeError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnsafeURLError,
)
from flex_participants._limit import FIXED_CONCURRENCY, MAX_CONCURRENCY

from .helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BASE_URL,
    KD,
    UO,
    Credentials,
    headers_of_one_fetch,
    page_body,
    participants_url,
    request_count,
    twilio_error,
)

NO_WAIT = RetryPolicy(backoff_base=0.0)


# -- request headers -------------------------------------------------------------------


async def test_sends_a_user_agent_naming_the_package_version(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    headers = await headers_of_one_fetch(mock_http, credentials)
    assert headers["User-Agent"].startswith(f"flex-participants/{flex_participants.__version__} ")


# -- origin and configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "https://flex-api.twilio.com"),
        ({"region": "us1", "edge": "dublin"}, "https://flex-api.dublin.us1.twilio.com"),
        ({"edge": "sydney"}, "https://flex-api.sydney.us1.twilio.com"),
        ({"base_url": "http://127.0.0.1:8080/"}, "http://127.0.0.1:8080"),
    ],
)
def test_base_url_is_flex_host_for_the_edge_or_the_given_origin(
    credentials: Credentials, kwargs: dict[str, Any], expected: str
) -> None:
    assert FlexClient(**credentials, **kwargs).base_url == expected


def test_region_and_edge_come_from_the_environment(
    credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "us1")
    monkeypatch.setenv("TWILIO_EDGE", "tokyo")
    assert FlexClient(**credentials).base_url == "https://flex-api.tokyo.us1.twilio.com"


def test_base_url_comes_from_the_environment(
    credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEX_PARTICIPANTS_BASE_URL", "http://127.0.0.1:9999")
    assert FlexClient(**credentials).base_url == "http://127.0.0.1:9999"


def test_plain_http_to_a_remote_host_is_refused(credentials: Credentials) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FlexClient(**credentials, base_url="http://flex-api.example.com")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrency": 0},
        {"max_concurrency": 2.5},
        {"max_concurrency": True},
        {"timeout": 0},
        {"timeout": True},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"rate_limit": 0},
        {"rate_limit": True},
        {"rate_limit": float("nan")},
        {"rate_limit": float("inf")},
        {"max_body_size": 0},
        {"max_body_size": 1.5},
        {"max_body_size": True},
        {"retry": 3},
    ],
    ids=repr,
)
def test_out_of_range_settings_are_refused(
    credentials: Credentials, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError):
        FlexClient(**credentials, **kwargs)


# -- session ownership -----------------------------------------------------------------


async def test_the_client_closes_the_session_it_made(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), payload=page_body(range(1)))
    client = FlexClient(**credentials)
    await client.fetch_page(KD, UO)
    session = client._session
    assert session is not None
    await client.close()
    assert session.closed
    assert client.closed


async def test_a_session_passed_in_is_used_and_never_closed(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), payload=page_body(range(2)))
    async with aiohttp.ClientSession() as session:
        async with FlexClient(**credentials, session=session) as client:
            page = await client.fetch_page(KD, UO)
        assert not session.closed
    assert len(page.participants) == 2


async def test_a_session_that_raises_for_status_still_gets_typed_errors(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), status=404, payload=twilio_error(404, 20404, "nope"))
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with FlexClient(**credentials, session=session) as client:
            with pytest.raises(NotFoundError):
                await client.fetch_page(KD, UO)


async def test_a_session_with_its_own_auth_is_refused(credentials: Credentials) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp deprecates auth=
        session = aiohttp.ClientSession(auth=aiohttp.BasicAuth("someone", "else"))
    async with session:
        with pytest.raises(InvalidArgumentError, match="auth"):
            FlexClient(**credentials, session=session)


async def test_a_closed_client_refuses_requests(credentials: Credentials) -> None:
    client = FlexClient(**credentials)
    await client.close()
    with pytest.raises(FlexError, match="closed"):
        await client.fetch_page(KD, UO)


async def test_close_is_idempotent(credentials: Credentials) -> None:
    client = FlexClient(**credentials)
    await client.close()
    await client.close()


# -- one page ------------------------------------------------------------------------------


async def test_fetch_page_sends_only_the_paging_parameters_given(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    url = participants_url() + "?PageSize=20&Page=3&PageToken=abc"
    mock_http.get(url, payload=page_body(range(1)))
    async with FlexClient(**credentials) as client:
        await client.fetch_page(KD, UO, page_size=20, page=3, page_token="abc")
    assert request_count(mock_http) == 1


async def test_fetch_page_url_follows_a_url_of_the_same_origin(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    url = participants_url() + "?PageSize=2&Page=1&PageToken=PT1"
    mock_http.get(url, payload=page_body(range(2, 4), page=1))
    async with FlexClient(**credentials) as client:
        page = await client.fetch_page_url(url)
    assert [p.sid for p in page.participants] == [
        page_body(range(2, 4))["participants"][i]["sid"] for i in (0, 1)
    ]
    assert page.meta.page == 1


async def test_fetch_page_url_refuses_another_origin_before_sending_anything(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    async with FlexClient(**credentials) as client:
        with pytest.raises(UnsafeURLError, match=r"evil\.example"):
            await client.fetch_page_url("https://evil.example/v1/Interactions")
    assert request_count(mock_http) == 0


@pytest.mark.parametrize(
    "url",
    [
        "mailto:security@example.com",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/plain,x",
        "https:///v1/Interactions",
        "http:/v1/Interactions",
        "//evil.example/v1/Interactions",
        "https://user:pass@flex-api.twilio.com/v1",
    ],
)
async def test_fetch_page_url_refuses_every_url_off_the_origin_as_unsafe(
    mock_http: aioresponses, credentials: Credentials, url: str
) -> None:
    async with FlexClient(**credentials) as client:
        with pytest.raises(UnsafeURLError):
            await client.fetch_page_url(url)
    assert request_count(mock_http) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/Interactions",
        f"/v1/Interactions/{KD}/Channels/{UO}",
        f"/v1/Interactions/{KD}/Channels/{UO}/Participants/UT" + "0" * 32,
        f"/v2/Interactions/{KD}/Channels/{UO}/Participants",
    ],
)
async def test_fetch_page_url_refuses_a_url_of_another_endpoint(
    mock_http: aioresponses, credentials: Credentials, path: str
) -> None:
    async with FlexClient(**credentials) as client:
        with pytest.raises(InvalidArgumentError, match="not a URL of a channel's participants"):
            await client.fetch_page_url(BASE_URL + path)
    assert request_count(mock_http) == 0


async def test_fetch_page_url_resolves_a_relative_url_against_the_origin(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    url = participants_url() + "?Page=1"
    mock_http.get(url, payload=page_body(range(2), page=1))
    async with FlexClient(**credentials) as client:
        page = await client.fetch_page_url(url.removeprefix(BASE_URL))
    assert len(page.participants) == 2


async def test_fetch_page_url_refuses_another_port_or_scheme(credentials: Credentials) -> None:
    async with FlexClient(**credentials) as client:
        for url in (f"{BASE_URL}:8443/v1", "http://flex-api.twilio.com/v1"):
            with pytest.raises(UnsafeURLError):
                await client.fetch_page_url(url)


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, 20001, FlexAPIError),
        (401, 20003, AuthenticationError),
        (403, 20403, AuthenticationError),
        (404, 20404, NotFoundError),
    ],
)
async def test_client_errors_are_typed_and_not_retried(
    mock_http: aioresponses,
    credentials: Credentials,
    status: int,
    code: int,
    error_class: type[FlexAPIError],
) -> None:
    mock_http.get(participants_url(), status=status, payload=twilio_error(status, code, "nope"))
    async with FlexClient(**credentials) as client:
        with pytest.raises(error_class) as caught:
            await client.fetch_page(KD, UO)
    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.code, error.message, error.attempts) == (status, code, "nope", 1)
    assert error.more_info == f"https://www.twilio.com/docs/errors/{code}"
    assert error.url == participants_url()
    assert request_count(mock_http) == 1


async def test_a_429_after_the_last_attempt_is_a_rate_limit_error_with_code_20429(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(
        participants_url(),
        status=429,
        payload=twilio_error(429, 20429, "Too many requests"),
        headers={"Retry-After": "0"},
        repeat=True,
    )
    async with FlexClient(
        **credentials, retry=RetryPolicy(max_attempts=3, backoff_base=0, patience=0)
    ) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.fetch_page(KD, UO)
    assert (caught.value.code, caught.value.attempts, caught.value.retry_after) == (20429, 3, 0.0)
    assert "after 3 attempts" in str(caught.value)
    assert request_count(mock_http) == 3


async def test_a_5xx_is_retried_and_the_page_arrives_once(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), status=503, payload=twilio_error(503, 20503, "down"))
    mock_http.get(participants_url(), payload=page_body(range(3)))
    async with FlexClient(**credentials, retry=NO_WAIT) as client:
        page = await client.fetch_page(KD, UO)
        assert client.retries == 1
    assert len(page.participants) == 3


async def test_an_html_502_from_a_proxy_is_a_server_error_that_describes_the_body(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(
        participants_url(),
        status=502,
        body="<html><body>Bad Gateway</body></html>",
        content_type="text/html",
        repeat=True,
    )
    async with FlexClient(**credentials, retry=NO_WAIT) as client:
        with pytest.raises(ServerError, match="not JSON") as caught:
            await client.fetch_page(KD, UO)
    assert (caught.value.status, caught.value.code, caught.value.attempts) == (502, None, 4)


async def test_a_success_that_is_not_json_is_an_invalid_response_naming_url_and_status(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), body="<html>hi</html>", content_type="text/html", repeat=True)
    async with FlexClient(**credentials, retry=NO_WAIT) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.fetch_page(KD, UO)
    assert participants_url() in str(caught.value)
    assert "HTTP 200" in str(caught.value)


async def test_a_success_of_the_wrong_shape_is_not_retried(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), payload={"participants": "nope"}, repeat=True)
    async with FlexClient(**credentials, retry=NO_WAIT) as client:
        with pytest.raises(InvalidResponseError, match="meta") as caught:
            await client.fetch_page(KD, UO)
    assert caught.value.is_json
    assert request_count(mock_http) == 1


async def test_a_redirect_is_not_followed(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), status=302, headers={"Location": "https://evil.example/"})
    async with FlexClient(**credentials) as client:
        with pytest.raises(InvalidResponseError, match="redirect"):
            await client.fetch_page(KD, UO)
    assert request_count(mock_http) == 1


async def test_the_retry_message_names_the_cause_of_a_transport_error(
    mock_http: aioresponses, credentials: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flex_participants")
    mock_http.get(participants_url(), exception=aiohttp.ClientConnectionError("refused"))
    mock_http.get(participants_url(), payload=page_body(range(1)))
    async with FlexClient(**credentials, retry=NO_WAIT) as client:
        await client.fetch_page(KD, UO)
    [retry] = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert retry.endswith("failed: ClientConnectionError: refused)")


async def test_a_connection_error_is_a_transport_error_after_the_attempts(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(
        participants_url(), exception=aiohttp.ClientConnectionError("refused"), repeat=True
    )
    async with FlexClient(
        **credentials, retry=RetryPolicy(max_attempts=2, backoff_base=0)
    ) as client:
        with pytest.raises(TransportError, match="refused") as caught:
            await client.fetch_page(KD, UO)
    assert caught.value.attempts == 2


async def test_error_messages_never_contain_the_token(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), status=401, payload=twilio_error(401, 20003, "Authenticate"))
    async with FlexClient(**credentials) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.fetch_page(KD, UO)
    assert AUTH_TOKEN not in str(caught.value)
    assert AUTH_TOKEN not in repr(caught.value)


# -- logging -------------------------------------------------------------------------------


async def test_logs_one_debug_line_per_request_and_an_info_line_per_retry_without_secrets(
    mock_http: aioresponses, credentials: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flex_participants")
    mock_http.get(participants_url(), status=500, payload=twilio_error(500, 20500, "oops"))
    mock_http.get(participants_url(), payload=page_body(range(1)))
    async with FlexClient(**credentials, retry=NO_WAIT) as client:
        await client.fetch_page(KD, UO)
    records = [r for r in caplog.records if r.name == "flex_participants"]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    info = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert len(debug) == 2
    assert "-> 500 (attempt 1" in debug[0]
    assert "-> 200 (attempt 2" in debug[1]
    assert participants_url() in debug[0]
    assert len(info) == 1
    assert "retrying" in info[0]
    assert info[0].endswith("(attempt 1 of 4 failed: HTTP 500)")
    assert not [r for r in records if r.levelno >= logging.WARNING]
    assert all(AUTH_TOKEN not in r.getMessage() for r in records)
    assert all(
        aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN) not in r.getMessage() for r in records
    )


# -- bounded bodies ------------------------------------------------------------------------


async def test_a_body_declared_over_the_cap_fails_at_once_and_is_not_retried(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), body=b" " * 2048, headers={"Content-Length": "2048"})
    async with FlexClient(**credentials, max_body_size=1024) as client:
        with pytest.raises(ResponseTooLargeError, match="max_body_size") as caught:
            await client.fetch_page(KD, UO)
    assert caught.value.attempts == 1
    assert request_count(mock_http) == 1


async def test_a_body_of_exactly_the_cap_is_read(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    body = json.dumps(page_body(range(3))).encode()
    mock_http.get(participants_url(), body=body)
    async with FlexClient(**credentials, max_body_size=len(body)) as client:
        page = await client.fetch_page(KD, UO)
    assert len(page.participants) == 3


async def test_an_error_body_over_the_cap_fails_too(
    mock_http: aioresponses, credentials: Credentials
) -> None:
    mock_http.get(participants_url(), status=404, body=b"x" * 5000)
    async with FlexClient(**credentials, max_body_size=1000) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.fetch_page(KD, UO)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, MAX_CONCURRENCY),
        ({"rate_limit": 20}, MAX_CONCURRENCY),
        ({"rate_limit": None}, FIXED_CONCURRENCY),
        ({"limiter": AdaptiveLimiter(3)}, FIXED_CONCURRENCY),
        ({"max_concurrency": 7}, 7),
    ],
    ids=["adaptive", "told", "no-rate", "own-limiter", "given"],
)
def test_max_concurrency_defaults_to_a_ceiling_only_where_a_rate_sets_the_slots(
    credentials: Credentials, options: dict[str, Any], expected: int
) -> None:
    assert FlexClient(**credentials, **options).max_concurrency == expected
