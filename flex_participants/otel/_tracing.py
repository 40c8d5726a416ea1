"""OpenTelemetryHook: a span per HTTP attempt, inside a span per stream, from the client's events."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue
from yarl import URL

from .. import _events
from .._version import __version__

__all__ = ["OpenTelemetryHook"]

# The span of a stream (and so of each channel of a batch, which streams it).
STREAM_SPAN = "flex_participants.participants"


class OpenTelemetryHook:
    """A hook (``FlexClient(hooks=[OpenTelemetryHook()])``) that traces what the client does.

    Each HTTP attempt is a span of kind ``CLIENT`` named after its method (``GET``), with
    the attributes of OpenTelemetry's semantic conventions for HTTP clients:
    ``http.request.method``, ``url.full`` (never with credentials: the client sends them in
    a header), ``server.address``, ``server.port``, ``http.response.status_code``,
    ``http.request.resend_count`` on a retry, ``http.response.body.size``, and
    ``error.type`` when it failed: the status code for an HTTP error, else the name of
    the exception's class (a cancelled attempt's included). ``twilio.request_id`` holds
    Twilio's ``Twilio-Request-Id``, the id its support asks for.

    The attempts of a stream are children of the stream's span, ``flex_participants.participants``
    (attributes ``flex.interaction_sid``, ``flex.channel_sid``, and at its end
    ``flex.participants.delivered``; an event per page delivered and per retry scheduled),
    which is a child of the span current where the stream was made: in a batch, each
    channel is a stream and has its span, under the span current where the batch was first
    iterated. ``fetch_page`` and ``fetch_page_url`` attempts are children of the current span.

    One hook traces one client: the ids it pairs events by are the client's own.

    Args:
        tracer_provider: where the spans go; default: the global one
            (``opentelemetry.trace.get_tracer_provider()``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(
            "flex_participants", __version__, tracer_provider=tracer_provider
        )
        self._streams: dict[int, Span] = {}
        self._requests: dict[int, Span] = {}

    def __repr__(self) -> str:
        return f"<OpenTelemetryHook streams={len(self._streams)} requests={len(self._requests)}>"

    def __call__(self, event: _events.Event) -> None:
        """Start or end the span ``event`` is about (other events are ignored)."""
        if isinstance(event, _events.RequestSent):
            self._request_sent(event)
        elif isinstance(event, _events.ResponseReceived):
            self._response_received(event)
        elif isinstance(event, _events.RequestFailed):
            self._request_failed(event)
        elif isinstance(event, _events.RetryScheduled):
            self._retry_scheduled(event)
        elif isinstance(event, _events.StreamOpened):
            self._stream_opened(event)
        elif isinstance(event, _events.PageDelivered):
            self._page_delivered(event)
        elif isinstance(event, _events.StreamClosed):
            self._stream_closed(event)

    # -- a span per stream ----------------------------------------------------------------

    def _stream_opened(self, event: _events.StreamOpened) -> None:
        self._streams[event.stream_id] = self._tracer.start_span(
            STREAM_SPAN,
            kind=SpanKind.INTERNAL,
            attributes={
                "flex.interaction_sid": event.interaction_sid,
                "flex.channel_sid": event.channel_sid,
            },
        )

    def _page_delivered(self, event: _events.PageDelivered) -> None:
        span = self._streams.get(event.stream_id) if event.stream_id is not None else None
        if span is not None:
            span.add_event("page delivered", {"flex.page": event.page, "flex.count": event.count})

    def _stream_closed(self, event: _events.StreamClosed) -> None:
        span = self._streams.pop(event.stream_id, None)
        if span is None:
            return
        span.set_attribute("flex.participants.delivered", event.delivered)
        if event.error is not None:
            span.set_attribute("error.type", _error_type(event.error))
            span.set_status(Status(StatusCode.ERROR, str(event.error)))
        span.end()

    # -- a span per HTTP attempt ----------------------------------------------------------

    def _request_sent(self, event: _events.RequestSent) -> None:
        parent: Context | None = None
        stream = self._streams.get(event.stream_id) if event.stream_id is not None else None
        if stream is not None:
            parent = trace.set_span_in_context(stream)
        url = URL(event.url)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": event.method,
            "url.full": event.url,
            "server.address": url.host or "",
        }
        if url.port is not None:
            attributes["server.port"] = url.port
        if event.attempt > 1:
            attributes["http.request.resend_count"] = event.attempt - 1
        self._requests[event.id] = self._tracer.start_span(
            event.method, context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )

    def _response_received(self, event: _events.ResponseReceived) -> None:
        span = self._requests.pop(event.id, None)
        if span is None:
            return
        span.set_attribute("http.response.status_code", event.status)
        span.set_attribute("http.response.body.size", event.size)
        if event.request_id is not None:
            span.set_attribute("twilio.request_id", event.request_id)
        if event.status >= 400:
            span.set_attribute("error.type", str(event.status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def _request_failed(self, event: _events.RequestFailed) -> None:
        span = self._requests.pop(event.id, None)
        if span is None:
            return
        span.set_attribute("error.type", _error_type(event.error))
        span.set_status(Status(StatusCode.ERROR, str(event.error)))
        span.end()

    def _retry_scheduled(self, event: _events.RetryScheduled) -> None:
        stream = self._streams.get(event.stream_id) if event.stream_id is not None else None
        if stream is not None:
            stream.add_event(
                "retry scheduled",
                {"flex.attempt": event.attempt, "flex.delay": event.delay},
            )


def _error_type(error: BaseException) -> str:
    """The class's full name, as the conventions ask; ours by their public module."""
    cls = type(error)
    module = cls.__module__
    if module.startswith("flex_participants."):
        module = "flex_participants"
    elif module == "asyncio.exceptions":
        module = "asyncio"
    return f"{module}.{cls.__qualname__}"
