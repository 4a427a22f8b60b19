"""A Redis that evicts when full can drop the budget's keys: the worker refuses one at start-up.

Every test starts its own redis-server (`devtools.redis_server`) with the memory settings it checks.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from devtools.redis_server import RedisClusterNodes, RedisServer
from handler import keys
from handler.budget import Budget
from handler.errors import BudgetExceeded, ConfigError, StoreUnavailable
from handler.settings import load_settings
from handler.store.embedded import EmbeddedStore
from handler.store.redis_store import RedisStore
from handler.store.safety import check_budget_keys_safe

pytestmark = pytest.mark.redis

MAXMEMORY = 8 * 1024 * 1024
EVICTING = ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random"]
NOT_EVICTING_BUDGET = ["noeviction", "volatile-ttl"]


@contextlib.asynccontextmanager
async def redis_with(extra: Sequence[str], *, user: str = "") -> AsyncIterator[RedisStore]:
    """A private redis-server started with `extra` arguments, and a store on it (as `user`, given one)."""
    server = RedisServer(extra=extra).start()
    store = RedisStore(server.url.replace("redis://", f"redis://{user}@") if user else server.url)
    try:
        yield store
    finally:
        await store.close()
        server.stop()


def memory(policy: str, maxmemory: int = MAXMEMORY) -> list[str]:
    return ["--maxmemory", str(maxmemory), "--maxmemory-policy", policy]


def budget_on(store: RedisStore, namespace: str) -> Budget:
    env = {"BUDGET_NAMESPACE": namespace, "DAILY_BUDGET_USD": "1.0", "GPU_HOURLY_RATE": "3.6"}
    return Budget(store, load_settings(env).budget)  # today by the real clock: every worker reads the same day


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


# --- the danger: a full cache evicts the day's spend --------------------------------------
@pytest.mark.parametrize("policy", ["allkeys-lru", *NOT_EVICTING_BUDGET])
async def test_a_full_cache_erases_the_spend_unless_the_policy_keeps_budget_keys(policy: str, namespace: str) -> None:
    async with redis_with(memory(policy)) as store:
        worker = budget_on(store, namespace)
        reservation = await worker.reserve("job-1", 0.25)
        await worker.settle(reservation, 0.25, 0.0)
        assert (await worker.state()).spent_usd == pytest.approx(0.25)
        value = b"x" * 64 * 1024
        refused = 0
        for i in range(8 * MAXMEMORY // len(value)):  # eight times what the server holds, a day's TTL each
            try:
                await store.set(keys.cache_entry(namespace, f"answer-{i}"), value, ttl_ms=86_400_000)
            except StoreUnavailable:  # noeviction: the write is refused (OOM), the cache skips it
                refused += 1
        info = await store.client.info("stats")
        state_key = keys.budget_day(namespace, worker.today()).state

        spent = (await budget_on(store, namespace).state()).spent_usd  # a fresh worker reads the day
        if policy == "allkeys-lru":
            assert info["evicted_keys"] > 0 and not await store.client.exists(state_key)
            assert spent == 0.0  # the 0.25 settled is gone: the day looks untouched
            await budget_on(store, namespace).reserve("job-2", 0.9)  # 0.25 + 0.9 > 1.0, admitted: no cap
        else:
            assert spent == pytest.approx(0.25)
            assert await store.client.exists(state_key)
            if policy == "volatile-ttl":  # the cache's entries went, the budget's stayed
                assert info["evicted_keys"] > 0
                with pytest.raises(BudgetExceeded):
                    await budget_on(store, namespace).reserve("job-2", 0.9)
            else:  # noeviction: nothing evicted, cache writes refused once full
                assert info["evicted_keys"] == 0 and refused > 0


# --- the check -----------------------------------------------------------------------------
@pytest.mark.parametrize("policy", EVICTING)
async def test_an_evicting_policy_is_refused_naming_it_and_the_server(policy: str) -> None:
    async with redis_with(memory(policy)) as store:
        risk = await store.eviction_risk()
        assert risk is not None and f"maxmemory-policy {policy}" in risk and store.url in risk
        with pytest.raises(ConfigError) as refused:
            await check_budget_keys_safe(store)
    assert refused.value.field == "REDIS_URL"
    message = refused.value.message
    assert policy in message and store.url in message
    assert "maxmemory-policy noeviction" in message and "volatile-ttl" in message and "budget's own" in message


@pytest.mark.parametrize("policy", NOT_EVICTING_BUDGET)
async def test_noeviction_and_volatile_ttl_pass(policy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with redis_with(memory(policy)) as store:
        assert await store.eviction_risk() is None
        await check_budget_keys_safe(store)
    assert not caplog.records


async def test_no_maxmemory_passes_whatever_the_policy() -> None:
    async with redis_with(memory("allkeys-lru", maxmemory=0)) as store:
        assert await store.eviction_risk() is None
        await check_budget_keys_safe(store)


@pytest.mark.parametrize(
    "extra, user",
    [
        (["--rename-command", "CONFIG", ""], ""),  # as managed services do
        (["--user", "worker", "on", "nopass", "~*", "&*", "+@all", "-config"], "worker"),  # an ACL forbids it
    ],
    ids=["renamed", "acl"],
)
async def test_config_refused_passes_with_one_warning(
    extra: list[str], user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with redis_with([*memory("allkeys-lru"), *extra], user=user) as store:  # evicting, but it cannot tell
        await check_budget_keys_safe(store)
    [warning] = warnings(caplog, "")
    assert "refused CONFIG GET" in warning and store.url in warning
    assert "maxmemory-policy is noeviction or volatile-ttl" in warning


async def test_unreachable_redis_passes_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    down = RedisServer()  # never started: nothing listens on its port
    store = RedisStore(down.url)
    try:
        await check_budget_keys_safe(store)
    finally:
        await store.close()
    assert warnings(caplog, "could not check that Redis keeps the daily budget's keys")


async def test_the_embedded_store_is_not_checked() -> None:
    await check_budget_keys_safe(EmbeddedStore())


@pytest.fixture(scope="module")
def cluster_one_evicting() -> Iterator[tuple[str, int]]:
    """A Redis Cluster of three primaries, the second one with allkeys-lfu and a maxmemory."""
    cluster = RedisClusterNodes(3)
    cluster.nodes[1].extra += memory("allkeys-lfu")
    cluster.start()
    yield cluster.url, cluster.nodes[1].port
    cluster.stop()


async def test_every_primary_of_a_cluster_is_checked(cluster_one_evicting: tuple[str, int]) -> None:
    url, evicting_port = cluster_one_evicting
    store = RedisStore(url)
    try:
        risk = await store.eviction_risk()
        with pytest.raises(ConfigError) as refused:
            await check_budget_keys_safe(store)
    finally:
        await store.close()
    assert risk is not None and f"127.0.0.1:{evicting_port} has maxmemory-policy allkeys-lfu" in risk
    assert risk.count("maxmemory-policy") == 1  # the other two primaries are not named
    assert refused.value.field == "REDIS_URL"
