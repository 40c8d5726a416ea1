"""The benchmark in ``bench/``, run at its tiny ``--quick`` size: every system returns every
participant exactly once, and this SDK delivers every channel under the budget scenarios'
token buckets, alone, told, on a schedule and in a crowd of processes. Nothing here is about
speed."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("twilio") is None,
        reason="the benchmark compares with the official twilio package, which is not "
        "installed here (nox -s bench installs it)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("orjson") is None,
        reason="the benchmark's reference loop needs orjson (the speedups extra)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("redis") is None or shutil.which("redis-server") is None,
        reason="the budget scenario's fleet needs the redis extra and redis-server on PATH",
    ),
    pytest.mark.skipif(
        not (ROOT / "bench" / "__main__.py").exists(),
        reason="bench/ is not in this tree",
    ),
]

SDK_BUDGET_SYSTEMS = {"sdk", "sdk strict", "sdk told"}
BUDGET_SCENARIOS = {
    "budget": SDK_BUDGET_SYSTEMS,
    "grid": {"untold 25/s 5 ms", "told 25/s 5 ms"},
    "schedule": {"untold", "told the old budget"},
    "crowd": {"crowd untold", "fleet told 5 ms", "fleet told 50 ms"},
}
"""The SDK's systems of each budget scenario in the quick run."""


@attrs.frozen
class QuickRun:
    """What ``python -m bench --quick`` printed, its exit status and its JSON record."""

    returncode: int
    stdout: str
    stderr: str
    record: dict[str, Any]

    def scenario(self, name: str) -> dict[str, Any]:
        scenarios: list[dict[str, Any]] = self.record["scenarios"]
        [scenario] = [s for s in scenarios if s["name"] == name]
        return scenario


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    results = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    records = list(results.glob("quick-*.json"))
    assert len(records) == 1, done.stderr
    return QuickRun(done.returncode, done.stdout, done.stderr, json.loads(records[0].read_text()))


def test_quick_run_returns_every_participant_of_every_scenario_from_every_system(
    quick_run: QuickRun,
) -> None:
    assert quick_run.returncode == 0, quick_run.stderr
    assert quick_run.record["lost"] == []
    for scenario in quick_run.record["scenarios"]:
        assert scenario["runs"]
        assert all(run["ok"] for run in scenario["runs"]), scenario["name"]
    assert "all returned" in quick_run.stdout
    assert "LOST" not in quick_run.stdout


def test_quick_run_runs_every_system_of_every_scenario(quick_run: QuickRun) -> None:
    systems = {
        scenario["name"]: {run["system"] for run in scenario["runs"]}
        for scenario in quick_run.record["scenarios"]
    }
    assert systems == {
        **BUDGET_SCENARIOS,
        "budget": SDK_BUDGET_SYSTEMS | {"twilio", "twilio retries"},
        "prefetch": {"sdk", "twilio", "reference"},
        "batch": {"sdk", "twilio", "reference"},
        "cpu": {"sdk", "twilio", "reference", "sdk-stdlib-json"},
        "memory": {"sdk", "reference"},
        "scale": {"sdk", "twilio", "reference"},
    }


@pytest.mark.parametrize("name", sorted(BUDGET_SCENARIOS))
def test_quick_budget_runs_deliver_every_channel_from_every_sdk_system(
    quick_run: QuickRun, name: str
) -> None:
    systems = BUDGET_SCENARIOS[name]
    runs = [run for run in quick_run.scenario(name)["runs"] if run["system"] in systems]
    assert {run["system"] for run in runs} == systems
    assert [(run["system"], run["channels_lost"]) for run in runs] == [
        (run["system"], 0) for run in runs
    ]


@pytest.mark.parametrize("name", sorted(BUDGET_SCENARIOS))
def test_quick_budget_runs_record_wall_over_floor_and_429s_of_every_run(
    quick_run: QuickRun, name: str
) -> None:
    for run in quick_run.scenario(name)["runs"]:
        assert run["bound"] > 0, run["system"]
        assert run["ratio"] == pytest.approx(run["wall"] / run["bound"]), run["system"]
        assert 0 <= run["throttled_share"] <= 1, run["system"]
        assert run["requests"] >= run["channels"], run["system"]


def test_quick_crowd_runs_record_each_process_s_own_wall_and_requests(quick_run: QuickRun) -> None:
    for run in quick_run.scenario("crowd")["runs"]:
        assert len(run["process_walls"]) == len(run["process_requests"]) == 4, run["system"]
        assert sum(run["process_requests"]) >= run["channels"], run["system"]
        assert run["spread"] == pytest.approx(
            max(run["process_walls"]) / min(run["process_walls"]) - 1
        )
