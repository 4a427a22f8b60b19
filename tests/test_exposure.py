"""A worker's exposure, worked by hand: the worst case of what it will still be billed."""

from __future__ import annotations

import pytest

from handler.exposure import (
    EXIT_ALLOWANCE_S,
    REQUEST_FLOOR_S,
    InFlight,
    exposure_seconds,
    fleet_margin_seconds,
    idle_tail_seconds,
    job_worst_seconds,
    max_work_for_cost,
    prompt_tokens_bound,
)


def test_a_job_waits_behind_the_work_admitted_before_it() -> None:
    flight = InFlight()
    floor = REQUEST_FLOOR_S  # every request's fixed cost
    assert flight.admit("a", 100, pace=0.05) == pytest.approx(5.0 + floor)  # alone: 100 units at 0.05 s
    assert flight.admit("b", 60, pace=0.05) == pytest.approx(8.0 + floor)  # behind a's 100 units: 160 units
    assert job_worst_seconds(10, 90, 0.1) == pytest.approx(10.0)


def test_remaining_is_the_longest_job_not_the_sum() -> None:
    flight = InFlight()
    flight.admit("a", 100, pace=0.04)  # 4 s + 1 s floor
    flight.admit("b", 100, pace=0.04)  # 8 s + 1 s floor
    flight.running("a", now=1000.0)
    flight.running("b", now=1000.0)
    assert flight.remaining_seconds(now=1004.0) == pytest.approx(5.0)  # b ends by 1009
    flight.done("b")
    assert flight.remaining_seconds(now=1004.0) == pytest.approx(1.0)
    assert flight.remaining_seconds(now=1009.0) == 0.0  # a overran its worst case: nothing negative
    flight.admit("c", 40, pace=0.05)  # waiting for the engine: all of its worst case, behind a
    assert flight.remaining_seconds(now=1009.0) == pytest.approx((100 + 40) * 0.05 + REQUEST_FLOOR_S)


def test_exposure_adds_engine_start_and_idle_tail() -> None:
    # light profile: a cold worker admits one 5 s job; 45 s engine start; 15 s idle timeout + 5 s heartbeat
    assert exposure_seconds(5.0, 45.0, 15.0 + 5.0) == pytest.approx(70.0)
    assert exposure_seconds(-1.0, -2.0, 20.0) == pytest.approx(20.0)


def test_prompt_bound_and_cost_cap() -> None:
    assert prompt_tokens_bound(400, 1.0) == 400  # before any measurement: a token per character
    assert prompt_tokens_bound(400, 2.0) == 200
    # $0.002 at $3.60/h is 2 s of the worker: the 1 s request floor, then 20 units at 0.05 s
    assert max_work_for_cost(0.002, 3.6, 0.05) == pytest.approx(20.0)
    assert max_work_for_cost(0.0005, 3.6, 0.05) < 0  # not even the floor
    assert max_work_for_cost(0.0, 3.6, 0.05) == float("inf")
    assert max_work_for_cost(0.001, 0.0, 0.05) == float("inf")


def test_the_idle_tail_and_the_fleet_margin_by_hand() -> None:
    # idle timeout 5 s, heartbeat 5 s, then the process's exit
    assert idle_tail_seconds(5.0, 5.0) == pytest.approx(10.0 + EXIT_ALLOWANCE_S)
    # three workers that may still start, each booting 4 s then idling its 11 s tail
    assert fleet_margin_seconds(3, 4.0, 11.0) == pytest.approx(45.0)
    assert fleet_margin_seconds(0, 4.0, 11.0) == 0.0
