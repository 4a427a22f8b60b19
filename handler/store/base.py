"""The store's two interfaces, and the figures they carry.

`CacheStore` serves the response cache, `BudgetLedger` the daily budget. A backend
(`RedisStore`, `EmbeddedStore`) implements both as one `Store`: both offer the same
operations with the same meaning. A new backend implements these methods, nothing else.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

from handler.keys import BudgetKeys

OVERHEAD_KINDS = ("boot", "engine_start", "idle")


@dataclass(frozen=True)
class BudgetCounts:
    """One budget day as stored, in micro-dollars: spent (jobs plus overhead), reserved,
    jobs settled, and spent split into jobs and the workers' overhead by kind."""

    spent: int
    reserved: int
    jobs: int
    job_spent: int = 0
    boot: int = 0
    engine_start: int = 0
    idle: int = 0

    @property
    def overhead(self) -> int:
        return self.boot + self.engine_start + self.idle


@dataclass(frozen=True)
class Hold:
    """A change of a holder's (one worker's) reservation, in micro-dollars; the reservation
    lapses `ttl_ms` after its last change. Changes commute: they may arrive in any order."""

    holder: str
    change: int
    ttl_ms: int
    target: int = 0  # the reservation this change aims at: set as it is where the holder has none (lapsed)


THRESHOLD_ALERT = 1  # BudgetOutcome.alerts: spend reached the alert level (once a day)
REFUSAL_ALERT = 2  # the day's first refusal (once a day)


@dataclass(frozen=True)
class BudgetOutcome:
    ok: bool  # reserve: the holder's reservation was set (False: refused, over the limit)
    first: bool  # settle: the job was counted as ended now (False: before; nothing counted again)
    alerts: int  # THRESHOLD_ALERT | REFUSAL_ALERT: each set for exactly one operation per day
    counts: BudgetCounts
    job_total: int = 0  # settle: the job's count of the day after it (its largest amount given)
    server_ms: int = 0  # the store's clock when it answered (Unix ms): the budget's day follows it


class _Closable(abc.ABC):
    kind: str  # "redis" or "embedded"

    @abc.abstractmethod
    async def ping(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class CacheStore(_Closable):
    """What the response cache needs: entries with a time to live, single-flight locks and
    counters for its statistics. Times in milliseconds."""

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


class BudgetLedger(_Closable):
    """What the budget needs: one day's spend and reservations, changed atomically across workers.

    A holder (one worker) holds one reservation per day, the worst case of what it will still
    be billed; it lapses `hold.ttl_ms` after its last change. Amounts in micro-dollars."""

    @abc.abstractmethod
    async def budget_reserve(self, keys: BudgetKeys, hold: Hold, limit: int, alert_at: int) -> BudgetOutcome:
        """Atomically: drop lapsed reservations; change the holder's reservation by `hold.change`
        (never under 0; `hold.target` where it has none) if spent + reserved after it <= limit
        (limit < 0: none), whether it grows or not; a refusal reports the day's first refusal."""

    @abc.abstractmethod
    async def budget_settle(
        self, keys: BudgetKeys, hold: Hold, job_id: str, amount: int, alert_at: int, *, final: bool = True
    ) -> BudgetOutcome:
        """Atomically: raise the job's count of the day to `amount` (cumulative: only growth is
        spent), count the job as ended once per id when `final`, change the holder's reservation
        (`hold`), report whether spend reached `alert_at` (< 0: never) for the first time today."""

    @abc.abstractmethod
    async def budget_accrue(
        self,
        keys: BudgetKeys,
        hold: Hold,
        overhead: Mapping[str, int],
        alert_at: int,
        running: Mapping[str, int] | None = None,
    ) -> BudgetOutcome:
        """Atomically: raise the holder's cumulative overhead of the day (by kind, OVERHEAD_KINDS)
        and each running job's count of the day (`running`: job id -> cumulative amount) to the
        totals given, counting only the growth; change its reservation (`hold`)."""

    @abc.abstractmethod
    async def budget_release(self, keys: BudgetKeys, holder: str) -> BudgetCounts:
        """Drop the holder's reservation."""

    @abc.abstractmethod
    async def budget_read(self, keys: BudgetKeys) -> BudgetCounts: ...


class Store(CacheStore, BudgetLedger):
    """A backend serving both: one connection for the cache and the budget of a worker."""
