"""The budget scenarios of the benchmark in ``bench/``, without running them: the floor of a
token bucket (with a schedule, integrated over it), the size of a run, the targets and how a
row is judged. Pure arithmetic on given figures: nothing here is timed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench._budget import Budget, Delivery, Target, last_start, refilled
from bench._fleet import FleetRun
from bench._report import grid_table
from bench._scenarios import (
    FULL,
    BudgetCase,
    Row,
    ScenarioResult,
    crowd_cases,
    fleet_concurrency,
    grid_cases,
    schedule_cases,
)

HALVED = ((3.0, 10.0), (11.0, 20.0))
"""20/s that falls to 10/s from 3 s to 11 s."""

# -- the floor ----------------------------------------------------------------------------


def test_the_floor_is_the_burst_at_once_then_a_token_a_request_then_the_latency() -> None:
    assert Budget(20.0, 5, 0.2, 200).floor == pytest.approx(195 / 20 + 0.2)


def test_requests_within_the_burst_take_only_the_latency() -> None:
    assert Budget(20.0, 5, 0.2, 3).floor == pytest.approx(0.2)


def test_the_floor_integrates_the_rate_over_a_schedule() -> None:
    # 60 tokens in the first 3 s at 20/s, 80 in the next 8 s at 10/s, then 100 in 5 s at 20/s.
    budget = Budget(20.0, 5, 0.2, 245, HALVED)

    assert budget.floor == pytest.approx(3 + 8 + 5 + 0.2)


def test_a_run_that_ends_within_the_dip_ends_at_the_low_rate() -> None:
    # 60 tokens by 3 s, the 40 more at 10/s by 7 s.
    assert last_start(105, 5, 20.0, HALVED) == pytest.approx(7.0)


def test_a_run_that_ends_before_the_first_step_never_meets_it() -> None:
    assert last_start(45, 5, 20.0, HALVED) == pytest.approx(2.0)


def test_a_step_at_zero_sets_the_rate_from_the_first_request() -> None:
    assert last_start(105, 5, 20.0, ((0.0, 10.0),)) == pytest.approx(10.0)


def test_a_budget_that_rises_is_integrated_too() -> None:
    # 10 tokens in 2 s at 5/s, then 100/s.
    assert last_start(65, 5, 5.0, ((2.0, 100.0),)) == pytest.approx(2.5)


def test_the_refill_over_a_schedule_counts_each_stretch_at_its_rate() -> None:
    assert refilled(16.0, 20.0, HALVED) == pytest.approx(60 + 80 + 100)
    assert refilled(5.0, 20.0, HALVED) == pytest.approx(60 + 20)


schedules = st.lists(
    st.tuples(st.floats(min_value=0.01, max_value=30.0), st.floats(min_value=0.5, max_value=200.0)),
    max_size=4,
).map(lambda steps: tuple(sorted(dict(steps).items())))


@given(
    schedule=schedules,
    rate=st.floats(min_value=0.5, max_value=200.0),
    burst=st.integers(min_value=1, max_value=50),
    requests=st.integers(min_value=0, max_value=5_000),
)
def test_the_last_start_is_when_the_refill_has_made_every_token_after_the_burst(
    schedule: tuple[tuple[float, float], ...], rate: float, burst: int, requests: int
) -> None:
    start = last_start(requests, burst, rate, schedule)

    assert refilled(start, rate, schedule) == pytest.approx(max(0, requests - burst), abs=1e-6)
    assert last_start(requests + 1, burst, rate, schedule) >= start


@pytest.mark.parametrize(("rate", "burst"), [(5.0, 1), (20.0, 5), (100.0, 25)])
@pytest.mark.parametrize("latency", [0.05, 1.0])
def test_a_budget_lasting_10_s_has_the_fewest_channels_whose_floor_is_10_s_and_latency(
    rate: float, burst: int, latency: float
) -> None:
    budget = Budget.lasting(rate, burst, latency, 10.0)
    one_fewer = Budget(rate, burst, latency, budget.channels - 1)

    assert budget.floor >= 10.0 + latency - 1e-9
    assert one_fewer.floor < 10.0 + latency


def test_a_budget_lasting_over_a_schedule_counts_its_channels_at_each_rate() -> None:
    budget = Budget.lasting(20.0, 5, 0.2, 16.0, HALVED)

    assert budget.channels == 5 + 240
    assert budget.floor == pytest.approx(16.2)


def test_a_schedule_is_described_step_by_step() -> None:
    assert Budget(20.0, 5, 0.2, 245, HALVED).describe() == (
        "20/s, 10/s from 3 s, 20/s from 11 s, burst 5, 200 ms, 245 channels"
    )


# -- the targets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("figures", "missed"),
    [
        ((1.05, 0.03, 0, None), []),
        ((1.051, 0.03, 0, None), ["wall"]),
        ((float("nan"), 0.0, 0, None), ["wall"]),
        ((1.0, 0.031, 0, None), ["429s"]),
        ((1.0, 0.0, 1, None), ["channels lost"]),
    ],
)
def test_a_target_names_what_a_run_missed(
    figures: tuple[float, float, int, float | None], missed: list[str]
) -> None:
    assert Target(1.05, 0.03).misses(*figures) == missed


def test_a_target_without_a_share_of_429s_judges_none() -> None:
    assert Target(1.08, None).misses(1.0, 0.5, 0) == []
    assert Target(1.08, None).describe() == "≤ 1.08 x floor, none lost"


def test_a_target_of_shares_misses_a_spread_too_wide_or_unknown() -> None:
    target = Target(1.10, 0.05, spread=0.25)

    assert target.misses(1.0, 0.0, 0, 0.25) == []
    assert target.misses(1.0, 0.0, 0, 0.26) == ["share"]
    assert target.misses(1.0, 0.0, 0, float("nan")) == ["share"]
    assert target.misses(1.0, 0.0, 0, None) == ["share"]
    assert target.describe() == "≤ 1.10 x floor, ≤ 5% 429s, processes within 25%, none lost"


def test_the_spread_of_a_fleet_is_its_longest_own_wall_over_its_shortest() -> None:
    fleet = FleetRun(Delivery(), 12.5, 1.0, 0, walls=(10.0, 12.5, 11.0), requests=(5, 5, 5))

    assert fleet.spread == pytest.approx(0.25)


# -- the rows -----------------------------------------------------------------------------


def test_the_grid_meets_every_budget_at_every_latency_untold_and_told() -> None:
    cases = grid_cases(FULL)

    points = {(case.server.rate, case.server.latency) for case in cases}
    assert points == {
        (rate, latency)
        for rate in (5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
        for latency in (0.05, 0.2, 1.0)
    }
    told = [case for case in cases if case.name.startswith("told")]
    untold = [case for case in cases if case.name.startswith("untold")]
    assert len(told) == len(untold) == len(points)
    assert all(case.options == {"rate_limit": case.server.rate} for case in told)
    assert all(case.options == {} for case in untold)


def test_every_run_of_the_grid_lasts_at_least_10_s_at_its_floor() -> None:
    assert all(case.server.floor >= 10.0 for case in grid_cases(FULL))


def test_the_grid_targets_allow_more_429s_only_below_10_per_s() -> None:
    targets = {(case.name.split()[0], case.server.rate): case.target for case in grid_cases(FULL)}

    assert targets["untold", 5.0] == Target(1.05, 0.08)
    assert {targets["untold", rate] for rate in (10.0, 20.0, 100.0)} == {Target(1.05, 0.03)}
    assert {targets["told", rate] for rate in (5.0, 20.0, 100.0)} == {Target(1.02, 0.0)}


def test_the_schedule_halves_20_per_s_for_8_s_and_comes_back() -> None:
    untold, told = schedule_cases(FULL)

    assert untold.server == told.server
    assert untold.server.schedule == HALVED
    assert untold.server.floor >= 10.0
    assert (untold.target, untold.options) == (Target(1.08, None), {})
    assert (told.target, told.options) == (Target(1.05, None), {"rate_limit": 20.0})


def test_the_crowd_is_4_untold_processes_and_the_fleets_are_told_at_each_latency() -> None:
    crowd, *fleets = crowd_cases(FULL)

    assert (crowd.processes, crowd.shared, crowd.target) == (4, False, Target(1.10, 0.05, 0.25))
    assert [(fleet.server.latency, fleet.shared, fleet.target) for fleet in fleets] == [
        (0.2, True, Target(1.03, 0.0)),
        (1.0, True, Target(1.03, 0.0)),
    ]


def test_a_fleet_may_keep_twice_what_its_budget_keeps_in_flight() -> None:
    assert fleet_concurrency(Budget(20.0, 5, 0.2, 205)) == 20
    assert fleet_concurrency(Budget(20.0, 5, 1.0, 205)) == 40
    assert fleet_concurrency(Budget(100.0, 25, 1.0, 1025)) == 200


def judged(case: BudgetCase, **summary: Any) -> Row:
    """``case``'s row judged on a summary of ``summary`` and one run that lost nothing."""
    result = ScenarioResult("crowd", runs=[{"system": case.name, "channels_lost": 0}])
    result.summary[case.name] = {
        "ratio": 1.0,
        "worst_throttled_share": 0.0,
        "worst_spread": 0.0,
        **summary,
    }
    row = Row("crowd", case.name, "")
    case.apply(result, row)
    return row


