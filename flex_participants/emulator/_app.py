"""The aiohttp application: the participants endpoint, as Twilio answers it, and the
``/__emulator__/`` endpoints that serve and reset the counters."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import itertools
import re
from collections.abc import Callable, Iterable
from typing import Final, Literal

import attrs
from aiohttp import web

from .._request import is_sid
from ._budget import RateSchedule, TokenBucket, default_burst
from ._data import Dataset, StoredChannel
from ._faults import FaultPlan, answer_with_fault
from ._paging import InvalidQueryError, RequestedPage, parse_page_request, peek_int
from ._responses import dumps, json_response, page_response, send, twilio_error
from ._stats import EmulatorStats, RequestRecord

__all__ = ["Endpoint"]

_PARTICIPANTS_PATH: Final = re.compile(r"/v1/Interactions/([^/]+)/Channels/([^/]+)/Participants")

CONCURRENCY_CODES: Final = {20429: "Too many requests", 45780: "Too many concurrent requests"}
"""The codes Twilio answers a request over the concurrency limit with, and their messages."""

Throttle = Literal["rate", "concurrency"]
"""Which limit refused a request: the token bucket, or ``max_in_flight``."""

# The requests to the API in flight when this one arrived, itself included: what its
# Twilio-Concurrent-Requests header says. Only the API's handler sets it.
_CONCURRENT_REQUESTS: Final = web.RequestKey("concurrent_requests", int)


async def _add_concurrent_requests(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``Twilio-Concurrent-Requests`` with every answer of the API, faults' included."""
    concurrent = request.get(_CONCURRENT_REQUESTS)
    if concurrent is not None:
        response.headers["Twilio-Concurrent-Requests"] = str(concurrent)


@attrs.define
class _Outcome:
    """What the log records of a request, filled in as the request is handled."""

    page: int | None
    page_size: int | None
    authorized: bool = False
    fault: str | None = None


def _basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        return None
    username, colon, password = decoded.partition(b":")
    return (username, password) if colon else None


