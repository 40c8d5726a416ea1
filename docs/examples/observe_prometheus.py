"""Prometheus metrics of the client, fed by a hook: pip install prometheus-client."""

import asyncio
import sys

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from flex_participants import (
    Event,
    FlexClient,
    LimitChanged,
    PageDelivered,
    RequestFailed,
    ResponseReceived,
    RetryScheduled,
)


class PrometheusMetrics:
    """A hook: ``FlexClient(hooks=[PrometheusMetrics()])``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.responses = Counter(
            "flex_participants_responses",
            "HTTP responses, by status code",
            ["status"],
            registry=registry,
        )
        self.failures = Counter(
            "flex_participants_request_failures",
            "HTTP requests that got no response, by error",
            ["error"],
            registry=registry,
        )
        self.retries = Counter(
            "flex_participants_retries", "Requests scheduled for a retry", registry=registry
        )
        self.duration = Histogram(
            "flex_participants_request_duration_seconds",
            "Time from sending a request to having read its response",
            registry=registry,
        )
        self.participants = Counter(
            "flex_participants_participants_delivered",
            "Participants handed to the application",
            registry=registry,
        )
        self.rate = Gauge(
            "flex_participants_rate_limit",
            "Requests per second the client allows itself now",
            registry=registry,
        )

    def __call__(self, event: Event) -> None:
        match event:
            case ResponseReceived(status=status, elapsed=elapsed):
                self.responses.labels(status=str(status)).inc()
                self.duration.observe(elapsed)
            case RequestFailed(error=error):
                self.failures.labels(error=type(error).__name__).inc()
            case RetryScheduled():
                self.retries.inc()
            case PageDelivered(count=count):
                self.participants.inc(count)
            case LimitChanged(rate=rate) if rate is not None:
                self.rate.set(rate)


async def main(
    interaction_sid: str, channel_sid: str, registry: CollectorRegistry = REGISTRY
) -> None:
    async with FlexClient(hooks=[PrometheusMetrics(registry)]) as client:
        participants = await client.participants(interaction_sid, channel_sid).collect()
    print(f"participants: {len(participants)}")


if __name__ == "__main__":
    start_http_server(9464)  # metrics at http://localhost:9464/metrics
    asyncio.run(main(sys.argv[1], sys.argv[2]))
