"""The aiohttp application: the participants endpoint, as Twilio answers it, and the
``/__emulator__/`` endpoints that serve and reset the counters."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from ._data import CHANNEL_SID, INTERACTION_SID, Dataset, StoredChannel
from ._faults import FaultPlan, answer_with_fault
from ._paging import InvalidQueryError, RequestedPage, parse_page_request, peek_int
from ._responses import dumps, json_response, page_response, send, twilio_error
from ._stats import EmulatorStats, RequestRecord

__all__ = ["Endpoint"]

_PARTICIPANTS_PATH: Final = re.compile(r"/v1/Interactions/([^/]+)/Channels/([^/]+)/Participants")


@dataclass(slots=True)
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
        retry_after: float | None,
        log_limit: int | None,
    ) -> None:
        self.dataset = dataset
        self.faults = faults
        self.stats = EmulatorStats()
        self.base_url = ""
        self.latency = latency
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.log_limit = log_limit
        self._credentials = [(user.encode(), secret.encode()) for user, secret in credentials]
        # Requests past the max_in_flight check, in flight: the ones the limit is about.
        self._admitted = 0
        self._request_ids = itertools.count(1)

    def application(self) -> web.Application:
        """A new aiohttp application serving this endpoint."""
        app = web.Application()
        app.router.add_get("/__emulator__/stats", self._get_stats, allow_head=False)
        app.router.add_post("/__emulator__/reset", self._reset_stats)
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    # -- /__emulator__/ -------------------------------------------------------------------

    async def _get_stats(self, request: web.Request) -> web.Response:
        log = request.query.get("log", "1").lower() not in {"0", "false", "no"}
        return json_response(dumps(self.stats.as_dict(log=log)))

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.Response(status=204)

    # -- the API --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Count, throttle, delay and log every request to the API; `_answer` answers it."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        limit = self.max_in_flight
        admitted = limit is None or self._admitted < limit
        if admitted:
            self._admitted += 1
        query = dict(request.query)
        outcome = _Outcome(peek_int(query.get("Page", "0")), peek_int(query.get("PageSize", "50")))
        match = _PARTICIPANTS_PATH.fullmatch(request.path)
        interaction_sid, channel_sid = match.groups() if match else ("", "")
        status = 500
        try:
            if admitted:
                if self.latency > 0:
                    await asyncio.sleep(self.latency)
                response = await self._answer(request, interaction_sid, channel_sid, outcome)
            else:
                stats.throttled += 1
                response = twilio_error(429, "Too many requests", retry_after=self.retry_after)
            if not response.prepared:
                response.headers["Twilio-Request-Id"] = f"RQ{next(self._request_ids):032x}"
            status = response.status
            await send(request, response)
            return response
        finally:
            if admitted:
                self._admitted -= 1
            stats = self.stats
            stats.in_flight -= 1
            finished = loop.time()
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
                        throttled=not admitted,
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
        if INTERACTION_SID.fullmatch(interaction_sid) and CHANNEL_SID.fullmatch(channel_sid):
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
