"""The cheap tier first, the reliable tier after, on the local RunPod platform (issue 17).

Both tiers are endpoints of `devtools.platform` running the SDK's own worker loop
(`devtools.platform.echo_worker`, real processes, a per-second ledger). The caller is the
real `AsyncFallbackClient` over HTTP. What RunPod really does to a cheap tier is done to
it here: no capacity (its workers throttled), workers max 0 (a spent budget scaled it
down), and a job slower than the tier's budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from client.breaker import CircuitBreaker
from client.endpoint_api import AsyncEndpointAPI
from client.fallback import EndpointSpec, Policy, TierPair
from client.fallback_async import AsyncFallbackClient
from core.endpoints import get_endpoint
from devtools.platform import Platform
from tests.platform_support import API_KEY, FAST, echo_config, running_platform

POLICY = Policy(backoff_initial_s=0.01, backoff_max_s=0.05, poll_initial_s=0.05, poll_max_s=0.2, ttl_margin_s=5.0)


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    async with running_platform(monkeypatch, FAST) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def tiers(platform: Platform, **cheap: Any) -> TierPair:
    platform.add_endpoint("cheap", echo_config(workers_max=1))
    platform.add_endpoint("reliable", echo_config(workers_max=1))
    return TierPair(spot=EndpointSpec("cheap", **cheap), on_demand=EndpointSpec("reliable", timeout_s=60.0))


def caller(platform: Platform, pair: TierPair, breaker: CircuitBreaker, **kwargs: Any) -> AsyncFallbackClient:
    api = AsyncEndpointAPI(f"{platform.url}/v2", API_KEY)
    return AsyncFallbackClient(pair, api=api, policy=POLICY, breaker=breaker, **kwargs)


def read_endpoint(platform: Platform) -> Any:
    """The management API's read of an endpoint (REST v2 GET /v2/serverless/{id}), as a caller wires it."""
    return lambda endpoint_id: get_endpoint(endpoint_id, api_key=API_KEY, base_url=platform.url)


async def test_a_throttled_cheap_tier_falls_back_within_the_callers_deadline(platform: Platform) -> None:
    pair = tiers(platform, timeout_s=20.0, start_timeout_s=1.0)
    cheap = platform.endpoints["cheap"]
    cheap.set_no_capacity(True)  # RunPod has no GPU of the cheap pools to give: its workers are throttled
    client = caller(platform, pair, CircuitBreaker(health_interval_s=None))
    started = time.monotonic()
    result = await client.run_sync({"n": 1}, timeout=15.0)
    took = time.monotonic() - started
    await client.aclose()
    first = result.attempts[0]
    assert (result.tier, result.output["echo"], first.outcome, first.cancelled) == (
        "on_demand", {"n": 1}, "start_timeout", True)  # fmt: skip
    assert "throttled workers" in first.message
    # gave up at the 1 s time-to-start (its cancel included), not at the 20 s timeout nor the caller's 15 s
    assert 1.0 <= first.seconds < 10.0 and took < 15.0
    # the cheap job can never run later: it is cancelled, and it carried a ttl (its budget + margin)
    job = cheap.board.jobs[first.job_id or ""]
    assert job.status == "CANCELLED" and job.policy.ttl == pytest.approx(15.0 + 5.0)  # the budget left, + margin
    cheap.set_no_capacity(False)
    assert cheap.ledger() == []  # no cheap worker ever ran: nothing billed there
    assert len(platform.endpoints["reliable"].ledger()) == 1


async def test_a_cheap_tier_at_workers_max_zero_is_skipped_at_once_and_retried_after_its_cool_down(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    pair = tiers(platform, timeout_s=20.0, start_timeout_s=10.0)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    scaled = await session.patch(f"{platform.url}/v2/serverless/cheap", json={"workers": {"max": 0}}, headers=headers)
    assert scaled.status == 200 and (await scaled.json())["workers"]["max"] == 0
    breaker = CircuitBreaker(cooldown_s=1.5, health_interval_s=0.0)
    client = caller(platform, pair, breaker, endpoints=read_endpoint(platform))
    started = time.monotonic()
    first = await client.run_sync({"n": 1}, timeout=30.0)
    assert (first.tier, first.attempts[0].outcome, first.attempts[0].job_id) == ("on_demand", "scaled_to_zero", None)
    assert time.monotonic() - started < 5.0  # not its 10 s time-to-start: skipped at once
    second = await client.run_sync({"n": 2}, timeout=30.0)  # within the cool-down: not even asked
    assert (second.tier, second.attempts[0].outcome) == ("on_demand", "scaled_to_zero")
    assert platform.endpoints["cheap"].board.jobs == {}  # no job was ever sent to the cheap tier
    back = await session.patch(f"{platform.url}/v2/serverless/cheap", json={"workers": {"max": 1}}, headers=headers)
    assert back.status == 200
    await _sleep_past(breaker, "cheap")
    third = await client.run_sync({"n": 3}, timeout=30.0)
    await client.aclose()
    assert (third.tier, third.output["echo"]) == ("spot", {"n": 3})


async def test_a_slow_cheap_job_is_cancelled_and_runs_once_on_the_reliable_tier(platform: Platform) -> None:
    pair = tiers(platform, timeout_s=3.0)
    client = caller(platform, pair, CircuitBreaker(health_interval_s=None))
    result = await client.run_sync({"sleep": 5.0}, timeout=40.0)  # the cheap worker starts it, too slowly
    await client.aclose()
    first = result.attempts[0]
    assert (result.tier, first.outcome, first.cancelled) == ("on_demand", "timeout", True)
    cheap = platform.endpoints["cheap"].board.counters
    assert (cheap.cancelled, cheap.completed) == (1, 0)
    await asyncio.sleep(6.0)  # longer than the job would have run: it must never complete on the cheap tier
    assert platform.endpoints["cheap"].board.counters.completed == 0
    assert platform.endpoints["reliable"].board.counters.completed == 1
    assert result.output["echo"] == {"sleep": 5.0}


async def _sleep_past(breaker: CircuitBreaker, endpoint_id: str) -> None:
    while breaker.is_open(endpoint_id):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
