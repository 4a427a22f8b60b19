"""The shared cache over both backends (real redis-server and the embedded store)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import orjson
import pytest

from devtools.redis_server import delete_namespace
from handler import keys
from handler.cache import CacheOptions, ResponseCache
from handler.settings import load_settings
from handler.store.base import Store
from handler.store.redis_store import RedisStore

FINGERPRINT = {"model": "tiny", "revision": "r1", "quantization": "", "dtype": "float32"}
ROUTE = "/v1/completions"
BODY = {"prompt": "hello", "temperature": 0.0, "max_tokens": 8, "n": 1}
ANSWER = {"choices": [{"text": " world", "finish_reason": "length"}], "usage": {"total_tokens": 9}}
PLAIN = CacheOptions()


def make_cache(store: Store, namespace: str, **env: str) -> ResponseCache:
    settings = load_settings({"CACHE_NAMESPACE": namespace, **env})
    return ResponseCache(store, settings.cache, FINGERPRINT)


async def test_miss_then_hit(store: Store, namespace: str) -> None:
    cache = make_cache(store, namespace)
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    assert await cache.get(key, PLAIN) is None
    assert await cache.put(key, ANSWER)
    assert await cache.get(key, PLAIN) == ANSWER
    other = cache.key_for(ROUTE, {**BODY, "prompt": "bye"}, PLAIN)
    assert other is not None and await cache.get(other, PLAIN) is None


async def test_namespaces_are_isolated(store: Store, namespace: str) -> None:
    mine, theirs = make_cache(store, namespace), make_cache(store, namespace + "-other")
    key = mine.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    await mine.put(key, ANSWER)
    their_key = theirs.key_for(ROUTE, BODY, PLAIN)
    assert their_key is not None and their_key != key
    assert await theirs.get(their_key, PLAIN) is None


async def test_bypass_refresh_and_disabled(store: Store, namespace: str) -> None:
    cache = make_cache(store, namespace)
    assert cache.key_for(ROUTE, BODY, CacheOptions(bypass=True)) is None
    assert cache.key_for(ROUTE, {**BODY, "temperature": 0.7}, PLAIN) is None
    assert make_cache(store, namespace, CACHE_ENABLED="false").key_for(ROUTE, BODY, PLAIN) is None
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    await cache.put(key, ANSWER)
    refresh = CacheOptions(refresh=True)
    assert cache.key_for(ROUTE, BODY, refresh) == key
    assert await cache.get(key, refresh) is None  # no read
    newer = {"choices": [{"text": " there"}]}
    async with cache.flight(key, refresh) as flight:
        assert flight.result is None  # an older entry does not answer a refresh
        await flight.store(newer, None)
    assert await cache.get(key, PLAIN) == newer  # written


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\xffnot json",
        b'{"format": 1, "key": "someone-else", "stored_at": 1, "result": {"choices": []}}',
        b'{"format": 99, "key": "K", "stored_at": 1, "result": {}}',
        b'["a", "list"]',
        b'{"format": 1, "key": "K", "stored_at": "yesterday", "result": {}}',
    ],
)
async def test_corrupt_or_foreign_entries_are_misses_and_replaced(store: Store, namespace: str, raw: bytes) -> None:
    cache = make_cache(store, namespace)
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    await store.set(keys.cache_entry(namespace, key), raw.replace(b'"K"', f'"{key}"'.encode()), 60_000)
    assert await cache.get(key, PLAIN) is None
    async with cache.flight(key) as flight:
        assert flight.result is None  # we lead: the corrupt entry does not block anyone
        await flight.store(ANSWER, None)
    assert await cache.get(key, PLAIN) == ANSWER


async def test_oversize_answers_are_served_not_cached(store: Store, namespace: str) -> None:
    cache = make_cache(store, namespace, CACHE_MAX_BYTES="400")
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    big = {"choices": [{"text": "x" * 600}]}
    async with cache.flight(key) as flight:
        await flight.store(big, None)
        assert flight.stored is False
    assert await cache.get(key, PLAIN) is None
    assert await cache.put(key, ANSWER)  # a small one fits


@pytest.mark.parametrize(
    "result",
    [
        {"error": {"type": "engine_crashed", "message": "boom"}},
        {"choices": [{"text": ""}]},
        {"choices": [{"message": {"role": "assistant", "content": ""}}]},
        {"choices": []},
        {},
    ],
)
async def test_errors_and_empty_outputs_are_never_cached(store: Store, namespace: str, result: dict[str, Any]) -> None:
    cache = make_cache(store, namespace)
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    assert await cache.put(key, result) is False
    assert await cache.get(key, PLAIN) is None


async def test_ttl_default_and_per_job(store: Store, namespace: str) -> None:
    cache = make_cache(store, namespace, CACHE_TTL="1")
    short = cache.key_for(ROUTE, BODY, PLAIN)
    long = cache.key_for(ROUTE, {**BODY, "prompt": "long"}, PLAIN)
    assert short is not None and long is not None
    await cache.put(short, ANSWER)  # default: CACHE_TTL = 1 s
    await cache.put(long, ANSWER, ttl=60)  # per job
    assert await cache.get(short, PLAIN) == ANSWER
    await asyncio.sleep(1.3)
    assert await cache.get(short, PLAIN) is None
    assert await cache.get(long, PLAIN) == ANSWER


async def test_single_flight_50_identical_misses_generate_once(store: Store, namespace: str) -> None:
    cache = make_cache(store, namespace)
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    runs = 0

    async def job() -> dict[str, Any]:
        nonlocal runs
        async with cache.flight(key) as flight:
            if flight.result is not None:
                return flight.result
            runs += 1
            await asyncio.sleep(0.2)
            await flight.store(ANSWER, None)
            return ANSWER

    results = await asyncio.gather(*(job() for _ in range(50)))
    assert runs == 1
    assert all(r == ANSWER for r in results)


async def test_uncacheable_result_is_shared_in_process_and_failure_hands_over(store: Store, namespace: str) -> None:
    cache = make_cache(store, namespace, CACHE_MAX_BYTES="100")
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    big = {"choices": [{"text": "y" * 300}]}
    attempts = 0

    async def job() -> dict[str, Any]:
        nonlocal attempts
        async with cache.flight(key) as flight:
            if flight.result is not None:
                return flight.result
            attempts += 1
            await asyncio.sleep(0.05)
            if attempts == 1:
                raise RuntimeError("first leader fails")
            await flight.store(big, None)
            return big

    results = await asyncio.gather(*(job() for _ in range(10)), return_exceptions=True)
    assert attempts == 2  # the failure handed leadership over once; the big answer was shared
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert sum(r == big for r in results) == 9


async def test_a_dead_holders_lock_lapses_and_a_waiter_takes_over(store: Store, namespace: str) -> None:
    cache = make_cache(store, namespace, CACHE_LOCK_TTL="0.4")
    key = cache.key_for(ROUTE, BODY, PLAIN)
    assert key is not None
    started = time.monotonic()  # before the lock is taken: its 0.4 s run from there, however late the waiter
    assert await store.try_lock(keys.cache_lock(namespace, key), "dead-worker", 400)
    async with cache.flight(key) as flight:
        waited = time.monotonic() - started
        assert flight.result is None and flight.leader
        await flight.store(ANSWER, None)
    assert waited >= 0.35  # it did wait for the lock to lapse (not a speed check; Redis expires to the ms)
    assert await store.get(keys.cache_lock(namespace, key)) is None  # released after


async def test_statistics_per_day(store: Store, namespace: str) -> None:
    clock = [1_700_000_000.0]
    settings = load_settings({"CACHE_NAMESPACE": namespace})
    cache = ResponseCache(store, settings.cache, FINGERPRINT, clock=lambda: clock[0])
    await cache.record(hit=True, saved_usd=0.25)
    await cache.record(hit=True, saved_usd=0.5)
    await cache.record(hit=False, saved_usd=0.0)
    clock[0] += 86_400
    await cache.record(hit=False, saved_usd=0.0)
    rows = await cache.daily_stats(3)
    assert [r["day"] for r in rows] == ["2023-11-13", "2023-11-14", "2023-11-15"]
    assert rows[0]["hits"] == 0 and rows[0]["misses"] == 0
    assert rows[1] == {"day": "2023-11-14", "hits": 2, "misses": 1, "hit_rate": 2 / 3, "saved_usd": 0.75}
    assert rows[2]["misses"] == 1


def test_keys_one_script_touches_share_a_hash_tag() -> None:
    assert keys.hash_tag(keys.cache_entry("ns", "abc")) == keys.hash_tag(keys.cache_lock("ns", "abc"))
    day = keys.budget_day("ns", "2026-11-23")
    assert len({keys.hash_tag(k) for k in day.all()}) == 1
    assert keys.hash_tag(day.state) != keys.hash_tag(keys.budget_day("ns", "2026-11-24").state)
    with pytest.raises(ValueError, match="braces"):
        keys.cache_entry("a{b}", "abc")


# --- across processes (Redis only) ---------------------------------------------------


def _flight_process(url: str, namespace: str, count: int, start_at: float) -> list[bool]:
    async def main() -> list[bool]:
        store = RedisStore(url)
        cache = make_cache(store, namespace)
        key = cache.key_for(ROUTE, BODY, PLAIN)
        assert key is not None

        async def job() -> bool:
            async with cache.flight(key) as flight:
                if flight.result is not None:
                    return False
                await store.client.incr(f"{namespace}:runs")
                await asyncio.sleep(0.5)
                await flight.store(ANSWER, None)
                return True

        await asyncio.sleep(max(0.0, start_at - time.time()))
        led = await asyncio.gather(*(job() for _ in range(count)))
        await store.close()
        return list(led)

    return asyncio.run(main())


@pytest.mark.redis
async def test_single_flight_across_two_processes(redis_url: str, namespace: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    with ctx.Pool(2) as pool:
        pending = [pool.apply_async(_flight_process, (redis_url, namespace, 25, start_at)) for _ in range(2)]
        led = [flag for p in pending for flag in await asyncio.to_thread(p.get, 60)]
    store = RedisStore(redis_url)
    runs = int(await store.client.get(f"{namespace}:runs"))
    entry = await store.client.get(
        keys.cache_entry(namespace, make_cache(store, namespace).key_for(ROUTE, BODY, PLAIN) or "")
    )
    await store.close()
    delete_namespace(redis_url, namespace)
    assert runs == 1
    assert led.count(True) == 1 and len(led) == 50
    assert orjson.loads(entry)["result"] == ANSWER
