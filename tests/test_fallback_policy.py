"""The fallback policy by hand: no HTTP, no event loop, no sleeping.

`FallbackRun.steps` yields each request it needs (submit, status, cancel,
health, sleep); each test answers it as a scripted endpoint would (`send`),
or fails it as a transport would (`throw`), and checks the next request or the
result. The clock is a list the test moves on.
"""

from __future__ import annotations

from typing import Any

import pytest

from client.breaker import CircuitBreaker
from client.errors import AllTiersFailed, AttemptFailed, FailureReason, JobRejected
from client.fallback_policy import (
    Cancel,
    Config,
    EndpointSpec,
    Exchange,
    FallbackResult,
    FallbackRun,
    Health,
    Policy,
    Request,
    Sleep,
    Status,
    Steps,
    Submit,
    TierPair,
    health_check,
)

JOB = {"prompt": "hi"}
PAIR = TierPair(spot=EndpointSpec("spot", timeout_s=10.0), on_demand=EndpointSpec("od", timeout_s=60.0))
SPOT_TTL = 40_000  # 10 s budget + the default 30 s margin, in ms


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_run(
    pair: TierPair = PAIR, policy: Policy | None = None, breaker: CircuitBreaker | None = None
) -> tuple[FallbackRun, Clock]:
    clock = Clock()
    breaker = breaker or CircuitBreaker(health_interval_s=None, clock=clock)
    return FallbackRun(pair, policy or Policy(), breaker, clock, uniform=lambda _low, _high: 0.0), clock


def fail(endpoint_id: str, reason: FailureReason, message: str = "x") -> AttemptFailed:
    return AttemptFailed(endpoint_id, reason, message)


def finish(steps: Steps[FallbackResult], answer: Any) -> FallbackResult:
    """Send the last answer: the steps must end with their result."""
    with pytest.raises(StopIteration) as stop:
        steps.send(answer)
    result: FallbackResult = stop.value.value
    return result


def done(job_id: str, output: Any = "ok") -> dict[str, Any]:
    return {"id": job_id, "status": "COMPLETED", "output": output}


def test_a_spot_timeout_cancels_the_job_and_runs_on_demand() -> None:
    run, clock = make_run()
    steps = run.steps(JOB)
    assert next(steps) == Submit("spot", JOB, ttl_ms=SPOT_TTL)
    assert steps.send({"id": "j1", "status": "IN_PROGRESS"}) == Sleep(0.1)
    assert run.in_flight == ("spot", "j1")
    clock.now = 5.0
    assert steps.send(None) == Status("spot", "j1")
    assert steps.send({"id": "j1", "status": "IN_PROGRESS"}) == Sleep(0.2)  # the poll interval doubles
    clock.now = 10.5  # past spot's 10 s budget
    assert steps.send(None) == Status("spot", "j1")
    assert steps.send({"id": "j1", "status": "IN_PROGRESS"}) == Cancel("spot", "j1")
    assert steps.send({"id": "j1", "status": "CANCELLED"}) == Submit("od", JOB, ttl_ms=None)  # no ttl on the last
    assert run.in_flight is None
    clock.now = 12.0
    result = finish(steps, done("j2"))
    assert (result.tier, result.endpoint_id, result.job_id, result.output) == ("on_demand", "od", "j2", "ok")
    spot, on_demand = result.attempts
    assert (spot.outcome, spot.job_id, spot.cancelled, spot.seconds) == ("timeout", "j1", True, 10.5)
    assert "still IN_PROGRESS after 10.0s" in spot.message
    assert (on_demand.outcome, on_demand.seconds) == ("served", 1.5)


def test_a_job_that_finished_before_its_cancel_is_taken() -> None:
    run, clock = make_run()
    steps = run.steps(JOB)
    next(steps)
    steps.send({"id": "j1", "status": "IN_QUEUE"})
    clock.now = 11.0
    assert steps.send(None) == Status("spot", "j1")
    assert steps.send({"id": "j1", "status": "IN_QUEUE"}) == Cancel("spot", "j1")
    assert steps.send({"id": "j1", "status": "COMPLETED"}) == Status("spot", "j1")  # read its outcome
    result = finish(steps, done("j1", "late"))
    assert (result.tier, result.output) == ("spot", "late")
    assert [a.outcome for a in result.attempts] == ["served"]


def test_a_429_on_submit_is_sent_again_after_a_backoff() -> None:
    run, _clock = make_run()
    steps = run.steps(JOB)
    submit = next(steps)
    assert steps.throw(fail("spot", FailureReason.THROTTLED, "HTTP 429")) == Sleep(0.25)
    assert steps.send(None) == submit  # the same POST, to the same endpoint
    assert steps.throw(fail("spot", FailureReason.THROTTLED, "HTTP 429")) == Sleep(0.5)  # doubled
    assert steps.send(None) == submit
    result = finish(steps, done("j1"))
    assert result.tier == "spot" and [a.outcome for a in result.attempts] == ["served"]


