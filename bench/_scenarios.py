"""The scenarios, each described as data (`Scenario`): its systems, how it measures them
(its own emulator process, every system in turn, A B C A B C ..., what each returned
checked), what each system's runs sum up to, the row that shows it, and its target. One path,
`Scenario.run`, takes every scenario from its runs to its summary to its rows.

The budget scenarios' targets are the ones that matter (see docs/performance.md); the CPU and
batch targets of the others are retired, and kept as guards: comparisons with the peers that
catch a regression, never a failed row for the retired figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from flex_participants.emulator import FlexEmulator

from ._budget import Budget, Delivery, Target, deliver
from ._emulator import ROOT, EmulatorProcess, ServerStats, expected_sids
from ._fleet import FleetRun, RedisServer, SharedLimit, redis_binary, run_fleet
from ._measure import Fingerprint, Timing, timed
from ._spawner import Spawner
from ._systems import System, open_system
from ._worker import ORJSON_BLOCKER

__all__ = [
    "BUDGET_SCENARIOS",
    "FULL",
    "QUICK",
    "SCENARIOS",
    "Bounded",
    "BudgetCase",
    "Guard",
    "Judge",
    "Row",
    "Scenario",
    "ScenarioResult",
    "Sizes",
    "budget_cases",
    "crowd_cases",
    "fleet_concurrency",
    "grid_cases",
    "run_scenarios",
    "schedule_cases",
    "server_burst",
]

SEED = 20_260_101
CONCURRENCY = 20
IN_PROCESS = ("sdk", "twilio", "reference")


@attrs.frozen
class Sizes:
    """How big each scenario is."""

    prefetch_pages: int = 20
    prefetch_page_size: int = 50
    prefetch_latency: float = 0.020
    prefetch_consume: float = 0.020
    batch_channels: int = 200
    batch_pages: int = 3
    batch_page_size: int = 50
    batch_latency: float = 0.020
    cpu_participants: int = 100_000
    cpu_page_size: int = 1000
    memory_small: int = 10_000
    memory_large: int = 1_000_000
    memory_page_size: int = 1000
    scale_small: int = 2_000
    scale_large: int = 20_000
    scale_page_size: int = 50
    budget_rate: float = 20.0
    budget_burst: int = 5
    budget_latency: float = 0.2
    budget_channels: int = 200
    budget_strict_rate: float = 10.0
    budget_strict_channels: int = 100
    grid_rates: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
    grid_latencies: tuple[float, ...] = (0.05, 0.2, 1.0)
    grid_seconds: float = 10.0
    """How long each run of the grid lasts at its floor, but for the latency."""
    schedule_rate: float = 20.0
    schedule_low: float = 10.0
    schedule_from: float = 3.0
    """Seconds after the first request at which the budget falls to ``schedule_low``."""
    schedule_for: float = 8.0
    schedule_latency: float = 0.2
    schedule_seconds: float = 16.0
    crowd_rate: float = 20.0
    crowd_latency: float = 0.2
    crowd_seconds: float = 10.0
    crowd_processes: int = 4
    fleet_latencies: tuple[float, ...] = (0.2, 1.0)


FULL = Sizes()
QUICK = Sizes(
    prefetch_pages=3,
    prefetch_page_size=10,
    prefetch_latency=0.002,
    prefetch_consume=0.002,
    batch_channels=10,
    batch_page_size=10,
    batch_latency=0.002,
    cpu_participants=1_000,
    cpu_page_size=500,
    memory_small=500,
    memory_large=2_000,
    memory_page_size=500,
    scale_small=20,
    scale_large=100,
    budget_rate=25.0,
    budget_burst=5,
    budget_latency=0.005,
    budget_channels=10,
    budget_strict_rate=20.0,
    budget_strict_channels=8,
    grid_rates=(25.0,),
    grid_latencies=(0.005,),
    grid_seconds=0.4,
    schedule_rate=25.0,
    schedule_low=12.5,
    schedule_from=0.1,
    schedule_for=0.3,
    schedule_latency=0.005,
    schedule_seconds=0.6,
    crowd_rate=25.0,
    crowd_latency=0.005,
    crowd_seconds=0.4,
    fleet_latencies=(0.005, 0.05),
)


@attrs.define
class Row:
    """One line of the table."""

    scenario: str
    system: str
    figure: str
    versus: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""
    delivered: bool = True
    """Whether the system delivered every channel (False: some failed, as a peer may)."""


@attrs.define
class ScenarioResult:
    """What a scenario measured: every run, the summary figures, and its rows."""

    name: str
    repeat: int = 1
    runs: list[dict[str, Any]] = attrs.Factory(list)
    summary: dict[str, Any] = attrs.Factory(dict)
    rows: list[Row] = attrs.Factory(list)
    lost: list[str] = attrs.Factory(list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repeat": self.repeat,
            "summary": self.summary,
            "rows": [attrs.asdict(row) for row in self.rows],
            "lost": self.lost,
            "runs": self.runs,
        }


# -- figures -----------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: Sequence[float], scale: float = 1.0, digits: int = 0, unit: str = "") -> str:
    """``median (min-max)`` of ``values`` times ``scale``."""
    if not values:
        return "no valid run"
    median, low, high = (_median(values) * scale, min(values) * scale, max(values) * scale)
    return f"{median:,.{digits}f}{unit} ({low:,.{digits}f}-{high:,.{digits}f})"


def _verdict(ok: bool, checked: bool = True) -> str:
    if not checked:
        return "FAIL (lost participants)"
    return "PASS" if ok else "FAIL"


def _valid(
    runs: list[dict[str, Any]], system: str, size: int | None = None
) -> list[dict[str, Any]]:
    """The valid runs of ``system`` (of ``size``, in a scenario of two sizes)."""
    return [
        run
        for run in runs
        if run["system"] == system and run["ok"] and (size is None or run["size"] == size)
    ]


def _values(
    runs: list[dict[str, Any]], system: str, key: str, size: int | None = None
) -> list[float]:
    return [float(run[key]) for run in _valid(runs, system, size)]


def _paired(runs: list[dict[str, Any]], a: str, b: str, key: str) -> list[float]:
    """``a / b`` of ``key`` for each repetition in which both runs were valid."""
    by_rep: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["ok"]:
            by_rep.setdefault(run["rep"], {})[run["system"]] = float(run[key])
    return [rep[a] / rep[b] for rep in by_rep.values() if a in rep and b in rep and rep[b]]


def _lost(result: ScenarioResult, system: str) -> bool:
    return any(f"/{system} run" in line for line in result.lost)


def _lost_note(result: ScenarioResult, system: str) -> str:
    return "lost participants" if _lost(result, system) else ""


# -- targets -----------------------------------------------------------------------------


class Judge(Protocol):
    """What a row is judged by: it writes the row's target and verdict."""

    def apply(self, result: ScenarioResult, row: Row) -> None:
        """Judge ``row``'s system on ``result``'s runs and summary; note it in the row."""


