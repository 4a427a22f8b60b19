"""BUDGET_SCALE_TO_ZERO: when the day's budget is spent, the worker scales its own endpoint to zero
through the local RunPod API (the runpod SDK's GraphQL calls), and refuses the job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import runpod

from devtools.fake_jobs import Backend
from devtools.fake_runpod import FakeRunPod, echo_handler
from handler.app import create_app
from handler.budget import Budget
from handler.errors import ConfigError
from handler.store.redis_store import RedisStore
from tests.engine_support import settings_for

pytestmark = pytest.mark.redis
KEY = "worker-key"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeRunPod]:
    server = FakeRunPod(Backend(echo_handler), api_key=KEY)
    url = await server.start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", url)
    monkeypatch.setattr(runpod, "api_key", KEY)
    yield server
    await server.stop()


async def test_spent_budget_scales_the_endpoint_to_zero(fake: FakeRunPod, redis_url: str) -> None:
    endpoint = await asyncio.to_thread(runpod.create_endpoint, "budgeted", "tpl", gpu_ids="ADA_24", workers_max=3)
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
    finally:
        await app.aclose()
    saved = fake.registry.endpoints[endpoint["id"]]
    assert (saved["workersMin"], saved["workersMax"]) == (0, 0)


def test_scale_to_zero_needs_the_endpoint_id_and_key() -> None:
    with pytest.raises(ConfigError, match="RUNPOD_ENDPOINT_ID"):
        create_app(settings_for("tiny", BUDGET_SCALE_TO_ZERO="true"))
