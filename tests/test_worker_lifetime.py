"""A worker's boot and exit seconds in the budget, against its process's real start and end seen from outside.

The real worker (`python -m handler`) runs on the local platform, with a container start that the
platform delays and bills (as RunPod bills the image's start before Python runs) and the worker is
told of (WORKER_BOOT_SECONDS). Its jobs are `/v1/models` calls, which never start the engine, so the
test takes seconds. The budget's figures are checked against the platform's ledger (the worker's
life from its start to the moment its process was reaped) and against /proc (the process's start
time, and the moment its pid is gone, polled by the test).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from devtools.platform import EndpointConfig, Platform
from handler.budget import Budget
from handler.exposure import EXIT_ALLOWANCE_S
from handler.settings import load_settings
from handler.store.redis_store import RedisStore
from tests.engine_support import require_model, worker_env
from tests.platform_support import API_KEY, REPO_ROOT, Client, ProcWatch, running_platform

pytestmark = pytest.mark.redis
PER_SECOND = 1.0  # USD per worker-second: a dollar figure is a number of seconds
CONTAINER_START_S = 1.0  # billed by the platform before the worker process runs; the worker is told of it
# How far the budget's boot may be from the platform's initializing seconds: the worker's last step
# before it is ready (the SDK's first job-take) and the ledger's reading of it, on a loaded machine.
BOOT_SLACK_S = 0.5
# The budget may count more than the bill by at most the exit allowance and this (heartbeat rounding,
# the platform's late reaping of the process)
OVER_SLACK_S = 0.5


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    require_model("tiny")  # resolved at start; these jobs never start its engine
    async with running_platform(monkeypatch) as server:
        yield server


async def test_boot_and_exit_seconds_cover_the_process_life(platform: Platform, redis_url: str) -> None:
    namespace = f"life-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        "tiny", REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace,
        GPU_HOURLY_RATE=str(PER_SECOND * 3600), WORKER_BOOT_SECONDS=str(CONTAINER_START_S),
        BUDGET_HEARTBEAT_SECONDS="1", DAILY_BUDGET_USD="1000", ENDPOINT_IDLE_TIMEOUT="2", ENDPOINT_WORKERS_MAX="1",
    )  # fmt: skip
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"], env=env, workers_max=1, idle_timeout=2.0,
        container_start_delay=CONTAINER_START_S, gpu_hourly_rate=PER_SECOND * 3600, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("life", config)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        client = Client(session, platform.url, "life")
        first = asyncio.create_task(client.call("POST", "runsync", {"input": {"openai_route": "/v1/models"}}))
        for _ in range(6000):  # the process, watched from the moment its pid is known
            pids = [e.pid for e in ep.ledger() if e.pid]
            if pids:
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError(f"no worker process started: {ep.health()}")
        watch = ProcWatch(pids[0])
        exited = asyncio.create_task(watch.wait_exit(120))
        status, body = await first
        assert status == 200 and body["status"] == "COMPLETED", body
        status, body = await client.call("POST", "runsync", {"input": {"openai_route": "/v1/models"}})
        assert status == 200 and body["status"] == "COMPLETED", body
        await exited
    await ep.wait_workers(0, timeout=60)
    (entry,) = ep.ledger()
    assert entry.stop_reason == "idle timeout" and entry.jobs_taken == 2
    store = RedisStore(redis_url)
    try:
        state = await Budget(store, load_settings({"BUDGET_NAMESPACE": namespace}).budget).state()
    finally:
        await store.close()
    assert watch.exited_at is not None
    lived = CONTAINER_START_S + watch.exited_at - watch.started_at  # /proc: the process, after its container start
    print(
        f"process lived {lived:.3f} s by /proc, {entry.lifetime_seconds:.3f} s by the ledger (initializing "
        f"{entry.seconds['initializing']:.3f}); budget spent {state.spent_usd:.3f} (boot {state.boot_usd:.3f}, "
        f"idle {state.idle_usd:.3f}, jobs {state.jobs_usd:.3f})"
    )
    # boot: the container start and the process until it takes jobs, as the platform saw them
    assert state.boot_usd == pytest.approx(entry.seconds["initializing"] * PER_SECOND, abs=BOOT_SLACK_S)
    # the whole life, its exit included: never less than the bill (the exit allowance covers the
    # process's last moments after its final settlement), more by at most that allowance
    for bill in (lived, entry.lifetime_seconds):
        assert bill * PER_SECOND <= state.spent_usd <= (bill + EXIT_ALLOWANCE_S + OVER_SLACK_S) * PER_SECOND
    assert state.reserved_usd == 0