@attrs.frozen
class Guard:
    """What stands for a retired target: the SDK's ``key`` over each peer's, in the same
    repetition, at most ``limit``: a comparison that catches a regression."""

    key: str
    peers: tuple[str, ...]
    limit: float
    text: str
    retired: str
    """The retired target, shown for the record and never judged."""

    def apply(self, result: ScenarioResult, row: Row) -> None:
        """Judge ``row``'s system against the peers; note it in the row."""
        versus = {
            peer: _median(_paired(result.runs, row.system, peer, self.key)) for peer in self.peers
        }
        for peer, ratio in versus.items():
            result.summary[row.system][f"vs_{peer}"] = ratio
        figures = ", ".join(f"/ {peer} {ratio:.3f}" for peer, ratio in versus.items())
        row.versus = f"{row.versus}; {figures}" if row.versus else figures
        row.target = f"guard: {self.text} (retired: {self.retired})"
        ok = all(ratio <= self.limit for ratio in versus.values())  # a NaN fails
        row.verdict = _verdict(ok, not _lost(result, row.system))


@attrs.frozen
class Bounded:
    """A target on the system's own summary: ``holds`` it (a NaN, no valid run, fails)."""

    text: str
    holds: Callable[[dict[str, Any]], bool]

    def apply(self, result: ScenarioResult, row: Row) -> None:
        """Judge ``row``'s system by its summary; note it in the row."""
        row.target = self.text
        row.verdict = _verdict(
            self.holds(result.summary[row.system]), not _lost(result, row.system)
        )


# -- a scenario, as data -----------------------------------------------------------------

Measure = Callable[[Sizes, int, Spawner, "ScenarioResult"], Awaitable[None]]
"""Run every system ``repeat`` times: each run into ``result.runs`` (and what it lost into
``result.lost``), the scenario's settings into ``result.summary``."""


@attrs.frozen
class Scenario:
    """A scenario: its systems in the order they show, how it measures them, what each
    system's runs sum up to, the row that shows it, and the targets the rows are judged by
    (a system without one is a comparison)."""

    name: str
    systems: Sequence[str]
    measure: Measure
    summarise: Callable[[ScenarioResult, str], dict[str, Any]]
    """The summary figures of one system, from its runs."""
    row: Callable[[ScenarioResult, str], Row]
    """The row of one system, from its runs and its summary."""
    judges: Mapping[str, Judge] = attrs.Factory(dict)
    notes: Sequence[Row] = ()
    """Rows shown after the systems': what did not run, and why."""
    repeat: int | None = None
    """Its repetitions unless the run says otherwise; ``None``: the run's default."""

    async def run(self, sizes: Sizes, repeat: int, spawner: Spawner) -> ScenarioResult:
        """Measure, then sum up and judge each system: the one path of every scenario."""
        result = ScenarioResult(self.name, repeat=repeat)
        await self.measure(sizes, repeat, spawner, result)
        for system in self.systems:
            result.summary[system] = self.summarise(result, system)
        for system in self.systems:
            row = self.row(result, system)
            judge = self.judges.get(system)
            if judge is None:
                row.verdict = row.verdict or _lost_note(result, system)
            else:
                judge.apply(result, row)
            result.rows.append(row)
        result.rows.extend(self.notes)
        return result


# -- running -----------------------------------------------------------------------------


def _sids_ok(got: Sequence[str | None], expected: set[str]) -> tuple[bool, str]:
    if len(got) == len(expected) and set(got) == expected:
        return True, ""
    missing = len(expected - set(got))
    extra = len(got) - (len(expected) - missing)
    return False, f"{missing} missing, {extra} extra or repeated, of {len(expected)}"


async def _in_process_runs(
    name: str,
    emulator: EmulatorProcess,
    repeat: int,
    run: Callable[[System, list[str | None]], Awaitable[None]],
    expected: set[str],
    result: ScenarioResult,
    reps: Sequence[int] | None = None,
) -> None:
    """Warm every system of `IN_PROCESS` up once, then ``repeat`` rounds of one timed run
    each, numbered ``reps`` (default ``0..repeat-1``)."""
    numbers = list(range(repeat)) if reps is None else list(reps)
    for rep in [-1, *numbers]:
        for system_name in IN_PROCESS:
            sids: list[str | None] = []
            async with open_system(system_name, emulator.base_url, CONCURRENCY) as system:
                emulator.reset()
                timing = await timed(lambda system=system, sids=sids: run(system, sids))  # type: ignore[misc]
                stats = emulator.stats()
            if rep < 0:
                continue  # the warm-up
            ok, problem = _sids_ok(sids, expected)
            if not ok:
                result.lost.append(f"{name}/{system_name} run {rep}: {problem}")
            result.runs.append(_record(system_name, rep, ok, timing.wall, timing.cpu, stats))


