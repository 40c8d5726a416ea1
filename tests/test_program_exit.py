"""Programs that leave a stream or batch by an exception, without ``async with``, exit quietly.

Each scenario runs as its own program (``python -X dev``, so that asyncio reports every task
exception never retrieved, every unclosed resource and every async generator it has to close
at shutdown) against the emulator, leaves its loop by an exception, and returns from
``asyncio.run``. Nothing may be printed: any line on stderr is a leak the user would see.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    from flex_participants import FlexClient
    from flex_participants.emulator import FlexEmulator

    MODE, PREFETCH = sys.argv[1], int(sys.argv[2])

    async def leave(client, kd, uo, pairs):
        stream = client.participants(kd, uo, page_size=10, prefetch=PREFETCH)
        if MODE == "stream":
            async for _ in stream:
                raise ValueError("the caller's own bug")
        elif MODE == "pages":
            async for _ in stream.pages():
                raise ValueError("the caller's own bug")
        elif MODE == "anext":
            await anext(aiter(stream))
            raise ValueError("the caller's own bug")
        elif MODE == "batch":
            async for _ in client.participants_for_channels(pairs, page_size=10):
                raise ValueError("the caller's own bug")
        elif MODE == "batch, failing limiter":
            results = [r async for r in client.participants_for_channels(pairs, page_size=10)]
            if len(results) != len(pairs):
                raise SystemExit(f"{len(results)} results for {len(pairs)} channels")
            raise ValueError("the caller's own bug")
        elif MODE == "task group":
            async def consume():
                async for _ in client.participants(kd, uo, page_size=10, prefetch=PREFETCH):
                    await asyncio.sleep(0.001)

            async def fail():
                await asyncio.sleep(0.02)
                raise ValueError("a sibling failed")

            async with asyncio.TaskGroup() as group:
                for _ in range(3):
                    group.create_task(consume())
                group.create_task(fail())
        elif MODE == "timeout":
            async with asyncio.timeout(0.03):
                async for _ in stream:
                    await asyncio.sleep(0.001)
        elif MODE == "batch timeout":
            async with asyncio.timeout(0.03):
                async for _ in client.participants_for_channels(pairs, page_size=10):
                    pass

    class FailingLimiter:
        # A custom limiter whose every third acquire raises something not a FlexError.
        calls = 0

        async def acquire(self):
            self.calls += 1
            if self.calls % 3 == 0:
                raise RuntimeError("the limiter's store is down")

        async def release(self, permit, *, throttled):
            pass

    async def main():
        async with FlexEmulator(latency=0.005) as emulator:
            kd, uo = emulator.add_channel(participants=300)
            pairs = [emulator.add_channel(participants=60) for _ in range(20)]
            options = {"limiter": FailingLimiter()} if MODE.endswith("failing limiter") else {}
            kwargs = emulator.client_kwargs()
            async with FlexClient(**kwargs, max_concurrency=4, **options) as client:
                try:
                    await leave(client, kd, uo, pairs)
                except (ValueError, ExceptionGroup, TimeoutError):
                    pass
                else:
                    raise SystemExit("the scenario did not leave by an exception")

    asyncio.run(main())
    """
)

SCENARIOS = [
    ("stream", 0),
    ("stream", 1),
    ("stream", 3),
    ("pages", 1),
    ("anext", 1),
    ("batch", 0),
    ("batch, failing limiter", 0),
    ("task group", 1),
    ("timeout", 0),
    ("timeout", 1),
    ("batch timeout", 0),
]


@pytest.mark.parametrize(("mode", "prefetch"), SCENARIOS)
def test_a_program_leaving_by_an_exception_prints_nothing_at_exit(mode: str, prefetch: int) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and program
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error::ResourceWarning",
            "-c",
            PROGRAM,
            mode,
            str(prefetch),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")
