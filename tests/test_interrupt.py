"""`_interrupt`: another task ends a wait inside the SDK; no cancellation is lost or left over."""

from __future__ import annotations

import asyncio

import pytest

from flex_participants._interrupt import Interrupts, uninterrupted


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


# -- uninterrupted: work that a cancellation must not cut short ---------------------------


async def test_uninterrupted_work_ends_before_the_cancellation_goes_on() -> None:
    gate, done = asyncio.Event(), list[str]()

    async def work() -> None:
        await gate.wait()
        done.append("given back")

    task = asyncio.create_task(uninterrupted(work(), "give a slot back"))
    await asyncio.sleep(0)
    task.cancel()
    task.cancel()  # twice, as close() and a deadline may
    await asyncio.sleep(0)
    assert not task.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["given back"]


async def test_uninterrupted_work_that_fails_while_cancelled_is_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()
        raise RuntimeError("broken")

    task = asyncio.create_task(uninterrupted(work(), "give a slot back"))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = [r for r in caplog.records if r.name == "flex_participants"]
    assert record.getMessage() == "failed to give a slot back"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_uninterrupted_work_not_cancelled_returns_or_raises_as_itself() -> None:
    async def value() -> int:
        return 7

    async def failing() -> None:
        raise RuntimeError("broken")

    assert await uninterrupted(value(), "compute") == 7
    with pytest.raises(RuntimeError, match="broken"):
        await uninterrupted(failing(), "fail")
