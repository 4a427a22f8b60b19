"""The shared daily budget: reserve a job's worst case before it runs, settle what it cost.

Amounts are integer micro-dollars in the store, under keys that carry the budget
day (BUDGET_TIMEZONE, injected clock), so each day starts empty and nothing
resets anything. Reserve is one atomic script (lapsed reservations dropped,
limit checked, reservation added with its expiry); a crashed worker's
reservations lapse by themselves. Settle is idempotent per job id. The alert
fires once per day across all workers.

Store unreachable: BUDGET_FAIL_MODE=closed refuses new reservations with
`budget_unavailable`; `open` reserves against the last known state plus what
this worker spent since, and replays its settlements when the store is back.
Settlements of jobs that already ran are kept and replayed in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from handler import keys
from handler.alerts import Alerter
from handler.days import day_of, recent_days, zone
from handler.errors import BudgetExceeded, BudgetUnavailable, ConfigError, StoreUnavailable
from handler.settings import Settings
from handler.store import BudgetCounts, Store

log = logging.getLogger(__name__)

MICRO = 1_000_000
RESERVATION_MARGIN_S = 60.0

ExhaustedHook = Callable[["BudgetState"], Awaitable[None]]


def to_micro(usd: float) -> int:
    return max(0, round(usd * MICRO))


def hourly_rate(settings: Settings) -> float:
    """USD per worker hour: GPU_HOURLY_RATE, else GPU_TYPE's on-demand price from the price table."""
    if settings.gpu_hourly_rate > 0:
        return settings.gpu_hourly_rate
    if settings.gpu_type:
        from client.errors import PriceTableError
        from client.prices import load_prices

        try:
            return load_prices().hourly_rate(settings.gpu_type, "on_demand")
        except PriceTableError as exc:
            raise ConfigError(f"GPU_TYPE: {exc}", field="GPU_TYPE") from exc
    if settings.daily_budget_usd > 0:
        raise ConfigError(
            "DAILY_BUDGET_USD is set but no hourly rate is known: set GPU_HOURLY_RATE or GPU_TYPE",
            field="GPU_HOURLY_RATE",
        )
    return 0.0


@dataclass(frozen=True)
class Reservation:
    job_id: str
    day: str
    amount_micro: int
    local: bool = False  # made while the store was unreachable (BUDGET_FAIL_MODE=open)