class Endpoint:
    """The handlers, and the state they share: data, faults, settings and counters."""

    def __init__(
        self,
        dataset: Dataset,
        faults: FaultPlan,
        credentials: Iterable[tuple[str, str]],
        *,
        latency: float,
        max_in_flight: int | None,
        concurrency_code: int,
        rate_limit: float | None,
        burst: int | None,
        rate_schedule: RateSchedule = (),
        retry_after: float | None,
        log_limit: int | None,
    ) -> None:
        self.dataset = dataset
        self.faults = faults
        self.stats = EmulatorStats()
        self.base_url = ""
        self.latency = latency
        self.max_in_flight = max_in_flight
        self.concurrency_code = concurrency_code
        self.retry_after = retry_after
        self.log_limit = log_limit
        self._credentials = [(user.encode(), secret.encode()) for user, secret in credentials]
        # Requests past the max_in_flight check, in flight: the ones the limit is about.
        self._admitted = 0
        self._request_ids = itertools.count(1)
        self._rate_limit = rate_limit
        self._burst = burst  # as given: None follows the rate
        self._clock: Callable[[], float] | None = None
        self._bucket: TokenBucket | None = None
        self.rate_schedule = rate_schedule
        # When the schedule's clock started (the first request since the start or the last
        # reset), the rate it started from, and how many of its steps are done.
        self._schedule_started: float | None = None
        self._schedule_base: float | None = None
        self._steps_done = 0

    def application(self) -> web.Application:
        """A new aiohttp application serving this endpoint."""
        app = web.Application()
        app.on_response_prepare.append(_add_concurrent_requests)
        app.router.add_get("/__emulator__/stats", self._get_stats, allow_head=False)
        app.router.add_post("/__emulator__/reset", self._reset_stats)
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    # -- the rate budget ------------------------------------------------------------------

    def start_budget(self, clock: Callable[[], float]) -> None:
        """Time the budget by ``clock`` from now on, with a full bucket and the schedule not
        yet started: the server starts."""
        self._restart_schedule()
        self._clock = clock
        self._bucket = self._new_bucket()

    @property
    def rate_limit(self) -> float | None:
        """Requests a second the bucket allows now; ``None``: no bucket."""
        self._follow_schedule()
        return self._rate_limit

    @property
    def burst(self) -> int | None:
        """The bucket's size: as given, else the default for the rate; ``None``: no bucket."""
        self._follow_schedule()
        return self._size()

    def _size(self) -> int | None:
        if self._rate_limit is None:
            return None
        return default_burst(self._rate_limit) if self._burst is None else self._burst

    def set_rate_limit(self, rate_limit: float | None) -> None:
        """Change the rate (checked by the caller); ``None`` also forgets the burst given."""
        self._follow_schedule()
        self._set_budget(rate_limit, None if rate_limit is None else self._burst)

    def set_burst(self, burst: int | None) -> None:
        """Change the burst (checked by the caller); ``None``: the default for the rate."""
        self._follow_schedule()
        self._set_budget(self._rate_limit, burst)

    def _set_budget(
        self, rate_limit: float | None, burst: int | None, at: float | None = None
    ) -> None:
        # The tokens held are kept, up to the new burst.
        self._rate_limit, self._burst = rate_limit, burst
        bucket, size = self._bucket, self._size()
        if rate_limit is None or size is None:
            self._bucket = None
        elif bucket is None:
            self._bucket = self._new_bucket()
        else:
            bucket.retune(rate_limit, size, at)

    def _follow_schedule(self, *, arriving: bool = False) -> None:
        """Make each step of `rate_schedule` due by now, at the instant it fell due, as the
        rate setter does; a request ``arriving`` starts the schedule's clock if it is the
        first since the start or the last `reset`.

        Steps are applied when the budget is next read, not by timers: the bucket refills
        at the old rate up to the step's instant and at the new one after it, exactly, however
        late the loop runs.
        """
        if not self.rate_schedule or self._clock is None:
            return
        now = self._clock()
        if self._schedule_started is None:
            if not arriving:
                return
            self._schedule_started, self._schedule_base = now, self._rate_limit
        while self._steps_done < len(self.rate_schedule):
            seconds, rate = self.rate_schedule[self._steps_done]
            due = self._schedule_started + seconds
            if due > now:
                break
            self._steps_done += 1
            self._set_budget(rate, self._burst, due)

    def reset(self) -> None:
        """Zero the counters; a schedule started goes back to the rate it started from
        (keeping the tokens held), and starts again at the next request."""
        self.stats.reset()
        self._restart_schedule()

    def _restart_schedule(self) -> None:
        if self._schedule_started is not None:
            base = self._schedule_base
            self._schedule_started, self._schedule_base, self._steps_done = None, None, 0
            self._set_budget(base, None if base is None else self._burst)

    def _new_bucket(self) -> TokenBucket | None:
        size = self._size()
        if self._clock is None or self._rate_limit is None or size is None:
            return None
        return TokenBucket(self._rate_limit, size, self._clock)

    def _throttle(self) -> Throttle | None:
        """The limit that refuses a request arriving now, if any; else admit it.

        ``max_in_flight`` is checked first, so that a request it refuses takes no token.
        """
        limit = self.max_in_flight
        if limit is not None and self._admitted >= limit:
            return "concurrency"
        if self._bucket is not None and not self._bucket.take():
            return "rate"
        return None

    def _throttled(self, throttle: Throttle) -> web.Response:
        """Twilio's 429 for ``throttle``: code 20429, or `concurrency_code` for concurrency."""
        if throttle == "rate":
            return twilio_error(429, "Too many requests", code=20429, retry_after=self.retry_after)
        code = self.concurrency_code
        return twilio_error(429, CONCURRENCY_CODES[code], code=code, retry_after=self.retry_after)

    # -- /__emulator__/ -------------------------------------------------------------------

    async def _get_stats(self, request: web.Request) -> web.Response:
        log = request.query.get("log", "1").lower() not in {"0", "false", "no"}
        return json_response(dumps(self.stats.as_dict(log=log)))

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)

    # -- the API --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Count, throttle, delay and log every request to the API; `_answer` answers it.

        The limits are checked as the request arrives, before its credentials; every answer,
        a 429 included, is sent after ``latency``.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        if stats.first_started is None:
            stats.first_started = started
        request[_CONCURRENT_REQUESTS] = stats.in_flight
        self._follow_schedule(arriving=True)
        throttle = self._throttle()
        if throttle is None:
            self._admitted += 1
        else:
            stats.throttled += 1
            if throttle == "rate":
                stats.rate_throttled += 1
            else:
                stats.concurrency_throttled += 1
        query = dict(request.query)
        outcome = _Outcome(peek_int(query.get("Page", "0")), peek_int(query.get("PageSize", "50")))
        match = _PARTICIPANTS_PATH.fullmatch(request.path)
        interaction_sid, channel_sid = match.groups() if match else ("", "")
        status = 500
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if throttle is None:
                response = await self._answer(request, interaction_sid, channel_sid, outcome)
            else:
                response = self._throttled(throttle)
            if not response.prepared:
                response.headers["Twilio-Request-Id"] = f"RQ{next(self._request_ids):032x}"
            status = response.status
            await send(request, response)
            return response
        finally:
            if throttle is None:
                self._admitted -= 1
            stats = self.stats
            stats.in_flight -= 1
            finished = loop.time()
            stats.last_finished = finished
            stats.service_time += finished - started
            if self.log_limit is None or len(stats.log) < self.log_limit:
                stats.log.append(
                    RequestRecord(
                        interaction_sid=interaction_sid,
                        channel_sid=channel_sid,
                        page=outcome.page,
                        page_size=outcome.page_size,
                        status=status,
                        started=started,
                        finished=finished,
                        authorized=outcome.authorized,
                        query=query,
                        fault=outcome.fault,
                        throttled=throttle is not None,
                        throttle=throttle,
                    )
                )
            else:
                stats.log_dropped += 1

    async def _answer(
        self, request: web.Request, interaction_sid: str, channel_sid: str, outcome: _Outcome
    ) -> web.StreamResponse:
        """Answer as Twilio does: 401, then 404 or 405, then 400, then a fault or the page."""
        if not self._authorized(request.headers.get("Authorization")):
            return twilio_error(401, "Authenticate")
        outcome.authorized = True
        channel: StoredChannel | None = None
        if is_sid(interaction_sid, "KD") and is_sid(channel_sid, "UO"):
            channel = self.dataset.get(interaction_sid, channel_sid)
        if channel is None:
            return twilio_error(404, f"The requested resource {request.path} was not found")
        if request.method != "GET":
            return twilio_error(405, f"Method {request.method} not allowed on {request.path}")
        try:
            paging = parse_page_request(request.query, channel_sid)
        except InvalidQueryError as exc:
            return twilio_error(400, str(exc))
        outcome.page, outcome.page_size = paging.page, paging.page_size
        page = RequestedPage(self.base_url, channel, paging)
        fault = self.faults.take(channel_sid, paging.page)
        if fault is not None:
            self.stats.faults_fired += 1
            outcome.fault = fault.kind
            return await answer_with_fault(request, fault, page)
        return page_response(page.body())

    def _authorized(self, header: str | None) -> bool:
        given = _basic_credentials(header)
        if given is None:
            return False
        accepted = False
        for username, secret in self._credentials:
            # Both comparisons always run, so the time taken tells nothing about which failed.
            same_user = hmac.compare_digest(given[0], username)
            same_secret = hmac.compare_digest(given[1], secret)
            accepted |= same_user and same_secret
        return accepted
