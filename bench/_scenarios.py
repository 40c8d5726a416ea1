"""The six scenarios: each starts its own emulator process, runs every system in turn
(A B C A B C ...), checks what each returned, and reports figures against its target.

The budget scenario's targets are the ones that matter (see docs/performance.md); the CPU and
batch targets of the others are retired, and kept as guards: comparisons with the peers that
catch a regression, never a failed row for the retired figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._budget import Budget, Delivery, Target, deliver
from ._emulator import ROOT, EmulatorProcess, ServerStats, expected_sids
from ._fleet import RedisServer, redis_binary, run_fleet
from ._measure import Fingerprint, Timing, timed
from ._spawner import Spawner
from ._systems import System, open_system
from ._worker import ORJSON_BLOCKER

__all__ = [
    "FULL",
    "QUICK",
    "BudgetCase",
    "Row",
    "ScenarioResult",
    "Sizes",
    "budget_cases",
    "run_scenarios",
]

SEED = 20_260_101
CONCURRENCY = 20
IN_PROCESS = ("sdk", "twilio", "reference")


@dataclass(frozen=True, slots=True)
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
    budget_fleet: int = 4


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
)


@dataclass(slots=True)
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


@dataclass(slots=True)
class ScenarioResult:
    """What a scenario measured: every run, the summary figures, and its rows."""

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "rows": [asdict(row) for row in self.rows],
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


def _valid(runs: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    return [run for run in runs if run["system"] == system and run["ok"]]


def _values(runs: list[dict[str, Any]], system: str, key: str) -> list[float]:
    return [float(run[key]) for run in _valid(runs, system)]


def _paired(runs: list[dict[str, Any]], a: str, b: str, key: str) -> list[float]:
    """``a / b`` of ``key`` for each repetition in which both runs were valid."""
    by_rep: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["ok"]:
            by_rep.setdefault(run["rep"], {})[run["system"]] = float(run[key])
    return [rep[a] / rep[b] for rep in by_rep.values() if a in rep and b in rep and rep[b]]


# -- running -----------------------------------------------------------------------------


def _summarise_bounded(
    result: ScenarioResult, system: str
) -> tuple[list[float], list[float], list[float]]:
    """Put the medians of a wall-time-against-bound scenario in ``result.summary[system]``;
    return the walls, bounds and ratios of its runs."""
    walls = _values(result.runs, system, "wall")
    bounds = _values(result.runs, system, "bound")
    ratios = _values(result.runs, system, "ratio")
    result.summary[system] = {
        "wall": _median(walls),
        "bound": _median(bounds),
        "ratio": _median(ratios),
        "s": _median(_values(result.runs, system, "s")),
        "ratios": ratios,
    }
    return walls, bounds, ratios


@dataclass(frozen=True, slots=True)
class Guard:
    """What stands for a retired target: the SDK's figure over each peer's, in the same
    repetition, at most ``limit``: a comparison that catches a regression."""

    peers: tuple[str, ...]
    limit: float
    text: str
    retired: str
    """The retired target, shown for the record and never judged."""

    def apply(self, result: ScenarioResult, row: Row, key: str) -> None:
        """Judge ``row``'s system against the peers on ``key`` of its runs; note it in the row."""
        versus = {peer: _median(_paired(result.runs, row.system, peer, key)) for peer in self.peers}
        for peer, ratio in versus.items():
            result.summary[row.system][f"vs_{peer}"] = ratio
        figures = ", ".join(f"/ {peer} {ratio:.3f}" for peer, ratio in versus.items())
        row.versus = f"{row.versus}; {figures}" if row.versus else figures
        row.target = f"guard: {self.text} (retired: {self.retired})"
        ok = all(ratio <= self.limit for ratio in versus.values())  # a NaN fails
        row.verdict = _verdict(ok, not _lost(result, row.system))


PREFETCH_GUARD = Guard(("reference",), 1.01, "≤ 1.01 x reference", "≤ 1.03 x bound")
BATCH_GUARD = Guard(("twilio", "reference"), 1.0, "≤ each peer", "≤ 1.10 x bound")
CPU_GUARD = Guard(("twilio",), 1.0, "below twilio", "≤ 0.6 x twilio")