def _record(
    system: str, rep: int, ok: bool, wall: float, cpu: float, stats: ServerStats | None
) -> dict[str, Any]:
    record: dict[str, Any] = {"system": system, "rep": rep, "ok": ok, "wall": wall, "cpu": cpu}
    if stats is not None:
        record.update(
            requests=stats.requests,
            service_time=stats.service_time,
            s=stats.per_request,
            peak_in_flight=stats.peak_in_flight,
            throttled=stats.throttled,
        )
    return record


_RSS_KEYS = ("peak_rss_mb", "rss_before_mb", "vm_hwm_mb")
"""What a worker reports of its memory, kept in its run's record."""


@attrs.frozen
class _WorkerRun:
    """One run of one system in a fresh process (``bench._worker``): its job, and what
    makes what it returned wrong."""

    system: str
    rep: int
    job: Mapping[str, Any]
    """The worker's job, but for what every job says (system, server, concurrency)."""
    wrong: Callable[[dict[str, Any]], str | None]
    """What is wrong with the worker's report, said after ``scenario/system run N``; ``None``:
    nothing."""
    shown_as: str = ""
    """The system's name in the record, if not ``system``."""
    size: int | None = None
    """The scenario's size this run is of, kept in its record; ``None``: a scenario of one."""
    keys: Sequence[str] = _RSS_KEYS
    """The worker's figures kept in the run's record."""
    server_stats: bool = False
    """Whether the emulator's counters are reset before the run and kept in its record."""
    block_orjson: bool = False

    def __call__(
        self, spawner: Spawner, emulator: EmulatorProcess, result: ScenarioResult
    ) -> dict[str, Any]:
        """Run it; note what it lost in ``result``; its record (not yet in ``result.runs``)."""
        argument = {
            "system": self.system,
            "base_url": emulator.base_url,
            "concurrency": CONCURRENCY,
            **self.job,
        }
        if self.server_stats:
            emulator.reset()
        done = _worker(spawner, argument, block_orjson=self.block_orjson)
        stats = emulator.stats() if self.server_stats else None
        shown = self.shown_as or self.system
        wrong = self.wrong(done)
        if wrong is not None:
            result.lost.append(f"{result.name}/{shown} run {self.rep}{wrong}")
        record = _record(shown, self.rep, wrong is None, done["wall"], done["cpu"], stats)
        if self.size is not None:
            record["size"] = self.size
        record.update({key: done[key] for key in self.keys})
        return record


