"""Redis goes away mid-run (a real redis-server stopped and started again)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devtools.redis_server import RedisServer
from handler import keys
from handler.budget import Budget
from handler.cache import CacheOptions, ResponseCache
from handler.errors import BudgetExceeded, BudgetUnavailable, ConfigError, StoreUnavailable
from handler.settings import load_settings
from handler.store import open_store
from handler.store.redis_store import RETRY_AFTER_S, RedisStore

pytestmark = pytest.mark.redis

FINGERPRINT = {"model": "tiny", "revision": "r1"}
BODY = {"prompt": "hello", "temperature": 0, "max_tokens": 8}
ANSWER = {"choices": [{"text": " world"}]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server this test may stop and start; its data survives `stop(save=True)`."""
    redis = RedisServer(data_dir=str(tmp_path)).start()
    yield redis
    redis.stop()


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore(server.url)
    yield redis_store
    await redis_store.close()


def settings_for(server: RedisServer, **env: str) -> dict[str, str]:
    return {"REDIS_URL": server.url, "DAILY_BUDGET_USD": "1.0", "GPU_HOURLY_RATE": "3.6", **env}


async def back_up(server: RedisServer) -> None:
    server.start()
    await asyncio.sleep(RETRY_AFTER_S + 0.05)  # past the store's short "still down" window


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return len([r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()])


