"""The Redis backend of the cache and the budget (one server, TLS, or a Redis Cluster).

Only this module (with `handler.store.lua`, its scripts) talks to Redis. It runs every
multi-step operation as one Lua script, so it is atomic across all workers of an endpoint.

An unreachable Redis, or one that refuses an operation (out of memory, a script
or cluster error), raises `StoreUnavailable` (never a redis-py exception).
The store logs ONE warning when Redis goes away and one line when it is back,
not one per job; for a short while after a failure it answers
`StoreUnavailable` at once instead of waiting on a dead socket again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as redis_asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handler.errors import ConfigError, StoreUnavailable
from handler.keys import JOBS_KEEP_SECONDS, STATE_KEEP_SECONDS, BudgetKeys
from handler.settings import REDIS_SCHEMES
from handler.store import lua as store_lua
from handler.store.base import OVERHEAD_KINDS, BudgetCounts, BudgetOutcome, Hold, Store

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0
POOL_WAIT_S = 10.0  # a job waits this long for a free connection when all are busy
RETRY_AFTER_S = 0.25  # after a failure, answer "unavailable" at once for this long
REFUSAL_LOG_EVERY_S = 60.0
# The eviction policies under which a full Redis never evicts the budget's keys: noeviction evicts
# nothing (writes fail instead), volatile-ttl evicts the keys nearest their expiry first, the cache's
# entries and locks (CACHE_TTL, a day by default) before the budget's (three to 400 days).
SAFE_EVICTION_POLICIES = ("noeviction", "volatile-ttl")


def _outcome(values: list[Any]) -> BudgetOutcome:
    """A budget script's reply (handler.store.lua): {ok, first, alerts, job_total, server_ms, counts...}."""
    counts = BudgetCounts(*(int(v) for v in values[5:12]))
    return BudgetOutcome(
        ok=bool(values[0]),
        first=bool(values[1]),
        alerts=int(values[2]),
        counts=counts,
        job_total=int(values[3]),
        server_ms=int(values[4]),
    )


