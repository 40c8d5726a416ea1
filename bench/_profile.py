"""``python -m bench --profile``: where the SDK spends its CPU in the cpu scenario."""

from __future__ import annotations

from ._emulator import EmulatorProcess
from ._scenarios import CONCURRENCY, SEED, Sizes
from ._systems import open_system

__all__ = ["profile_cpu"]


async def profile_cpu(sizes: Sizes) -> str:
    """Profile the SDK streaming the cpu scenario's channel; return the text report."""
    from pyinstrument import Profiler

    with EmulatorProcess(seed=SEED, groups=[f"1x{sizes.cpu_participants}"]) as emulator:
        channel = emulator.channels[0]
        async with open_system("sdk", emulator.base_url, CONCURRENCY) as system:
            sids: list[str | None] = []
            await system.stream(channel, sizes.cpu_page_size, 0.0, sids.append)  # warm-up
            profiler = Profiler(interval=0.0005, async_mode="enabled")
            with profiler:
                for _ in range(3):
                    sids.clear()
                    await system.stream(channel, sizes.cpu_page_size, 0.0, sids.append)
    text: str = profiler.output_text(unicode=True, color=False, show_all=False)
    return text
