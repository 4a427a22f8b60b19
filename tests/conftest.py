"""Shared fixtures. Engine fixtures start one real vLLM engine per session and share it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from devtools.redis_server import existing_or_new
from handler.app import App, create_app
from handler.store import RedisStore, Store
from handler.store_embedded import EmbeddedStore
from tests.engine_support import require_model, settings_for

TEST_HOURLY_RATE = "3.6"  # USD per worker hour: a tenth of a cent per second, easy to check


@pytest.fixture(scope="session")
async def tiny_app(redis_url: str) -> AsyncIterator[App]:
    """A worker app over the tiny random model, with the shared cache in a real Redis;
    its engine starts on the first cache miss and serves the whole session."""
    require_model("tiny")
    namespace = f"tests-tiny-{uuid.uuid4().hex[:8]}"
    app = create_app(
        settings_for(
            "tiny",
            CACHE_NAMESPACE=namespace,
            BUDGET_NAMESPACE=namespace,
            REDIS_URL=redis_url,
            GPU_HOURLY_RATE=TEST_HOURLY_RATE,
        )
    )
    yield app
    await app.aclose()


# --- Redis and store fixtures (cache and budget tests) -------------------------------
# A real Redis: REDIS_URL when a server answers there, else a private redis-server
# started for the session. Each test gets its own CACHE_NAMESPACE; its keys are
# flushed after it (the whole db when the server is private to this run).


@pytest.fixture(scope="session")
def redis_server_info() -> Iterator[tuple[str, bool]]:
    with existing_or_new() as info:
        yield info


@pytest.fixture(scope="session")
def redis_url(redis_server_info: tuple[str, bool]) -> str:
    return redis_server_info[0]


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "embedded"])
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Store]:
    """The same tests run against both backends."""
    if request.param == "embedded":
        yield EmbeddedStore()
        return
    url, owned = request.getfixturevalue("redis_server_info")
    redis_store = RedisStore(url)
    yield redis_store
    if owned:
        await redis_store.client.flushdb()
    else:
        async for key in redis_store.client.scan_iter(match=f"*{namespace}*"):
            await redis_store.client.delete(key)
    await redis_store.close()


@pytest.fixture(scope="session")
async def smollm2_app() -> AsyncIterator[App]:
    """A worker app over the converted SmolLM2-135M-Instruct, with the default CPU engine settings."""
    require_model("smollm2")
    app = create_app(settings_for("smollm2", CACHE_NAMESPACE="tests-smollm2"))
    yield app
    await app.aclose()
