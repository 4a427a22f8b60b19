"""The embedded store: the Redis store's operations on in-process dicts.

Used when REDIS_URL is empty (one local worker). Every operation runs without an
``await`` inside it, so it is atomic with respect to the event loop, and a lock
guards against threads. Expiry follows an injectable clock (seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from handler.keys import BudgetKeys
from handler.store import BudgetCounts, ReserveOutcome, SettleOutcome, Store


class EmbeddedStore(Store):
    kind = "embedded"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._values: dict[str, bytes] = {}
        self._hashes: dict[str, dict[str, int]] = {}
        self._expires: dict[str, float] = {}
        self._mutex = threading.Lock()

    # --- plumbing ---------------------------------------------------------
    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    def _alive(self, key: str) -> bool:
        deadline = self._expires.get(key)
        if deadline is not None and deadline <= self._now_ms():
            self._values.pop(key, None)
            self._hashes.pop(key, None)
            del self._expires[key]
        return key in self._values or key in self._hashes

    def _expire(self, key: str, ttl_ms: float) -> None:
        self._expires[key] = self._now_ms() + max(1.0, float(ttl_ms))

    def _hash(self, key: str) -> dict[str, int]:
        self._alive(key)
        return self._hashes.setdefault(key, {})

    # --- plain values and locks ---------------------------------------------
    async def get(self, key: str) -> bytes | None:
        with self._mutex:
            return self._values.get(key) if self._alive(key) else None

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        with self._mutex:
            self._values[key] = bytes(value)
            self._expire(key, ttl_ms)

    async def delete(self, key: str) -> None:
        with self._mutex:
            self._values.pop(key, None)
            self._hashes.pop(key, None)
            self._expires.pop(key, None)

    async def get_or_lock(
        self, entry_key: str, lock_key: str, token: str, lock_ttl_ms: int
    ) -> tuple[bytes | None, bool]:
        with self._mutex:
            if self._alive(entry_key):
                return self._values[entry_key], False
            if self._alive(lock_key):
                return None, False
            self._values[lock_key] = token.encode()
            self._expire(lock_key, lock_ttl_ms)
            return None, True

    async def try_lock(self, lock_key: str, token: str, lock_ttl_ms: int) -> bool:
        with self._mutex:
            if self._alive(lock_key):
                return False
            self._values[lock_key] = token.encode()
            self._expire(lock_key, lock_ttl_ms)
            return True

    async def extend_lock(self, lock_key: str, token: str, lock_ttl_ms: int) -> bool:
        with self._mutex:
            if self._alive(lock_key) and self._values[lock_key] == token.encode():
                self._expire(lock_key, lock_ttl_ms)
                return True
            return False

    async def unlock(self, lock_key: str, token: str) -> bool:
        with self._mutex:
            if self._alive(lock_key) and self._values[lock_key] == token.encode():
                del self._values[lock_key]
                self._expires.pop(lock_key, None)
                return True
            return False

    async def incr_fields(self, key: str, increments: Mapping[str, int], ttl_ms: int) -> None:
        with self._mutex:
            fields = self._hash(key)
            for name, amount in increments.items():
                fields[name] = fields.get(name, 0) + int(amount)
            self._expire(key, ttl_ms)

    async def read_fields(self, key: str) -> dict[str, int]:
        with self._mutex:
            return dict(self._hashes[key]) if self._alive(key) and key in self._hashes else {}

    # --- budget -------------------------------------------------------------
    def _sweep(self, keys: BudgetKeys) -> None:
        now = self._now_ms()
        state, res, exp = self._hash(keys.state), self._hash(keys.reservations), self._hash(keys.expiries)
        for job, deadline in list(exp.items()):
            if deadline <= now:
                state["reserved"] = state.get("reserved", 0) - res.pop(job, 0)
                del exp[job]

    def _drop(self, keys: BudgetKeys, job_id: str) -> None:
        res = self._hash(keys.reservations)
        if job_id in res:
            state = self._hash(keys.state)
            state["reserved"] = state.get("reserved", 0) - res.pop(job_id)
            self._hash(keys.expiries).pop(job_id, None)

    def _counts(self, keys: BudgetKeys) -> BudgetCounts:
        state = self._hash(keys.state)
        return BudgetCounts(spent=state.get("spent", 0), reserved=state.get("reserved", 0), jobs=state.get("jobs", 0))

    async def budget_reserve(
        self, keys: BudgetKeys, job_id: str, amount: int, limit: int, reservation_ttl_ms: int
    ) -> ReserveOutcome:
        with self._mutex:
            self._sweep(keys)
            counts = self._counts(keys)
            res = self._hash(keys.reservations)
            if job_id in res:
                return ReserveOutcome(ok=True, counts=counts)
            if limit >= 0 and counts.spent + counts.reserved + amount > limit:
                return ReserveOutcome(ok=False, counts=counts)
            res[job_id] = amount
            self._hash(keys.expiries)[job_id] = int(self._now_ms() + max(1, reservation_ttl_ms))
            state = self._hash(keys.state)
            state["reserved"] = state.get("reserved", 0) + amount
            return ReserveOutcome(ok=True, counts=self._counts(keys))

    async def budget_settle(self, keys: BudgetKeys, job_id: str, amount: int, alert_at: int) -> SettleOutcome:
        with self._mutex:
            self._sweep(keys)
            self._drop(keys, job_id)
            settled = self._hash(keys.settled)
            state = self._hash(keys.state)
            first = job_id not in settled
            if first:
                settled[job_id] = amount
                state["spent"] = state.get("spent", 0) + amount
                state["jobs"] = state.get("jobs", 0) + 1
            counts = self._counts(keys)
            alert = False
            if alert_at >= 0 and counts.spent >= alert_at and not state.get("alerted"):
                state["alerted"] = 1
                alert = True
            return SettleOutcome(counts=counts, first=first, alert=alert)

    async def budget_release(self, keys: BudgetKeys, job_id: str) -> BudgetCounts:
        with self._mutex:
            self._sweep(keys)
            self._drop(keys, job_id)
            return self._counts(keys)

    async def budget_read(self, keys: BudgetKeys) -> BudgetCounts:
        with self._mutex:
            self._sweep(keys)
            return self._counts(keys)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