def test_a_throttled_submit_stops_at_max_attempts_and_falls_back() -> None:
    pair = TierPair(spot=EndpointSpec("spot", 10.0, max_attempts=2), on_demand=EndpointSpec("od", 60.0))
    run, _clock = make_run(pair)
    steps = run.steps(JOB)
    next(steps)
    assert isinstance(steps.throw(fail("spot", FailureReason.THROTTLED)), Sleep)
    assert isinstance(steps.send(None), Submit)
    assert steps.throw(fail("spot", FailureReason.THROTTLED)) == Submit("od", JOB)  # second try was the last
    result = finish(steps, done("j2"))
    assert [(a.tier, a.outcome) for a in result.attempts] == [("spot", "throttled"), ("on_demand", "served")]


def test_a_submit_with_an_unknown_outcome_is_never_resent() -> None:
    run, _clock = make_run()
    steps = run.steps(JOB)
    next(steps)
    # not Sleep then Submit("spot"): a second POST could queue (and bill) a second spot job
    assert steps.throw(fail("spot", FailureReason.SUBMIT_UNKNOWN)) == Submit("od", JOB)
    result = finish(steps, done("j2"))
    assert [(a.tier, a.outcome, a.job_id) for a in result.attempts] == [
        ("spot", "submit_unknown", None),
        ("on_demand", "served", "j2"),
    ]


def test_an_unknown_submit_is_raised_when_the_policy_forbids_falling_back() -> None:
    run, _clock = make_run(policy=Policy(fallback_on_submit_unknown=False))
    steps = run.steps(JOB)
    next(steps)
    with pytest.raises(AttemptFailed) as info:
        steps.throw(fail("spot", FailureReason.SUBMIT_UNKNOWN))
    assert (info.value.endpoint_id, info.value.reason) == ("spot", FailureReason.SUBMIT_UNKNOWN)


def test_an_open_circuit_skips_spot_without_a_request() -> None:
    run, _clock = make_run()
    run.breaker.trip("spot", "3 failures in a row")
    steps = run.steps(JOB)
    assert next(steps) == Submit("od", JOB)
    result = finish(steps, done("j2"))
    assert [(a.tier, a.outcome) for a in result.attempts] == [("spot", "circuit_open"), ("on_demand", "served")]
    assert result.attempts[0].message == "3 failures in a row"


def test_the_last_tier_is_tried_even_when_its_circuit_is_open() -> None:
    run, _clock = make_run()
    run.breaker.trip("od", "down")
    steps = run.steps(JOB)
    assert next(steps) == Submit("spot", JOB, ttl_ms=SPOT_TTL)
    assert steps.throw(fail("spot", FailureReason.SUBMIT_UNKNOWN)) == Submit("od", JOB)


def test_a_failed_health_check_takes_spot_out_of_rotation() -> None:
    clock = Clock()
    breaker = CircuitBreaker(health_interval_s=30.0, clock=clock)
    run = FallbackRun(PAIR, Policy(), breaker, clock)
    steps = run.steps(JOB)
    assert next(steps) == Health("spot")
    assert steps.send({"workers": {"throttled": 2}}) == Submit("od", JOB)
    result = finish(steps, done("j2"))
    assert result.attempts[0].outcome == "circuit_open" and "no capacity" in result.attempts[0].message
    # the next call within the cool-down asks nothing of spot, not even its health
    assert next(run.steps(JOB)) == Submit("od", JOB)


def test_failures_in_a_row_open_the_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker(health_interval_s=None, failure_threshold=2, clock=clock)
    run = FallbackRun(PAIR, Policy(), breaker, clock)
    first_requests = []
    for _ in range(3):
        steps = run.steps(JOB)
        first_requests.append(next(steps))
        if first_requests[-1].endpoint_id == "spot":
            steps.throw(fail("spot", FailureReason.SUBMIT_UNKNOWN))
    assert [r.endpoint_id for r in first_requests] == ["spot", "spot", "od"]


def test_a_validation_error_is_raised_without_fallback() -> None:
    run, _clock = make_run()
    steps = run.steps(JOB)
    next(steps)
    error = '{"type": "validation_error", "message": "prompt is empty", "field": "prompt"}'
    with pytest.raises(JobRejected) as info:
        steps.send({"id": "j1", "status": "FAILED", "error": error})
    assert info.value.reason == FailureReason.REJECTED


