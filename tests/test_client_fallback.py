"""Fallback client against the local RunPod API: the fault matrix, sync and async.

The handler here is a small stand-in (tests/test_e2e_fallback.py runs the real
worker); the server runs it the way the runpod SDK's worker does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from client.breaker import CircuitBreaker
from client.endpoint_api import AsyncEndpointAPI, EndpointAPI
from client.errors import AllTiersFailed, FailureReason, JobRejected
from client.fallback import EndpointSpec, FallbackClient, FallbackResult, Policy, TierPair
from client.fallback_async import AsyncFallbackClient
from client.routed import AsyncRoutedClient, RoutedClient
from client.routing import Router, Thresholds
from devtools.fake_jobs import Backend, Fault, JobRecord
from devtools.fake_runpod import FakeRunPod

FAST = Policy(backoff_initial_s=0.01, backoff_max_s=0.05, poll_initial_s=0.02, poll_max_s=0.1)
PAIR = TierPair(spot=EndpointSpec("spot", timeout_s=0.6, max_attempts=2), on_demand=EndpointSpec("ondemand", 10.0))


async def small_handler(job: dict[str, Any]) -> dict[str, Any]:
    data = job["input"]
    if data.get("bad"):
        return {"error": json.dumps({"type": "validation_error", "message": "prompt is empty", "field": "prompt"})}
    if data.get("fail"):
        return {"error": json.dumps({"type": "engine_crashed", "message": "engine died", "field": None})}
    return {"text": str(data.get("prompt", "")).upper()}


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunPod]:
    server = FakeRunPod(Backend(small_handler), api_key="test-key")
    await server.start()
    yield server
    await server.stop()


async def run(fake: FakeRunPod, mode: str, job: dict[str, Any], **kw: Any) -> FallbackResult:
    """One call through the sync client (in a thread) or the async client."""
    breaker = CircuitBreaker(health_interval_s=None, failure_threshold=kw.pop("failure_threshold", 3))
    if mode == "sync":
        client = FallbackClient(PAIR, api=EndpointAPI(f"{fake.url}/v2", "test-key"), policy=FAST, breaker=breaker)
        try:
            return await asyncio.to_thread(client.run_sync, job, **kw)
        finally:
            client.close()
    aclient = AsyncFallbackClient(
        PAIR, api=AsyncEndpointAPI(f"{fake.url}/v2", "test-key"), policy=FAST, breaker=breaker
    )
    try:
        return await aclient.run_sync(job, **kw)
    finally:
        await aclient.aclose()


MODES = ["sync", "async"]


async def wait_stopped(fake: FakeRunPod, job: JobRecord, seconds: float = 10.0) -> None:
    """Until the job's work has ended in the fake (its task is done). A spot job the client gave up but
    did not stop runs on (the `slow` fault: an hour) and fails this, which no short sleep could tell."""
    await fake.jobs.wait(job, seconds)
    assert job.task is not None and job.task.done(), f"{job.id} ({job.status}) still running {seconds} s on"


@pytest.mark.parametrize("mode", MODES)
async def test_spot_serves_when_healthy(fake: FakeRunPod, mode: str) -> None:
    result = await run(fake, mode, {"prompt": "hi"})
    assert (result.tier, result.endpoint_id, result.output) == ("spot", "spot", {"text": "HI"})
    assert [a.outcome for a in result.attempts] == ["served"]
    assert fake.jobs_of("ondemand") == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("fault", "reason", "spot_job_created"),
    [
        (Fault("slow"), FailureReason.TIMEOUT, True),
        (Fault("throttled"), FailureReason.THROTTLED, False),
        (Fault("no_capacity"), FailureReason.NO_CAPACITY, True),
        (Fault("worker_lost", lost_after=0.05), FailureReason.WORKER_LOST, True),
        # POST /run answered 5xx or dropped once sent: a job may exist, so it is not resent (test_client_retry.py)
        (Fault("server_error", status=502), FailureReason.SUBMIT_UNKNOWN, False),
        (Fault("drop"), FailureReason.SUBMIT_UNKNOWN, False),
    ],
    ids=lambda v: v.mode if isinstance(v, Fault) else str(v),
)
async def test_each_spot_fault_falls_back_to_on_demand(
    fake: FakeRunPod, mode: str, fault: Fault, reason: FailureReason, spot_job_created: bool
) -> None:
    fake.set_fault("spot", fault)
    result = await run(fake, mode, {"prompt": "hi"})
    assert (result.tier, result.output) == ("on_demand", {"text": "HI"})
    assert [(a.tier, a.outcome) for a in result.attempts] == [("spot", reason.value), ("on_demand", "served")]
    spot_jobs = fake.jobs_of("spot")
    assert len(spot_jobs) == (1 if spot_job_created else 0)
    for job in spot_jobs:
        await wait_stopped(fake, job)  # a surviving spot job would still run (or have completed)
        assert not job.completed and not job.handler_completed, job
    if reason in (FailureReason.TIMEOUT, FailureReason.NO_CAPACITY):
        assert result.attempts[0].cancelled and spot_jobs[0].cancelled and spot_jobs[0].status == "CANCELLED"
    if fault.mode == "throttled":  # retried with backoff on spot before giving up
        assert result.attempts[0].message.startswith("HTTP 429")


@pytest.mark.parametrize("mode", MODES)
async def test_transient_429_is_retried_on_the_same_endpoint(fake: FakeRunPod, mode: str) -> None:
    fake.set_fault("spot", Fault("throttled", times=1))
    result = await run(fake, mode, {"prompt": "again"})
    assert result.tier == "spot" and result.output == {"text": "AGAIN"}
    assert fake.endpoint("spot").fault.times == 0  # the first try was refused, the retry served


@pytest.mark.parametrize("mode", MODES)
async def test_validation_error_never_falls_back(fake: FakeRunPod, mode: str) -> None:
    with pytest.raises(JobRejected) as info:
        await run(fake, mode, {"bad": True})
    assert info.value.reason == FailureReason.REJECTED
    assert info.value.worker_error == {"type": "validation_error", "message": "prompt is empty", "field": "prompt"}
    assert len(fake.jobs_of("spot")) == 1 and fake.jobs_of("ondemand") == []


@pytest.mark.parametrize("mode", MODES)
async def test_other_worker_error_falls_back(fake: FakeRunPod, mode: str) -> None:
    fake.set_fault("ondemand", Fault("server_error"))
    with pytest.raises(AllTiersFailed) as info:
        await run(fake, mode, {"fail": True})
    assert info.value.spot is not None and info.value.spot.reason == FailureReason.JOB_ERROR
    assert info.value.spot.worker_error is not None and info.value.spot.worker_error["type"] == "engine_crashed"
    assert info.value.on_demand.reason == FailureReason.SUBMIT_UNKNOWN


@pytest.mark.parametrize("mode", MODES)
async def test_both_down_raises_typed_error_with_both_causes(fake: FakeRunPod, mode: str) -> None:
    fake.set_fault("spot", Fault("drop"))
    fake.set_fault("ondemand", Fault("throttled"))
    with pytest.raises(AllTiersFailed) as info:
        await run(fake, mode, {"prompt": "x"})
    assert info.value.spot is not None
    assert (info.value.spot.reason, info.value.on_demand.reason) == (
        FailureReason.SUBMIT_UNKNOWN,
        FailureReason.THROTTLED,
    )
    assert "spot" in str(info.value) and "on-demand" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
async def test_callers_timeout_bounds_the_whole_call(fake: FakeRunPod, mode: str) -> None:
    fake.set_fault("spot", Fault("slow"))
    fake.set_fault("ondemand", Fault("slow"))
    with pytest.raises(AllTiersFailed) as info:
        await run(fake, mode, {"prompt": "x"}, timeout=1.0)
    assert info.value.on_demand.reason == FailureReason.TIMEOUT
    assert all(job.cancelled and not job.completed for job in fake.jobs.jobs.values())


async def test_health_check_takes_spot_out_of_rotation(fake: FakeRunPod) -> None:
    fake.set_fault("spot", Fault("no_capacity"))
    clock = [0.0]
    breaker = CircuitBreaker(cooldown_s=60, health_interval_s=30, clock=lambda: clock[0])
    client = FallbackClient(PAIR, api=EndpointAPI(f"{fake.url}/v2", "test-key"), policy=FAST, breaker=breaker)
    try:
        result = await asyncio.to_thread(client.run_sync, {"prompt": "a"})
        assert result.tier == "on_demand"
        assert result.attempts[0].outcome == "circuit_open" and "no capacity" in result.attempts[0].message
        assert fake.jobs_of("spot") == []  # never even submitted
        fake.set_fault("spot", Fault())
        clock[0] += 61  # the cool-down passes; the next health check finds spot serving again
        result = await asyncio.to_thread(client.run_sync, {"prompt": "b"})
        assert result.tier == "spot"
    finally:
        client.close()


async def test_repeated_failures_open_the_circuit(fake: FakeRunPod) -> None:
    fake.set_fault("spot", Fault("server_error"))
    breaker = CircuitBreaker(health_interval_s=None, failure_threshold=2)
    client = FallbackClient(PAIR, api=EndpointAPI(f"{fake.url}/v2", "test-key"), policy=FAST, breaker=breaker)
    try:
        outcomes = [(await asyncio.to_thread(client.run_sync, {"prompt": "x"})).attempts[0].outcome for _ in range(3)]
    finally:
        client.close()
    assert outcomes == ["submit_unknown", "submit_unknown", "circuit_open"]


async def test_cancelled_async_caller_cancels_the_spot_job(fake: FakeRunPod) -> None:
    fake.set_fault("spot", Fault("slow"))
    pair = TierPair(spot=EndpointSpec("spot", timeout_s=30), on_demand=EndpointSpec("ondemand"))
    client = AsyncFallbackClient(
        pair,
        api=AsyncEndpointAPI(f"{fake.url}/v2", "test-key"),
        policy=FAST,
        breaker=CircuitBreaker(health_interval_s=None),
    )
    task = asyncio.ensure_future(client.run_sync({"prompt": "x"}))
    while not fake.jobs_of("spot") or fake.jobs_of("spot")[0].status != "IN_PROGRESS":  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # the client is now polling
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.aclose()
    job = fake.jobs_of("spot")[0]
    await wait_stopped(fake, job)  # stopped, not left to run its hour
    assert job.cancelled and not job.completed and not job.handler_completed


async def test_routed_client_sends_each_size_to_its_tier(fake: FakeRunPod) -> None:
    router = Router(
        {
            "small": TierPair(spot=EndpointSpec("small-spot", 5.0), on_demand=EndpointSpec("small-od", 5.0)),
            "large": TierPair(on_demand=EndpointSpec("large-od", 5.0)),
        },
        Thresholds(small_below=100, medium_below=1000),
    )
    fake.set_fault("small-spot", Fault("server_error"))
    client = RoutedClient(router, api=EndpointAPI(f"{fake.url}/v2", "test-key"), policy=FAST)
    try:
        # ceil(2/4) = 1 + 10 = 11 tokens: small; its spot fails -> small's on-demand
        small = await asyncio.to_thread(client.run_sync, {"prompt": "hi", "sampling_params": {"max_tokens": 10}})
        # 1 + 500 = 501: medium, not configured -> large
        large = await asyncio.to_thread(client.run_sync, {"prompt": "hi", "sampling_params": {"max_tokens": 500}})
    finally:
        client.close()
    assert (small.route, small.tier, small.endpoint_id) == ("small", "on_demand", "small-od")
    assert (large.route, large.tier, large.endpoint_id) == ("large", "on_demand", "large-od")

    aclient = AsyncRoutedClient(router, api=AsyncEndpointAPI(f"{fake.url}/v2", "test-key"), policy=FAST)
    try:
        again = await aclient.run_sync({"prompt": "hi", "sampling_params": {"max_tokens": 10}})
    finally:
        await aclient.aclose()
    assert (again.route, again.endpoint_id) == ("small", "small-od")