def _bounded_rows(result: ScenarioResult, guard: Guard) -> None:
    """A row per system of a wall-time-against-bound scenario; the SDK's judged by ``guard``."""
    for system in IN_PROCESS:
        walls, bounds, ratios = _summarise_bounded(result, system)
        s = result.summary[system]["s"]
        row = Row(
            result.name,
            system,
            "wall " + _spread(walls, 1000, 0, " ms"),
            f"bound {_median(bounds) * 1000:,.0f} ms (S = {s * 1000:.1f} ms)",
            f"{_median(ratios):.3f}" if ratios else "",
            verdict=_lost_note(result, system),
        )
        if system == "sdk":
            guard.apply(result, row, "wall")
        result.rows.append(row)


def _sids_ok(got: Sequence[str | None], expected: set[str]) -> tuple[bool, str]:
    if len(got) == len(expected) and set(got) == expected:
        return True, ""
    missing = len(expected - set(got))
    extra = len(got) - (len(expected) - missing)
    return False, f"{missing} missing, {extra} extra or repeated, of {len(expected)}"


async def _in_process_runs(
    name: str,
    emulator: EmulatorProcess,
    systems: Sequence[str],
    repeat: int,
    run: Callable[[System, list[str | None]], Awaitable[None]],
    expected: set[str],
    result: ScenarioResult,
) -> None:
    """Warm every system up once, then ``repeat`` rounds of one timed run each."""
    for rep in range(-1, repeat):
        for system_name in systems:
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


# -- 1. prefetch -------------------------------------------------------------------------


async def prefetch(sizes: Sizes, repeat: int, spawner: Spawner) -> ScenarioResult:
    result = ScenarioResult("prefetch")
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

        await _in_process_runs("prefetch", emulator, IN_PROCESS, repeat, run, expected, result)
    for run_ in result.runs:
        s = run_["s"]
        run_["bound"] = pages * max(s, consume) + min(s, consume)
        run_["ratio"] = run_["wall"] / run_["bound"]
    result.summary = {
        "pages": pages,
        "page_size": page_size,
        "latency": sizes.prefetch_latency,
        "consume": consume,
    }
    _bounded_rows(result, PREFETCH_GUARD)
    return result


def _lost(result: ScenarioResult, system: str) -> bool:
    return any(f"/{system} run" in line for line in result.lost)


def _lost_note(result: ScenarioResult, system: str) -> str:
    return "lost participants" if _lost(result, system) else ""


# -- 2. batch ----------------------------------------------------------------------------


async def batch(sizes: Sizes, repeat: int, spawner: Spawner) -> ScenarioResult:
    result = ScenarioResult("batch")
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

        await _in_process_runs("batch", emulator, IN_PROCESS, repeat, run, expected, result)
    for run_ in result.runs:
        run_["bound"] = max(run_["service_time"] / CONCURRENCY, sizes.batch_pages * run_["s"])
        run_["ratio"] = run_["wall"] / run_["bound"]
    result.summary = {
        "channels": sizes.batch_channels,
        "pages": sizes.batch_pages,
        "page_size": page_size,
        "latency": sizes.batch_latency,
        "concurrency": CONCURRENCY,
    }
    _bounded_rows(result, BATCH_GUARD)
    return result


# -- 3. cpu ------------------------------------------------------------------------------

CPU_SYSTEMS = ("sdk", "twilio", "reference", "sdk-stdlib-json")


