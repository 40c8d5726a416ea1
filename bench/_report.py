"""What a run leaves behind: the Markdown table, the JSON record, the plot, and the docs page."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._scenarios import BUDGET_SCENARIOS, ScenarioResult

__all__ = ["grid_table", "machine", "markdown_table", "plot", "update_page", "write_json"]

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _source() -> str:
    """The commit measured, and whether the package had changes not yet committed."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "flex_participants"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} with uncommitted changes to flex_participants/" if changes else commit


def machine() -> dict[str, Any]:
    """What the run ran on."""
    return {
        "source": _source(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "packages": {
            name: _version(name) for name in ("flex-participants", "aiohttp", "orjson", "twilio")
        },
    }


def markdown_table(results: Sequence[ScenarioResult]) -> str:
    """Every row of every scenario, as a Markdown table."""
    lines = [
        "| Scenario | System | Measured: median (min-max) | Bound or peer | Ratio | Target | Result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for row in result.rows:
            cells = (
                row.scenario,
                f"`{row.system}`",
                row.figure,
                row.versus,
                row.ratio,
                row.target,
                f"**{row.verdict}**" if row.verdict.startswith(("PASS", "FAIL")) else row.verdict,
            )
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def grid_table(result: ScenarioResult) -> str:
    """The grid as a matrix: a budget a line, a latency a column; in each cell the untold
    client's wall / floor and share of 429s, then the told client's wall / floor (and its
    429s, if any); each with its verdict's mark."""
    cells: dict[tuple[str, str], list[str]] = {}
    rates: dict[str, None] = {}
    latencies: dict[str, None] = {}
    for row in result.rows:
        how, _, point = row.system.partition(" ")
        rate, _, latency = point.partition(" ")
        if not latency:
            continue  # a note
        rates[rate] = None
        latencies[latency] = None
        summary = result.summary.get(row.system, {})
        ratio, share = summary.get("ratio", float("nan")), summary.get("throttled_share", 0.0)
        mark = "✓" if row.verdict == "PASS" else "✗" if row.verdict.startswith("FAIL") else ""
        text = f"{how} {ratio:.2f}" + (f" {share:.1%}" if share or how == "untold" else "")
        cells.setdefault((rate, latency), []).append(f"{text} {mark}".rstrip())
    lines = [
        "| Budget | " + " | ".join(latencies) + " |",
        "| --- |" + " --- |" * len(latencies),
    ]
    for rate in rates:
        lines.append(
            f"| {rate} | "
            + " | ".join("; ".join(cells.get((rate, latency), [])) for latency in latencies)
            + " |"
        )
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """The whole record of the run: machine, settings, every run, every summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def plot(results: Sequence[ScenarioResult], path: Path) -> None:
    """One panel per figure: each system's median, its min-max, and the target if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {result.name: result for result in results}
    panels = [panel for panel in _PANELS if panel.scenario in by_name]
    columns = 3
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(12, 3.6 * rows), squeeze=False)
    flat = [axis for row in axes for axis in row]
    for axis in flat[len(panels) :]:
        axis.set_visible(False)
    for axis, panel in zip(flat, panels, strict=False):
        result = by_name[panel.scenario]
        labels, medians, lows, highs = _bars(result, panel)
        positions = range(len(labels))
        # This SDK in blue, its peers in grey.
        peers = ("twilio", "reference")
        colours = ["#9aa5b1" if label.startswith(peers) else "#3b6ea8" for label in labels]
        axis.bar(positions, medians, color=colours)
        axis.errorbar(
            positions,
            medians,
            yerr=[
                [m - lo for m, lo in zip(medians, lows, strict=True)],
                [hi - m for m, hi in zip(medians, highs, strict=True)],
            ],
            fmt="none",
            ecolor="black",
            capsize=3,
        )
        axis.set_xticks(list(positions), labels, rotation=20, ha="right", fontsize=8)
        axis.set_title(panel.title, fontsize=10)
        axis.set_ylabel(panel.ylabel, fontsize=9)
        if panel.target is not None:
            axis.axhline(panel.target, color="#c0392b", linestyle="--", linewidth=1)
        for position, label in zip(positions, labels, strict=True):
            summary = result.summary.get(label, {})
            if panel.target_of is not None and summary.get("target"):
                target = summary["target"][panel.target_of] * panel.scale
                axis.hlines(target, position - 0.4, position + 0.4, color="#c0392b", linewidth=2)
            lost = summary.get("channels_lost") if panel.scenario in BUDGET_SCENARIOS else None
            if lost:
                axis.annotate(
                    f"{lost:.0f} lost",
                    (position, highs[position]),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="#c0392b",
                )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


@attrs.frozen
class _Panel:
    """One panel of the plot: a figure of each system's valid runs of one scenario."""

    scenario: str
    title: str
    ylabel: str
    points: Callable[[ScenarioResult, list[dict[str, Any]]], list[float]]
    target: float | None = None
    """A target for every system, drawn across the panel."""
    target_of: str | None = None
    """The key of each system's own target in its summary (``summary[system]["target"]``)."""
    scale: float = 1.0
    """What ``target_of``'s value is multiplied by, to the panel's unit."""


def _key(
    key: str, scale: float = 1.0
) -> Callable[[ScenarioResult, list[dict[str, Any]]], list[float]]:
    return lambda result, runs: [run[key] * scale for run in runs]


def _growth(result: ScenarioResult, runs: list[dict[str, Any]]) -> list[float]:
    small, large = result.summary["small"], result.summary["large"]
    by_rep: dict[int, dict[int, float]] = {}
    for run in runs:
        by_rep.setdefault(run["rep"], {})[run["size"]] = run["peak_rss_mb"]
    return [rep[large] - rep[small] for rep in by_rep.values() if len(rep) == 2]


def _throughput(result: ScenarioResult, runs: list[dict[str, Any]]) -> list[float]:
    return [run["channels_per_s"] for run in runs if run["size"] == result.summary["large"]]


_PANELS = [
    _Panel(
        "budget", "budget: wall / floor", "ratio (red: each target)", _key("ratio"), None, "ratio"
    ),
    _Panel(
        "budget",
        "budget: requests answered 429",
        "% of requests (red: each target)",
        _key("throttled_share", 100),
        None,
        "throttled",
        100,
    ),
    _Panel(
        "schedule",
        "schedule: wall / floor (20/s, 10/s for 8 s)",
        "ratio (red: each target)",
        _key("ratio"),
        None,
        "ratio",
    ),
    _Panel(
        "crowd",
        "crowd: server span / floor",
        "ratio (red: each target)",
        _key("ratio"),
        None,
        "ratio",
    ),
    _Panel("prefetch", "prefetch: wall / bound (a comparison)", "ratio", _key("ratio")),
    _Panel("batch", "batch: wall / bound (a comparison)", "ratio", _key("ratio")),
    _Panel("cpu", "cpu: CPU per participant", "µs", _key("cpu_per_participant", 1e6)),
    _Panel("memory", "memory: peak RSS growth 10k → 1M", "MB (target 30)", _growth, 30.0),
    _Panel("scale", "scale: 20,000 channels", "channels / s", _throughput),
]


def _bars(
    result: ScenarioResult, panel: _Panel
) -> tuple[list[str], list[float], list[float], list[float]]:
    labels: list[str] = []
    values: list[list[float]] = []
    runs = [run for run in result.runs if run["ok"]]
    for system in dict.fromkeys(run["system"] for run in runs):
        labels.append(system)
        values.append(
            panel.points(result, [run for run in runs if run["system"] == system]) or [0.0]
        )
    medians = [statistics.median(v) for v in values]
    return labels, medians, [min(v) for v in values], [max(v) for v in values]


def results_section(results: Sequence[ScenarioResult], info: dict[str, Any], image: str) -> str:
    """The part of the docs page that each run rewrites: the budget's tables first."""
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    load = info["load_average"]
    load_text = f"; load average {load[0]:.2f} at the start" if load else ""
    budget = [result for result in results if result.name in BUDGET_SCENARIOS]
    others = [result for result in results if result.name not in BUDGET_SCENARIOS]
    repetitions = ", ".join(f"{result.name} {result.repeat}" for result in results)
    tables = []
    if budget:
        tables += ["### The rate budget", "", markdown_table(budget), ""]
    grid = [result for result in results if result.name == "grid"]
    if grid:
        tables += ["### The grid at a glance", "", grid_table(grid[0]), ""]
    if others:
        tables += ["### Guards and comparisons", "", markdown_table(others), ""]
    return "\n".join(
        [
            START,
            "",
            f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores,"
            f" {info['implementation']} {info['python']} ({info['platform']}){load_text};"
            f" {packages}; commit {info['source']}. Repetitions: {repetitions}; the systems"
            " interleaved within each server; the figures are medians with the (min-max) of"
            " the runs, the ratios medians of the per-run ratios.",
            "",
            *tables,
            f"![Each system's median per figure, with its min-max and the targets]({image})",
            "",
            END,
        ]
    )


def update_page(path: Path, section: str, template: str) -> None:
    """Replace the results section of the page, or write the page from ``template``."""
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        path.write_text(before + section + after)
    else:
        path.write_text(template.replace("{results}", section))
