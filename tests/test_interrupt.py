"""`_interrupt`: another task ends a wait inside the SDK; no cancellation is lost or left over."""

from __future__ import annotations

import asyncio

import pytest

from flex_participants._interrupt import Interrupts


async def waiting(interrupts: Interrupts, outcome: list[str]) -> None:
    with interrupts.wait() as wait:
        await asyncio.sleep(60)
    outcome.append("interrupted" if wait.interrupted else "ended")


async def test_an_interrupt_ends_the_wait_as_an_ordinary_outcome() -> None:
    interrupts, outcome = Interrupts(), list[str]()
    task = asyncio.create_task(waiting(interrupts, outcome))
    await asyncio.sleep(0)
    assert interrupts.busy()
    interrupts.interrupt()
    await task
    assert outcome == ["interrupted"]
    assert task.cancelling() == 0
    assert not interrupts.busy()


async def test_a_cancellation_asked_by_someone_else_too_goes_on() -> None:
    interrupts, outcome = Interrupts(), list[str]()
    task = asyncio.create_task(waiting(interrupts, outcome))
    await asyncio.sleep(0)
    interrupts.interrupt()
    task.cancel()  # a timeout or a task group, at the same moment
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == []


async def test_an_interrupt_replaced_by_another_error_leaves_no_cancellation_behind() -> None:
    interrupts = Interrupts()

    async def replaces() -> None:
        with interrupts.wait():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                raise ValueError("cleanup failed on the way out") from None

    task = asyncio.create_task(replaces())
    await asyncio.sleep(0)
    interrupts.interrupt()
    with pytest.raises(ValueError, match="cleanup failed"):
        await task
    assert task.cancelling() == 0  # else the caller's own timeout would misfire later


async def test_the_interrupting_task_never_interrupts_itself() -> None:
    interrupts = Interrupts()
    with interrupts.wait() as wait:
        interrupts.interrupt()
        await asyncio.sleep(0)
    assert not wait.interrupted


async def test_a_wait_that_was_not_interrupted_passes_its_exception_through() -> None:
    interrupts = Interrupts()
    with pytest.raises(KeyError), interrupts.wait():
        raise KeyError("its own")
    assert not interrupts.busy()
