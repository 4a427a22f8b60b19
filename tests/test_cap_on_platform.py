"""The cap bounds the bill, not only counts it: the real worker on the local platform, kept busy by
jobs that never touch the budget (`/v1/models`), stops past the limit and scales its endpoint to zero.

Before, such jobs (and cache hits, and refusals) restarted the idle timer forever: one request every
4 s held a $0.10 limit to 36x in an hour. The bill here is the platform's ledger (every worker
process's life), never the budget's own figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from devtools.platform import EndpointConfig, Platform
from handler.budget import Budget
from handler.settings import load_settings
from handler.store.redis_store import RedisStore
from tests.engine_support import require_model, worker_env
from tests.platform_support import API_KEY, REPO_ROOT, Client, running_platform, wait_status

pytestmark = pytest.mark.redis
PER_SECOND = 1.0  # USD per worker-second: a dollar figure is a number of seconds
LIMIT = 40.0  # less the fleet margin (2 workers x (2 s start + 7 s tail)): 22 s for this worker


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    require_model("tiny")  # resolved at start; these jobs never start its engine
    async with running_platform(monkeypatch) as server:
        yield server


async def test_jobs_that_never_spend_cannot_keep_a_worker_billed_past_the_limit(
    platform: Platform, redis_url: str
) -> None:
    namespace = f"cap-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        "tiny", REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace,
        GPU_HOURLY_RATE=str(PER_SECOND * 3600), WORKER_BOOT_SECONDS="0", BUDGET_HEARTBEAT_SECONDS="1",
        DAILY_BUDGET_USD=str(LIMIT), ENDPOINT_IDLE_TIMEOUT="5", ENDPOINT_WORKERS_MAX="2", RUNPOD_API_KEY=API_KEY,
    )  # fmt: skip
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"], env=env, workers_max=2, idle_timeout=5.0,
        gpu_hourly_rate=PER_SECOND * 3600, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("cap", config)
    answered = 0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        client = Client(session, platform.url, "cap")
        for _ in range(3 * int(LIMIT)):  # a job a second for three times the limit's seconds
            if ep.config.workers_max == 0:
                break
            with contextlib.suppress(TimeoutError):  # queued behind the stop: it waits for a worker
                status, body = await asyncio.wait_for(
                    client.call("POST", "runsync", {"input": {"openai_route": "/v1/models"}}), 10
                )
                answered += status == 200 and body.get("status") == "COMPLETED"
            await asyncio.sleep(1.0)
    await ep.wait_workers(0, timeout=60)
    billed = ep.billed_seconds() * PER_SECOND  # the platform's ledger: every worker's life
    store = RedisStore(redis_url)
    try:
        state = await Budget(store, load_settings({"BUDGET_NAMESPACE": namespace}).budget).state()
    finally:
        await store.close()
    for entry in ep.ledger():
        print(f"  {entry.worker_id}: {entry.lifetime_seconds:.1f} s, {entry.jobs_taken} jobs, {entry.stop_reason}")
    print(f"billed {billed:.1f} of {LIMIT:.0f} ({billed / LIMIT:.2f}); budget spent {state.spent_usd:.1f}; "
          f"{answered} jobs answered")  # fmt: skip
    assert answered >= 1
    # it served until the limit came near: it stops once spent and its own 7 s tail pass 22 s
    assert state.spent_usd >= 22.0 - 7.0 - 1.0
    assert (ep.config.workers_min, ep.config.workers_max) == (0, 0)  # RunPod starts no more workers
    assert billed <= LIMIT  # the promise
    # the budget counted what the ledger billed; the process's exit after its last settlement is an
    # allowance (EXIT_ALLOWANCE_S), which a loaded machine stretches (seen: 16.1 counted of 20.9 billed
    # in a clean-clone make test beside other work; 16.7 of 15.9 on a quiet one)
    assert state.spent_usd == pytest.approx(billed, rel=0.25)


async def test_without_an_api_key_each_worker_started_past_the_limit_exits_at_its_first_heartbeat(
    platform: Platform, redis_url: str
) -> None:
    """No key: RunPod keeps starting workers for queued jobs after the day is spent (100 late starts
    once billed 1.82x a limit). Each one now sees the spent day at its first heartbeat, refuses the
    jobs queued for it at once and exits one heartbeat after the last: its bill is its start and a
    heartbeat (the README's per-start figure), not an idle tail per job. (Left queued, the jobs made
    the endpoint start 24 workers for 20 jobs.)"""
    namespace = f"late-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        "tiny", REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace,
        GPU_HOURLY_RATE=str(PER_SECOND * 3600), WORKER_BOOT_SECONDS="0", BUDGET_HEARTBEAT_SECONDS="1",
        DAILY_BUDGET_USD=str(LIMIT), ENDPOINT_IDLE_TIMEOUT="5", ENDPOINT_WORKERS_MAX="2",
    )  # fmt: skip
    store = RedisStore(redis_url)
    try:  # earlier workers spent the day up to the margin kept for late starts
        spender = Budget(store, load_settings({"BUDGET_NAMESPACE": namespace, "DAILY_BUDGET_USD": str(LIMIT)}).budget)
        await spender.settle(await spender.reserve("earlier", 22.0), 22.0, 0.0)
    finally:
        await store.close()
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"], env=env, workers_max=2, idle_timeout=5.0,
        gpu_hourly_rate=PER_SECOND * 3600, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("late", config)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        client = Client(session, platform.url, "late")
        jobs = []
        for i in range(20):  # a job every second: the endpoint keeps starting workers for them
            jobs.append(await client.run({"prompt": f"one more {i}?", "cache": {"bypass": True}}))
            await asyncio.sleep(1.0)
        # refused, not left queued (each queued job would start yet another worker)
        states = [await wait_status(client, job["id"], {"COMPLETED", "FAILED"}, seconds=60) for job in jobs]
    assert {orjson.loads(state["error"])["type"] for state in states} == {"budget_exceeded"}
    await ep.wait_workers(0, timeout=60)
    lives = [entry.lifetime_seconds for entry in ep.ledger()]
    print(f"{len(lives)} late workers, lives {[round(s, 1) for s in lives]} s, billed {sum(lives):.1f}")
    assert len(lives) >= 2  # RunPod kept starting them
    # each: its process start (about 1-2 s here, more on a loaded machine) and one heartbeat; an
    # idle tail (5 s) restarted by every refused job would have kept the first alive throughout
    assert all(life < 5.0 for life in lives), lives