@dataclass(frozen=True)
class BudgetState:
    day: str
    spent_usd: float
    reserved_usd: float
    remaining_usd: float | None  # None: no limit
    limit_usd: float | None
    jobs: int = 0
    stale: bool = False  # the store is unreachable: last known figures plus this worker's own

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Budget:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        alerter: Alerter | None = None,
        on_exhausted: ExhaustedHook | None = None,
        reservation_ttl: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self._tz = zone(settings.budget_timezone)
        self._ns = settings.cache_namespace
        self._limit = to_micro(settings.daily_budget_usd) if settings.daily_budget_usd > 0 else -1
        self._alert_at = int(self._limit * settings.budget_alert_threshold) if self._limit >= 0 else -1
        self.alerter = alerter or Alerter(settings.budget_alert_webhook, endpoint_id=settings.runpod_endpoint_id)
        self._on_exhausted = on_exhausted
        ttl = reservation_ttl
        if ttl is None:
            ttl = settings.engine_start_timeout + settings.engine_request_timeout + RESERVATION_MARGIN_S
        self._reservation_ttl_ms = int(ttl * 1000)
        self._known: dict[str, BudgetCounts] = {}
        self._pending: dict[tuple[str, str], int] = {}  # (day, job) -> micro-dollars to replay
        self._local: dict[str, tuple[str, int]] = {}  # job -> (day, micro-dollars) reserved locally
        self._exhausted_days: set[str] = set()
        self._replaying = asyncio.Lock()

    # --- the four operations ---------------------------------------------------
    async def reserve(self, job_id: str, worst_case_usd: float) -> Reservation:
        day = self.today()
        amount = to_micro(worst_case_usd)
        await self.reconcile()
        try:
            outcome = await self.store.budget_reserve(
                keys.budget_day(self._ns, day), job_id, amount, self._limit, self._reservation_ttl_ms
            )
        except StoreUnavailable as exc:
            if self.settings.budget_fail_mode == "closed":
                raise BudgetUnavailable(
                    "budget store unreachable and BUDGET_FAIL_MODE=closed: jobs that would run the engine are "
                    "refused until Redis answers"
                ) from exc
            return await self._reserve_locally(job_id, day, amount)
        self._known[day] = outcome.counts
        if not outcome.ok:
            await self._refuse(day, amount)
        return Reservation(job_id=job_id, day=day, amount_micro=amount)

    async def settle(self, reservation: Reservation, actual_usd: float) -> BudgetState:
        """Count what the job cost (once per job id), drop its reservation."""
        amount = to_micro(actual_usd)
        self._local.pop(reservation.job_id, None)
        await self.reconcile()
        day_keys = keys.budget_day(self._ns, reservation.day)
        try:
            outcome = await self.store.budget_settle(day_keys, reservation.job_id, amount, self._alert_at)
        except StoreUnavailable:
            if (reservation.day, reservation.job_id) not in self._pending:
                self._pending[(reservation.day, reservation.job_id)] = amount
                self._forget_reservation(reservation)
            return self._state(reservation.day, stale=True)
        self._known[reservation.day] = outcome.counts
        if outcome.alert:
            await self._alert(reservation.day)
        return self._state(reservation.day, stale=bool(self._pending))

    async def release(self, reservation: Reservation) -> None:
        """The job failed before costing anything: give its reservation back."""
        if self._local.pop(reservation.job_id, None) is not None:
            return
        try:
            counts = await self.store.budget_release(keys.budget_day(self._ns, reservation.day), reservation.job_id)
        except StoreUnavailable:
            self._forget_reservation(reservation)  # in Redis it lapses by itself
            return
        self._known[reservation.day] = counts

    def _forget_reservation(self, reservation: Reservation) -> None:
        """Take a Redis-held reservation out of the local view (its job is settled or released)."""
        known = self._known.get(reservation.day)
        if known is not None and not reservation.local:
            reserved = max(0, known.reserved - reservation.amount_micro)
            self._known[reservation.day] = BudgetCounts(known.spent, reserved, known.jobs)

    async def state(self) -> BudgetState:
        day = self.today()
        await self.reconcile()
        try:
            self._known[day] = await self.store.budget_read(keys.budget_day(self._ns, day))
        except StoreUnavailable:
            return self._state(day, stale=True)
        return self._state(day, stale=bool(self._pending))

    # --- outage handling ---------------------------------------------------------
    async def reconcile(self) -> int:
        """Replay settlements recorded while the store was unreachable; return how many landed."""
        if not self._pending or self._replaying.locked():
            return 0
        done = 0
        async with self._replaying:
            for (day, job_id), amount in list(self._pending.items()):
                try:
                    outcome = await self.store.budget_settle(
                        keys.budget_day(self._ns, day), job_id, amount, self._alert_at
                    )
                except StoreUnavailable:
                    break
                self._pending.pop((day, job_id), None)
                self._known[day] = outcome.counts
                done += 1
                if outcome.alert:
                    await self._alert(day)
        if done:
            log.warning("budget: replayed %d settlement(s) recorded while Redis was unreachable", done)
        return done

    async def _alert(self, day: str) -> None:
        state = self._state(day, stale=False).to_dict()
        await self.alerter.budget_threshold(state, self.settings.budget_alert_threshold)

    async def _reserve_locally(self, job_id: str, day: str, amount: int) -> Reservation:
        state = self._local_counts(day)
        if self._limit >= 0 and state.spent + state.reserved + amount > self._limit:
            await self._refuse(day, amount)
        self._local[job_id] = (day, amount)
        return Reservation(job_id=job_id, day=day, amount_micro=amount, local=True)

    async def _refuse(self, day: str, amount: int) -> None:
        state = self._state(day, stale=False)
        spent = self._local_counts(day).spent
        # Exhausted: even if every job in flight settled at nothing, this one would not fit.
        # (A refusal caused only by reservations in flight does not scale anything down.)
        if spent + amount > self._limit and day not in self._exhausted_days:
            self._exhausted_days.add(day)
            log.warning("daily budget exhausted for %s: refusing jobs that would run the engine", day)
            if self._on_exhausted is not None:
                await self._call_hook(state)
        limit = (self._limit or 0) / MICRO
        raise BudgetExceeded(
            f"daily budget exceeded: this job may cost up to {amount / MICRO:.6f} USD but only "
            f"{max(0.0, state.remaining_usd or 0.0):.6f} USD of the {limit:.2f} USD daily budget "
            f"({day}, {self.settings.budget_timezone}) is left unreserved"
        )

    async def _call_hook(self, state: BudgetState) -> None:
        assert self._on_exhausted is not None
        try:
            await self._on_exhausted(state)
        except Exception:  # a user-supplied hook (scale to zero); the refusal stands either way
            log.exception("budget exhaustion hook failed")

    # --- readings -------------------------------------------------------------------
    def today(self) -> str:
        return day_of(self._clock(), self._tz)

    def snapshot(self) -> BudgetState:
        """Today's state as last seen plus this worker's unreplayed figures (no I/O)."""
        day = self.today()
        return self._state(day, stale=bool(self._pending))

    def _local_counts(self, day: str) -> BudgetCounts:
        known = self._known.get(day, BudgetCounts(0, 0, 0))
        pending = [amount for (d, _), amount in self._pending.items() if d == day]
        reserved = sum(amount for d, amount in self._local.values() if d == day)
        return BudgetCounts(known.spent + sum(pending), known.reserved + reserved, known.jobs + len(pending))

    def _state(self, day: str, *, stale: bool) -> BudgetState:
        counts = self._local_counts(day)
        limit = self._limit / MICRO if self._limit >= 0 else None
        remaining = None if limit is None else (self._limit - counts.spent - counts.reserved) / MICRO
        return BudgetState(
            day=day,
            spent_usd=counts.spent / MICRO,
            reserved_usd=counts.reserved / MICRO,
            remaining_usd=remaining,
            limit_usd=limit,
            jobs=counts.jobs,
            stale=stale,
        )

    async def daily_spend(self, days: int) -> list[dict[str, Any]]:
        """Per day, oldest first: spent, reserved, jobs settled, limit."""
        rows = []
        for day in recent_days(self._clock(), self._tz, days):
            self._known[day] = await self.store.budget_read(keys.budget_day(self._ns, day))
            rows.append(self._state(day, stale=False).to_dict())
        return rows