async def test_cache_is_bypassed_with_one_warning_per_outage(
    server: RedisServer, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cache = ResponseCache(store, load_settings(settings_for(server)).cache, FINGERPRINT)
    options = CacheOptions()
    key = cache.key_for("/v1/completions", BODY, options)
    assert key is not None
    assert await cache.put(key, ANSWER)
    assert await cache.get(key, options) == ANSWER

    server.stop()
    for _ in range(20):  # jobs keep coming during the outage: every one is a miss, none fails
        assert await cache.get(key, options) is None
        async with cache.flight(key, options) as flight:
            assert flight.result is None  # generate without the shared lock
            await flight.store(ANSWER, None)
        await cache.record(hit=False, saved_usd=0.0)
        await asyncio.sleep(0.02)
    assert warnings(caplog, "unreachable") == 1

    await back_up(server)  # empty: this server was stopped without saving
    assert await cache.get(key, options) is None
    assert await cache.put(key, ANSWER)
    assert await cache.get(key, options) == ANSWER
    assert warnings(caplog, "reachable again") == 1

    server.stop()
    assert await cache.get(key, options) is None
    assert warnings(caplog, "unreachable") == 2  # a new outage, a new warning


async def test_budget_closed_refuses_during_the_outage(server: RedisServer, store: RedisStore) -> None:
    budget = Budget(store, load_settings(settings_for(server, BUDGET_FAIL_MODE="closed")).budget)
    running = await budget.reserve("before", 0.2)
    server.stop(save=True)
    with pytest.raises(BudgetUnavailable) as refused:
        await budget.reserve("during", 0.1)
    assert refused.value.type == "budget_unavailable"
    state = await budget.settle(running, 0.15, 0.0)  # the job that already ran is still accounted
    assert state.stale and state.spent_usd == pytest.approx(0.15)
    await back_up(server)
    state = await budget.state()
    assert not state.stale
    assert (state.spent_usd, state.reserved_usd) == (pytest.approx(0.15), 0.0)  # the replay set the exposure too
    after = await budget.reserve("after", 0.1)
    assert after.day == budget.today() and (await budget.state()).reserved_usd == pytest.approx(0.1)


async def test_budget_open_spends_its_share_and_reconciles(
    server: RedisServer, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    env = settings_for(server, BUDGET_FAIL_MODE="open", ENDPOINT_WORKERS_MAX="2")
    budget = Budget(store, load_settings(env).budget)
    other_worker = Budget(store, load_settings(env).budget)
    await budget.settle(await budget.reserve("a", 0.3), 0.2, 0.0)
    in_flight = await budget.reserve("b", 0.3)  # reserved in Redis, settled during the outage

    server.stop(save=True)
    # 0.2 spent and this worker's own 0.3 reserved: 0.8 was left, this worker's share is 0.4
    local = await budget.reserve("c", 0.35)
    await budget.settle(in_flight, 0.25, 0.3)
    with pytest.raises(BudgetExceeded, match="share"):  # 0.25 spent since: 0.15 of the share is left
        await budget.reserve("d", 0.2)
    await budget.settle(local, 0.1, 0.0)
    await budget.accrue({"idle": 0.01}, 0.0)  # overhead during the outage is kept too
    state = await budget.state()
    assert state.stale and state.spent_usd == pytest.approx(0.56)

    await back_up(server)
    assert (await other_worker.state()).spent_usd == pytest.approx(0.2)  # not replayed yet
    state = await budget.state()  # replays the two settlements
    assert not state.stale
    await budget.accrue({"idle": 0.01}, 0.0)  # and the next heartbeat the overhead
    state = await budget.state()
    assert (state.spent_usd, state.reserved_usd, state.jobs) == (pytest.approx(0.56), 0.0, 3)
    await budget.settle(in_flight, 0.25, 0.0)  # idempotent after the replay too
    assert (await other_worker.state()).spent_usd == pytest.approx(0.56)
    day = keys.budget_day("default", budget.today())
    assert int(await store.client.hget(day.state, "spent")) == 560_000
    assert warnings(caplog, "replayed 2 settlement") == 1


async def test_workers_that_lose_redis_stay_within_the_limit(server: RedisServer, store: RedisStore) -> None:
    """8 workers lose Redis with half of a $1 budget spent: together they spend at most the other half."""
    env = settings_for(server, BUDGET_FAIL_MODE="open", ENDPOINT_WORKERS_MAX="8")
    workers = [Budget(store, load_settings(env).budget) for _ in range(8)]
    await workers[0].settle(await workers[0].reserve("spent", 0.5), 0.5, 0.0)
    for worker in workers:
        await worker.state()  # each knows what was left
    server.stop(save=True)
    for w, worker in enumerate(workers):
        for i in range(100):  # each tries to run jobs of 0.01 until refused
            try:
                reservation = await worker.reserve(f"w{w}-{i}", 0.01)
            except BudgetExceeded:
                break
            await worker.settle(reservation, 0.01, 0.0)
    await back_up(server)
    for worker in workers:
        await worker.state()  # replays
    spent = (await workers[0].state()).spent_usd
    assert 0.5 + 8 * 0.05 <= spent <= 1.0


async def test_open_store_survives_an_unreachable_redis(caplog: pytest.LogCaptureFixture) -> None:
    down = RedisServer()  # never started: nothing listens on its port
    store = await open_store(load_settings({"REDIS_URL": down.url}).redis_url)
    assert store.kind == "redis"
    assert warnings(caplog, "unreachable") == 1
    await store.close()
    embedded = await open_store(load_settings({}).redis_url)
    assert embedded.kind == "embedded"


async def test_password_urls_work_and_are_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(password="s3cret-pw").start()
    try:
        store = await open_store(load_settings({"REDIS_URL": server.url}).redis_url)
        await store.set("frugal:probe", b"1", 10_000)
        assert await store.get("frugal:probe") == b"1"
        await store.close()
        wrong = RedisStore(server.url.replace("s3cret-pw", "wrong-pw"))
        with pytest.raises(StoreUnavailable, match="AuthenticationError"):
            await wrong.get("frugal:probe")
        await wrong.close()
    finally:
        server.stop()
    assert "s3cret-pw" not in caplog.text and "wrong-pw" not in caplog.text
    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisStore("http://127.0.0.1:6379")


async def test_a_full_redis_refuses_writes_and_nothing_fails(
    server: RedisServer, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    """maxmemory reached under `noeviction` (Redis's default): writes are refused with OOM errors."""
    caplog.set_level(logging.WARNING)
    settings = load_settings(settings_for(server, BUDGET_FAIL_MODE="closed"))
    cache = ResponseCache(store, settings.cache, FINGERPRINT)
    budget = Budget(store, settings.budget)
    running = await budget.reserve("before", 0.2)
    options = CacheOptions()
    key = cache.key_for("/v1/completions", BODY, options)
    assert key is not None
    await store.client.config_set("maxmemory-policy", "noeviction")
    await store.client.config_set("maxmemory", "1")  # every write is over the limit now
    for _ in range(5):
        assert await cache.put(key, ANSWER) is False  # the answer is not cached, nothing raises
        async with cache.flight(key, options) as flight:
            await flight.store(ANSWER, None)
        await cache.record(hit=False, saved_usd=0.0)
    assert await cache.get(key, options) is None  # reads still answer
    state = await budget.settle(running, 0.15, 0.0)  # kept and replayed later, like an outage
    assert state.stale and state.spent_usd == pytest.approx(0.15)
    with pytest.raises(BudgetUnavailable):
        await budget.reserve("during", 0.1)
    refusals = [r for r in caplog.records if "refused" in r.getMessage() and "OutOfMemoryError" in r.getMessage()]
    assert len(refusals) == 1  # one warning, not one per operation
    await store.client.config_set("maxmemory", "0")
    assert (await budget.state()).spent_usd == pytest.approx(0.15)  # replayed
    assert await cache.put(key, ANSWER)


async def test_flushed_scripts_are_loaded_again(server: RedisServer, store: RedisStore) -> None:
    """After a restart or failover Redis has no scripts: the store loads them again and carries on."""
    budget = Budget(store, load_settings(settings_for(server)).budget)
    await budget.settle(await budget.reserve("a", 0.3), 0.2, 0.0)
    await store.client.script_flush()
    await budget.settle(await budget.reserve("b", 0.3), 0.1, 0.0)
    assert (await budget.state()).spent_usd == pytest.approx(0.3)
