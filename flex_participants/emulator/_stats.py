"""What the emulator counts: requests, concurrency, throttling, faults, and a log of requests."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["EmulatorStats", "RequestRecord"]


@attrs.frozen
class RequestRecord:
    """One request the emulator answered (requests to ``/__emulator__/`` are not recorded).

    Attributes:
        interaction_sid: the interaction SID from the path, as sent ("" if the path is not the
            participants endpoint's).
        channel_sid: the channel SID from the path, as sent ("" likewise).
        page: the page index served, or as sent if the request was refused; ``None`` if it
            was not an integer.
        page_size: the page size served, or as sent; ``None`` if it was not an integer.
        status: the HTTP status sent (200 for a ``"reset"`` fault, whose body was cut).
        started: ``loop.time()`` when the handler started.
        finished: ``loop.time()`` when the response had been written.
        authorized: whether the credentials were checked and accepted (``False`` for a
            request refused with 429 for a limit: the limits are checked first).
        query: the query parameters (the first value of each).
        fault: the kind of the `Fault` that answered, or ``None``.
        throttled: whether it was refused with 429 for a limit (not by a fault).
        throttle: which limit refused it: ``"rate"`` (the ``rate_limit`` bucket had no
            token), ``"concurrency"`` (``max_in_flight``), or ``None``.
    """

    interaction_sid: str
    channel_sid: str
    page: int | None
    page_size: int | None
    status: int
    started: float
    finished: float
    authorized: bool
    query: dict[str, str]
    fault: str | None = None
    throttled: bool = False
    throttle: str | None = None

    @property
    def duration(self) -> float:
        """Seconds from the start of the handler to the response written."""
        return self.finished - self.started

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return attrs.asdict(self)


@attrs.define
class EmulatorStats:
    """Counters of the requests to the API (requests to ``/__emulator__/`` are not counted).

    Attributes:
        requests: requests received.
        in_flight: requests being handled now, from the start of the handler until the
            response has been written (latency included, 429s included).
        peak_in_flight: the most requests in flight at once.
        throttled: 429s sent for a limit (not those of faults), counted as the request
            arrives: ``rate_throttled + concurrency_throttled``.
        rate_throttled: 429s sent because the ``rate_limit`` bucket had no token.
        concurrency_throttled: 429s sent for ``max_in_flight``.
        faults_fired: requests answered by a `Fault`.
        service_time: seconds spent in the handler, summed over requests (latency included).
        first_started: ``loop.time()`` when the first request arrived; ``None`` before.
        last_finished: ``loop.time()`` when the last answer had been written; ``None`` before.
        log: a `RequestRecord` per request answered, in the order they finished.
        log_dropped: records not kept because the log had reached its limit.
    """

    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    throttled: int = 0
    rate_throttled: int = 0
    concurrency_throttled: int = 0
    faults_fired: int = 0
    service_time: float = 0.0
    first_started: float | None = None
    last_finished: float | None = None
    log: list[RequestRecord] = attrs.Factory(list)
    log_dropped: int = 0

    @property
    def span(self) -> float | None:
        """The seconds from the first request's arrival to the last answer written (the
        server's span), over every client, the log kept or not; ``None`` until a request
        arrived and was answered."""
        if self.first_started is None or self.last_finished is None:
            return None
        return max(0.0, self.last_finished - self.first_started)

    def reset(self) -> None:
        """Zero the counters and start a new log; requests in flight stay counted."""
        self.requests = 0
        self.peak_in_flight = self.in_flight
        self.throttled = 0
        self.rate_throttled = 0
        self.concurrency_throttled = 0
        self.faults_fired = 0
        self.service_time = 0.0
        self.first_started = None
        self.last_finished = None
        self.log = []
        self.log_dropped = 0

    def as_dict(self, *, log: bool = True) -> dict[str, Any]:
        """The counters, and the log unless ``log=False``, as a JSON-ready dict."""
        data: dict[str, Any] = {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "throttled": self.throttled,
            "rate_throttled": self.rate_throttled,
            "concurrency_throttled": self.concurrency_throttled,
            "faults_fired": self.faults_fired,
            "service_time": self.service_time,
            "first_started": self.first_started,
            "last_finished": self.last_finished,
            "span": self.span,
            "log_dropped": self.log_dropped,
        }
        if log:
            data["log"] = [record.as_dict() for record in self.log]
        return data