async def cpu(sizes: Sizes, repeat: int, spawner: Spawner) -> ScenarioResult:
    result = ScenarioResult("cpu")
    page_size = sizes.cpu_page_size
    count = sizes.cpu_participants
    with EmulatorProcess(seed=SEED, groups=[f"1x{count}"]) as emulator:
        channel = emulator.channels[0]
        expected = set(expected_sids(emulator.mirror, channel))
        fingerprint = Fingerprint().add_all(sorted(expected)).as_dict()

        async def run(system: System, sids: list[str | None]) -> None:
            await system.stream(channel, page_size, 0.0, sids.append)

        for rep in range(repeat):
            # One round at a time, so the subprocess row is interleaved with the others.
            round_result = ScenarioResult("cpu")
            await _in_process_runs("cpu", emulator, IN_PROCESS, 1, run, expected, round_result)
            for run_ in round_result.runs:
                run_["rep"] = rep
            result.runs.extend(round_result.runs)
            result.lost.extend(line.replace("run 0", f"run {rep}") for line in round_result.lost)
            spec = {
                "mode": "stream",
                "system": "sdk",
                "base_url": emulator.base_url,
                "concurrency": CONCURRENCY,
                "channel": list(channel),
                "page_size": page_size,
                "warmup": True,
            }
            done = _worker(spawner, spec, block_orjson=True)
            ok = done["sids"] == fingerprint and done["json_library"] == "json"
            if not ok:
                result.lost.append(
                    f"cpu/sdk-stdlib-json run {rep}: fingerprint {done['sids']} (json library"
                    f" {done['json_library']}), expected {fingerprint}"
                )
            result.runs.append(_record("sdk-stdlib-json", rep, ok, done["wall"], done["cpu"], None))
    for run_ in result.runs:
        run_["cpu_per_participant"] = run_["cpu"] / count
    result.summary = {"participants": count, "page_size": page_size}
    per = {system: _values(result.runs, system, "cpu_per_participant") for system in CPU_SYSTEMS}
    for system in CPU_SYSTEMS:
        result.summary[system] = {
            "cpu_per_participant": _median(per[system]),
            "values": per[system],
        }
    for system in CPU_SYSTEMS:
        row = Row(
            "cpu",
            system,
            _spread(per[system], 1e6, 2, " µs") + " CPU per participant",
            verdict=_lost_note(result, system),
        )
        if system.startswith("sdk"):
            versus_twilio = _paired(result.runs, system, "twilio", "cpu")
            versus_reference = _paired(result.runs, system, "reference", "cpu")
            result.summary[system]["vs_twilio"] = _median(versus_twilio)
            result.summary[system]["vs_reference"] = _median(versus_reference)
            row.versus = (
                f"twilio {_median(per['twilio']) * 1e6:.2f} µs;"
                f" / reference {_median(versus_reference):.2f}"
            )
            row.ratio = f"{_median(versus_twilio):.3f}" if versus_twilio else ""
        if system == "sdk":  # the guard is for the SDK with its speedups
            CPU_GUARD.apply(result, row, "cpu")
        result.rows.append(row)
    return result


# -- 4. memory ---------------------------------------------------------------------------

MEMORY_SYSTEMS = ("sdk", "reference")


async def memory(sizes: Sizes, repeat: int, spawner: Spawner) -> ScenarioResult:
    result = ScenarioResult("memory")
    small, large, page_size = sizes.memory_small, sizes.memory_large, sizes.memory_page_size
    with EmulatorProcess(seed=SEED, groups=[f"1x{small}", f"1x{large}"]) as emulator:
        by_size = dict(zip((small, large), emulator.channels, strict=True))
        fingerprints = {
            size: Fingerprint().add_all(expected_sids(emulator.mirror, channel)).as_dict()
            for size, channel in by_size.items()
        }
        for rep in range(repeat):
            for size in (small, large):
                for system in MEMORY_SYSTEMS:
                    spec = {
                        "mode": "stream",
                        "system": system,
                        "base_url": emulator.base_url,
                        "concurrency": CONCURRENCY,
                        "channel": list(by_size[size]),
                        "page_size": page_size,
                    }
                    done = _worker(spawner, spec)
                    ok = done["sids"] == fingerprints[size]
                    if not ok:
                        result.lost.append(
                            f"memory/{system} run {rep} ({size:,}): got {done['sids']}"
                        )
                    record = _record(system, rep, ok, done["wall"], done["cpu"], None)
                    record.update(
                        size=size,
                        peak_rss_mb=done["peak_rss_mb"],
                        rss_before_mb=done["rss_before_mb"],
                        vm_hwm_mb=done["vm_hwm_mb"],
                    )
                    result.runs.append(record)
    result.summary = {"small": small, "large": large, "page_size": page_size}
    for system in MEMORY_SYSTEMS:
        peaks = {
            size: [run["peak_rss_mb"] for run in _valid(result.runs, system) if run["size"] == size]
            for size in (small, large)
        }
        growth = [big - little for little, big in zip(peaks[small], peaks[large], strict=False)]
        result.summary[system] = {
            "peak_small_mb": _median(peaks[small]),
            "peak_large_mb": _median(peaks[large]),
            "growth_mb": _median(growth),
        }
        is_sdk = system == "sdk"
        result.rows.append(
            Row(
                "memory",
                system,
                f"peak RSS {_spread(peaks[large], 1, 1, ' MB')} at {large:,}",
                f"{_spread(peaks[small], 1, 1, ' MB')} at {small:,}",
                f"+{_median(growth):.1f} MB" if growth else "",
                "≤ +30 MB" if is_sdk else "",
                _verdict(bool(growth) and _median(growth) <= 30, not _lost(result, system))
                if is_sdk
                else _lost_note(result, system),
            )
        )
    return result