def test_a_status_error_is_retried_only_within_the_deadline() -> None:
    run, clock = make_run()
    steps = run.steps(JOB)
    next(steps)
    steps.send({"id": "j1", "status": "IN_PROGRESS"})
    assert steps.send(None) == Status("spot", "j1")
    assert steps.throw(fail("spot", FailureReason.SERVER_ERROR)) == Sleep(0.25)  # idempotent: retried
    assert steps.send(None) == Status("spot", "j1")
    clock.now = 10.0
    assert steps.throw(fail("spot", FailureReason.SERVER_ERROR)) == Cancel("spot", "j1")  # out of time


def test_both_tiers_failing_raise_both_causes() -> None:
    run, _clock = make_run()
    steps = run.steps(JOB)
    next(steps)
    steps.throw(fail("spot", FailureReason.SUBMIT_UNKNOWN))
    with pytest.raises(AllTiersFailed) as info:
        steps.throw(fail("od", FailureReason.HTTP_ERROR, "HTTP 401"))
    assert info.value.spot is not None and info.value.spot.reason == FailureReason.SUBMIT_UNKNOWN
    assert info.value.on_demand.reason == FailureReason.HTTP_ERROR


def test_the_callers_timeout_splits_across_tiers() -> None:
    run, clock = make_run()
    steps = run.steps(JOB, timeout=15.0)
    assert next(steps) == Submit("spot", JOB, ttl_ms=SPOT_TTL)  # min(10, 15)
    clock.now = 9.0
    assert steps.throw(fail("spot", FailureReason.SUBMIT_UNKNOWN)) == Submit("od", JOB)
    assert steps.send({"id": "j2", "status": "IN_QUEUE"}) == Sleep(0.1)
    clock.now = 15.0  # on-demand had 6 s left of the caller's 15
    assert steps.send(None) == Status("od", "j2")
    assert steps.send({"id": "j2", "status": "IN_QUEUE"}) == Cancel("od", "j2")
    with pytest.raises(AllTiersFailed) as info:
        steps.send({"id": "j2", "status": "CANCELLED"})
    assert info.value.on_demand.reason == FailureReason.NO_CAPACITY and info.value.on_demand.cancelled


def test_abandon_cancels_the_job_in_flight_and_swallows_failures() -> None:
    run, _clock = make_run()
    assert list(run.abandon()) == []  # nothing in flight: nothing to cancel
    steps = run.steps(JOB)
    next(steps)
    steps.send({"id": "j1", "status": "IN_PROGRESS"})
    abandon = run.abandon()
    assert next(abandon) == Cancel("spot", "j1")
    assert isinstance(abandon.throw(fail("spot", FailureReason.CONNECTION)), Sleep)
    assert abandon.send(None) == Cancel("spot", "j1")
    assert isinstance(abandon.throw(fail("spot", FailureReason.CONNECTION)), Sleep)
    assert abandon.send(None) == Cancel("spot", "j1")
    with pytest.raises(StopIteration):  # the third failure (cancel_attempts) ends it quietly
        abandon.throw(fail("spot", FailureReason.CONNECTION))


def test_the_exchange_hands_answers_and_failures_to_the_steps() -> None:
    clock = Clock()
    breaker = CircuitBreaker(health_interval_s=None, clock=clock)
    exchange = Exchange(health_check(breaker, "spot"))
    with pytest.raises(RuntimeError, match="not finished"):
        _ = exchange.result
    seen: list[Request] = []
    for request in exchange:
        seen.append(request)
        exchange.fail(fail("spot", FailureReason.CONNECT, "refused"))
    assert seen == [Health("spot")]
    assert exchange.result is False and breaker.is_open("spot")
    assert breaker.reasons["spot"] == "health check failed: connect: refused"


# ------------------------------------------------------------ what RunPod really does (issue 17)
CHEAP = EndpointSpec("cheap", timeout_s=60.0, start_timeout_s=5.0)
TIERS = TierPair(spot=CHEAP, on_demand=EndpointSpec("reliable", timeout_s=60.0))


def test_a_job_still_queued_past_the_time_to_start_falls_back_with_health_saying_why() -> None:
    run, clock = make_run(TIERS)
    steps = run.steps(JOB)
    assert isinstance(next(steps), Submit)
    assert steps.send({"id": "c1", "status": "IN_QUEUE"}) == Sleep(0.1)
    clock.now = 4.5
    assert steps.send(None) == Status("cheap", "c1")
    assert steps.send({"id": "c1", "status": "IN_QUEUE"}) == Sleep(0.2)
    clock.now = 5.0  # the time-to-start is spent, the 60 s timeout is not
    assert steps.send(None) == Status("cheap", "c1")
    assert steps.send({"id": "c1", "status": "IN_QUEUE"}) == Health("cheap")
    health = {"jobs": {"inQueue": 1}, "workers": {"idle": 0, "running": 0, "throttled": 2}}
    assert steps.send(health) == Cancel("cheap", "c1")
    assert steps.send({"id": "c1", "status": "CANCELLED"}) == Submit("reliable", JOB, ttl_ms=None)
    result = finish(steps, done("r1"))
    cheap = result.attempts[0]
    assert (result.tier, cheap.outcome, cheap.cancelled) == ("on_demand", "start_timeout", True)
    assert "throttled workers (workers: throttled 2, running 0, idle 0)" in cheap.message


