"""flex_participants.otel: the spans of a client, exported to the SDK's in-memory exporter."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flex_participants import FlexClient, NotFoundError, RetryPolicy
from flex_participants.emulator import Fault, FlexEmulator
from flex_participants.otel import OpenTelemetryHook

from .conftest import uninstalled

STREAM = "flex_participants.participants"


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[FlexEmulator]:
    async with FlexEmulator(seed=15) as running:
        yield running


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def traced_client(emulator: FlexEmulator, provider: TracerProvider) -> Callable[[], FlexClient]:
    def build() -> FlexClient:
        return FlexClient(
            **emulator.client_kwargs(),
            retry=RetryPolicy(backoff_base=0.0),
            rate_limit=None,
            hooks=[OpenTelemetryHook(tracer_provider=provider)],
        )

    return build


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_stream_is_a_span_with_a_client_span_per_page_request(
    emulator: FlexEmulator,
    exporter: InMemorySpanExporter,
    traced_client: Callable[[], FlexClient],
) -> None:
    kd, uo = emulator.add_channel(participants=120)
    async with traced_client() as client:
        await client.participants(kd, uo, page_size=50, prefetch=0).collect()

    [stream] = spans_named(exporter, STREAM)
    requests = spans_named(exporter, "GET")
    assert len(requests) == 3
    assert attributes(stream) == {
        "flex.interaction_sid": kd,
        "flex.channel_sid": uo,
        "flex.participants.delivered": 120,
    }
    assert [event.name for event in stream.events] == ["page delivered"] * 3
    assert {parent_of(span) for span in requests} == {span_id(stream)}
    assert all(span.kind is SpanKind.CLIENT for span in requests)
    first = attributes(requests[0])
    assert first["http.request.method"] == "GET"
    url = f"{emulator.base_url}/v1/Interactions/{kd}/Channels/{uo}/Participants?PageSize=50"
    assert first["url.full"] == url
    assert first["server.address"] == "127.0.0.1"
    assert first["server.port"] == emulator.port
    assert first["http.response.status_code"] == 200
    assert first["http.response.body.size"] > 0
    assert str(first["twilio.request_id"]).startswith("RQ")
    assert "http.request.resend_count" not in first
    assert "error.type" not in first


async def test_a_retry_is_a_span_of_its_own_with_its_resend_count(
    emulator: FlexEmulator,
    exporter: InMemorySpanExporter,
    traced_client: Callable[[], FlexClient],
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    emulator.add_fault(Fault("status", status=503, times=1))
    async with traced_client() as client:
        await client.participants(kd, uo).collect()

    failed, retried = spans_named(exporter, "GET")
    assert attributes(failed)["http.response.status_code"] == 503
    assert attributes(failed)["error.type"] == "503"
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(retried)["http.request.resend_count"] == 1
    assert attributes(retried)["http.response.status_code"] == 200
    assert retried.status.status_code is StatusCode.UNSET
    [stream] = spans_named(exporter, STREAM)
    assert "retry scheduled" in [event.name for event in stream.events]


async def test_a_transport_error_ends_its_span_with_the_error_type(
    emulator: FlexEmulator,
    exporter: InMemorySpanExporter,
    traced_client: Callable[[], FlexClient],
) -> None:
    kd, uo = emulator.add_channel(participants=60)
    emulator.add_fault(Fault("reset", times=1))
    async with traced_client() as client:
        await client.participants(kd, uo).collect()

    failed = spans_named(exporter, "GET")[0]
    assert attributes(failed)["error.type"] == "flex_participants.TransportError"
    assert "http.response.status_code" not in attributes(failed)
    assert failed.status.status_code is StatusCode.ERROR


async def test_a_failed_stream_ends_its_span_with_the_error(
    exporter: InMemorySpanExporter, traced_client: Callable[[], FlexClient]
) -> None:
    async with traced_client() as client:
        with pytest.raises(NotFoundError):
            await client.participants("KD" + "0" * 32, "UO" + "0" * 32).collect()

    [stream] = spans_named(exporter, STREAM)
    assert attributes(stream)["error.type"] == "flex_participants.NotFoundError"
    assert stream.status.status_code is StatusCode.ERROR


async def test_each_channel_of_a_batch_is_a_span_under_the_current_one(
    emulator: FlexEmulator,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    traced_client: Callable[[], FlexClient],
) -> None:
    channels = [emulator.add_channel(participants=10) for _ in range(3)]
    tracer = provider.get_tracer("app")
    async with traced_client() as client:
        with tracer.start_as_current_span("export"):
            async for result in client.participants_for_channels(channels):
                assert result.ok

    [export] = spans_named(exporter, "export")
    streams = spans_named(exporter, STREAM)
    assert sorted(
        (attributes(s)["flex.interaction_sid"], attributes(s)["flex.channel_sid"]) for s in streams
    ) == sorted(channels)
    assert {parent_of(span) for span in streams} == {span_id(export)}
    requests = spans_named(exporter, "GET")
    assert sorted(parent_of(span) or 0 for span in requests) == sorted(span_id(s) for s in streams)


async def test_a_page_fetched_alone_is_a_span_under_the_current_one(
    emulator: FlexEmulator,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    traced_client: Callable[[], FlexClient],
) -> None:
    kd, uo = emulator.add_channel(participants=3)
    async with traced_client() as client:
        with provider.get_tracer("app").start_as_current_span("handler"):
            await client.fetch_page(kd, uo)

    [handler] = spans_named(exporter, "handler")
    [request] = spans_named(exporter, "GET")
    assert parent_of(request) == span_id(handler)
    assert spans_named(exporter, STREAM) == []


async def test_no_span_holds_the_credentials(
    emulator: FlexEmulator,
    exporter: InMemorySpanExporter,
    traced_client: Callable[[], FlexClient],
) -> None:
    kd, uo = emulator.add_channel(participants=60)
    async with traced_client() as client:
        await client.participants(kd, uo).collect()

    text = "".join(span.to_json() for span in exporter.get_finished_spans())
    assert emulator.auth_token not in text


def test_importing_it_without_opentelemetry_names_the_extra() -> None:
    with uninstalled("opentelemetry", "flex_participants.otel"):
        with pytest.raises(ImportError, match=r"pip install 'flex-participants\[otel\]'"):
            importlib.import_module("flex_participants.otel")