def test_a_crowd_row_fails_for_an_unfair_share_alone() -> None:
    crowd = crowd_cases(FULL)[0]

    assert judged(crowd).verdict == "PASS"
    assert judged(crowd, worst_spread=0.4).verdict == "FAIL (share)"


def test_a_row_of_one_process_is_not_judged_on_shares() -> None:
    untold = grid_cases(FULL)[0]

    assert judged(untold, worst_spread=float("nan")).verdict == "PASS"
    assert judged(untold, ratio=1.2, worst_throttled_share=0.5).verdict == "FAIL (wall, 429s)"


def test_the_grid_table_puts_a_budget_a_line_and_a_latency_a_column() -> None:
    result = ScenarioResult("grid")
    for name, ratio, share, verdict in [
        ("untold 5/s 50 ms", 1.03, 0.02, "PASS"),
        ("told 5/s 50 ms", 1.01, 0.0, "PASS"),
        ("untold 5/s 1000 ms", 1.9, 0.0, "FAIL (wall)"),
    ]:
        result.summary[name] = {"ratio": ratio, "throttled_share": share}
        result.rows.append(Row("grid", name, "", verdict=verdict))

    assert grid_table(result).splitlines() == [
        "| Budget | 50 ms | 1000 ms |",
        "| --- | --- | --- |",
        "| 5/s | untold 1.03 2.0% ✓; told 1.01 ✓ | untold 1.90 0.0% ✗ |",
    ]
