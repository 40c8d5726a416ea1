"""The benchmark in ``bench/``, run at its tiny ``--quick`` size: every system returns every
participant exactly once. Nothing here is about speed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
        not (ROOT / "bench" / "__main__.py").exists(),
        reason="bench/ is not in this tree",
    ),
]


def test_quick_run_returns_every_participant_of_every_scenario_from_every_system(
    tmp_path: Path,
) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [record_file] = tmp_path.glob("quick-*.json")
    record = json.loads(record_file.read_text())
    assert record["lost"] == []
    systems = {
        scenario["name"]: {run["system"] for run in scenario["runs"]}
        for scenario in record["scenarios"]
    }
    assert systems == {
        "prefetch": {"sdk", "twilio", "reference"},
        "batch": {"sdk", "twilio", "reference"},
        "cpu": {"sdk", "twilio", "reference", "sdk-stdlib-json"},
        "memory": {"sdk", "reference"},
        "scale": {"sdk", "reference"},
    }
    for scenario in record["scenarios"]:
        assert scenario["runs"]
        assert all(run["ok"] for run in scenario["runs"]), scenario["name"]
    assert "all returned" in done.stdout
    assert "LOST" not in done.stdout