def cluster_form(url: str) -> tuple[bool, str]:
    """(whether the URL names a Redis Cluster, the URL redis-py takes): `redis+cluster://host:port`
    and `rediss+cluster://` name any node of a cluster, which the client discovers from it."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("redis+cluster", "rediss+cluster"):
        return True, f"{scheme.removesuffix('+cluster')}://{rest}"
    return False, url


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
        if scheme not in REDIS_SCHEMES:
            choices = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
            raise ConfigError(f"REDIS_URL: scheme {scheme!r} is not one of {choices}", field="REDIS_URL")
        self.url = redacted(url)
        self._clock = clock
        self._down_until = 0.0
        self._down = False
        self._last_error = ""
        self._refusals_logged: dict[str, float] = {}
        # One immediate retry: a pooled connection may be stale after a server restart.
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": COMMAND_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 1),
            "decode_responses": False,
        }
        cluster, plain = cluster_form(url)
        self.cluster = cluster
        # The cluster client fails a command when a node's connections are all busy (it has no
        # blocking pool), and one failed connection makes it drop the others in use: commands wait
        # for one of `max_connections` slots here instead.
        self._slots = asyncio.Semaphore(max_connections) if cluster else None
        self._discovering = asyncio.Lock()
        self._discovered = False
        if cluster:  # slots and redirections are the client's; every script's keys share one hash tag
            self._redis: Any = RedisCluster.from_url(plain, max_connections=max_connections, **options)
        else:  # a blocking pool: more concurrent jobs than connections wait for one, not fail
            pool = redis_asyncio.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=POOL_WAIT_S, **options
            )
            self._redis = redis_asyncio.Redis.from_pool(pool)
        reg = self._redis.register_script
        self._reserve = reg(store_lua.RESERVE)
        self._settle = reg(store_lua.SETTLE)
        self._accrue = reg(store_lua.ACCRUE)
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
            if self._slots is None:
                result = await awaitable
            else:
                await self._discover()
                async with self._slots:
                    result = await awaitable
        except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, RedisClusterException, OSError) as exc:
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
        except RedisError as exc:
            # The server answered but refused: out of memory (noeviction), a script error, a cluster
            # redirection. This operation fails like an outage would (the cache skips it, the budget
            # follows BUDGET_FAIL_MODE); the store is not marked down.
            self._log_refusal(what, exc)
            raise StoreUnavailable(f"Redis at {self.url} refused {what}: {type(exc).__name__}: {exc}") from exc
        finally:
            awaitable.close()  # never awaited when the cluster's discovery failed; a no-op once it ran
        if self._down:
            self._down = False
            log.warning("Redis at %s is reachable again", self.url)
        return result

    async def _discover(self) -> None:
        """A cluster client learns the slots once, before concurrent commands: left to the first
        commands, concurrent discoveries break one another's connections (redis-py issue 3935)."""
        if self._discovered:
            return
        async with self._discovering:
            if not self._discovered:
                await self._redis.initialize()
                self._discovered = True

    def _log_refusal(self, what: str, exc: Exception) -> None:
        """One warning per kind of refusal per REFUSAL_LOG_EVERY_S, not one per job."""
        kind = type(exc).__name__
        now = self._clock()
        if now - self._refusals_logged.get(kind, -REFUSAL_LOG_EVERY_S) >= REFUSAL_LOG_EVERY_S:
            self._refusals_logged[kind] = now
            log.warning("Redis at %s refused %s (%s: %s)", self.url, what, kind, exc)

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

    def _keep(self) -> list[int]:
        return [STATE_KEEP_SECONDS * 1000, JOBS_KEEP_SECONDS * 1000]

    async def budget_reserve(self, keys: BudgetKeys, hold: Hold, limit: int, alert_at: int) -> BudgetOutcome:
        args: list[str | int] = [hold.holder, hold.change, hold.target, int(limit), int(alert_at), max(1, hold.ttl_ms)]
        args += self._keep()
        return _outcome(await self._call("budget reserve", self._reserve(keys=keys.all(), args=args)))

    async def budget_settle(
        self, keys: BudgetKeys, hold: Hold, job_id: str, amount: int, alert_at: int, *, final: bool = True
    ) -> BudgetOutcome:
        args: list[str | int] = [hold.holder, hold.change, hold.target, job_id, int(amount), int(final)]
        args += [int(alert_at), max(1, hold.ttl_ms), *self._keep()]
        return _outcome(await self._call("budget settle", self._settle(keys=keys.all(), args=args)))

    async def budget_accrue(
        self,
        keys: BudgetKeys,
        hold: Hold,
        overhead: Mapping[str, int],
        alert_at: int,
        running: Mapping[str, int] | None = None,
    ) -> BudgetOutcome:
        totals = [int(overhead.get(kind, 0)) for kind in OVERHEAD_KINDS]
        args: list[str | int] = [hold.holder, hold.change, hold.target, int(alert_at), max(1, hold.ttl_ms)]
        args += [*self._keep(), *totals]
        for job_id, amount in (running or {}).items():
            args += [job_id, int(amount)]
        return _outcome(await self._call("budget accrue", self._accrue(keys=keys.all(), args=args)))

    async def budget_release(self, keys: BudgetKeys, holder: str) -> BudgetCounts:
        return _outcome(await self._call("budget release", self._release(keys=keys.all(), args=[holder]))).counts

    async def budget_read(self, keys: BudgetKeys) -> BudgetCounts:
        return _outcome(await self._call("budget read", self._read(keys=keys.all(), args=[]))).counts

    async def eviction_risk(self) -> str | None:
        """Whether a full Redis may evict the daily budget's keys (they carry TTLs, so every policy
        but noeviction and volatile-ttl may pick them) and erase the day's spend.

        None when they are safe (`maxmemory` 0, or `maxmemory-policy` in SAFE_EVICTION_POLICIES on
        the server, or on every primary of a cluster); else a message naming each policy and server.
        When the server refuses CONFIG (managed services rename or forbid it) it returns None and logs
        one warning saying what to set. Raises StoreUnavailable when Redis cannot be reached.
        """
        try:
            configs = await self._memory_configs()
        except ResponseError as exc:  # an unknown (renamed) command, or NOPERM from an ACL
            log.warning(
                "Redis at %s refused CONFIG GET (%s: %s): could not check that a full Redis keeps the daily "
                "budget's keys; make sure its maxmemory-policy is noeviction or volatile-ttl (or maxmemory is 0), "
                "else cache writes can evict the day's spend and erase DAILY_BUDGET_USD",
                self.url,
                type(exc).__name__,
                exc,
            )
            return None
        except (RedisError, RedisClusterException, OSError) as exc:  # unreachable
            raise StoreUnavailable(
                f"Redis at {self.url} did not answer CONFIG GET: {type(exc).__name__}: {exc}"
            ) from exc
        risky = []
        for server, config in configs:
            maxmemory = int(config.get("maxmemory") or 0)
            policy = config.get("maxmemory-policy") or "noeviction"
            if maxmemory > 0 and policy not in SAFE_EVICTION_POLICIES:
                risky.append(f"Redis at {server} has maxmemory-policy {policy} with maxmemory {maxmemory} bytes")
        if not risky:
            return None
        return (
            "; ".join(risky) + ": once full it evicts keys to make room for cache writes, the daily budget's among "
            "them, and the day's spend then reads 0 (the cap is erased)"
        )

    async def _memory_configs(self) -> list[tuple[str, dict[str, str]]]:
        """(server, its `maxmemory*` settings) for the server, or for each primary of a cluster."""
        if not self.cluster:
            return [(self.url, _text(await self._redis.config_get("maxmemory*")))]
        await self._discover()
        configs = []
        for node in self._redis.get_primaries():
            reply = await self._redis.config_get("maxmemory*", target_nodes=node)
            configs.append((f"{node.host}:{node.port}", _text(reply)))
        return configs

    async def ping(self) -> None:
        await self._call("PING", self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


def _text(config: Mapping[Any, Any]) -> dict[str, str]:
    """A CONFIG GET reply as text (redis-py decodes it already; bytes are tolerated)."""
    return {_decoded(name): _decoded(value) for name, value in config.items()}


def _decoded(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