def test_the_poll_wakes_at_the_time_to_start_and_a_started_job_keeps_its_timeout() -> None:
    run, clock = make_run(TIERS, Policy(poll_initial_s=4.0, poll_max_s=4.0))
    steps = run.steps(JOB)
    next(steps)
    assert steps.send({"id": "c1", "status": "IN_QUEUE"}) == Sleep(4.0)
    clock.now = 4.0
    assert steps.send(None) == Status("cheap", "c1")
    assert steps.send({"id": "c1", "status": "IN_QUEUE"}) == Sleep(1.0)  # woken at the 5 s start, not at 8 s
    clock.now = 4.5
    assert steps.send(None) == Status("cheap", "c1")
    # taken by a worker before the time-to-start: from now on only the tier's timeout counts
    assert steps.send({"id": "c1", "status": "IN_PROGRESS", "delayTime": 3900}) == Sleep(4.0)
    clock.now = 30.0
    assert steps.send(None) == Status("cheap", "c1")
    result = finish(steps, done("c1"))
    assert (result.tier, result.attempts[0].outcome) == ("spot", "served")


def test_a_job_requeued_past_the_bound_after_its_worker_died_falls_back() -> None:
    run, clock = make_run(TIERS, Policy(max_worker_losses=1))
    steps = run.steps(JOB)
    next(steps)
    steps.send({"id": "c1", "status": "IN_PROGRESS"})
    clock.now = 1.0
    steps.send(None)
    # one loss: RunPod re-queued it; within the bound the job keeps its place (no time-to-start again)
    assert steps.send({"id": "c1", "status": "IN_QUEUE", "retries": 1}) == Sleep(0.2)
    clock.now = 8.0  # past the 5 s time-to-start: a re-queued job is not judged by it
    steps.send(None)
    assert steps.send({"id": "c1", "status": "IN_QUEUE", "retries": 2}) == Cancel("cheap", "c1")
    assert steps.send({"id": "c1", "status": "CANCELLED"}) == Submit("reliable", JOB, ttl_ms=None)
    result = finish(steps, done("r1"))
    assert (result.attempts[0].outcome, result.attempts[0].cancelled) == ("worker_lost", True)
    assert "died 2 times" in result.attempts[0].message


def test_a_tier_scaled_to_zero_is_skipped_at_once_and_looked_at_again_after_its_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(cooldown_s=30.0, health_interval_s=10.0, clock=clock)
    run = FallbackRun(TIERS, Policy(), breaker, clock, uniform=lambda _low, _high: 0.0, read_config=True)
    steps = run.steps(JOB)
    assert next(steps) == Health("cheap")
    assert steps.send({"workers": {"idle": 0}}) == Config("cheap")
    # no POST /run on the cheap tier: the reliable one gets the job at once
    assert steps.send({"id": "cheap", "workers": {"min": 0, "max": 0}, "flashboot": "FLASHBOOT"}) == Submit(
        "reliable", JOB, ttl_ms=None
    )
    result = finish(steps, done("r1"))
    assert (result.attempts[0].outcome, result.attempts[0].seconds) == ("scaled_to_zero", 0.0)
    # within the cool-down: skipped without asking anything
    clock.now = 20.0
    steps = run.steps(JOB)
    assert next(steps) == Submit("reliable", JOB, ttl_ms=None)
    assert finish(steps, done("r2")).attempts[0].outcome == "scaled_to_zero"
    # after it: asked again, and served once its workers are back
    clock.now = 31.0
    steps = run.steps(JOB)
    assert next(steps) == Health("cheap")
    assert steps.send({"workers": {"idle": 0}}) == Config("cheap")
    assert steps.send({"workers": {"min": 0, "max": 2}}) == Submit("cheap", JOB, ttl_ms=90_000)
    assert finish(steps, done("c3")).tier == "spot"


def test_a_failed_configuration_read_decides_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker(health_interval_s=10.0, clock=clock)
    run = FallbackRun(TIERS, Policy(), breaker, clock, read_config=True)
    steps = run.steps(JOB)
    assert next(steps) == Health("cheap")
    assert steps.send({"workers": {}}) == Config("cheap")
    assert steps.throw(fail("cheap", FailureReason.HTTP_ERROR)) == Submit("cheap", JOB, ttl_ms=90_000)