# -- 5. scale ----------------------------------------------------------------------------

SCALE_SYSTEMS = ("sdk", "twilio", "reference")
SCALE_SIZES = "0-9"
"""Participants per channel, cycling: one page each, most of the work is requests."""


async def scale(sizes: Sizes, repeat: int, spawner: Spawner) -> ScenarioResult:
    result = ScenarioResult("scale")
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
                for system in SCALE_SYSTEMS:
                    spec = {
                        "mode": "batch",
                        "system": system,
                        "base_url": emulator.base_url,
                        "concurrency": CONCURRENCY,
                        "channels_file": files[size],
                        "page_size": page_size,
                    }
                    emulator.reset()
                    done = _worker(spawner, spec)
                    stats = emulator.stats()
                    ok = (done["sids"], done["channels"]) == fingerprints[size]
                    if not ok:
                        result.lost.append(f"scale/{system} run {rep} ({size:,} channels)")
                    record = _record(system, rep, ok, done["wall"], done["cpu"], stats)
                    record.update(
                        size=size,
                        peak_rss_mb=done["peak_rss_mb"],
                        rss_before_mb=done["rss_before_mb"],
                        vm_hwm_mb=done["vm_hwm_mb"],
                        peak_tasks=done["peak_tasks"],
                        channels_per_s=size / done["wall"],
                    )
                    result.runs.append(record)
    result.summary = {"small": small, "large": large, "concurrency": CONCURRENCY}
    for system in SCALE_SYSTEMS:

        def of(size: int, key: str, system: str = system) -> list[float]:
            return [float(run[key]) for run in _valid(result.runs, system) if run["size"] == size]

        throughput = of(large, "channels_per_s")
        tasks = {size: of(size, "peak_tasks") for size in (small, large)}
        peaks = {size: of(size, "peak_rss_mb") for size in (small, large)}
        growth = [b - a for a, b in zip(peaks[small], peaks[large], strict=False)]
        result.summary[system] = {
            "channels_per_s": _median(throughput),
            "peak_tasks_small": max(tasks[small], default=float("nan")),
            "peak_tasks_large": max(tasks[large], default=float("nan")),
            "peak_rss_small_mb": _median(peaks[small]),
            "peak_rss_large_mb": _median(peaks[large]),
            "rss_growth_mb": _median(growth),
            "s": _median([float(run["s"]) for run in _valid(result.runs, system)]),
        }
        summary = result.summary[system]
        bounded = (
            bool(growth)
            and summary["peak_tasks_large"] <= summary["peak_tasks_small"] + 2
            and summary["rss_growth_mb"] <= 30
        )
        versus = ""
        ratio = ""
        if system == "sdk":
            paired = [
                a["channels_per_s"] / b["channels_per_s"]
                for a in _valid(result.runs, "sdk")
                for b in _valid(result.runs, "reference")
                if a["rep"] == b["rep"] and a["size"] == b["size"] == large
            ]
            summary["vs_reference"] = _median(paired)
            versus = (
                f"reference {_median(of(large, 'channels_per_s', 'reference')):,.0f},"
                f" twilio {_median(of(large, 'channels_per_s', 'twilio')):,.0f} channels/s"
            )
            ratio = f"{_median(paired):.2f}" if paired else ""
        result.rows.append(
            Row(
                "scale",
                system,
                f"{_spread(throughput, 1, 0)} channels/s; peak tasks"
                f" {summary['peak_tasks_small']:.0f} → {summary['peak_tasks_large']:.0f};"
                f" peak RSS {summary['peak_rss_small_mb']:.1f} → {summary['peak_rss_large_mb']:.1f} MB"
                f" ({small:,} → {large:,} channels)",
                versus,
                ratio,
                "bounded: tasks ≤ +2, RSS ≤ +30 MB" if system == "sdk" else "",
                _verdict(bounded, not _lost(result, system))
                if system == "sdk"
                else _lost_note(result, system),
            )
        )
    return result


