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
from handler.store.base import (
    OVERHEAD_KINDS,
    REFUSAL_ALERT,
    THRESHOLD_ALERT,
    BudgetCounts,
    BudgetOutcome,
    Hold,
    Store,
)


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

    # --- budget (the Lua scripts' meaning, see handler.store.lua) ------------
    def _sweep(self, keys: BudgetKeys) -> None:
        now = self._now_ms()
        state, res, exp = self._hash(keys.state), self._hash(keys.reservations), self._hash(keys.expiries)
        for holder, deadline in list(exp.items()):
            if deadline <= now:
                state["reserved"] = state.get("reserved", 0) - res.pop(holder, 0)
                res[f"{holder}#lapsed"] = 1
                del exp[holder]

    def _hold(self, keys: BudgetKeys, hold: Hold) -> None:
        res, exp, state = self._hash(keys.reservations), self._hash(keys.expiries), self._hash(keys.state)
        lapsed = res.pop(f"{hold.holder}#lapsed", 0) == 1
        old = res.pop(hold.holder, 0)
        new = max(0, hold.target) if lapsed else max(0, old + hold.change)
        state["reserved"] = state.get("reserved", 0) + new - old
        exp.pop(hold.holder, None)
        if new > 0:
            res[hold.holder] = new
            exp[hold.holder] = int(self._now_ms() + max(1, hold.ttl_ms))

    def _outcome(
        self, keys: BudgetKeys, *, ok: bool = True, first: bool = False, alerts: int = 0, job_total: int = 0
    ) -> BudgetOutcome:
        state = self._hash(keys.state)
        values = [state.get(name, 0) for name in ("spent", "reserved", "jobs", "job_spent", *OVERHEAD_KINDS)]
        return BudgetOutcome(
            ok=ok, first=first, alerts=alerts, counts=BudgetCounts(*values), job_total=job_total,
            server_ms=int(self._now_ms()),
        )  # fmt: skip

    def _threshold_alert(self, keys: BudgetKeys, alert_at: int) -> int:
        state = self._hash(keys.state)
        if alert_at < 0 or state.get("spent", 0) < alert_at or state.get("alerted"):
            return 0
        state["alerted"] = 1
        return THRESHOLD_ALERT

    def _raise_job(self, keys: BudgetKeys, job_id: str, amount: int) -> int:
        settled, state = self._hash(keys.settled), self._hash(keys.state)
        old = settled.get(job_id, 0)
        if amount > old and f"{job_id}#done" not in settled:
            settled[job_id] = amount
            for name in ("spent", "job_spent"):
                state[name] = state.get(name, 0) + amount - old
            return amount
        return old

    async def budget_reserve(self, keys: BudgetKeys, hold: Hold, limit: int, alert_at: int) -> BudgetOutcome:
        with self._mutex:
            self._sweep(keys)
            state, res = self._hash(keys.state), self._hash(keys.reservations)
            spent, reserved = state.get("spent", 0), state.get("reserved", 0)
            lapsed = f"{hold.holder}#lapsed" in res
            after = reserved + (max(0, hold.target) if lapsed else hold.change)
            if limit >= 0 and spent + after > limit:
                alerts = self._threshold_alert(keys, alert_at)
                if alert_at >= 0 and not state.get("refused"):
                    state["refused"] = 1
                    alerts |= REFUSAL_ALERT
                return self._outcome(keys, ok=False, alerts=alerts)
            self._hold(keys, hold)
            return self._outcome(keys, alerts=self._threshold_alert(keys, alert_at))

    async def budget_settle(
        self, keys: BudgetKeys, hold: Hold, job_id: str, amount: int, alert_at: int, *, final: bool = True
    ) -> BudgetOutcome:
        with self._mutex:
            self._sweep(keys)
            settled, state = self._hash(keys.settled), self._hash(keys.state)
            total = self._raise_job(keys, job_id, amount)
            done = f"{job_id}#done"
            first = final and done not in settled
            if first:
                settled[done] = 1
                state["jobs"] = state.get("jobs", 0) + 1
            self._hold(keys, hold)
            return self._outcome(keys, first=first, alerts=self._threshold_alert(keys, alert_at), job_total=total)

    async def budget_accrue(
        self,
        keys: BudgetKeys,
        hold: Hold,
        overhead: Mapping[str, int],
        alert_at: int,
        running: Mapping[str, int] | None = None,
    ) -> BudgetOutcome:
        with self._mutex:
            self._sweep(keys)
            totals, state = self._hash(keys.overhead), self._hash(keys.state)
            for kind in OVERHEAD_KINDS:
                field, total = f"{hold.holder}:{kind}", int(overhead.get(kind, 0))
                grown = total - totals.get(field, 0)
                if grown > 0:
                    totals[field] = total
                    state[kind] = state.get(kind, 0) + grown
                    state["spent"] = state.get("spent", 0) + grown
            for job_id, amount in (running or {}).items():
                self._raise_job(keys, job_id, int(amount))
            self._hold(keys, hold)
            return self._outcome(keys, alerts=self._threshold_alert(keys, alert_at))

    async def budget_release(self, keys: BudgetKeys, holder: str) -> BudgetCounts:
        with self._mutex:
            self._sweep(keys)
            self._hold(keys, Hold(holder, -self._hash(keys.reservations).get(holder, 0), 1, 0))
            return self._outcome(keys).counts

    async def budget_read(self, keys: BudgetKeys) -> BudgetCounts:
        with self._mutex:
            self._sweep(keys)
            return self._outcome(keys).counts

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
