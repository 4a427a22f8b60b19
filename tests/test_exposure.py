"""A worker's exposure, worked by hand: the worst case of what it will still be billed."""

from __future__ import annotations

import pytest

from handler.billing import Meter, Paces, work_units
from handler.exposure import (
    EXIT_ALLOWANCE_S,
    REQUEST_FLOOR_S,
    InFlight,
    alone_seconds,
    exposure_seconds,
    fleet_margin_seconds,
    idle_tail_seconds,
    max_tokens_for_cost,
)

PACES = Paces(prompt=0.001, completion=0.05, busy=0.01)


def test_a_job_waits_behind_the_work_admitted_before_it() -> None:
    flight = InFlight()
    floor = REQUEST_FLOOR_S  # every request's fixed cost
    # alone: 80 prompt tokens at 1 ms and 100 tokens at 50 ms = 5.08 s (its 110 work units at the
    # engine's 10 ms take only 1.1 s: the per-request pace bounds it)
    alone_a = alone_seconds(80, 100, work_units(80, 100), PACES)
    assert alone_a == pytest.approx(0.08 + 5.0)
    assert flight.admit("a", work_units(80, 100), alone_a, PACES.busy) == pytest.approx(5.08 + floor)
    # b waits behind a's 110 units at the engine's pace (1.1 s), then its own 60 tokens (3 s)
    alone_b = alone_seconds(0, 60, 60, PACES)
    assert flight.admit("b", 60, alone_b, PACES.busy) == pytest.approx(1.1 + 3.0 + floor)
    # a list of 1000 prompts: its work at the engine's pace is longer than one sequence's latency
    work = work_units(1000 * 8, 1000 * 16)
    assert alone_seconds(8000, 16, work, PACES) == pytest.approx(work * 0.01)


def test_remaining_is_the_longest_job_not_the_sum() -> None:
    flight = InFlight()
    flight.admit("a", 100, 4.0, 0.04)  # 4 s + 1 s floor
    flight.admit("b", 100, 4.0, 0.04)  # behind a's 100 units (4 s), its own 4 s, 1 s floor
    flight.running("a", now=1000.0)
    flight.running("b", now=1000.0)
    assert flight.remaining_seconds(now=1004.0) == pytest.approx(5.0)  # b ends by 1009
    flight.done("b")
    assert flight.remaining_seconds(now=1004.0) == pytest.approx(1.0)
    assert flight.remaining_seconds(now=1009.0) == 0.0  # a overran its worst case: nothing negative
    flight.admit("c", 40, 2.0, 0.05)  # waiting for the engine: all of its worst case, behind a
    assert flight.remaining_seconds(now=1009.0) == pytest.approx(100 * 0.05 + 2.0 + REQUEST_FLOOR_S)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(meter: Meter, clock: _Clock, jobs: list[tuple[str, int, int]], seconds: float) -> None:
    """Jobs (id, prompt tokens, completion tokens) running together for `seconds`."""
    for job_id, _, _ in jobs:
        meter.job_started(job_id, reports_tokens=False)
    clock.now += seconds
    for job_id, prompt, completion in jobs:
        meter.job_finished(job_id, work=work_units(prompt, completion), prompt_tokens=prompt,
                           completion_tokens=completion)  # fmt: skip


def test_a_lone_job_after_a_batch_is_bounded_by_the_pace_of_one_request() -> None:
    """Measured: 32 jobs of 64 tokens ran together in 8 s (256 tokens/s for the engine, but 8 s for
    each one's 64 tokens). A lone job of 64 tokens after them takes about 2.4 s (27 tokens/s): the
    batch's pace (1/256 s a unit) bounded it at 0.25 s before, under a tenth of it."""
    clock = _Clock()
    meter = Meter(0.05, clock=clock)
    meter.worker_ready()
    _run(meter, clock, [(f"j{i}", 0, 64) for i in range(32)], 8.0)
    paces = meter.paces()
    assert paces.busy == pytest.approx(8.0 / (32 * 64))
    assert paces.completion == pytest.approx(8.0 / 64)  # each request's own pace inside the batch
    lone_real = 64 / 27
    assert alone_seconds(0, 64, 64, paces) >= lone_real
    assert 64 * paces.busy < lone_real  # what the batch's pace alone would have reserved


