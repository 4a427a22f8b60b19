"""The shared response cache: lookups, single flight, and daily statistics.

Entries are orjson ``{"format", "key", "stored_at", "result"}``; a read that is
not exactly that (corrupt, foreign, older format) is a miss and the next answer
replaces it. An unreachable store is a miss too (the store logs one warning per
outage). Typical use by the worker::

    key = cache.key_for(route, body, options)          # None: do not cache
    hit = await cache.get(key, options) if key else None
    if hit is None and key:
        async with cache.flight(key, options) as flight:
            if flight.result is None:                   # we lead: generate
                result = await generate()
                await flight.store(result, options.ttl)
            else:
                result = flight.result                  # someone else generated it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from handler import keys
from handler.cache_keys import cache_key, is_cacheable
from handler.days import day_of, recent_days, zone
from handler.errors import StoreUnavailable
from handler.settings import CacheSettings
from handler.store.base import CacheStore

log = logging.getLogger(__name__)

ENTRY_FORMAT = 1
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1


@dataclass(frozen=True)
class CacheOptions:
    """Per job ``"cache": {...}``: bypass (no read, no write), refresh (no read, write), ttl (seconds)."""

    bypass: bool = False
    refresh: bool = False
    ttl: int | None = None


def is_storable(result: Mapping[str, Any]) -> bool:
    """Errors and empty outputs are never cached."""
    if not result or result.get("error"):
        return False
    choices = result.get("choices")
    if choices is not None:
        return isinstance(choices, list) and any(_choice_has_output(c) for c in choices)
    for field in ("output", "text"):
        if field in result:
            return bool(result[field])
    return True


def _choice_has_output(choice: Any) -> bool:
    if not isinstance(choice, Mapping):
        return False
    message = choice.get("message")
    if isinstance(message, Mapping) and (message.get("content") or message.get("tool_calls")):
        return True
    return bool(choice.get("text"))


class Flight:
    """One caller's place in a single flight. `result` is set when another caller produced it."""

    def __init__(self, cache: ResponseCache, key: str, result: dict[str, Any] | None, share: asyncio.Future[Any]):
        self.result = result
        self.leader = result is None
        self._cache = cache
        self._key = key
        self._share = share
        self.stored = False

    async def store(self, result: dict[str, Any], ttl: int | None = None) -> None:
        """Hand `result` to the waiters and cache it (unless an error, empty, or too large)."""
        if not self.leader:
            return
        if not self._share.done():
            self._share.set_result(result)
        self.stored = await self._cache.put(self._key, result, ttl)