# -- 6. budget ---------------------------------------------------------------------------

BUDGET_SIZES = "0-9"
"""Participants per channel, cycling: one page each, so that every channel is one request."""
BUDGET_PAGE_SIZE = 50
TWILIO_CONCURRENCY = 10
TWILIO_RETRIES = 3
FLEET_CONCURRENCY = 20
"""The fleet's shared cap on requests in flight: more than the budget keeps in flight."""


@dataclass(frozen=True, slots=True)
class BudgetCase:
    """One row of the budget scenario: a system as it is built, the server it meets and its
    target (``None``: a comparison). ``fleet``: that many processes sharing a `RedisLimiter`
    instead of one client in this process."""

    name: str
    how: str
    server: Budget
    target: Target | None
    system: str = "sdk"
    concurrency: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    fleet: int = 0


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
            "sdk fleet",
            f"{sizes.budget_fleet} processes, `RedisLimiter(rate_limit={rate})` on one key",
            budget,
            Target(1.05, 0.0),
            fleet=sizes.budget_fleet,
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


def _fleet_available() -> str:
    """Why the fleet cannot run here, or "" if it can."""
    if redis_binary() is None:
        return "no redis-server on PATH"
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (the redis extra)"
    return ""


async def _budget_run(
    case: BudgetCase, emulator: EmulatorProcess, redis: RedisServer | None, key: str
) -> tuple[Delivery, Timing]:
    """One run of ``case`` against ``emulator``: what it delivered, and its own timing."""
    channels = emulator.channels
    if case.fleet:
        assert redis is not None
        fleet = await run_fleet(
            processes=case.fleet,
            base_url=emulator.base_url,
            redis_port=redis.port,
            key=key,
            max_concurrency=FLEET_CONCURRENCY,
            rate_limit=case.server.rate,
            channels=channels,
            page_size=BUDGET_PAGE_SIZE,
        )
        return fleet.delivery, Timing(fleet.wall, fleet.cpu)
    delivery = Delivery()
    async with open_system(
        case.system, emulator.base_url, case.concurrency, **case.options
    ) as system:
        timing = await timed(lambda: deliver(system, channels, BUDGET_PAGE_SIZE, delivery))
    return delivery, timing


