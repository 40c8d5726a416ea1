"""``python -m bench._worker '{json}'``: one run of one system in a fresh process.

For what must not share a process with anything else: peak RSS (memory, scale) and the SDK
without orjson (cpu). Prints one JSON line: timings, peak RSS, tasks and a `Fingerprint` of
what the system returned.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._measure import Fingerprint, TaskCounter, max_rss_mb, timed, vm_hwm_mb
from ._systems import open_system

__all__ = ["main"]

ORJSON_BLOCKER = """
import sys

class _NoOrjson:
    # Makes orjson unimportable in this process only, as if it were not installed.
    def find_spec(self, name, path=None, target=None):
        if name == "orjson" or name.startswith("orjson."):
            raise ImportError("orjson is blocked in this benchmark process")
        return None

sys.meta_path.insert(0, _NoOrjson())
import runpy
runpy.run_module("bench._worker", run_name="__main__", alter_sys=True)
"""
"""The body of ``python -c``: the worker, with orjson unimportable."""


def _channels(path: str) -> Iterator[tuple[str, str]]:
    # Read lazily, so that the input costs the same memory at any length.
    with Path(path).open() as lines:
        for line in lines:
            interaction_sid, channel_sid = line.split()
            yield interaction_sid, channel_sid


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    counter = TaskCounter()
    counter.install(asyncio.get_running_loop())
    sids = Fingerprint()
    channels = Fingerprint()
    async with open_system(spec["system"], spec["base_url"], spec["concurrency"]) as system:
        if spec["mode"] == "stream":
            channel = (spec["channel"][0], spec["channel"][1])
            if spec.get("warmup"):
                await system.stream(channel, spec["page_size"], 0.0, Fingerprint().add)
            rss_before = max_rss_mb()
            timing = await timed(lambda: system.stream(channel, spec["page_size"], 0.0, sids.add))
        else:

            def sink(channel_sid: str, participants: list[str | None]) -> None:
                channels.add(channel_sid)
                sids.add_all(participants)

            rss_before = max_rss_mb()
            timing = await timed(
                lambda: system.batch(_channels(spec["channels_file"]), spec["page_size"], sink)
            )
    json_library = None
    if spec["system"] == "sdk":
        from flex_participants import _convert

        json_library = _convert.JSON_LIBRARY
    return {
        "wall": timing.wall,
        "cpu": timing.cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": max_rss_mb(),
        "vm_hwm_mb": vm_hwm_mb(),
        "peak_tasks": counter.peak,
        "sids": sids.as_dict(),
        "channels": channels.as_dict(),
        "json_library": json_library,
    }


def main() -> int:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(_run(spec))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