def test_a_long_generation_after_a_prompt_heavy_job_is_bounded_by_its_own_tokens() -> None:
    """A 4,000-token prompt answered with 10 tokens in 1 s made the old single pace 1 s / 510 units;
    a lone 2,000-token generation at 20 tokens/s (100 s) was then bounded at 4 s."""
    clock = _Clock()
    meter = Meter(0.05, clock=clock)
    meter.worker_ready()
    _run(meter, clock, [("heavy", 4000, 10)], 1.0)
    paces = meter.paces()
    assert paces.prompt == pytest.approx(1.0 / 4000)  # measured on the prompt it was dominated by
    assert paces.completion == 0.05  # not measured by it: the settings' pace stays
    assert alone_seconds(10, 2000, work_units(10, 2000), paces) >= 100.0
    _run(meter, clock, [("long", 10, 2000)], 100.0)  # measured now: the slowest is kept
    assert meter.paces().completion == pytest.approx(0.05)


def test_the_cost_cap_solves_both_bounds() -> None:
    # $0.002 at $3.60/h is 2 s of the worker: the 1 s floor, then 1 s of a 200-token prompt (0.2 s)
    # and 16 tokens at 50 ms (0.8 s); by the engine's pace 1 s is 100 units, 25 of them the prompt's
    assert max_tokens_for_cost(0.002, 3.6, 200, 1, PACES) == pytest.approx(16.0)
    fast = Paces(prompt=0.0, completion=0.001, busy=0.01)
    assert max_tokens_for_cost(0.002, 3.6, 200, 1, fast) == pytest.approx(75.0)
    assert max_tokens_for_cost(0.002, 3.6, 200, 3, fast) == pytest.approx(25.0)  # three sequences share it
    assert max_tokens_for_cost(0.0005, 3.6, 0, 1, PACES) < 1  # not even the floor
    assert max_tokens_for_cost(0.0, 3.6, 10, 1, PACES) == float("inf")
    assert max_tokens_for_cost(0.001, 0.0, 10, 1, PACES) == float("inf")
    # a GPU under a dollar an hour is capped too: $0.0002 at $0.36/h is the same 2 s
    assert max_tokens_for_cost(0.0002, 0.36, 200, 1, PACES) == pytest.approx(16.0)


def test_exposure_adds_engine_start_and_idle_tail() -> None:
    # light profile: a cold worker admits one 5 s job; 45 s engine start; 15 s idle timeout + 5 s heartbeat
    assert exposure_seconds(5.0, 45.0, 15.0 + 5.0) == pytest.approx(70.0)
    assert exposure_seconds(-1.0, -2.0, 20.0) == pytest.approx(20.0)


def test_the_idle_tail_and_the_fleet_margin_by_hand() -> None:
    # idle timeout 5 s, heartbeat 5 s, then the process's exit
    assert idle_tail_seconds(5.0, 5.0) == pytest.approx(10.0 + EXIT_ALLOWANCE_S)
    # three workers that may still start, each booting 4 s then idling its 11 s tail
    assert fleet_margin_seconds(3, 4.0, 11.0) == pytest.approx(45.0)
    assert fleet_margin_seconds(0, 4.0, 11.0) == 0.0


def test_sub_second_figures_are_not_rounded_up() -> None:
    assert idle_tail_seconds(0.5, 0.25) == pytest.approx(0.75 + EXIT_ALLOWANCE_S)
    assert fleet_margin_seconds(2, 0.5, 0.25) == pytest.approx(1.5)
    assert exposure_seconds(0.25, 0.0, 0.5) == pytest.approx(0.75)
    assert alone_seconds(0, 0.5, 0.5, PACES) == pytest.approx(0.5 * PACES.completion)
    assert alone_seconds(0, 0, 0.5, PACES) == pytest.approx(0.5 * PACES.busy)
    flight = InFlight()
    assert flight.admit("tiny", 0.0, 0.5, PACES.busy) == pytest.approx(0.5 + REQUEST_FLOOR_S)
    flight.done("tiny")
    flight.done("never-admitted")  # a job that failed before its admission ends harmlessly too


def test_the_cost_cap_with_an_unmeasured_pace_uses_the_other_bound() -> None:
    # 2 s of the worker, less the 1 s floor: no completion pace leaves the engine's (100 units at 10 ms)
    no_latency = Paces(prompt=0.0, completion=0.0, busy=0.01)
    assert max_tokens_for_cost(0.002, 3.6, 0, 1, no_latency) == pytest.approx(100.0)
    no_busy = Paces(prompt=0.0, completion=0.05, busy=0.0)  # and no engine pace leaves the request's
    assert max_tokens_for_cost(0.002, 3.6, 0, 1, no_busy) == pytest.approx(20.0)
