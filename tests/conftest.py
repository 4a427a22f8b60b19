"""Shared fixtures. Engine fixtures start one real vLLM engine per session and share it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from devtools.redis_server import RedisClusterNodes, RedisServer, delete_namespace, existing_or_new, make_certs
from handler.app import App, create_app
from handler.store.base import Store
from handler.store.embedded import EmbeddedStore
from handler.store.redis_store import RedisStore
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
# started for the session. Each test gets its own namespace; the `store` fixture deletes
# that namespace's keys after it, and nothing else.


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


@pytest.fixture(scope="session")
def redis_tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private TLS-only redis-server with a password, its certificates made for this run."""
    server = RedisServer(password="tls-pw", certs=make_certs(tmp_path_factory.mktemp("certs"))).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A private Redis Cluster of three primaries on this machine."""
    cluster = RedisClusterNodes(3).start()
    yield cluster.url
    cluster.stop()


REDIS = pytest.mark.redis
STORES = [pytest.param(p, marks=REDIS) for p in ("redis", "redis-tls", "redis-cluster")] + ["embedded"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Store]:
    """The same tests run against every backend: Redis (plain, TLS with a password, a cluster) and embedded."""
    if request.param == "embedded":
        yield EmbeddedStore()
        return
    if request.param != "redis":  # private servers of this session, each test in its own namespace
        deployed = RedisStore(request.getfixturevalue(request.param.replace("-", "_") + "_url"))
        yield deployed
        await deployed.close()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStore(url)
    yield redis_store
    await redis_store.close()
    # its own keys only: the server may be shared (REDIS_URL), and the session's tiny_app keeps its
    # cache and budget on the same private server
    await asyncio.to_thread(delete_namespace, url, namespace)


@pytest.fixture(scope="session")
async def smollm2_app() -> AsyncIterator[App]:
    """A worker app over the converted SmolLM2-135M-Instruct, with the default CPU engine settings."""
    require_model("smollm2")
    app = create_app(settings_for("smollm2", CACHE_NAMESPACE="tests-smollm2"))
    yield app
    await app.aclose()


# --- markers follow the fixtures a test uses ----------------------------------------
FIXTURE_MARKS = {
    "redis_url": ("redis",),
    "redis_server_info": ("redis",),
    "redis_tls_url": ("redis",),
    "redis_cluster_url": ("redis",),
    "tiny_app": ("engine", "redis"),
    "smollm2_app": ("engine", "realmodel"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m "not redis"` and `-m "not engine"` deselect every test that needs those, marked by hand or not."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marks in FIXTURE_MARKS.items():
            if fixture in names:
                for mark in marks:
                    item.add_marker(mark)