def _worker(
    spawner: Spawner, spec: dict[str, Any], *, block_orjson: bool = False
) -> dict[str, Any]:
    """Run ``bench._worker`` in a fresh process and return what it printed."""
    argument = json.dumps(spec)
    if block_orjson:
        command = [sys.executable, "-c", ORJSON_BLOCKER, argument]
    else:
        command = [sys.executable, "-m", "bench._worker", argument]
    returncode, stdout, stderr = spawner.run(command, ROOT, timeout=1800)
    if returncode != 0:
        raise RuntimeError(f"worker failed ({returncode}): {stderr[-2000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


# -- 1, 2. prefetch and batch: wall time against a bound ----------------------------------


def _bounded_summary(result: ScenarioResult, system: str) -> dict[str, Any]:
    """The medians of a wall-time-against-bound scenario's runs of ``system``."""
    ratios = _values(result.runs, system, "ratio")
    return {
        "wall": _median(_values(result.runs, system, "wall")),
        "bound": _median(_values(result.runs, system, "bound")),
        "ratio": _median(ratios),
        "s": _median(_values(result.runs, system, "s")),
        "ratios": ratios,
    }


def _bounded_row(result: ScenarioResult, system: str) -> Row:
    summary = result.summary[system]
    ratios = summary["ratios"]
    return Row(
        result.name,
        system,
        "wall " + _spread(_values(result.runs, system, "wall"), 1000, 0, " ms"),
        f"bound {summary['bound'] * 1000:,.0f} ms (S = {summary['s'] * 1000:.1f} ms)",
        f"{_median(ratios):.3f}" if ratios else "",
    )


def _against_bound(result: ScenarioResult, bound: Callable[[dict[str, Any]], float]) -> None:
    """Each run's ``bound``, and its wall over it."""
    for run in result.runs:
        run["bound"] = bound(run)
        run["ratio"] = run["wall"] / run["bound"]


def _bounded(name: str, measure: Measure, guard: Guard) -> Scenario:
    return Scenario(
        name, IN_PROCESS, measure, _bounded_summary, _bounded_row, judges={"sdk": guard}
    )


async def _measure_prefetch(
    sizes: Sizes, repeat: int, spawner: Spawner, result: ScenarioResult
) -> None:
    pages, page_size, consume = (
        sizes.prefetch_pages,
        sizes.prefetch_page_size,
        sizes.prefetch_consume,
    )
    with EmulatorProcess(
        seed=SEED, groups=[f"1x{pages * page_size}"], latency=sizes.prefetch_latency
    ) as emulator:
        channel = emulator.channels[0]
        expected = set(expected_sids(emulator.mirror, channel))

        async def run(system: System, sids: list[str | None]) -> None:
            await system.stream(channel, page_size, consume, sids.append)

        await _in_process_runs("prefetch", emulator, repeat, run, expected, result)
    # The first page cannot be overlapped with anything, every later one can.
    _against_bound(result, lambda run: pages * max(run["s"], consume) + min(run["s"], consume))
    result.summary = {
        "pages": pages,
        "page_size": page_size,
        "latency": sizes.prefetch_latency,
        "consume": consume,
    }


async def _measure_batch(
    sizes: Sizes, repeat: int, spawner: Spawner, result: ScenarioResult
) -> None:
    page_size = sizes.batch_page_size
    with EmulatorProcess(
        seed=SEED,
        groups=[f"{sizes.batch_channels}x{sizes.batch_pages * page_size}"],
        latency=sizes.batch_latency,
    ) as emulator:
        channels = emulator.channels
        expected: set[str] = set()
        for channel in channels:
            expected.update(expected_sids(emulator.mirror, channel))
        channel_sids = {channel_sid for _, channel_sid in channels}

        async def run(system: System, sids: list[str | None]) -> None:
            seen: list[str] = []

            def sink(channel_sid: str, participants: list[str | None]) -> None:
                seen.append(channel_sid)
                sids.extend(participants)

            await system.batch(channels, page_size, sink)
            if len(seen) != len(channel_sids) or set(seen) != channel_sids:
                sids.append(None)  # a channel lost or repeated: fails the check

        await _in_process_runs("batch", emulator, repeat, run, expected, result)
    _against_bound(
        result, lambda run: max(run["service_time"] / CONCURRENCY, sizes.batch_pages * run["s"])
    )
    result.summary = {
        "channels": sizes.batch_channels,
        "pages": sizes.batch_pages,
        "page_size": page_size,
        "latency": sizes.batch_latency,
        "concurrency": CONCURRENCY,
    }


PREFETCH_GUARD = Guard("wall", ("reference",), 1.01, "≤ 1.01 x reference", "≤ 1.03 x bound")
BATCH_GUARD = Guard("wall", ("twilio", "reference"), 1.0, "≤ each peer", "≤ 1.10 x bound")


def prefetch(sizes: Sizes) -> Scenario:
    """One channel of many pages, and a consumer that takes its time over each."""
    return _bounded("prefetch", _measure_prefetch, PREFETCH_GUARD)


def batch(sizes: Sizes) -> Scenario:
    """Many channels of a few pages each, ``CONCURRENCY`` requests in flight."""
    return _bounded("batch", _measure_batch, BATCH_GUARD)


# -- 3. cpu ------------------------------------------------------------------------------

CPU_SYSTEMS = ("sdk", "twilio", "reference", "sdk-stdlib-json")
CPU_GUARD = Guard("cpu", ("twilio",), 1.0, "below twilio", "≤ 0.6 x twilio")


async def _measure_cpu(sizes: Sizes, repeat: int, spawner: Spawner, result: ScenarioResult) -> None:
    page_size = sizes.cpu_page_size
    count = sizes.cpu_participants
    with EmulatorProcess(seed=SEED, groups=[f"1x{count}"]) as emulator:
        channel = emulator.channels[0]
        expected = set(expected_sids(emulator.mirror, channel))
        fingerprint = Fingerprint().add_all(sorted(expected)).as_dict()

        async def run(system: System, sids: list[str | None]) -> None:
            await system.stream(channel, page_size, 0.0, sids.append)

        def wrong(done: dict[str, Any]) -> str | None:
            if done["sids"] == fingerprint and done["json_library"] == "json":
                return None
            return (
                f": fingerprint {done['sids']} (json library {done['json_library']}),"
                f" expected {fingerprint}"
            )

        for rep in range(repeat):
            # One round at a time, so the subprocess row is interleaved with the others.
            await _in_process_runs("cpu", emulator, 1, run, expected, result, reps=[rep])
            job = {"mode": "stream", "channel": list(channel), "page_size": page_size}
            stdlib = _WorkerRun(
                "sdk",
                rep,
                {**job, "warmup": True},
                wrong,
                shown_as="sdk-stdlib-json",
                keys=(),
                block_orjson=True,
            )
            result.runs.append(stdlib(spawner, emulator, result))
    for run_ in result.runs:
        run_["cpu_per_participant"] = run_["cpu"] / count
    result.summary = {"participants": count, "page_size": page_size}


def _cpu_summary(result: ScenarioResult, system: str) -> dict[str, Any]:
    values = _values(result.runs, system, "cpu_per_participant")
    summary: dict[str, Any] = {"cpu_per_participant": _median(values), "values": values}
    if system.startswith("sdk"):
        summary["vs_twilio"] = _median(_paired(result.runs, system, "twilio", "cpu"))
        summary["vs_reference"] = _median(_paired(result.runs, system, "reference", "cpu"))
    return summary


def _cpu_row(result: ScenarioResult, system: str) -> Row:
    row = Row(
        "cpu",
        system,
        _spread(_values(result.runs, system, "cpu_per_participant"), 1e6, 2, " µs")
        + " CPU per participant",
    )
    if system.startswith("sdk"):
        twilio = _median(_values(result.runs, "twilio", "cpu_per_participant"))
        versus_reference = result.summary[system]["vs_reference"]
        row.versus = f"twilio {twilio * 1e6:.2f} µs; / reference {versus_reference:.2f}"
        paired = _paired(result.runs, system, "twilio", "cpu")
        row.ratio = f"{_median(paired):.3f}" if paired else ""
    return row


def cpu(sizes: Sizes) -> Scenario:
    """One channel of many participants, no latency: the client's CPU per participant."""
    # The guard is for the SDK with its speedups.
    return Scenario("cpu", CPU_SYSTEMS, _measure_cpu, _cpu_summary, _cpu_row, {"sdk": CPU_GUARD})


# -- 4, 5. memory and scale: the same work at two sizes, in fresh processes ----------------


def _growth(result: ScenarioResult, system: str, key: str) -> list[float]:
    """``key`` of the large runs of ``system`` less the small ones', a repetition at a time."""
    small, large = result.summary["small"], result.summary["large"]
    return [
        big - little
        for little, big in zip(
            _values(result.runs, system, key, small),
            _values(result.runs, system, key, large),
            strict=False,
        )
    ]


MEMORY_SYSTEMS = ("sdk", "reference")
MEMORY_TARGET = Bounded("≤ +30 MB", lambda summary: summary["growth_mb"] <= 30)


async def _measure_memory(
    sizes: Sizes, repeat: int, spawner: Spawner, result: ScenarioResult
) -> None:
    small, large, page_size = sizes.memory_small, sizes.memory_large, sizes.memory_page_size
    with EmulatorProcess(seed=SEED, groups=[f"1x{small}", f"1x{large}"]) as emulator:
        by_size = dict(zip((small, large), emulator.channels, strict=True))
        fingerprints = {
            size: Fingerprint().add_all(expected_sids(emulator.mirror, channel)).as_dict()
            for size, channel in by_size.items()
        }
        for rep in range(repeat):
            for size in (small, large):

                def wrong(done: dict[str, Any], size: int = size) -> str | None:
                    ok = done["sids"] == fingerprints[size]
                    return None if ok else f" ({size:,}): got {done['sids']}"

                job = {"mode": "stream", "channel": list(by_size[size]), "page_size": page_size}
                for system in MEMORY_SYSTEMS:
                    run = _WorkerRun(system, rep, job, wrong, size=size)
                    result.runs.append(run(spawner, emulator, result))
    result.summary = {"small": small, "large": large, "page_size": page_size}


def _memory_summary(result: ScenarioResult, system: str) -> dict[str, Any]:
    small, large = result.summary["small"], result.summary["large"]
    return {
        "peak_small_mb": _median(_values(result.runs, system, "peak_rss_mb", small)),
        "peak_large_mb": _median(_values(result.runs, system, "peak_rss_mb", large)),
        "growth_mb": _median(_growth(result, system, "peak_rss_mb")),
    }


def _memory_row(result: ScenarioResult, system: str) -> Row:
    small, large = result.summary["small"], result.summary["large"]
    growth = _growth(result, system, "peak_rss_mb")
    return Row(
        "memory",
        system,
        f"peak RSS {_spread(_values(result.runs, system, 'peak_rss_mb', large), 1, 1, ' MB')}"
        f" at {large:,}",
        f"{_spread(_values(result.runs, system, 'peak_rss_mb', small), 1, 1, ' MB')} at {small:,}",
        f"+{_median(growth):.1f} MB" if growth else "",
    )


def memory(sizes: Sizes) -> Scenario:
    """Peak RSS of a fresh process streaming a channel of a million, against ten thousand."""
    return Scenario(
        "memory",
        MEMORY_SYSTEMS,
        _measure_memory,
        _memory_summary,
        _memory_row,
        {"sdk": MEMORY_TARGET},
    )


SCALE_SYSTEMS = ("sdk", "twilio", "reference")
SCALE_SIZES = "0-9"
"""Participants per channel, cycling: one page each, most of the work is requests."""
SCALE_TARGET = Bounded(
    "bounded: tasks ≤ +2, RSS ≤ +30 MB",
    lambda summary: (
        summary["peak_tasks_large"] <= summary["peak_tasks_small"] + 2
        and summary["rss_growth_mb"] <= 30
    ),
)


async def _measure_scale(
    sizes: Sizes, repeat: int, spawner: Spawner, result: ScenarioResult
) -> None:
    small, large, page_size = sizes.scale_small, sizes.scale_large, sizes.scale_page_size
    with (
        EmulatorProcess(seed=SEED, groups=[f"{large}x{SCALE_SIZES}"]) as emulator,
        tempfile.TemporaryDirectory() as folder,
    ):
        files: dict[int, str] = {}
        fingerprints: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
        for size in (small, large):
            chosen = emulator.channels[:size]
            path = Path(folder) / f"channels-{size}.txt"
            path.write_text("".join(f"{kd} {uo}\n" for kd, uo in chosen))
            files[size] = str(path)
            sids = Fingerprint()
            for channel in chosen:
                sids.add_all(expected_sids(emulator.mirror, channel))
            fingerprints[size] = (
                sids.as_dict(),
                Fingerprint().add_all(uo for _, uo in chosen).as_dict(),
            )
        for rep in range(repeat):
            for size in (small, large):

                def wrong(done: dict[str, Any], size: int = size) -> str | None:
                    ok = (done["sids"], done["channels"]) == fingerprints[size]
                    return None if ok else f" ({size:,} channels)"

                job = {"mode": "batch", "channels_file": files[size], "page_size": page_size}
                for system in SCALE_SYSTEMS:
                    run = _WorkerRun(
                        system,
                        rep,
                        job,
                        wrong,
                        size=size,
                        keys=(*_RSS_KEYS, "peak_tasks"),
                        server_stats=True,
                    )
                    record = run(spawner, emulator, result)
                    record["channels_per_s"] = size / record["wall"]
                    result.runs.append(record)
    result.summary = {"small": small, "large": large, "concurrency": CONCURRENCY}


def _scale_summary(result: ScenarioResult, system: str) -> dict[str, Any]:
    small, large = result.summary["small"], result.summary["large"]
    runs = result.runs
    summary = {
        "channels_per_s": _median(_values(runs, system, "channels_per_s", large)),
        "peak_tasks_small": max(_values(runs, system, "peak_tasks", small), default=float("nan")),
        "peak_tasks_large": max(_values(runs, system, "peak_tasks", large), default=float("nan")),
        "peak_rss_small_mb": _median(_values(runs, system, "peak_rss_mb", small)),
        "peak_rss_large_mb": _median(_values(runs, system, "peak_rss_mb", large)),
        "rss_growth_mb": _median(_growth(result, system, "peak_rss_mb")),
        "s": _median(_values(runs, system, "s")),
    }
    if system == "sdk":
        summary["vs_reference"] = _median(_scale_versus_reference(result))
    return summary


def _scale_versus_reference(result: ScenarioResult) -> list[float]:
    """The SDK's channels/s over the reference's at the large size, a repetition at a time."""
    large = result.summary["large"]
    return [
        a["channels_per_s"] / b["channels_per_s"]
        for a in _valid(result.runs, "sdk", large)
        for b in _valid(result.runs, "reference", large)
        if a["rep"] == b["rep"]
    ]


def _scale_row(result: ScenarioResult, system: str) -> Row:
    small, large = result.summary["small"], result.summary["large"]
    summary = result.summary[system]
    row = Row(
        "scale",
        system,
        f"{_spread(_values(result.runs, system, 'channels_per_s', large), 1, 0)} channels/s;"
        f" peak tasks {summary['peak_tasks_small']:.0f} → {summary['peak_tasks_large']:.0f};"
        f" peak RSS {summary['peak_rss_small_mb']:.1f} → {summary['peak_rss_large_mb']:.1f} MB"
        f" ({small:,} → {large:,} channels)",
    )
    if system == "sdk":
        paired = _scale_versus_reference(result)
        row.versus = (
            f"reference {result.summary['reference']['channels_per_s']:,.0f},"
            f" twilio {result.summary['twilio']['channels_per_s']:,.0f} channels/s"
        )
        row.ratio = f"{_median(paired):.2f}" if paired else ""
    return row


def scale(sizes: Sizes) -> Scenario:
    """Many channels of a page each, read lazily from a file, against a tenth as many: the
    tasks alive at once and the peak RSS must not grow with the input."""
    return Scenario(
        "scale", SCALE_SYSTEMS, _measure_scale, _scale_summary, _scale_row, {"sdk": SCALE_TARGET}
    )


# -- 6-9. the budget: one client, a grid of budgets, a schedule, a crowd --------------------

BUDGET_SIZES = "0-9"
"""Participants per channel, cycling: one page each, so that every channel is one request."""
BUDGET_PAGE_SIZE = 50
TWILIO_CONCURRENCY = 10
TWILIO_RETRIES = 3
FLEET_CONCURRENCY = 20
"""The least shared cap on requests in flight a fleet is given: more than the budget keeps in
flight at 20/s and 200 ms."""


def fleet_concurrency(server: Budget) -> int:
    """The shared cap on requests in flight a fleet told ``server``'s budget is given: twice
    what the budget keeps in flight (rate x latency, Little's law), at least
    `FLEET_CONCURRENCY`, as a user who read the docs would choose it."""
    return max(FLEET_CONCURRENCY, math.ceil(2 * server.rate * server.latency))


def server_burst(rate: float, sizes: Sizes) -> int:
    """The burst of a budget scenario's server at ``rate``: `Sizes.budget_burst` tokens, as
    the budget scenario's server holds, or the emulator's default (a quarter second of
    requests) where that is less: a bucket of 5 would hold a whole second at 5/s."""
    quarter = FlexEmulator(rate_limit=rate).burst
    assert quarter is not None
    return min(sizes.budget_burst, quarter)


def _of_case(result: ScenarioResult, name: str, key: str) -> list[float]:
    """``key`` of every run of the budget's system ``name``, valid or not."""
    return [float(run[key]) for run in result.runs if run["system"] == name]


@attrs.frozen
class BudgetCase:
    """One row of a budget scenario: a system as it is built, the server it meets and its
    target (``None``: a comparison). ``processes``: that many processes, each with its share
    of the channels, instead of one client in this process: on one `RedisLimiter` told the
    server's rate if ``shared``, else each a `FlexClient()` of its own."""

    name: str
    how: str
    server: Budget
    target: Target | None
    system: str = "sdk"
    concurrency: int | None = None
    options: Mapping[str, Any] = attrs.Factory(dict)
    processes: int = 0
    shared: bool = False

    def apply(self, result: ScenarioResult, row: Row) -> None:
        """Judge the row by the target: the median run's wall, and every run's 429s,
        processes' shares and channels lost."""
        if self.target is None:
            return
        summary = result.summary[self.name]
        lost = int(max(_of_case(result, self.name, "channels_lost"), default=1))
        spread = summary["worst_spread"] if self.processes else None
        misses = self.target.misses(
            summary["ratio"], summary["worst_throttled_share"], lost, spread
        )
        row.target = self.target.describe()
        row.verdict = f"FAIL ({', '.join(misses)})" if misses else "PASS"


def budget_cases(sizes: Sizes) -> list[BudgetCase]:
    """The budget scenario's systems, in the order they run and show."""
    budget = Budget(
        sizes.budget_rate, sizes.budget_burst, sizes.budget_latency, sizes.budget_channels
    )
    strict = Budget(
        sizes.budget_strict_rate,
        sizes.budget_burst,
        sizes.budget_latency,
        sizes.budget_strict_channels,
    )
    rate = f"{budget.rate:g}"
    twilio = f"{TWILIO_CONCURRENCY} at a time"
    return [
        BudgetCase("sdk", "`FlexClient()`", budget, Target(1.05, 0.02)),
        BudgetCase("sdk strict", "`FlexClient()`, a stricter server", strict, Target(1.10, 0.05)),
        BudgetCase(
            "sdk told",
            f"`FlexClient(rate_limit={rate})`",
            budget,
            Target(1.02, 0.0),
            options={"rate_limit": budget.rate},
        ),
        BudgetCase(
            "twilio",
            f"`AsyncTwilioHttpClient()`, {twilio}",
            budget,
            None,
            "twilio",
            TWILIO_CONCURRENCY,
        ),
        BudgetCase(
            "twilio retries",
            f"`AsyncTwilioHttpClient(max_retries={TWILIO_RETRIES})`, {twilio}",
            budget,
            None,
            "twilio",
            TWILIO_CONCURRENCY,
            {"max_retries": TWILIO_RETRIES},
        ),
    ]


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:g} ms"


