"""Store backends for the cache and the budget: Redis, or an embedded in-process store.

Only this module (with `handler.store_lua` and `handler.store_embedded`) talks to
Redis. Both backends offer the same operations with the same meaning; the Redis
one runs every multi-step operation as one Lua script, so it is atomic across
all workers of an endpoint.

An unreachable Redis raises `StoreUnavailable` (never a redis-py exception).
The store logs ONE warning when Redis goes away and one line when it is back,
not one per job; for a short while after a failure it answers
`StoreUnavailable` at once instead of waiting on a dead socket again.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handler import store_lua
from handler.errors import ConfigError, StoreUnavailable
from handler.keys import JOBS_KEEP_SECONDS, STATE_KEEP_SECONDS, BudgetKeys
from handler.settings import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0
POOL_WAIT_S = 10.0  # a job waits this long for a free connection when all are busy
RETRY_AFTER_S = 0.25  # after a failure, answer "unavailable" at once for this long


@dataclass(frozen=True)
class BudgetCounts:
    """One budget day as stored: micro-dollars spent and reserved, jobs settled."""

    spent: int
    reserved: int
    jobs: int


@dataclass(frozen=True)
class ReserveOutcome:
    ok: bool
    counts: BudgetCounts


@dataclass(frozen=True)
class SettleOutcome:
    counts: BudgetCounts
    first: bool  # False: this job was settled before; nothing was counted again
    alert: bool  # True for exactly one settle per day: the one that crossed the alert level


class Store(abc.ABC):
    """The operations the cache and the budget need. Times in milliseconds."""

    kind: str

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl_ms: int) -> None: ...

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    async def get_or_lock(
        self, entry_key: str, lock_key: str, token: str, lock_ttl_ms: int
    ) -> tuple[bytes | None, bool]:
        """The entry if present; else try to take the lock: (None, True) when taken now."""

    @abc.abstractmethod
    async def try_lock(self, lock_key: str, token: str, lock_ttl_ms: int) -> bool:
        """Take the lock if free (SET NX PX)."""

    @abc.abstractmethod
    async def extend_lock(self, lock_key: str, token: str, lock_ttl_ms: int) -> bool:
        """Renew the lock's expiry only if `token` still holds it."""

    @abc.abstractmethod
    async def unlock(self, lock_key: str, token: str) -> bool:
        """Delete the lock only if `token` still holds it (compare-and-delete)."""

    @abc.abstractmethod
    async def incr_fields(self, key: str, increments: Mapping[str, int], ttl_ms: int) -> None: ...

    @abc.abstractmethod
    async def read_fields(self, key: str) -> dict[str, int]: ...

    @abc.abstractmethod
    async def budget_reserve(
        self, keys: BudgetKeys, job_id: str, amount: int, limit: int, reservation_ttl_ms: int
    ) -> ReserveOutcome:
        """Atomically: drop lapsed reservations, check spent + reserved + amount <= limit
        (limit < 0: none), reserve. A job already holding a reservation keeps it (ok)."""

    @abc.abstractmethod
    async def budget_settle(self, keys: BudgetKeys, job_id: str, amount: int, alert_at: int) -> SettleOutcome:
        """Atomically: drop the job's reservation, count `amount` once per job id,
        and report whether spend crossed `alert_at` (< 0: never) for the first time today."""

    @abc.abstractmethod
    async def budget_release(self, keys: BudgetKeys, job_id: str) -> BudgetCounts: ...

    @abc.abstractmethod
    async def budget_read(self, keys: BudgetKeys) -> BudgetCounts: ...

    @abc.abstractmethod
    async def ping(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


def _counts(values: list[Any]) -> BudgetCounts:
    return BudgetCounts(spent=int(values[0]), reserved=int(values[1]), jobs=int(values[2]))


def redacted(url: str) -> str:
    """The URL without its password, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisStore(Store):
    kind = "redis"

    def __init__(self, url: str, *, max_connections: int = 128, clock: Any = time.monotonic) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"REDIS_URL: scheme {scheme!r} is not redis://, rediss:// or unix://", field="REDIS_URL")
        self.url = redacted(url)
        self._clock = clock
        self._down_until = 0.0
        self._down = False
        self._last_error = ""
        # One immediate retry: a pooled connection may be stale after a server restart.
        # A blocking pool: more concurrent jobs than connections wait for one, not fail.
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
            decode_responses=False,
        )
        self._redis = redis_asyncio.Redis.from_pool(pool)
        reg = self._redis.register_script
        self._reserve = reg(store_lua.RESERVE)
        self._settle = reg(store_lua.SETTLE)
        self._release = reg(store_lua.RELEASE)
        self._read = reg(store_lua.READ)
        self._get_or_lock = reg(store_lua.GET_OR_LOCK)
        self._unlock = reg(store_lua.UNLOCK)
        self._extend = reg(store_lua.EXTEND_LOCK)
        self._incr = reg(store_lua.INCR_FIELDS)

    @property
    def client(self) -> Any:
        """The redis-py client (for tools and tests; workers use the methods)."""
        return self._redis

    async def _call(self, what: str, awaitable: Any) -> Any:
        if self._down and self._clock() < self._down_until:
            awaitable.close()
            raise StoreUnavailable(f"Redis at {self.url} is unreachable ({self._last_error}); {what} skipped")
        try:
            result = await awaitable
        except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError) as exc:
            self._down_until = self._clock() + RETRY_AFTER_S
            self._last_error = f"{type(exc).__name__}: {exc}"
            if not self._down:
                self._down = True
                log.warning(
                    "Redis at %s is unreachable (%s: %s): cache bypassed and budget in BUDGET_FAIL_MODE "
                    "until it is back",
                    self.url,
                    type(exc).__name__,
                    exc,
                )
            raise StoreUnavailable(f"Redis at {self.url} is unreachable during {what}: {self._last_error}") from exc
        if self._down:
            self._down = False
            log.warning("Redis at %s is reachable again", self.url)
        return result

    async def get(self, key: str) -> bytes | None:
        value = await self._call("GET", self._redis.get(key))
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self._call("SET", self._redis.set(key, value, px=max(1, int(ttl_ms))))

    async def delete(self, key: str) -> None:
        await self._call("DEL", self._redis.delete(key))

    async def get_or_lock(
        self, entry_key: str, lock_key: str, token: str, lock_ttl_ms: int
    ) -> tuple[bytes | None, bool]:
        entry, taken = await self._call(
            "cache lookup", self._get_or_lock(keys=[entry_key, lock_key], args=[token, max(1, int(lock_ttl_ms))])
        )
        return (None if entry is None else bytes(entry)), bool(taken)

    async def try_lock(self, lock_key: str, token: str, lock_ttl_ms: int) -> bool:
        return bool(await self._call("lock", self._redis.set(lock_key, token, nx=True, px=max(1, int(lock_ttl_ms)))))

    async def extend_lock(self, lock_key: str, token: str, lock_ttl_ms: int) -> bool:
        return bool(
            await self._call("lock renewal", self._extend(keys=[lock_key], args=[token, max(1, int(lock_ttl_ms))]))
        )

    async def unlock(self, lock_key: str, token: str) -> bool:
        return bool(await self._call("unlock", self._unlock(keys=[lock_key], args=[token])))

    async def incr_fields(self, key: str, increments: Mapping[str, int], ttl_ms: int) -> None:
        args: list[Any] = [max(1, int(ttl_ms))]
        for name, amount in increments.items():
            args += [name, int(amount)]
        await self._call("stats", self._incr(keys=[key], args=args))

    async def read_fields(self, key: str) -> dict[str, int]:
        raw = await self._call("HGETALL", self._redis.hgetall(key))
        return {bytes(k).decode(): int(v) for k, v in raw.items()}

    async def budget_reserve(
        self, keys: BudgetKeys, job_id: str, amount: int, limit: int, reservation_ttl_ms: int
    ) -> ReserveOutcome:
        args: list[str | int] = [
            job_id,
            amount,
            limit,
            max(1, reservation_ttl_ms),
            STATE_KEEP_SECONDS * 1000,
            JOBS_KEEP_SECONDS * 1000,
        ]
        values = await self._call("budget reserve", self._reserve(keys=keys.all(), args=args))
        return ReserveOutcome(ok=bool(values[0]), counts=_counts(values[1:]))

    async def budget_settle(self, keys: BudgetKeys, job_id: str, amount: int, alert_at: int) -> SettleOutcome:
        args: list[str | int] = [job_id, amount, alert_at, STATE_KEEP_SECONDS * 1000, JOBS_KEEP_SECONDS * 1000]
        values = await self._call("budget settle", self._settle(keys=keys.all(), args=args))
        return SettleOutcome(counts=_counts(values), first=bool(values[3]), alert=bool(values[4]))

    async def budget_release(self, keys: BudgetKeys, job_id: str) -> BudgetCounts:
        return _counts(await self._call("budget release", self._release(keys=keys.all(), args=[job_id])))

    async def budget_read(self, keys: BudgetKeys) -> BudgetCounts:
        return _counts(await self._call("budget read", self._read(keys=keys.all(), args=[])))

    async def ping(self) -> None:
        await self._call("PING", self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


async def open_store(settings: Settings) -> Store:
    """Redis when REDIS_URL is set, else the embedded store (one worker only).

    An unreachable Redis is not fatal here: the store is returned, one warning is
    logged, and the cache and budget act on the outage until Redis answers.
    """
    if not settings.redis_url:
        from handler.store_embedded import EmbeddedStore

        log.info("REDIS_URL is empty: cache and budget use an in-process store (this worker only)")
        return EmbeddedStore()
    store = RedisStore(settings.redis_url)
    with contextlib.suppress(StoreUnavailable):  # logged once by the store; the worker still serves
        await store.ping()
    return store
