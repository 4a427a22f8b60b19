"""End to end: fallback client -> local RunPod API -> the real worker (tiny model on vLLM CPU).

Both endpoints run the worker the way RunPod does (`generator_handler` with
`return_aggregate_stream`, as handler/__main__.py registers it on RunPod).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import runpod

from client.breaker import CircuitBreaker
from client.endpoint_api import AsyncEndpointAPI, EndpointAPI
from client.errors import AllTiersFailed, FailureReason, JobRejected
from client.fallback import EndpointSpec, FallbackClient, Policy, TierPair
from client.fallback_async import AsyncFallbackClient
from devtools.fake_jobs import Backend, Fault
from devtools.fake_runpod import FakeRunPod
from handler.app import App

pytestmark = pytest.mark.engine

POLICY = Policy(backoff_initial_s=0.01, backoff_max_s=0.05, poll_initial_s=0.05, poll_max_s=0.2)
# on-demand may have to start the engine (1-3 minutes on CPU) on its first job
PAIR = TierPair(spot=EndpointSpec("spot", timeout_s=2.0, max_attempts=2), on_demand=EndpointSpec("ondemand", 600.0))


@pytest.fixture
async def fake(tiny_app: App, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeRunPod]:
    backend = Backend(
        tiny_app.generator_handler, return_aggregate_stream=True, concurrency=tiny_app.concurrency_modifier(0)
    )
    server = FakeRunPod(backend, api_key="e2e")
    url = await server.start()
    monkeypatch.setattr(runpod, "endpoint_url_base", f"{url}/v2")
    monkeypatch.setattr(runpod, "api_key", "e2e")
    yield server
    await server.stop()


def job(max_tokens: int = 8) -> dict[str, Any]:
    """A fresh deterministic request that bypasses the cache, so the engine really serves it."""
    return {
        "prompt": f"Hello {uuid.uuid4().hex[:6]}",
        "sampling_params": {"max_tokens": max_tokens, "temperature": 0},
        "cache": {"bypass": True},
    }


def answer_text(output: Any) -> str:
    assert isinstance(output, list) and output, output  # aggregated stream: the pieces
    text = output[-1].get("text")
    assert isinstance(text, str), output
    return text


def sync_client(fake: FakeRunPod) -> FallbackClient:
    return FallbackClient(
        PAIR, api=EndpointAPI(f"{fake.url}/v2", "e2e"), policy=POLICY, breaker=CircuitBreaker(health_interval_s=None)
    )


async def test_sdk_run_sync_reaches_the_real_worker(fake: FakeRunPod) -> None:
    output = await asyncio.to_thread(lambda: runpod.Endpoint("ondemand").run_sync(job(), timeout=600))
    assert answer_text(output)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("slow"), FailureReason.TIMEOUT),
        (Fault("throttled"), FailureReason.THROTTLED),
        (Fault("no_capacity"), FailureReason.NO_CAPACITY),
        (Fault("worker_lost", lost_after=0.05), FailureReason.WORKER_LOST),
        (Fault("server_error"), FailureReason.SUBMIT_UNKNOWN),  # POST /run lost once sent: not resent
        (Fault("drop"), FailureReason.SUBMIT_UNKNOWN),
    ],
    ids=lambda v: v.mode if isinstance(v, Fault) else str(v),
)
async def test_fault_matrix_falls_back_and_succeeds(fake: FakeRunPod, fault: Fault, reason: FailureReason) -> None:
    fake.set_fault("spot", fault)
    client = sync_client(fake)
    try:
        result = await asyncio.to_thread(client.run_sync, job())
    finally:
        client.close()
    assert result.tier == "on_demand" and answer_text(result.output)
    assert [(a.tier, a.outcome) for a in result.attempts] == [("spot", reason.value), ("on_demand", "served")]
    await asyncio.sleep(0.3)
    for spot_job in fake.jobs_of("spot"):  # a cancelled or lost spot job never also completes
        assert not spot_job.completed and not spot_job.handler_completed
    (od_job,) = fake.jobs_of("ondemand")
    assert od_job.completed


async def test_cancelled_spot_job_is_never_completed_nor_billed_after_cancel(fake: FakeRunPod) -> None:
    fake.set_fault("spot", Fault("slow", slow_seconds=2.5))  # spot (timeout 2 s) would finish soon after
    client = AsyncFallbackClient(
        PAIR,
        api=AsyncEndpointAPI(f"{fake.url}/v2", "e2e"),
        policy=POLICY,
        breaker=CircuitBreaker(health_interval_s=None),
    )
    try:
        result = await client.run_sync(job(), timeout=600)
    finally:
        await client.aclose()
    assert result.tier == "on_demand" and result.attempts[0].cancelled
    (spot_job,) = fake.jobs_of("spot")
    billed = spot_job.billed_seconds
    await asyncio.sleep(2.0)  # past the moment the spot job would have finished
    assert spot_job.status == "CANCELLED" and not spot_job.completed and not spot_job.handler_completed
    assert spot_job.billed_seconds == billed  # billing stopped at the cancel


async def test_bad_input_is_rejected_without_fallback(fake: FakeRunPod) -> None:
    client = sync_client(fake)
    try:
        with pytest.raises(JobRejected) as info:
            await asyncio.to_thread(client.run_sync, {"prompt": "x", "sampling_params": {"max_tokens": 0}})
    finally:
        client.close()
    assert info.value.worker_error is not None and info.value.worker_error["type"] == "validation_error"
    assert info.value.worker_error["field"]
    assert fake.jobs_of("ondemand") == []


async def test_both_down_gives_the_typed_error(fake: FakeRunPod) -> None:
    fake.set_fault("spot", Fault("worker_lost", lost_after=0.05))
    fake.set_fault("ondemand", Fault("server_error", status=500))
    client = sync_client(fake)
    try:
        with pytest.raises(AllTiersFailed) as info:
            await asyncio.to_thread(client.run_sync, job())
    finally:
        client.close()
    assert info.value.spot is not None and info.value.spot.reason == FailureReason.WORKER_LOST
    assert info.value.on_demand.reason == FailureReason.SUBMIT_UNKNOWN