def grid_cases(sizes: Sizes) -> list[BudgetCase]:
    """Every budget of the grid at every latency, each met by `FlexClient()` and by
    `FlexClient(rate_limit=R)`: runs that last `Sizes.grid_seconds` at the floor."""
    cases = []
    for rate in sizes.grid_rates:
        for latency in sizes.grid_latencies:
            server = Budget.lasting(rate, server_burst(rate, sizes), latency, sizes.grid_seconds)
            point = f"{rate:g}/s {_milliseconds(latency)}"
            # Below 10/s a 429 is a larger share of far fewer requests.
            untold = Target(1.05, 0.08 if rate < 10 else 0.03)
            cases += [
                BudgetCase(f"untold {point}", "`FlexClient()`", server, untold),
                BudgetCase(
                    f"told {point}",
                    f"`FlexClient(rate_limit={rate:g})`",
                    server,
                    Target(1.02, 0.0),
                    options={"rate_limit": rate},
                ),
            ]
    return cases


def schedule_cases(sizes: Sizes) -> list[BudgetCase]:
    """A budget that falls to `Sizes.schedule_low` for `Sizes.schedule_for` seconds and comes
    back, as when another application of the account spends it for a while: met by
    `FlexClient()`, and by a client told the budget as it was."""
    rate, start = sizes.schedule_rate, sizes.schedule_from
    steps = ((start, sizes.schedule_low), (start + sizes.schedule_for, rate))
    server = Budget.lasting(
        rate, server_burst(rate, sizes), sizes.schedule_latency, sizes.schedule_seconds, steps
    )
    return [
        BudgetCase("untold", "`FlexClient()`", server, Target(1.08, None)),
        BudgetCase(
            "told the old budget",
            f"`FlexClient(rate_limit={rate:g})`",
            server,
            Target(1.05, None),
            options={"rate_limit": rate},
        ),
    ]