async def budget(sizes: Sizes, repeat: int, spawner: Spawner) -> ScenarioResult:
    """Every system against a server that enforces a token bucket, as Twilio does: how close
    each comes to the floor, how many 429s it provokes, and how many channels it loses."""
    result = ScenarioResult("budget")
    cases = budget_cases(sizes)
    no_fleet = _fleet_available()
    if no_fleet:
        cases = [case for case in cases if not case.fleet]
    with contextlib.ExitStack() as stack:
        redis = None if no_fleet else stack.enter_context(RedisServer())
        emulators: dict[Budget, EmulatorProcess] = {}
        expected: dict[Budget, dict[str, list[str]]] = {}
        for server in dict.fromkeys(case.server for case in cases):
            emulator = EmulatorProcess(
                seed=SEED,
                groups=[f"{server.channels}x{BUDGET_SIZES}"],
                latency=server.latency,
                rate_limit=server.rate,
                burst=server.burst,
                log=True,
            )
            emulators[server] = stack.enter_context(emulator)
            expected[server] = {
                channel[1]: list(expected_sids(emulator.mirror, channel))
                for channel in emulator.channels
            }
        # No warm-up: a run is seconds of waiting for the budget, and each starts a new client.
        for rep in range(repeat):
            for case in cases:
                emulator = emulators[case.server]
                await asyncio.sleep(case.server.refill)  # a full bucket, as a server starts
                emulator.reset()
                delivery, timing = await _budget_run(case, emulator, redis, f"bench-{rep}")
                stats = emulator.stats()
                lost, silent = delivery.lost(expected[case.server])
                _note_lost(result, case, rep, delivery, lost, silent)
                wall = stats.span if stats.span is not None else timing.wall
                record = _record(case.name, rep, not silent, wall, timing.cpu, stats)
                record.update(
                    client_wall=timing.wall,
                    bound=case.server.floor,
                    ratio=wall / case.server.floor,
                    rate_throttled=stats.rate_throttled,
                    throttled_share=stats.throttled_share,
                    channels=case.server.channels,
                    channels_lost=len(lost),
                    errors=sorted(set(delivery.errors.values()))[:5],
                )
                result.runs.append(record)
    result.summary = {
        "page_size": BUDGET_PAGE_SIZE,
        "fleet": no_fleet or f"{sizes.budget_fleet} processes",
    }
    for case in cases:
        result.rows.append(_budget_row(result, case))
    if no_fleet:
        result.rows.append(Row("budget", "sdk fleet", f"not run: {no_fleet}"))
    return result


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
    where = f"budget/{case.name} run {rep}"
    if silent:
        result.lost.append(f"{where}: {len(silent)} channels lost or repeated without an error")
    failed = [channel for channel in lost if channel not in silent]
    if case.system == "sdk" and failed:
        first = delivery.errors[failed[0]]
        result.lost.append(f"{where}: {len(failed)} channels failed, the first with {first}")


def _budget_row(result: ScenarioResult, case: BudgetCase) -> Row:
    """The row of ``case``: wall against the floor (the median run), 429s and channels lost."""
    walls, _, ratios = _summarise_bounded(result, case.name)
    mine = [run for run in result.runs if run["system"] == case.name]
    shares = [float(run["throttled_share"]) for run in mine]
    lost = [float(run["channels_lost"]) for run in mine]
    summary = result.summary[case.name]
    summary.update(
        throttled_share=_median(shares),
        worst_throttled_share=max(shares, default=float("nan")),
        channels_lost=max(lost, default=float("nan")),
        floor=case.server.floor,
        server=asdict(case.server),
        target=None if case.target is None else asdict(case.target),
    )
    verdict = ""
    if case.target is not None:
        misses = case.target.misses(
            summary["ratio"], summary["worst_throttled_share"], int(max(lost, default=1))
        )
        verdict = f"FAIL ({', '.join(misses)})" if misses else "PASS"
    return Row(
        "budget",
        case.name,
        f"wall {_spread(walls, 1, 2, ' s')}; 429s {_spread(shares, 100, 1, ' %')};"
        f" channels lost {_spread(lost)} of {case.server.channels:,}",
        f"{case.how}; floor {case.server.floor:.2f} s ({case.server.describe()})",
        f"{_median(ratios):.3f}" if ratios else "",
        case.target.describe() if case.target is not None else "",
        verdict,
        delivered=not any(lost),
    )


SCENARIOS: dict[str, Callable[[Sizes, int, Spawner], Awaitable[ScenarioResult]]] = {
    "budget": budget,
    "prefetch": prefetch,
    "batch": batch,
    "cpu": cpu,
    "memory": memory,
    "scale": scale,
}


async def run_scenarios(
    names: Sequence[str],
    sizes: Sizes,
    repeat: int,
    spawner: Spawner,
    progress: Callable[[str], None],
) -> list[ScenarioResult]:
    """Run the named scenarios in order."""
    results = []
    for name in names:
        progress(f"running {name} ...")
        results.append(await SCENARIOS[name](sizes, repeat, spawner))
    return results
