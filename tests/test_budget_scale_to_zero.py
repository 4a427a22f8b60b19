"""Scale to zero: when the day's budget is spent, the worker scales its own endpoint to zero through
RunPod's REST API v2 (here the local platform's management routes), refuses the job and stops.
The endpoint keeps the rest of its configuration, FlashBoot included; `python -m handler.resume`
brings its workers back once the next budget day begins."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest

from core.endpoints import create_endpoint, get_endpoint
from devtools.platform import Platform
from handler import pause
from handler.app import create_app
from handler.budget import Budget
from handler.errors import ConfigError
from handler.resume import resume_once
from handler.store.redis_store import RedisStore
from tests.engine_support import require_model, settings_for
from tests.platform_support import echo_config

pytestmark = pytest.mark.redis
KEY = "worker-key"


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    async with Platform(api_key=KEY, default_config=echo_config(workers_max=0)) as server:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)  # what a deployed worker is given
        yield server


async def test_spent_budget_scales_the_endpoint_to_zero_and_keeps_flashboot(platform: Platform, redis_url: str) -> None:
    body = {
        "name": "budgeted", "type": "QUEUE", "image": "frugal-worker:latest", "gpu": {"pools": ["ADA_24"]},
        "workers": {"min": 1, "max": 3, "idleTimeout": 9}, "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
        "flashboot": "PRIORITY_FLASHBOOT", "timeout": 1_200_000,
    }  # fmt: skip
    require_model("tiny")  # the app resolves it at start; its engine never starts here
    # workers min 1: an (echo) worker runs, billed, until the scale to zero stops it
    endpoint = await asyncio.to_thread(lambda: create_endpoint(body, api_key=KEY))
    await platform.endpoint(endpoint["id"]).wait_workers(1, timeout=30)
    settings = settings_for(
        "tiny", REDIS_URL=redis_url, BUDGET_NAMESPACE=f"s2z-{uuid.uuid4().hex[:8]}", GPU_HOURLY_RATE="3.6",
        DAILY_BUDGET_USD="0.01", BUDGET_SCALE_TO_ZERO="true", RUNPOD_ENDPOINT_ID=endpoint["id"], RUNPOD_API_KEY=KEY,
    )  # fmt: skip
    # another worker of the endpoint already spent the day's budget
    store = RedisStore(redis_url)
    other = Budget(store, settings.budget)
    await other.settle(await other.reserve("earlier-job", 0.01), 0.01, 0.0)
    await store.close()

    app = create_app(settings)
    try:
        out = await app.handler({"id": "late", "input": {"prompt": "one more?", "sampling_params": {"max_tokens": 8}}})
        assert orjson.loads(out["error"])["type"] == "budget_exceeded"
        assert app.engine.starts == 0
        await asyncio.wait_for(app.over_budget.wait(), 30)  # its first heartbeat: past the limit, it stops
        assert app.draining and app.concurrency_modifier(1) == 0
    finally:
        await app.aclose()
    saved = await asyncio.to_thread(get_endpoint, endpoint["id"], api_key=KEY)
    assert (saved["workers"]["min"], saved["workers"]["max"]) == (0, 0)
    assert saved["flashboot"] == "PRIORITY_FLASHBOOT"  # the rest of the configuration stays
    assert (saved["scaling"], saved["timeout"], saved["workers"]["idleTimeout"]) == (body["scaling"], 1_200_000, 9)
    ep = platform.endpoint(endpoint["id"])
    assert (ep.config.workers_min, ep.config.workers_max, ep.config.flashboot) == (0, 0, "PRIORITY_FLASHBOOT")
    await ep.wait_workers(0, timeout=20)  # the running worker is stopped: nothing is billed any more

    # the same day, resume keeps it at zero; on the next budget day it restores workers 1/3
    assert "stays at zero" in await resume_once(settings)
    store = RedisStore(redis_url)
    try:
        paused = await pause.read(store, settings.budget_namespace)
        assert paused is not None and (paused.workers_min, paused.workers_max) == (1, 3)
    finally:
        await store.close()
    assert "resumed with workers 1/3" in await resume_once(settings, clock=lambda: time.time() + 86_400)
    saved = await asyncio.to_thread(get_endpoint, endpoint["id"], api_key=KEY)
    assert (saved["workers"]["min"], saved["workers"]["max"]) == (1, 3)
    assert "nothing to resume" in await resume_once(settings)


def test_scale_to_zero_needs_the_endpoint_id_and_key() -> None:
    require_model("tiny")  # the app resolves it before it reads the scale-to-zero settings
    with pytest.raises(ConfigError, match="RUNPOD_ENDPOINT_ID"):
        create_app(settings_for("tiny", BUDGET_SCALE_TO_ZERO="true"))


async def test_an_endpoint_stopped_with_money_left_comes_back_the_same_day(platform: Platform, redis_url: str) -> None:
    """Cold workers' reservations can stop an endpoint long before the day is spent; once they are gone
    and what is left holds twice the margin for worker starts, resume brings it back that day. The
    margin here, by hand: 3 workers x (2 s start + 2 s boot + 5 s idle + 5 s heartbeat + 1 s exit) =
    45 s = 0.045 USD at 0.001 USD/s; twice that, 0.09 USD."""
    body = {
        "name": "early",
        "type": "QUEUE",
        "image": "frugal-worker:v1",
        "gpu": {"pools": ["ADA_24"]},
        "workers": {"min": 0, "max": 0, "idleTimeout": 5},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    endpoint = await asyncio.to_thread(lambda: create_endpoint(body, api_key=KEY))
    settings = settings_for(
        "tiny", REDIS_URL=redis_url, BUDGET_NAMESPACE=f"early-{uuid.uuid4().hex[:8]}", GPU_HOURLY_RATE="3.6",
        DAILY_BUDGET_USD="1", RUNPOD_ENDPOINT_ID=endpoint["id"], RUNPOD_API_KEY=KEY,
    )  # fmt: skip
    store = RedisStore(redis_url)
    try:
        budget = Budget(store, settings.budget)
        await budget.settle(await budget.reserve("spent", 0.92), 0.92, 0.0)
        stopped = pause.Pause(day=budget.today(), endpoint_id=endpoint["id"], workers_min=0, workers_max=3)
        await pause.record(store, settings.budget_namespace, stopped)
        assert "0.080000 USD left is under 0.090000 USD" in await resume_once(settings)
    finally:
        await store.close()
    roomy = settings.model_copy(update={"daily_budget_usd": 2.0})
    assert "resumed with workers 0/3" in await resume_once(roomy)
    saved = await asyncio.to_thread(get_endpoint, endpoint["id"], api_key=KEY)
    assert saved["workers"]["max"] == 3
