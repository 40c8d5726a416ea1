"""OpenTelemetry tracing for `FlexClient`, as a hook: ``pip install 'flex-participants[otel]'``.

Example::

    async with FlexClient(hooks=[OpenTelemetryHook()]) as client:
        ...

Only the OpenTelemetry API is needed here; the application sets up the SDK and its exporter.
"""

try:
    import opentelemetry.trace  # noqa: F401 - only to fail early, with the extra's name
except ImportError as exc:
    raise ImportError(
        "flex_participants.otel needs OpenTelemetry: pip install 'flex-participants[otel]'"
    ) from exc

from ._tracing import OpenTelemetryHook

__all__ = ["OpenTelemetryHook"]
