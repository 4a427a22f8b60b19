"""Start-up check that the budget's keys cannot be evicted from Redis.

The budget's keys carry TTLs, so a Redis with `maxmemory` set and an evicting
`maxmemory-policy` (any but noeviction and volatile-ttl) may drop them to make
room for cache writes: the day's spend then reads 0 and the cap is erased.
Eviction spans every database of a server, so another database number does not help.
"""

from __future__ import annotations

import logging

from handler.errors import ConfigError, StoreUnavailable
from handler.store.base import Store
from handler.store.redis_store import RedisStore

log = logging.getLogger(__name__)


async def check_budget_keys_safe(store: Store) -> None:
    """Raise ConfigError (field REDIS_URL) when `store`'s Redis may evict the budget's keys.

    The embedded store evicts nothing: nothing to check. A Redis that refuses CONFIG passes
    with a warning (the store logs it); one that cannot be reached passes with a warning too,
    as it does when the store opens (the budget then follows BUDGET_FAIL_MODE).
    """
    if not isinstance(store, RedisStore):
        return
    try:
        risk = await store.eviction_risk()
    except StoreUnavailable as exc:
        log.warning("could not check that Redis keeps the daily budget's keys (%s)", exc)
        return
    if risk is not None:
        raise ConfigError(
            f"REDIS_URL: {risk}. Set `maxmemory-policy noeviction` (or volatile-ttl) on that server "
            "(CONFIG SET maxmemory-policy noeviction, and in its redis.conf or the service's parameter group), "
            "or point REDIS_URL at a Redis of the budget's own that does not evict (another database number "
            "on the same server does not help: eviction spans all its databases)",
            field="REDIS_URL",
        )