def crowd_cases(sizes: Sizes) -> list[BudgetCase]:
    """`Sizes.crowd_processes` processes on one budget: each a `FlexClient()` that knows
    nothing of the others, then on one `RedisLimiter` told the budget at each of
    `Sizes.fleet_latencies`."""
    rate, processes = sizes.crowd_rate, sizes.crowd_processes
    burst = server_burst(rate, sizes)
    crowd = Budget.lasting(rate, burst, sizes.crowd_latency, sizes.crowd_seconds)
    cases = [
        BudgetCase(
            "crowd untold",
            f"{processes} processes, each `FlexClient()`",
            crowd,
            Target(1.10, 0.05, spread=0.25),
            processes=processes,
        )
    ]
    for latency in sizes.fleet_latencies:
        server = Budget.lasting(rate, burst, latency, sizes.crowd_seconds)
        cases.append(
            BudgetCase(
                f"fleet told {_milliseconds(latency)}",
                f"{processes} processes, `RedisLimiter(max_concurrency="
                f"{fleet_concurrency(server)}, rate_limit={rate:g})` on one key",
                server,
                Target(1.03, 0.0),
                processes=processes,
                shared=True,
            )
        )
    return cases


def _fleet_available() -> str:
    """Why a fleet on Redis cannot run here, or "" if it can."""
    if redis_binary() is None:
        return "no redis-server on PATH"
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (the redis extra)"
    return ""


