"""Streams, batches, closes, cancellations and faults, interleaved at random against a real
emulator over loopback, with the SDK's promises checked after every step.

The machine owns no loop of its own: one event loop and one `FlexEmulator` serve the whole
module (`_shared`), so that a response held open by a ``"slow"`` fault costs nothing when
an example ends. Consumers are background tasks of that loop; they move only while a rule
runs it, and every rule waits for a state it can name (a consumer has k more participants,
is held on a page, has ended), never for time, and never for longer than `_PATIENCE`.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Final, Literal, TypeVar

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from flex_participants import (
    AdaptiveLimiter,
    ChannelResult,
    ClientClosedError,
    FlexClient,
    FlexError,
    InvalidArgumentError,
    NotFoundError,
    ParticipantStream,
    RetryPolicy,
)
from flex_participants.emulator import Fault, FlexEmulator

from .helpers import sid

T = TypeVar("T")
Channel = tuple[str, str]

# How long any one wait of a rule may take before it is a failure, not a slow machine.
_PATIENCE: Final = 10.0
# A held page is answered after this long: never, within a test.
_HOLD: Final = 600.0
# Responses held open at once. With a max_concurrency this low or lower, they may take
# every slot of the client, and then a new stream waits for one.
_MAX_HELD: Final = 3
# Faults planned in one example: with more attempts than that, however they fall on the
# requests, a retried fault is never a request's last attempt. (Counted as planned, not as
# still pending: when a fault fires depends on timing, and a precondition must not.)
_MAX_FAULTS: Final = 6
_RETRY: Final = RetryPolicy(max_attempts=10, backoff_base=0.0)
_SOME: Final = 10**9
_DEFAULT_PAGE_SIZE: Final = 50

# Small pages half the time, so that a parked stream often has pages left to prefetch.
page_sizes = st.one_of(st.none(), st.integers(1, 12), st.integers(13, 60))


# -- one loop and one emulator for the module --------------------------------------------


@attrs.define
class _Shared:
    runner: asyncio.Runner
    emulator: FlexEmulator
    known: list[Channel]
    """Channels of the plain batch test, made once."""
    reported: list[dict[str, Any]]
    """What the loop reported to its exception handler: a task destroyed while pending,
    an exception never retrieved, an unclosed session. Each example expects none."""


_shared_state: list[_Shared] = []


def _shared() -> _Shared:
    if not _shared_state:
        # A loop factory, so that the runner does not make this loop the thread's current one.
        runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        reported: list[dict[str, Any]] = []
        runner.get_loop().set_exception_handler(lambda _, context: reported.append(context))
        emulator = FlexEmulator(seed=11)
        runner.run(emulator.start())
        known = [emulator.add_channel(participants=n) for n in (0, 1, 37, 120)]
        _shared_state.append(_Shared(runner, emulator, known, reported))
    return _shared_state[0]


@pytest.fixture(scope="module", autouse=True)
def _stop_the_shared_loop() -> Iterator[None]:
    yield
    while _shared_state:
        shared = _shared_state.pop()
        try:
            shared.runner.run(shared.emulator.stop())
        finally:
            shared.runner.close()


def _sdk_tasks(loop: asyncio.AbstractEventLoop) -> set[asyncio.Task[Any]]:
    """The SDK's tasks (all named ``flex_participants ...``) that have not finished."""
    return {
        t
        for t in asyncio.all_tasks(loop)
        if t.get_name().startswith("flex_participants") and not t.done()
    }


def _prefetch_name(stream: ParticipantStream) -> str:
    return f"flex_participants prefetch {id(stream):x}"


