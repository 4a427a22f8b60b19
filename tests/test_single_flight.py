"""Single flight across workers: the Redis lock, not the in-process dedup, lets one worker generate.

`ResponseCache.flight` first joins callers of its own process on a shared future,
so many identical misses in one process reach the store's lock one at a time and
cannot tell a working lock from one that is always granted. Here every worker
has its own `RedisStore` and `ResponseCache` (as two worker processes would),
against the same real Redis: only the store's lock stands between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.redis_server import delete_namespace
from handler import keys
from handler.cache import CacheOptions, ResponseCache
from handler.settings import load_settings
from handler.store.redis_store import RedisStore

pytestmark = pytest.mark.redis

FINGERPRINT = {"model": "tiny", "revision": "r1", "quantization": "", "dtype": "float32"}
ROUTE = "/v1/completions"
BODY = {"prompt": "hello", "temperature": 0.0, "max_tokens": 8, "n": 1}
ANSWER = {"choices": [{"text": " world", "finish_reason": "length"}], "usage": {"total_tokens": 9}}
WORKERS = 3
GENERATE_S = 0.3  # the leader's generation: long enough that every worker asks while the lock is held


@pytest.fixture
async def stores(redis_url: str, namespace: str) -> AsyncIterator[list[RedisStore]]:
    """One store (its own connection pool) per worker."""
    opened = [RedisStore(redis_url) for _ in range(WORKERS)]
    yield opened
    for store in opened:
        await store.close()
    delete_namespace(redis_url, namespace)


def worker_cache(store: RedisStore, namespace: str) -> ResponseCache:
    settings = load_settings({"CACHE_NAMESPACE": namespace})
    return ResponseCache(store, settings.cache, FINGERPRINT)


@dataclass
class Flights:
    led: list[bool]  # per worker: whether it generated
    results: list[Any]  # per worker: the answer it got
    most_at_once: int  # the most workers generating at the same time


async def generate_once_each(caches: list[ResponseCache], options: CacheOptions) -> Flights:
    """Every worker asks for the same answer at once."""
    key = caches[0].key_for(ROUTE, BODY, options)
    assert key is not None and all(c.key_for(ROUTE, BODY, options) == key for c in caches)
    ready = asyncio.Barrier(len(caches))
    generating, most = 0, 0

    async def worker(cache: ResponseCache) -> tuple[bool, Any]:
        nonlocal generating, most
        await ready.wait()
        async with cache.flight(key, options) as flight:
            if flight.result is not None:
                return False, flight.result
            generating += 1
            most = max(most, generating)
            await asyncio.sleep(GENERATE_S)
            generating -= 1
            await flight.store(ANSWER, None)
            return True, ANSWER

    outcomes = await asyncio.gather(*(worker(c) for c in caches))
    return Flights([led for led, _ in outcomes], [result for _, result in outcomes], most)


async def test_one_of_several_workers_generates_a_miss(stores: list[RedisStore], namespace: str) -> None:
    caches = [worker_cache(store, namespace) for store in stores]
    flights = await generate_once_each(caches, CacheOptions())
    assert flights.led.count(True) == 1, flights  # the others waited on the Redis lock, read what it stored
    assert flights.most_at_once == 1 and flights.results == [ANSWER] * WORKERS


async def refresh_all(stores: list[RedisStore], namespace: str) -> Flights:
    caches = [worker_cache(store, namespace) for store in stores]
    key = caches[0].key_for(ROUTE, BODY, CacheOptions())
    assert key is not None
    await caches[0].put(key, {"choices": [{"text": " stale"}]})  # refresh: an older entry answers nobody
    return await generate_once_each(caches, CacheOptions(refresh=True))


async def test_refreshing_workers_never_generate_at_the_same_time(stores: list[RedisStore], namespace: str) -> None:
    flights = await refresh_all(stores, namespace)  # the refresh path takes the lock with try_lock
    assert flights.most_at_once == 1, flights
    assert True in flights.led
    assert flights.results == [ANSWER] * WORKERS


async def test_one_of_several_workers_regenerates_a_refresh(stores: list[RedisStore], namespace: str) -> None:
    flights = await refresh_all(stores, namespace)
    assert flights.led.count(True) == 1, flights


async def test_the_lock_is_granted_to_one_holder_until_it_lets_go(stores: list[RedisStore], namespace: str) -> None:
    first, second, _ = stores
    entry, lock = keys.cache_entry(namespace, "k"), keys.cache_lock(namespace, "k")
    assert await first.get_or_lock(entry, lock, "worker-a", 10_000) == (None, True)
    assert await second.get_or_lock(entry, lock, "worker-b", 10_000) == (None, False)
    assert await second.try_lock(lock, "worker-b", 10_000) is False
    assert await second.extend_lock(lock, "worker-b", 10_000) is False  # not its lock
    assert await second.unlock(lock, "worker-b") is False
    assert await first.unlock(lock, "worker-a") is True
    assert await second.try_lock(lock, "worker-b", 10_000) is True
    assert await first.try_lock(lock, "worker-a", 10_000) is False
    assert await first.get_or_lock(entry, lock, "worker-a", 10_000) == (None, False)
    await first.set(entry, b"answer", 10_000)
    assert await first.get_or_lock(entry, lock, "worker-a", 10_000) == (b"answer", False)  # an entry: no lock