@attrs.frozen
class _BudgetRun:
    """What one run of a case delivered, its own timing, and its processes' if several."""

    delivery: Delivery
    timing: Timing
    fleet: FleetRun | None = None


async def _budget_run(
    case: BudgetCase, emulator: EmulatorProcess, redis: RedisServer | None, key: str
) -> _BudgetRun:
    """One run of ``case`` against ``emulator``."""
    channels = emulator.channels
    if case.processes:
        shared = None
        if case.shared:
            assert redis is not None
            shared = SharedLimit(redis.port, key, fleet_concurrency(case.server), case.server.rate)
        fleet = await run_fleet(
            processes=case.processes,
            base_url=emulator.base_url,
            channels=channels,
            page_size=BUDGET_PAGE_SIZE,
            shared=shared,
        )
        return _BudgetRun(fleet.delivery, Timing(fleet.wall, fleet.cpu), fleet)
    delivery = Delivery()
    async with open_system(
        case.system, emulator.base_url, case.concurrency, **case.options
    ) as system:
        timing = await timed(lambda: deliver(system, channels, BUDGET_PAGE_SIZE, delivery))
    return _BudgetRun(delivery, timing)


def _measure_budget(cases: Sequence[BudgetCase], no_redis: str) -> Measure:
    """Every case against a server that enforces a token bucket, as Twilio does: one server
    at a time, each in a process of its own, its cases in turn (A B C A B C ...)."""

    async def measure(sizes: Sizes, repeat: int, spawner: Spawner, result: ScenarioResult) -> None:
        with contextlib.ExitStack() as stack:
            redis = None
            if any(case.shared for case in cases) and not no_redis:
                redis = stack.enter_context(RedisServer())
            for server in dict.fromkeys(case.server for case in cases):
                with EmulatorProcess(
                    seed=SEED,
                    groups=[f"{server.channels}x{BUDGET_SIZES}"],
                    latency=server.latency,
                    rate_limit=server.rate,
                    burst=server.burst,
                    rate_schedule=server.schedule,
                ) as emulator:
                    expected = {
                        channel[1]: list(expected_sids(emulator.mirror, channel))
                        for channel in emulator.channels
                    }
                    # No warm-up: a run is seconds of waiting for the budget, and each starts
                    # a new client.
                    for rep in range(repeat):
                        for case in [case for case in cases if case.server == server]:
                            await asyncio.sleep(server.refill)  # a full bucket, as at a start
                            emulator.reset()  # and the schedule back to its start
                            run = await _budget_run(case, emulator, redis, f"bench-{rep}")
                            stats = emulator.stats()
                            result.runs.append(
                                _budget_record(result, case, rep, run, stats, expected)
                            )
        result.summary = {
            "page_size": BUDGET_PAGE_SIZE,
            "fleet": no_redis or "redis-server",
        }

    return measure