async def _until(what: str, condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds; an `AssertionError` naming ``what`` if it
    does not within `_PATIENCE`."""
    try:
        async with asyncio.timeout(_PATIENCE):
            # Polled: the conditions read the emulator, the limiter and tasks, which signal
            # nothing a test could wait on.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.0005)
    except TimeoutError:
        raise AssertionError(f"{what}: not so after {_PATIENCE} s") from None


async def _bounded(what: str, awaitable: Awaitable[T]) -> T:
    task = asyncio.ensure_future(awaitable)
    try:
        await _until(what, task.done)
    finally:
        task.cancel()  # a no-op once it is done
    return task.result()


def _where(c: _Consumer) -> str:
    if c.done:
        return "after its loop"
    how = "in async with" if c.managed else "bare"
    if not c.blocked:
        state = "parked"
    else:
        state = "waiting for a slot" if c.held is None else "held on a page"
    return f"{state}, {how}, prefetch {c.prefetch}"


class _WatchedLimiter(AdaptiveLimiter):
    """The client's own limiter, telling how many tasks are waiting in `acquire`."""

    def __init__(self, max_concurrency: int) -> None:
        super().__init__(max_concurrency)
        self.waiting = 0

    async def acquire(self) -> object:
        self.waiting += 1
        try:
            return await super().acquire()
        finally:
            self.waiting -= 1


def _limiter(client: FlexClient) -> _WatchedLimiter:
    limiter = client.limiter
    assert isinstance(limiter, _WatchedLimiter)
    return limiter


# -- what the machine drives -------------------------------------------------------------

Expect = Literal["whole", "cut", "broke", "cancelled", "client_closed"]


@attrs.define(eq=False)
class _Consumer:
    """A task iterating one stream, ``target`` participants at a time."""

    number: int
    client: int
    """Which of the machine's clients made the stream."""
    channel: Channel
    expected: list[str | None]
    """The channel's participant SIDs in server order, cut to the limit."""
    stream: ParticipantStream | None
    """None once the machine dropped it, as a caller that is done with it does."""
    managed: bool
    """Iterated inside ``async with stream``."""
    prefetch: int
    more: asyncio.Event
    target: int = 0
    stop: bool = False
    """Break out of the loop when next parked."""
    close_itself: bool = False
    """Call ``aclose()`` from the consumer's own task when next parked, then iterate on."""
    task: asyncio.Task[None] | None = None
    started: bool = False
    """The stream has been asked for a participant."""
    got: list[str | None] = attrs.field(factory=list)
    ended: bool = False
    """The ``async for`` ran to its end."""
    expect: Expect = "whole"
    frozen: int | None = None
    """Set when the stream was closed: nothing may be delivered past this count."""
    held: Fault | None = None
    """The slow fault that holds this consumer on a page."""
    blocked: bool = False
    """Waiting inside the SDK: for its held page, or for a slot while every slot is held."""
    closed: bool = False
    """The machine closed the stream (aclose, or its client's close), or dropped it."""

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    @property
    def parked(self) -> bool:
        return not self.done and not self.blocked

    @property
    def open(self) -> bool:
        """Whether the stream is still open, so that its prefetch task may still run."""
        if self.stream is None or self.closed:
            return False
        if not self.done:
            return True
        # An ended loop closed its stream, unless it was left in the caller's own code.
        return self.expect in ("broke", "cancelled") and not self.managed and not self.blocked


async def _wants_more(c: _Consumer) -> bool:
    while len(c.got) >= c.target and not c.stop and not c.close_itself:
        c.more.clear()
        await c.more.wait()
    if c.close_itself:
        c.close_itself = False
        assert c.stream is not None
        await c.stream.aclose()
        return True  # and iterate on: a stream closed from its own loop must just end
    return not c.stop


async def _iterate(c: _Consumer) -> None:
    if not await _wants_more(c):
        return
    assert c.stream is not None
    c.started = True
    async for participant in c.stream:
        c.got.append(participant.sid)
        if not await _wants_more(c):
            break
    else:
        c.ended = True


async def _consume(c: _Consumer) -> None:
    # The stream is reached through the record only, so that dropping it there frees it.
    if c.managed:
        assert c.stream is not None
        async with c.stream:
            await _iterate(c)
    else:
        await _iterate(c)


@attrs.define(eq=False)
class _Batch:
    items: list[Channel]
    window: int
    held: Channel | None
    task: asyncio.Task[None] | None = None
    results: list[ChannelResult] = attrs.field(factory=list)
    cut_by_close: bool = False
    cancelled: bool = False


class StreamsBatchesAndCloses(RuleBasedStateMachine):
    """Streams, batches, faults, breaks, closes and cancellations, in any order."""

    def __init__(self) -> None:
        super().__init__()
        shared = _shared()
        self.runner = shared.runner
        self.loop = self.runner.get_loop()
        self.emulator = shared.emulator
        self.reported = shared.reported
        self.reported.clear()
        self.emulator.clear_faults()
        self.faults_before = self.emulator.stats.faults_fired
        self.faults_planned = 0
        self.pool: list[Channel] = []
        self.expected: dict[Channel, list[str | None]] = {}
        self.consumers: list[_Consumer] = []
        self.batches: list[_Batch] = []
        self.max_concurrency = 4
        self.client: FlexClient | None = None
        self.closed_clients = 0

    # -- running the loop ----------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def _new_client(self) -> FlexClient:
        return FlexClient(
            **self.emulator.client_kwargs(),
            retry=_RETRY,
            max_concurrency=self.max_concurrency,
            limiter=_WatchedLimiter(self.max_concurrency),
        )

    @property
    def live_client(self) -> FlexClient:
        assert self.client is not None
        return self.client

    def _channel(self, participants: int) -> Channel:
        channel = self.emulator.add_channel(participants=participants)
        self.expected[channel] = [p["sid"] for p in self.emulator.participants_of(*channel)]
        return channel

    def _held_count(self) -> int:
        """How many requests are held by the emulator, each taking a slot of the client."""
        streams = sum(1 for c in self.consumers if c.held is not None and c.blocked and not c.done)
        batches = sum(1 for b in self.batches if b.held is not None and not self._batch_done(b))
        return streams + batches

    @staticmethod
    def _batch_done(b: _Batch) -> bool:
        return b.task is not None and b.task.done()

    def _fired(self, fault: Fault) -> bool:
        return not any(pending is fault for pending, _ in self.emulator.pending_faults)

    def _pick(self, candidates: list[_Consumer], index: int) -> _Consumer:
        return candidates[index % len(candidates)]

    def _parked(self) -> list[_Consumer]:
        return [c for c in self.consumers if c.parked]

    def _blocked(self) -> list[_Consumer]:
        return [c for c in self.consumers if c.blocked and not c.done]

    def _free_slots(self) -> int:
        return self.max_concurrency - self._held_count()

    def _may_hold(self) -> bool:
        return self._held_count() < min(_MAX_HELD, self.max_concurrency)

    async def _let_slot_waiters_run(self) -> None:
        """Once a slot is free again, the consumers waiting for one get it and finish."""
        waiters = [c for c in self._blocked() if c.held is None]
        if not waiters or not self._free_slots():
            return
        event("consumers waiting for a slot got one")
        for c in waiters:
            c.blocked = False
        await _until(
            f"consumers {[c.number for c in waiters]} got a slot once one was free, and ended",
            lambda: all(c.done for c in waiters),
        )

    async def _settle(self) -> None:
        """Wait until the only requests in flight are the held ones: nothing leaked a slot."""
        limiter = _limiter(self.live_client)
        await _until(
            f"only the {self._held_count()} held requests are in flight",
            lambda: limiter.in_flight == self._held_count(),
        )

    def _closable(self) -> list[_Consumer]:
        return [c for c in self.consumers if c.stream is not None and c.open]

    # -- rules ---------------------------------------------------------------------------

    @initialize(
        sizes=st.lists(st.integers(0, 120), min_size=1, max_size=4),
        max_concurrency=st.sampled_from([1, 2, 4, 6]),
    )
    def make_channels_and_a_client(self, sizes: list[int], max_concurrency: int) -> None:
        self.pool = [self._channel(n) for n in sizes]
        event(f"max_concurrency {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.client = self._new_client()

    def _open(
        self,
        channel: Channel,
        page_size: int | None,
        prefetch: int,
        limit: int | None,
        managed: bool,
    ) -> _Consumer:
        stream = self.live_client.participants(
            *channel, page_size=page_size, prefetch=prefetch, limit=limit
        )
        everyone = self.expected[channel]
        c = _Consumer(
            number=len(self.consumers),
            client=self.closed_clients,
            channel=channel,
            expected=everyone if limit is None else everyone[:limit],
            stream=stream,
            managed=managed,
            prefetch=prefetch,
            more=asyncio.Event(),
        )
        self.consumers.append(c)
        c.task = asyncio.create_task(_consume(c), name=f"consumer {c.number}")
        return c

    @precondition(lambda self: self._free_slots() > 0)
    @rule(
        index=st.integers(0, 99),
        page_size=page_sizes,
        prefetch=st.integers(0, 3),
        limit=st.none() | st.integers(0, 130),
        managed=st.booleans(),
        first=st.integers(0, 30),
    )
    def open_a_stream(
        self,
        index: int,
        page_size: int | None,
        prefetch: int,
        limit: int | None,
        managed: bool,
        first: int,
    ) -> None:
        channel = self.pool[index % len(self.pool)]

        async def go() -> None:
            c = self._open(channel, page_size, prefetch, limit, managed)
            c.target = first
            await _until(
                f"consumer {c.number} has {first} participants or has ended",
                lambda: len(c.got) >= first or c.done,
            )

        self.run(go())

    @precondition(lambda self: self._may_hold())
    @rule(
        size=st.integers(1, 120),
        page_size=page_sizes,
        prefetch=st.integers(0, 3),
        limit=st.none() | st.integers(1, 130),
        managed=st.booleans(),
        page=st.integers(0, 1000),
    )
    def open_a_stream_held_on_a_page(
        self,
        size: int,
        page_size: int | None,
        prefetch: int,
        limit: int | None,
        managed: bool,
        page: int,
    ) -> None:
        # A channel of its own, so that nothing else takes the fault that holds it.
        channel = self._channel(size)
        served = page_size or _DEFAULT_PAGE_SIZE
        if limit is not None and limit < served:
            served = limit
        wanted = size if limit is None else min(size, limit)
        page %= math.ceil(wanted / served)
        fault = Fault("slow", delay=_HOLD, channel_sid=channel[1], page=page)
        self.emulator.add_fault(fault)

        async def go() -> None:
            c = self._open(channel, page_size, prefetch, limit, managed)
            c.held = fault
            c.target = _SOME
            before = page * served
            await _until(
                f"consumer {c.number} is held on page {page} after {before} participants",
                lambda: c.done or (self._fired(fault) and len(c.got) >= before),
            )
            assert not c.done, f"consumer {c.number} ended before its held page"
            assert len(c.got) == before
            c.blocked = True

        self.run(go())

    @precondition(lambda self: self._free_slots() == 0)
    @rule(
        index=st.integers(0, 99),
        page_size=page_sizes,
        prefetch=st.integers(0, 3),
        managed=st.booleans(),
    )
    def open_a_stream_that_waits_for_a_slot(
        self, index: int, page_size: int | None, prefetch: int, managed: bool
    ) -> None:
        channel = self.pool[index % len(self.pool)]
        limiter = _limiter(self.live_client)

        async def go() -> None:
            before = limiter.waiting
            c = self._open(channel, page_size, prefetch, None, managed)
            c.target = _SOME
            # Itself, or its prefetch task: every slot is held, so nothing else moves.
            await _until(
                f"consumer {c.number} waits for a slot",
                lambda: c.done or limiter.waiting > before,
            )
            assert not c.done, f"consumer {c.number} ended with every slot held"
            assert not c.got
            c.blocked = True
            event("a stream waits for a slot")

        self.run(go())

    @precondition(lambda self: bool(self._parked()) and self._free_slots() > 0)
    @rule(index=st.integers(0, 99), k=st.integers(1, 40))
    def step_a_consumer(self, index: int, k: int) -> None:
        c = self._pick(self._parked(), index)
        c.target = len(c.got) + k
        c.more.set()
        self.run(
            _until(
                f"consumer {c.number} has {c.target} participants or has ended",
                lambda: len(c.got) >= c.target or c.done,
            )
        )

    @precondition(lambda self: bool(self._parked()))
    @rule(index=st.integers(0, 99), drop=st.booleans())
    def break_out_of_a_consumer(self, index: int, drop: bool) -> None:
        c = self._pick(self._parked(), index)
        c.stop = True
        c.more.set()
        c.expect = "broke"
        self.run(_until(f"consumer {c.number} broke out", lambda: c.done))
        if c.managed:
            c.closed = True
        elif drop:
            self._drop(c)
        self.run(self._settle())

    def _drop(self, c: _Consumer) -> None:
        """Forget the stream, as a caller that broke out of it does: its prefetch must end."""
        assert c.stream is not None
        name = _prefetch_name(c.stream)
        running = any(t.get_name() == name for t in _sdk_tasks(self.loop))
        event(f"dropped a stream {'with' if running else 'without'} its prefetch running")
        c.stream = None
        c.closed = True
        self.run(
            _until(
                f"the prefetch of consumer {c.number}'s dropped stream ended",
                lambda: not any(t.get_name() == name for t in _sdk_tasks(self.loop)),
            )
        )

    @precondition(lambda self: any(c.stream is not None for c in self._parked()))
    @rule(index=st.integers(0, 99))
    def aclose_from_the_consumers_own_task(self, index: int) -> None:
        c = self._pick([c for c in self._parked() if c.stream is not None], index)
        c.close_itself = True
        c.expect, c.frozen = "cut", len(c.got)
        c.more.set()
        self.run(_until(f"consumer {c.number} ended after closing its stream", lambda: c.done))
        c.closed = True

    @precondition(lambda self: bool(self._closable()))
    @rule(index=st.integers(0, 99))
    def aclose_from_another_task(self, index: int) -> None:
        self._aclose_elsewhere(self._pick(self._closable(), index))

    @precondition(
        lambda self: (
            any(c.held is None for c in self._blocked())
            and any(c.held is not None for c in self._blocked())
        )
    )
    @rule(index=st.integers(0, 99))
    def free_a_slot_for_the_streams_waiting_for_one(self, index: int) -> None:
        self._aclose_elsewhere(self._pick([c for c in self._blocked() if c.held], index))

    def _aclose_elsewhere(self, c: _Consumer) -> None:
        stream = c.stream
        assert stream is not None
        was_running = not c.done
        if was_running:
            c.expect, c.frozen = "cut", len(c.got)
        event(f"aclose() elsewhere, {_where(c)}")

        async def go() -> None:
            await _bounded(f"aclose() of consumer {c.number}'s stream", stream.aclose())
            if was_running:
                # A consumer held on a page ends now; a parked one when it asks for more.
                if c.blocked:
                    await _until(f"held consumer {c.number} ended after aclose()", lambda: c.done)
                c.target = _SOME
                c.more.set()
                await _until(f"consumer {c.number} ended after aclose()", lambda: c.done)
            c.closed = True
            with pytest.raises(StopAsyncIteration):
                await _bounded("anext() of a closed stream", stream.__anext__())
            await self._let_slot_waiters_run()
            await self._settle()

        self.run(go())

    @precondition(lambda self: any(not c.done for c in self.consumers))
    @rule(index=st.integers(0, 99), drop=st.booleans())
    def cancel_a_consumer(self, index: int, drop: bool) -> None:
        c = self._pick([c for c in self.consumers if not c.done], index)
        assert c.task is not None
        event(f"cancel(), {_where(c)}")
        c.task.cancel()
        c.expect = "cancelled"
        self.run(_until(f"consumer {c.number} ended after cancel()", lambda: c.done))
        assert c.task.cancelled(), f"consumer {c.number} was cancelled, yet {c.task!r}"
        self.run(self._let_slot_waiters_run())
        # Cancelled inside the SDK (held on a page, or waiting for a slot), or inside
        # `async with stream`, the stream closes; cancelled in the caller's own code between
        # two participants, it is as after a break: open until closed or dropped.
        if c.blocked or c.managed:
            c.closed = True
        elif drop and c.stream is not None:
            self._drop(c)
        self.run(self._settle())

    @precondition(lambda self: bool(self._blocked()))
    @rule(index=st.integers(0, 99), by_async_for=st.booleans())
    def a_second_task_iterates_a_stream_being_waited_on(
        self, index: int, by_async_for: bool
    ) -> None:
        c = self._pick(self._blocked(), index)
        stream = c.stream
        assert stream is not None
        count = len(c.got)

        async def second() -> object:
            if by_async_for:
                async for participant in stream:
                    return participant
                return None
            return await anext(stream)

        async def go() -> None:
            with pytest.raises(FlexError) as info:
                await _bounded("the second consumer", second())
            assert not isinstance(info.value, ClientClosedError), info.value
            for _ in range(5):
                await asyncio.sleep(0)
            assert not c.done, f"the first consumer {c.number} was disturbed: {c.task!r}"
            assert len(c.got) == count

        self.run(go())

    @precondition(lambda self: self._free_slots() > 0)
    @rule(
        picks=st.lists(st.tuples(st.booleans(), st.integers(0, 99)), max_size=8),
        concurrency=st.none() | st.integers(1, 4),
        page_size=page_sizes,
        hold=st.none() | st.integers(0, 99),
    )
    def start_a_batch(
        self,
        picks: list[tuple[bool, int]],
        concurrency: int | None,
        page_size: int | None,
        hold: int | None,
    ) -> None:
        items = [
            self.pool[n % len(self.pool)] if known else (sid("KD", n % 3 + 1), sid("UO", n % 3 + 1))
            for known, n in picks
        ]
        window = concurrency or self.max_concurrency
        held: Channel | None = None
        fault: Fault | None = None
        if hold is not None and window >= 2 and self._may_hold() and self._free_slots() >= 2:
            # Held on its first page for good, with a window of two or more: every other
            # channel still gets its result, and the batch is running when the client closes.
            held = self._channel(hold % 50 + 1)
            fault = Fault("slow", delay=_HOLD, channel_sid=held[1])
            self.emulator.add_fault(fault)
            items.insert(hold % (len(items) + 1), held)
        b = _Batch(items, window, held)
        self.batches.append(b)

        async def collect() -> None:
            batch = self.live_client.participants_for_channels(
                items, page_size=page_size, concurrency=concurrency
            )
            async for result in batch:
                b.results.append(result)

        async def go() -> None:
            b.task = asyncio.create_task(collect(), name=f"batch {len(self.batches)}")
            if fault is None:
                await _until(f"a batch of {len(items)} ended", lambda: self._batch_done(b))
            else:
                held_fault = fault
                await _until(
                    f"a batch of {len(items)} has all its results but the held one",
                    lambda: (
                        (len(b.results) >= len(items) - 1 and self._fired(held_fault))
                        or self._batch_done(b)
                    ),
                )
                assert not self._batch_done(b), "a batch with a held channel ended"

        self.run(go())

    @precondition(lambda self: self.faults_planned < _MAX_FAULTS)
    @rule(
        kind=st.sampled_from(["500", "503", "reset", "truncated"]),
        where=st.none() | st.integers(0, 99),
        page=st.none() | st.integers(0, 2),
    )
    def plan_a_fault(self, kind: str, where: int | None, page: int | None) -> None:
        channel_sid = None if where is None else self.pool[where % len(self.pool)][1]
        if kind in ("500", "503"):
            fault = Fault("status", status=int(kind), channel_sid=channel_sid, page=page)
        else:
            fault = Fault(
                "reset" if kind == "reset" else "truncated", channel_sid=channel_sid, page=page
            )
        self.emulator.add_fault(fault)
        self.faults_planned += 1

    @precondition(lambda self: any(not self._batch_done(b) for b in self.batches))
    @rule(index=st.integers(0, 99))
    def cancel_a_batch_consumer(self, index: int) -> None:
        running = [b for b in self.batches if not self._batch_done(b)]
        b = running[index % len(running)]
        assert b.task is not None
        b.task.cancel()
        b.cancelled = True
        self.run(_until("a batch consumer ended after cancel()", lambda: self._batch_done(b)))
        assert b.task.cancelled(), b.task
        self.run(self._let_slot_waiters_run())
        self.run(self._settle())

    @rule(interrupted=st.booleans())
    def close_the_client(self, interrupted: bool) -> None:
        self.run(self._close_client(interrupted=interrupted))
        self.client = self._new_client()

    async def _close_client(self, *, interrupted: bool = False) -> None:
        client = self.live_client
        waiting = [c for c in self.consumers if not c.done]
        running = [b for b in self.batches if not self._batch_done(b)]
        for b in running:
            b.cut_by_close = True
        for c in waiting:
            c.expect, c.frozen = "client_closed", len(c.got)
        # Whether each stream of this client still kept was open, and had been asked for a
        # participant, when the client closed.
        kept = [
            (c, c.open, c.started)
            for c in self.consumers
            if c.stream is not None and c.client == self.closed_clients
        ]
        blocked = sum(c.blocked for c in waiting)
        event(f"close() with {blocked} consumers blocked, {len(waiting) - blocked} parked")
        event(f"close() with {len(running)} batches running")
        closer = asyncio.create_task(client.close(), name="closer")
        if interrupted:
            # Cancelled in its first wait, a close() finishes its work when called again.
            await asyncio.sleep(0)
            closer.cancel()
            await _until("a cancelled close() ended", closer.done)
            event(f"close() interrupted {'before' if closer.cancelled() else 'after'} its end")
            closer = asyncio.create_task(client.close(), name="closer, again")
        await _until(
            "close() ended, with every consumer held on a page and every batch",
            lambda: (
                closer.done()
                and all(c.done for c in waiting if c.blocked)
                and all(self._batch_done(b) for b in running)
            ),
        )
        closer.result()
        # Parked between two participants, a consumer gets the error when it asks for more.
        for c in waiting:
            c.target = _SOME
            c.more.set()
        await _until("every consumer ended after close()", lambda: all(c.done for c in waiting))
        for c in waiting:
            assert c.task is not None
            assert isinstance(c.task.exception(), ClientClosedError), (c.number, c.task)
        for c in self.consumers:
            c.closed = True
        tasks = _sdk_tasks(self.loop)
        assert not tasks, f"SDK tasks outlived close(): {tasks}"
        assert _limiter(client).in_flight == 0
        assert _limiter(client).waiting == 0
        # What had ended stays ended; what had not is cut short, and says so.
        for c, was_open, _started in kept:
            assert c.stream is not None
            if was_open:
                with pytest.raises(ClientClosedError):
                    await _bounded("anext() of a stream cut by close()", anext(c.stream))
            else:
                with pytest.raises(StopAsyncIteration):
                    await _bounded("anext() of a stream ended before close()", anext(c.stream))
        # Every later use of the client.
        channel = self.pool[0]
        with pytest.raises(ClientClosedError):
            await _bounded("a stream after close()", anext(client.participants(*channel)))
        with pytest.raises(ClientClosedError):
            await _bounded("fetch_page() after close()", client.fetch_page(*channel))
        await _bounded("a second close()", client.close())
        self.closed_clients += 1

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def every_stream_delivered_a_prefix_of_its_channel(self) -> None:
        for c in self.consumers:
            got, expected = c.got, c.expected
            assert len(set(got)) == len(got), f"consumer {c.number} got a participant twice"
            assert got == expected[: len(got)], f"consumer {c.number} strayed from server order"
            assert len(got) <= len(expected)
            if c.frozen is not None:
                assert len(got) == c.frozen, f"consumer {c.number} got more after its close"
            if c.done:
                self._check_outcome(c)

    def _check_outcome(self, c: _Consumer) -> None:
        task = c.task
        assert task is not None
        if c.expect == "cancelled":
            assert task.cancelled(), task
            return
        assert not task.cancelled(), f"consumer {c.number} was cancelled, not by the test"
        error = task.exception()
        if c.expect == "client_closed":
            assert isinstance(error, ClientClosedError), (c.number, error)
            return
        assert error is None, f"consumer {c.number} failed: {error!r}"
        if c.expect == "whole":
            assert c.ended, f"consumer {c.number}'s loop did not end"
            assert c.got == c.expected, f"consumer {c.number} ended short"
        elif c.expect == "cut":
            assert c.ended, f"consumer {c.number}'s loop did not end cleanly after aclose()"
        else:
            assert not c.ended

    @invariant()
    def every_batch_result_pairs_with_an_input_item(self) -> None:
        for b in self.batches:
            left = collections.Counter(b.items)
            for result in b.results:
                key = (result.interaction_sid, result.channel_sid)
                assert left[key] > 0, f"a result for {key}, not asked or asked fewer times"
                left[key] -= 1
                if key in self.expected:
                    assert result.error is None, result.error
                    assert [p.sid for p in result.participants] == self.expected[key]
                else:
                    assert isinstance(result.error, NotFoundError), result.error
                    assert result.participants == ()
            if not self._batch_done(b) or b.cancelled:
                continue
            assert b.task is not None
            assert not b.task.cancelled()
            error = b.task.exception()
            if b.cut_by_close and b.held is not None:
                # Every result it had, then the error: never an end that looks whole.
                assert isinstance(error, ClientClosedError), error
                assert +left == collections.Counter([b.held])
            else:
                assert error is None, f"a batch failed: {error!r}"
                assert +left == collections.Counter(), f"a batch ended early, missing {+left}"

    @invariant()
    def every_sdk_task_has_a_live_owner(self) -> None:
        live_streams = {
            _prefetch_name(c.stream) for c in self.consumers if c.stream is not None and c.open
        }
        workers = 0
        for task in _sdk_tasks(self.loop):
            name = task.get_name()
            if name.startswith("flex_participants batch worker"):
                workers += 1
            else:
                assert name in live_streams, f"{task!r} outlived its stream"
        running = [b for b in self.batches if not self._batch_done(b)]
        assert workers <= sum(min(b.window, len(b.items) + 1) for b in running)

    @invariant()
    def the_loop_reported_nothing(self) -> None:
        assert not self.reported, [context.get("message") for context in self.reported]

    @invariant()
    def held_requests_hold_their_slots_and_no_more(self) -> None:
        if self.client is None:
            return
        in_flight = _limiter(self.client).in_flight
        assert self._held_count() <= in_flight <= self.max_concurrency

    def teardown(self) -> None:
        fired = self.emulator.stats.faults_fired - self.faults_before
        event(f"faults fired: {min(fired, 5)}{'+' if fired >= 5 else ''}")
        try:
            if self.client is not None:
                self.run(self._close_client())
                self.every_stream_delivered_a_prefix_of_its_channel()
                self.every_batch_result_pairs_with_an_input_item()
                gc.collect()  # a task dropped while pending is reported when it is collected
                self.the_loop_reported_nothing()
        finally:
            self.run(self._clean_up())

    async def _clean_up(self) -> None:
        # After a failure too: nothing of this example may run on into the next.
        if self.client is not None:
            await _bounded("close() at teardown", self.client.close())
        mine = [c.task for c in self.consumers] + [b.task for b in self.batches]
        tasks = [t for t in mine if t is not None]
        running = [t for t in tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=_PATIENCE)
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so that asyncio does not log it as lost
        # Whatever the SDK leaked (and the checks reported) must not fail the next example.
        leaked = _sdk_tasks(self.loop)
        for task in leaked:
            task.cancel()
        if leaked:
            await asyncio.wait(leaked, timeout=_PATIENCE)
        self.emulator.clear_faults()


StreamsBatchesAndCloses.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStreamsBatchesAndCloses = StreamsBatchesAndCloses.TestCase


# -- a batch, on its own -------------------------------------------------------------------

_UNKNOWN: Final = [(sid("KD", n), sid("UO", n)) for n in (1, 2)]
_MALFORMED: Final = [("KD-not-a-sid", sid("UO", 1)), (sid("KD", 1), "UO")]


@settings(max_examples=40, deadline=None)
@given(
    picks=st.lists(st.integers(0, 99), max_size=12),
    concurrency=st.none() | st.integers(1, 6),
    page_size=page_sizes,
)
def test_a_batch_yields_exactly_one_result_per_input_item_paired_with_it(
    picks: list[int], concurrency: int | None, page_size: int | None
) -> None:
    shared = _shared()
    choices = [*shared.known, *_UNKNOWN, *_MALFORMED]
    items = [choices[n % len(choices)] for n in picks]
    emulator = shared.emulator

    async def go() -> list[ChannelResult]:
        async with FlexClient(**emulator.client_kwargs(), retry=_RETRY, rate_limit=None) as client:
            batch = client.participants_for_channels(
                items, page_size=page_size, concurrency=concurrency
            )
            return [result async for result in batch]

    results = shared.runner.run(_bounded("the batch", go()))
    assert len(results) == len(items)
    by_input = collections.Counter(items)
    by_result = collections.Counter((r.interaction_sid, r.channel_sid) for r in results)
    assert by_result == by_input
    for result in results:
        key = (result.interaction_sid, result.channel_sid)
        if key in shared.known:
            assert result.error is None, result.error
            expected = [p["sid"] for p in emulator.participants_of(*key)]
            assert [p.sid for p in result.participants] == expected
        else:
            error_type = NotFoundError if key in _UNKNOWN else InvalidArgumentError
            assert isinstance(result.error, error_type), result.error
            assert result.participants == ()


# -- what the machine found, each on its own (fixed; kept as regression tests) -----------


def _run_alone(coro: Coroutine[Any, Any, T]) -> T:
    return _shared().runner.run(_bounded("the test", coro))


def test_a_stream_first_asked_after_close_keeps_raising_client_closed_error() -> None:
    shared = _shared()

    async def go() -> None:
        client = FlexClient(**shared.emulator.client_kwargs(), retry=_RETRY, rate_limit=None)
        stream = client.participants(*shared.known[2])
        await client.close()
        with pytest.raises(ClientClosedError):
            await anext(stream)
        with pytest.raises(ClientClosedError):
            await anext(stream)

    _run_alone(go())


def test_a_stream_of_limit_zero_made_before_close_raises_after_it() -> None:
    shared = _shared()

    async def go() -> None:
        client = FlexClient(**shared.emulator.client_kwargs(), retry=_RETRY, rate_limit=None)
        stream = client.participants(*shared.known[2], limit=0)
        await client.close()
        with pytest.raises(ClientClosedError):
            await anext(stream)

    _run_alone(go())


def test_a_batch_started_after_close_raises_client_closed_error() -> None:
    shared = _shared()

    async def go() -> None:
        client = FlexClient(**shared.emulator.client_kwargs(), retry=_RETRY, rate_limit=None)
        await client.close()
        batch = client.participants_for_channels(shared.known[:2])
        with pytest.raises(ClientClosedError):
            async for _ in batch:
                pass

    _run_alone(go())
