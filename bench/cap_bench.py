"""The cap: the worst bill over the limit on the local platform, and what its checks cost a job.

    python -m bench cap

- **bill / limit**: a real worker (`python -m handler`) on the local platform with an API key,
  driven one job a second for three times the limit's seconds by jobs that never touch the
  budget (`/v1/models`), and by refused misses on a day earlier workers spent up to the margin
  kept for late starts. The bill is the platform's ledger (every worker process's life) plus
  what was spent before; goal <= 1.02.
- **reserve+settle p99**: a job's two budget calls against a real Redis, beside a raw PING on the
  same connection pool (the floor of any Redis call), and a heartbeat carrying 16 running jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from typing import Any

import aiohttp
import runpod

from bench.cache_bench import percentile
from devtools.platform import EndpointConfig, Platform
from devtools.redis_server import existing_or_new
from handler.budget import Budget
from handler.settings import REPO_ROOT, load_settings
from handler.store.redis_store import RedisStore
from tests.engine_support import worker_env

KEY = "bench-key"
PER_SECOND = 1.0  # USD per worker-second
LIMIT = 40.0
SAMPLES = 2000


async def _spend(url: str, namespace: str, usd: float) -> None:
    store = RedisStore(url)
    try:
        budget = Budget(store, load_settings({"BUDGET_NAMESPACE": namespace, "DAILY_BUDGET_USD": str(LIMIT)}).budget)
        await budget.settle(await budget.reserve("earlier", usd), usd, 0.0)
    finally:
        await store.close()


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    async with session.post(url, json=body) as response:
        await response.read()


async def _scenario(url: str, name: str, job: dict[str, Any], spent_before: float) -> float:
    namespace = f"bench-cap-{uuid.uuid4().hex[:8]}"
    if spent_before:
        await _spend(url, namespace, spent_before)
    async with Platform(api_key=KEY) as platform:
        runpod.endpoint_url_base, runpod.api_key = f"{platform.url}/v2", KEY
        env = worker_env(
            "tiny", REDIS_URL=url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace,
            GPU_HOURLY_RATE=str(PER_SECOND * 3600), WORKER_BOOT_SECONDS="0", BUDGET_HEARTBEAT_SECONDS="1",
            DAILY_BUDGET_USD=str(LIMIT), ENDPOINT_IDLE_TIMEOUT="5", ENDPOINT_WORKERS_MAX="2", RUNPOD_API_KEY=KEY,
        )  # fmt: skip
        ep = platform.add_endpoint(name, EndpointConfig(
            worker_command=[sys.executable, "-m", "handler"], env=env, workers_max=2, idle_timeout=5.0,
            gpu_hourly_rate=PER_SECOND * 3600, cwd=REPO_ROOT))  # fmt: skip
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
            for _ in range(3 * int(LIMIT)):
                if ep.config.workers_max == 0:
                    break
                with contextlib.suppress(TimeoutError):  # queued behind the stop: it waits for a worker
                    await asyncio.wait_for(_post(session, f"{platform.url}/v2/{name}/runsync", {"input": job}), 10)
                await asyncio.sleep(1.0)
        await ep.wait_workers(0, timeout=60)
        return (spent_before + ep.billed_seconds() * PER_SECOND) / LIMIT


async def _latency(url: str) -> list[dict[str, Any]]:
    store = RedisStore(url)
    namespace = f"bench-cap-{uuid.uuid4().hex[:8]}"
    budget = Budget(store, load_settings({"BUDGET_NAMESPACE": namespace, "DAILY_BUDGET_USD": "1000"}).budget)
    ping, job, beat = [], [], []
    running = {f"r{i}": 0.001 * i for i in range(16)}
    try:
        for i in range(SAMPLES):
            started = time.perf_counter()
            await store.ping()
            ping.append(time.perf_counter() - started)
            started = time.perf_counter()
            reservation = await budget.reserve(f"j{i}", 0.01)
            await budget.settle(reservation, 0.001, 0.005)
            job.append(time.perf_counter() - started)
            started = time.perf_counter()
            await budget.accrue({"idle": 0.0001 * i}, 0.005, {k: v + 0.0001 * i for k, v in running.items()})
            beat.append(time.perf_counter() - started)
    finally:
        await store.close()
    ms = 1000.0
    return [
        {"metric": "cap: reserve+settle p99", "value": round(percentile(job, 0.99) * ms, 3), "unit": "ms",
         "goal": "< 1 ms"},
        {"metric": "cap: raw Redis PING p99 (same run)", "value": round(percentile(ping, 0.99) * ms, 3), "unit": "ms",
         "goal": ""},
        {"metric": "cap: heartbeat with 16 running jobs p99", "value": round(percentile(beat, 0.99) * ms, 3),
         "unit": "ms", "goal": ""},
    ]  # fmt: skip


async def measure(url: str) -> list[dict[str, Any]]:
    rows = await _latency(url)
    worst = max(
        await _scenario(url, "models", {"openai_route": "/v1/models"}, 0.0),
        # the most earlier workers leave spent: they stop once spent and their tail pass the limit less
        # the margin kept for workers still to start, 2 x (2 s start + 7 s tail) here
        await _scenario(url, "refused", {"prompt": "one more?", "cache": {"bypass": True}}, LIMIT - 18.0),
    )
    rows.append({"metric": "cap: worst bill / limit", "value": round(worst, 3), "unit": "x", "goal": "<= 1.02"})
    return rows


def run() -> list[dict[str, Any]]:
    with existing_or_new() as (url, _private):
        return asyncio.run(measure(url))