def _budget_record(
    result: ScenarioResult,
    case: BudgetCase,
    rep: int,
    run: _BudgetRun,
    stats: ServerStats,
    expected: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """The record of one run: the server's span over the floor, its 429s, what was lost."""
    lost, silent = run.delivery.lost(expected)
    _note_lost(result, case, rep, run.delivery, lost, silent)
    wall = stats.span if stats.span is not None else run.timing.wall
    record = _record(case.name, rep, not silent, wall, run.timing.cpu, stats)
    record.update(
        client_wall=run.timing.wall,
        bound=case.server.floor,
        ratio=wall / case.server.floor,
        rate_throttled=stats.rate_throttled,
        throttled_share=stats.throttled_share,
        channels=case.server.channels,
        channels_lost=len(lost),
        errors=sorted(set(run.delivery.errors.values()))[:5],
    )
    if run.fleet is not None:
        record.update(
            process_walls=list(run.fleet.walls),
            process_requests=list(run.fleet.requests),
            spread=run.fleet.spread,
        )
    return record


def _note_lost(
    result: ScenarioResult,
    case: BudgetCase,
    rep: int,
    delivery: Delivery,
    lost: Sequence[str],
    silent: Sequence[str],
) -> None:
    """What the benchmark counts as lost: a channel lost without an error, by any system,
    and any channel this SDK did not deliver (a 429 must never lose one); a peer's channels
    failed with an error are its figures, not the benchmark's failure."""
    where = f"{result.name}/{case.name} run {rep}"
    if silent:
        result.lost.append(f"{where}: {len(silent)} channels lost or repeated without an error")
    failed = [channel for channel in lost if channel not in silent]
    if case.system == "sdk" and failed:
        first = delivery.errors[failed[0]]
        result.lost.append(f"{where}: {len(failed)} channels failed, the first with {first}")


def _budget_scenario(name: str, cases: Sequence[BudgetCase], repeat: int | None = None) -> Scenario:
    """A scenario of ``cases`` against servers that enforce a token bucket: how close each
    comes to its floor, how many 429s it provokes, and how many channels it loses. The cases
    on a fleet of Redis are left out, with a note, where Redis is not available."""
    no_redis = _fleet_available()
    skipped = [case for case in cases if case.shared] if no_redis else []
    by_name = {case.name: case for case in cases if case not in skipped}

    def summarise(result: ScenarioResult, system: str) -> dict[str, Any]:
        case = by_name[system]
        shares = _of_case(result, system, "throttled_share")
        spreads = _of_case(result, system, "spread") if case.processes else []
        return {
            **_bounded_summary(result, system),
            "throttled_share": _median(shares),
            "worst_throttled_share": max(shares, default=float("nan")),
            "worst_spread": max(spreads, default=float("nan")),
            "channels_lost": max(_of_case(result, system, "channels_lost"), default=float("nan")),
            "floor": case.server.floor,
            "server": attrs.asdict(case.server),
            "target": None if case.target is None else attrs.asdict(case.target),
        }

    def row(result: ScenarioResult, system: str) -> Row:
        case = by_name[system]
        walls = _values(result.runs, system, "wall")
        ratios = result.summary[system]["ratios"]
        shares = _of_case(result, system, "throttled_share")
        lost = _of_case(result, system, "channels_lost")
        spreads = _of_case(result, system, "spread") if case.processes else []
        shares_text = (
            f"; processes' walls apart {_spread(spreads, 100, 1, ' %')}" if spreads else ""
        )
        return Row(
            name,
            system,
            f"wall {_spread(walls, 1, 2, ' s')}; 429s {_spread(shares, 100, 1, ' %')}"
            f"{shares_text}; channels lost {_spread(lost)} of {case.server.channels:,}",
            f"{case.how}; floor {case.server.floor:.2f} s ({case.server.describe()})",
            f"{_median(ratios):.3f}" if ratios else "",
            delivered=not any(lost),
        )

    notes = [Row(name, case.name, f"not run: {no_redis}") for case in skipped]
    return Scenario(
        name,
        list(by_name),
        _measure_budget(list(by_name.values()), no_redis),
        summarise,
        row,
        by_name,
        notes,
        repeat,
    )


def budget(sizes: Sizes) -> Scenario:
    """Every system against a server that enforces Twilio's documented budget."""
    return _budget_scenario("budget", budget_cases(sizes))


def grid(sizes: Sizes) -> Scenario:
    """`FlexClient()` and `FlexClient(rate_limit=R)` at every budget and latency of the grid;
    one repetition unless told (the grid is long, and each point is judged on its own)."""
    return _budget_scenario("grid", grid_cases(sizes), repeat=1)


def schedule(sizes: Sizes) -> Scenario:
    """A budget that halves for a while and comes back."""
    return _budget_scenario("schedule", schedule_cases(sizes))


def crowd(sizes: Sizes) -> Scenario:
    """Several processes on one budget: untold, and on one `RedisLimiter`."""
    return _budget_scenario("crowd", crowd_cases(sizes))


BUDGET_SCENARIOS = ("budget", "grid", "schedule", "crowd")
"""The scenarios of the rate budget, whose targets are the ones that matter."""

SCENARIOS: dict[str, Callable[[Sizes], Scenario]] = {
    "budget": budget,
    "grid": grid,
    "schedule": schedule,
    "crowd": crowd,
    "prefetch": prefetch,
    "batch": batch,
    "cpu": cpu,
    "memory": memory,
    "scale": scale,
}
"""Each scenario by name, in the order they run and show, built for the sizes of a run."""


async def run_scenarios(
    names: Sequence[str],
    sizes: Sizes,
    repeat: int | None,
    spawner: Spawner,
    progress: Callable[[str], None],
    *,
    default_repeat: int = 5,
) -> list[ScenarioResult]:
    """Run the named scenarios in order, each ``repeat`` times, or if ``None`` as many as
    the scenario asks (`Scenario.repeat`), else ``default_repeat``."""
    results = []
    for name in names:
        scenario = SCENARIOS[name](sizes)
        times = repeat or scenario.repeat or default_repeat
        progress(f"running {name} ({times} repetitions) ...")
        result = await scenario.run(sizes, times, spawner)
        results.append(result)
    return results
