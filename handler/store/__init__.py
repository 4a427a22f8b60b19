"""The stores behind the cache and the budget, and `open_store`, the one place that picks one.

    base          CacheStore and BudgetLedger: the two interfaces; Store: a backend with both
    redis_store   RedisStore: one Redis server, TLS, or a Redis Cluster (Lua scripts in `lua`)
    embedded      EmbeddedStore: in process, for one worker (REDIS_URL empty)
    safety        check_budget_keys_safe: refuses a Redis that may evict the budget's keys

An unreachable Redis, or one that refuses an operation, raises `StoreUnavailable`
(never a redis-py exception).
"""

from __future__ import annotations

import contextlib
import logging

from handler.errors import StoreUnavailable
from handler.store.base import Store
from handler.store.embedded import EmbeddedStore
from handler.store.redis_store import RedisStore

log = logging.getLogger(__name__)


async def open_store(redis_url: str) -> Store:
    """Redis when REDIS_URL is set, else the embedded store (one worker only).

    An unreachable Redis is not fatal here: the store is returned, one warning is
    logged, and the cache and budget act on the outage until Redis answers.
    """
    if not redis_url:
        log.info("REDIS_URL is empty: cache and budget use an in-process store (this worker only)")
        return EmbeddedStore()
    store = RedisStore(redis_url)
    with contextlib.suppress(StoreUnavailable):  # logged once by the store; the worker still serves
        await store.ping()
    return store