class ResponseCache:
    def __init__(
        self,
        store: CacheStore,
        settings: CacheSettings,
        fingerprint: Mapping[str, Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.fingerprint = dict(fingerprint)
        self._clock = clock
        self._tz = zone(settings.budget_timezone)
        self._ns = settings.cache_namespace
        self._local: dict[str, asyncio.Future[Any]] = {}

    # --- lookups ------------------------------------------------------------
    def key_for(self, route: str, body: Mapping[str, Any], options: CacheOptions) -> str | None:
        if not self.settings.cache_enabled or options.bypass or not is_cacheable(body):
            return None
        return cache_key(self._ns, self.fingerprint, route, body)

    async def get(self, key: str, options: CacheOptions) -> dict[str, Any] | None:
        if options.bypass or options.refresh:
            return None
        try:
            raw = await self.store.get(keys.cache_entry(self._ns, key))
        except StoreUnavailable:
            return None
        return None if raw is None else self._decode(key, raw)[0]

    def _decode(self, key: str, raw: bytes) -> tuple[dict[str, Any] | None, float]:
        """(result, stored_at); (None, 0) for anything that is not a valid entry of `key`."""
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.info("cache entry %s is not valid JSON: treated as a miss and replaced", key[:16])
            return None, 0.0
        if (
            isinstance(entry, dict)
            and entry.get("format") == ENTRY_FORMAT
            and entry.get("key") == key
            and isinstance(entry.get("stored_at"), int | float)
            and isinstance(entry.get("result"), dict)
        ):
            return entry["result"], float(entry["stored_at"])
        log.info("cache entry %s has an unknown shape: treated as a miss and replaced", key[:16])
        return None, 0.0

    async def put(self, key: str, result: dict[str, Any], ttl: int | None = None) -> bool:
        """Cache `result` under `key`; False when not stored (error, empty, too large, outage)."""
        if not is_storable(result):
            return False
        payload = orjson.dumps({"format": ENTRY_FORMAT, "key": key, "stored_at": self._clock(), "result": result})
        if len(payload) > self.settings.cache_max_bytes:
            log.info("answer of %d bytes not cached (CACHE_MAX_BYTES=%d)", len(payload), self.settings.cache_max_bytes)
            return False
        seconds = ttl if ttl is not None else self.settings.cache_ttl
        try:
            await self.store.set(keys.cache_entry(self._ns, key), payload, int(seconds * 1000))
        except StoreUnavailable:
            return False
        return True

    # --- single flight --------------------------------------------------------
    @contextlib.asynccontextmanager
    async def flight(self, key: str, options: CacheOptions | None = None) -> AsyncIterator[Flight]:
        """Lead or wait: in this process through a shared future, across workers through a lock."""
        options = options or CacheOptions()
        while (pending := self._local.get(key)) is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                yield Flight(self, key, shared, pending)
                return
        share: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._local[key] = share
        token = uuid.uuid4().hex
        lock_key = keys.cache_lock(self._ns, key)
        renewer: asyncio.Task[None] | None = None
        try:
            result, locked = await self._lead_or_wait(key, lock_key, token, options)
            if result is not None:
                share.set_result(result)
                yield Flight(self, key, result, share)
                return
            if locked:
                renewer = asyncio.create_task(self._renew(lock_key, token))
            yield Flight(self, key, None, share)
        finally:
            if self._local.get(key) is share:
                del self._local[key]
            if not share.done():
                share.set_result(None)  # no result: the next local waiter leads
            if renewer is not None:
                renewer.cancel()
                await self._unlock(lock_key, token)

    async def _lead_or_wait(
        self, key: str, lock_key: str, token: str, options: CacheOptions
    ) -> tuple[dict[str, Any] | None, bool]:
        """(result made by another holder, False) or (None, True) once we hold the lock.
        (None, False) when the store is unreachable: generate without a lock."""
        entry_key = keys.cache_entry(self._ns, key)
        ttl_ms = int(self.settings.cache_lock_ttl * 1000)
        not_before = self._clock() if options.refresh else None
        delay = POLL_FIRST_S
        try:
            while True:
                if not_before is None:
                    raw, locked = await self.store.get_or_lock(entry_key, lock_key, token, ttl_ms)
                else:
                    locked = await self.store.try_lock(lock_key, token, ttl_ms)
                    raw = None if locked else await self.store.get(entry_key)
                if locked:
                    if not_before is not None:  # a refresh: another worker may have just refreshed it
                        fresh = await self._fresh(key, entry_key, not_before)
                        if fresh is not None:
                            await self._unlock(lock_key, token)
                            return fresh, False
                    return None, True
                if raw is not None:
                    result, stored_at = self._decode(key, raw)
                    if result is None:
                        await self.store.delete(entry_key)  # corrupt: clear it so someone leads
                        continue
                    if not_before is None or stored_at >= not_before:
                        return result, False
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, POLL_MAX_S)
        except StoreUnavailable:
            return None, False

    async def _fresh(self, key: str, entry_key: str, not_before: float) -> dict[str, Any] | None:
        """The entry if it was stored since `not_before` (a refresh made by another holder)."""
        raw = await self.store.get(entry_key)
        if raw is None:
            return None
        result, stored_at = self._decode(key, raw)
        return result if result is not None and stored_at >= not_before else None

    async def _renew(self, lock_key: str, token: str) -> None:
        """Keep the lock while we generate; if we die, it lapses and a waiter takes over."""
        ttl_ms = int(self.settings.cache_lock_ttl * 1000)
        while True:
            await asyncio.sleep(self.settings.cache_lock_ttl / 3)
            with contextlib.suppress(StoreUnavailable):
                if not await self.store.extend_lock(lock_key, token, ttl_ms):
                    return

    async def _unlock(self, lock_key: str, token: str) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.store.unlock(lock_key, token)

    # --- statistics -----------------------------------------------------------
    async def record(self, hit: bool, saved_usd: float) -> None:
        """Count a hit (with the money it saved) or a miss in today's statistics."""
        fields = {"hits": 1, "saved_micro": round(saved_usd * 1_000_000)} if hit else {"misses": 1}
        day = day_of(self._clock(), self._tz)
        with contextlib.suppress(StoreUnavailable):
            await self.store.incr_fields(keys.cache_stats(self._ns, day), fields, keys.STATS_KEEP_SECONDS * 1000)

    async def daily_stats(self, days: int) -> list[dict[str, Any]]:
        """Per day, oldest first: hits, misses, hit_rate, saved_usd."""
        rows = []
        for day in recent_days(self._clock(), self._tz, days):
            fields = await self.store.read_fields(keys.cache_stats(self._ns, day))
            hits, misses = fields.get("hits", 0), fields.get("misses", 0)
            rows.append(
                {
                    "day": day,
                    "hits": hits,
                    "misses": misses,
                    "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                    "saved_usd": fields.get("saved_micro", 0) / 1_000_000,
                }
            )
        return rows
