"""OpenTelemetry spans of the client's requests: pip install 'flex-participants[otel]' opentelemetry-sdk.

The application sets up the SDK and its exporter (here the console); the client's hook only
uses the OpenTelemetry API.
"""

import asyncio
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from flex_participants import FlexClient
from flex_participants.otel import OpenTelemetryHook


async def main(
    interaction_sid: str, channel_sid: str, tracer_provider: TracerProvider | None = None
) -> None:
    # tracer_provider=None: the global one, set below.
    tracer = trace.get_tracer("channel-report", tracer_provider=tracer_provider)
    async with FlexClient(hooks=[OpenTelemetryHook(tracer_provider)]) as client:
        # The stream's span is a child of the span current where it is made; each HTTP
        # attempt is a child of the stream's span.
        with tracer.start_as_current_span("report"):
            participants = await client.participants(interaction_sid, channel_sid).collect()
    print(f"participants: {len(participants)}")


if __name__ == "__main__":
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    provider.shutdown()
