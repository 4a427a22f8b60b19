"""The shared daily budget: it counts the whole bill of every worker and stops at its limit.

RunPod bills a worker per second from start to scale-down. The budget counts
exactly that, in integer micro-dollars per budget day (BUDGET_TIMEZONE):

- **jobs**: each job's share of the worker's seconds: what it has used so far
  with each heartbeat (so a killed worker loses at most one heartbeat, and a
  heartbeat never hands back seconds a running job already used), the rest when
  it ends; counted once per job id, split at the budget day's boundary;
- **overhead**: the worker's boot, engine start-up and idle seconds, settled as
  cumulative totals by a heartbeat (`accrue`), so a late or repeated one counts
  nothing twice;
- **reservations**: each worker (a holder) keeps ONE reservation, its exposure:
  the worst case of what it will still be billed (`handler.exposure`). Admitting
  a job raises it and must fit under the limit; settlements and heartbeats move
  it to the worker's new exposure. Operations carry changes, not values, since a
  worker's calls may reach Redis in any order. It lapses a few heartbeats after
  its last change, so a killed worker's reservation frees itself.

Money arrives as float USD and is rounded once, cumulatively per worker, so the
sum of what a worker settles equals its total to a micro-dollar however small
each job is. The alert fires once per day across all workers, when spend
crosses the threshold or when a job is refused.

Store unreachable: BUDGET_FAIL_MODE=closed refuses engine work with
`budget_unavailable`; `open` lets this worker spend at most its share of what
was left (remaining / ENDPOINT_WORKERS_MAX). Settlements and overhead made
meanwhile are kept and replayed when the store is back, in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from core.money import MICRO, ceil_micro, to_micro
from handler import keys
from handler.alerts import Alerter
from handler.days import day_of, recent_days, zone
from handler.errors import BudgetExceeded, BudgetUnavailable, StoreUnavailable
from handler.money import BudgetState, Reservation
from handler.settings import BudgetSettings
from handler.store.base import (
    OVERHEAD_KINDS,
    REFUSAL_ALERT,
    THRESHOLD_ALERT,
    BudgetCounts,
    BudgetLedger,
    BudgetOutcome,
    Hold,
)

log = logging.getLogger(__name__)

HOLD_HEARTBEATS = 6  # a reservation lapses this many heartbeats after its last change...
HOLD_MIN_S = 60.0  # ...and never sooner than this
RETIRE_PATIENCE_S = 5.0  # at exit, settlements kept during an outage are retried this long
RETRY_EVERY_S = 0.5

__all__ = ["Budget", "BudgetState", "Reservation"]


class Budget:
    def __init__(
        self,
        store: BudgetLedger,
        settings: BudgetSettings,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        alerter: Alerter | None = None,
        hold_ttl: float | None = None,
        margin_usd: float = 0.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.holder = holder or f"w-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._skew = 0.0  # the store's clock less this worker's (followed with the default clock only)
        self._follow_store_clock = clock is time.time
        self._tz = zone(settings.budget_timezone)
        self._ns = settings.budget_namespace
        self._limit = to_micro(settings.daily_budget_usd) if settings.daily_budget_usd > 0 else -1
        self._alert_at = int(self._limit * settings.budget_alert_threshold) if self._limit >= 0 else -1
        # jobs are admitted under the limit less `margin_usd`, kept for workers that may still start
        self._margin = min(ceil_micro(margin_usd), self._limit) if self._limit >= 0 else 0
        self.alerter = alerter or Alerter(settings.budget_alert_webhook, endpoint_id=settings.runpod_endpoint_id)
        ttl = hold_ttl if hold_ttl is not None else max(HOLD_MIN_S, HOLD_HEARTBEATS * settings.budget_heartbeat_seconds)
        self._hold_ttl_ms = int(ttl * 1000)
        self._known: dict[str, BudgetCounts] = {}
        self._held: dict[str, int] = {}  # day -> this worker's reservation as its changes sent make it
        self._wanted: dict[str, int] = {}  # day -> the reservation last asked for (a replay restores it)
        self._carry = 0.0  # micro-dollars settled jobs cost beyond the whole ones counted
        self._pending: dict[tuple[str, str], int] = {}  # (day, job) -> micro-dollars to replay
        self._job_days: dict[str, dict[str, int]] = {}  # job -> day -> its count there as the store has it
        self._overhead_total: dict[str, int] = dict.fromkeys(OVERHEAD_KINDS, 0)
        self._overhead_days: dict[str, dict[str, int]] = {}  # day -> cumulative micro-dollars by kind
        self._overhead_sent: dict[str, int] = {}  # day -> the part of it the store has counted
        self._allowance: dict[str, int] = {}  # fail-open: day -> what this worker may still spend alone
        self._replaying = asyncio.Lock()
        self._alerts: set[asyncio.Task[None]] = set()

    def set_margin(self, margin_usd: float) -> None:
        """The margin kept for workers the endpoint may still start (once the endpoint is read)."""
        self._margin = min(ceil_micro(margin_usd), self._limit) if self._limit >= 0 else 0

    # --- the operations ------------------------------------------------------------
    async def reserve(self, job_id: str, exposure_usd: float, *, worst_usd: float = 0.0) -> Reservation:
        """Admit a job: this worker's reservation becomes `exposure_usd`, its worst-case remaining
        bill with the job admitted. Raises BudgetExceeded when that does not fit."""
        if self._replaying.locked():  # settlements kept during an outage first: no unchecked admission
            async with self._replaying:
                pass
        await self.reconcile()
        day = self.today()
        amount = ceil_micro(exposure_usd)
        hold = self._hold_of(day, amount)
        try:
            outcome = await self.store.budget_reserve(self._keys(day), hold, self._admit_limit(), self._alert_at)
        except StoreUnavailable as exc:
            self._not_applied(day, hold)
            if self.settings.budget_fail_mode == "closed":
                raise BudgetUnavailable(
                    "budget store unreachable and BUDGET_FAIL_MODE=closed: jobs that would run the engine are "
                    "refused until Redis answers"
                ) from exc
            self._reserve_locally(day, amount)
        else:
            await self._seen(day, outcome)
            if not outcome.ok:
                self._not_applied(day, hold)
                self._refuse(day, amount)
            self._allowance.pop(day, None)
        return Reservation(job_id=job_id, day=day, worst_usd=worst_usd)

    async def settle(self, reservation: Reservation, cost_usd: float, exposure_usd: float) -> BudgetState:
        """Count what the job cost in all (once per job id; what heartbeats counted of it already
        is part of it); this worker's reservation becomes `exposure_usd`."""
        await self.reconcile()
        job, day = reservation.job_id, self.today()
        exact = max(0.0, cost_usd) * MICRO + self._carry  # the fraction carries to the next settlement
        counted = self._job_days.get(job, {})
        elsewhere = sum(amount for d, amount in counted.items() if d != day)  # before midnight
        amount = max(0, round(exact) - elsewhere)
        # set before the store is awaited: settlements at once on this worker chain their fractions
        self._carry = exact - elsewhere - amount
        hold = self._hold_of(day, ceil_micro(exposure_usd))
        try:
            outcome = await self.store.budget_settle(self._keys(day), hold, job, amount, self._alert_at)
        except StoreUnavailable:
            self._not_applied(day, hold)
            self._pending[(day, job)] = amount
            self._job_days.pop(job, None)
            return self._state(day, stale=True)
        if not outcome.first:  # settled before: nothing was counted now, so nothing carries
            self._carry += amount - max(0.0, cost_usd) * MICRO
        elif outcome.job_total > amount:  # its heartbeats counted more than its whole (rounding): carried back
            self._carry -= outcome.job_total - amount
        self._job_days.pop(job, None)
        await self._seen(day, outcome)
        return self._state(day, stale=self._stale())

    async def release(self, reservation: Reservation, exposure_usd: float) -> None:
        """The job failed before costing anything: this worker's reservation becomes `exposure_usd`."""
        await self.accrue(None, exposure_usd)

    async def accrue(
        self,
        overhead_usd: Mapping[str, float] | None,
        exposure_usd: float,
        running_usd: Mapping[str, float] | None = None,
    ) -> BudgetState:
        """The heartbeat: count this worker's overhead (cumulative USD by kind since it started;
        None: unchanged) and what its running jobs have used so far (job id -> USD), and renew its
        reservation at `exposure_usd` (what it may still be billed from now)."""
        await self.reconcile()
        day = self.today()
        if overhead_usd is not None:
            self._book_overhead(day, overhead_usd)
        await self._release_past_days(day)
        running = self._running_today(day, running_usd or {})
        hold = self._hold_of(day, ceil_micro(exposure_usd))
        try:
            outcome = await self.store.budget_accrue(
                self._keys(day), hold, self._overhead_days.get(day, {}), self._alert_at, running
            )
        except StoreUnavailable:
            self._not_applied(day, hold)
            return self._state(day, stale=True)
        self._overhead_sent[day] = self._overhead_booked(day)
        for job, amount in running.items():
            self._job_days.setdefault(job, {})[day] = amount
        await self._seen(day, outcome)
        return self._state(day, stale=self._stale())

    def _running_today(self, day: str, running_usd: Mapping[str, float]) -> dict[str, int]:
        """Each running job's count for `day`: what it used so far (whole micro-dollars, rounded
        down: its settlement counts the rest) less what other days counted; only those that grew."""
        out = {}
        for job, usd in running_usd.items():
            counted = self._job_days.get(job, {})
            amount = int(max(0.0, usd) * MICRO) - sum(a for d, a in counted.items() if d != day)
            if amount > counted.get(day, 0):
                out[job] = amount
        return out

    async def retire(self, overhead_usd: Mapping[str, float], running_usd: Mapping[str, float] | None = None,
                     *, patience_s: float = RETIRE_PATIENCE_S) -> BudgetState:  # fmt: skip
        """The worker stops: count its last overhead (and what jobs still running used), replay what
        is pending (retrying for up to `patience_s` while the store is away), drop its reservation."""
        state = await self.accrue(overhead_usd, 0.0, running_usd)
        waited = 0.0
        while (state.stale or self._pending or self._unsent_past_days()) and waited < patience_s:
            await asyncio.sleep(RETRY_EVERY_S)
            waited += RETRY_EVERY_S
            state = await self.accrue(None, 0.0, running_usd)
        try:
            self._known[state.day] = await self.store.budget_release(self._keys(state.day), self.holder)
            self._held[state.day] = 0
        except StoreUnavailable:
            log.warning("budget: Redis unreachable at exit; this worker's reservation lapses by itself")
        lost = len(self._pending) + len(self._unsent_past_days())
        if lost or state.stale:
            log.error(
                "budget: Redis unreachable at exit after %.1f s: %d settlement(s) and %.6f USD of overhead of this "
                "worker are lost to the budget",
                waited, len(self._pending), self._overhead_unsent(state.day) / MICRO,
            )  # fmt: skip
        await self.flush_alerts()
        return state

    async def state(self) -> BudgetState:
        day = self.today()
        await self.reconcile()
        try:
            self._known[day] = await self.store.budget_read(self._keys(day))
        except StoreUnavailable:
            return self._state(day, stale=True)
        return self._state(day, stale=self._stale())

    # --- bookkeeping ---------------------------------------------------------------
    def _keys(self, day: str) -> keys.BudgetKeys:
        return keys.budget_day(self._ns, day)

    def _admit_limit(self) -> int:
        return self._limit - self._margin if self._limit >= 0 else -1

    def _hold_of(self, day: str, target: int) -> Hold:
        """The change that takes this worker's reservation of `day` to `target`. Changes, not values:
        operations travel on several connections and may reach Redis in any order (a value computed
        after a job ended could land before the job's cost, leaving it neither reserved nor spent)."""
        change = target - self._held.get(day, 0)
        self._held[day] = self._wanted[day] = target
        return Hold(self.holder, change, self._hold_ttl_ms, target)

    def _not_applied(self, day: str, hold: Hold) -> None:
        """The store refused or never saw `hold`: later changes start from what it holds."""
        self._held[day] = self._held.get(day, 0) - hold.change

    async def _release_past_days(self, today: str) -> None:
        for day, held in list(self._held.items()):
            if day != today and held:
                with contextlib.suppress(StoreUnavailable):  # else it lapses by itself
                    await self.store.budget_release(self._keys(day), self.holder)
                self._held[day] = self._wanted[day] = 0

    def _book_overhead(self, day: str, overhead_usd: Mapping[str, float]) -> None:
        """Give the overhead's growth since the last heartbeat to `day` (cumulative, exact)."""
        today = self._overhead_days.setdefault(day, dict.fromkeys(OVERHEAD_KINDS, 0))
        for kind in OVERHEAD_KINDS:
            total = to_micro(float(overhead_usd.get(kind, 0.0)))
            grown = total - self._overhead_total[kind]
            if grown > 0:
                self._overhead_total[kind] = total
                today[kind] += grown

    def _overhead_booked(self, day: str) -> int:
        return sum(self._overhead_days.get(day, {}).values())

    def _overhead_unsent(self, day: str) -> int:
        """This worker's overhead of `day` that the store has not counted yet."""
        return max(0, self._overhead_booked(day) - self._overhead_sent.get(day, 0))

    def _unsent_past_days(self) -> list[str]:
        today = self.today()
        return sorted(day for day in self._overhead_days if day != today and self._overhead_unsent(day))

    def _stale(self) -> bool:
        return bool(self._pending or self._unsent_past_days())

    async def _seen(self, day: str, outcome: BudgetOutcome) -> None:
        self._known[day] = outcome.counts
        if self._follow_store_clock and outcome.server_ms:
            self._skew = outcome.server_ms / 1000.0 - self._clock()
        if outcome.alerts & THRESHOLD_ALERT:
            self._alert(day, refused=False)
        if outcome.alerts & REFUSAL_ALERT:
            self._alert(day, refused=True)

    async def reconcile(self) -> int:
        """Replay settlements and past days' overhead recorded while the store was unreachable."""
        if not (self._pending or self._unsent_past_days()) or self._replaying.locked():
            return 0
        done = 0
        async with self._replaying:
            for (day, job_id), amount in list(self._pending.items()):
                hold = self._hold_of(day, self._wanted.get(day, 0))
                try:
                    outcome = await self.store.budget_settle(self._keys(day), hold, job_id, amount, self._alert_at)
                except StoreUnavailable:
                    self._not_applied(day, hold)
                    return done
                self._pending.pop((day, job_id), None)
                await self._seen(day, outcome)
                done += 1
            for day in self._unsent_past_days():
                hold = self._hold_of(day, self._wanted.get(day, 0))
                try:
                    outcome = await self.store.budget_accrue(
                        self._keys(day), hold, self._overhead_days[day], self._alert_at
                    )
                except StoreUnavailable:
                    self._not_applied(day, hold)
                    break
                self._overhead_sent[day] = self._overhead_booked(day)
                await self._seen(day, outcome)
        if done:
            log.warning("budget: replayed %d settlement(s) recorded while Redis was unreachable", done)
        return done

    def _alert(self, day: str, *, refused: bool) -> None:
        """Deliver one of the day's alerts in the background: its webhook retries must not hold a job."""
        state = self._state(day, stale=False).to_dict()
        if refused:
            work = self.alerter.budget_refused(state)
        else:
            work = self.alerter.budget_threshold(state, self.settings.budget_alert_threshold)
        task = asyncio.create_task(work)
        self._alerts.add(task)
        task.add_done_callback(self._alerts.discard)

    async def flush_alerts(self) -> None:
        """Wait for alerts being delivered (the worker does before it exits)."""
        if self._alerts:
            await asyncio.gather(*self._alerts, return_exceptions=True)

    def _reserve_locally(self, day: str, amount: int) -> None:
        """Fail-open: this worker alone may spend its share of what was left when Redis went away."""
        if self._limit < 0:
            return
        if day not in self._allowance:
            known = self._known.get(day)
            if known is None:  # never saw the day's counts: the day may be spent already
                self._allowance[day] = 0
            else:
                others = max(0, known.reserved - self._held.get(day, 0))
                left = max(0, self._admit_limit() - known.spent - others)
                self._allowance[day] = left // self.settings.endpoint_workers_max
            log.warning(
                "budget: Redis unreachable, BUDGET_FAIL_MODE=open: this worker may spend %.6f USD until it is back",
                self._allowance[day] / MICRO,
            )
        if self._unconfirmed(day) + amount > self._allowance[day]:
            raise BudgetExceeded(
                f"daily budget: Redis is unreachable and this job may cost up to {amount / MICRO:.6f} USD, more than "
                f"this worker's share of what was left ({self._allowance[day] / MICRO:.6f} USD)"
            )

    def _unconfirmed(self, day: str) -> int:
        """What this worker spent on `day` that the store has not counted yet."""
        return sum(amount for (d, _), amount in self._pending.items() if d == day) + self._overhead_unsent(day)

    def _refuse(self, day: str, amount: int) -> None:
        state = self._state(day, stale=False)
        limit = (self._limit or 0) / MICRO
        kept = f", less {self._margin / MICRO:.6f} USD kept for workers that may still start," if self._margin else ""
        raise BudgetExceeded(
            f"daily budget exceeded: this worker may be billed up to {amount / MICRO:.6f} USD more with this job, "
            f"but only {max(0.0, state.remaining_usd or 0.0):.6f} USD of the {limit:.2f} USD daily budget "
            f"({day}, {self.settings.budget_timezone}){kept} is left unreserved"
        )

    def over_limit(self) -> bool:
        """Past the limit: spent and every reservation (this worker's own idle tail included) no
        longer fit under the limit less the fleet margin, as last seen with this worker's unconfirmed
        spend. The worker must stop taking jobs and exit. False while the day's counts are unknown."""
        if self._limit < 0:
            return False
        day = self.today()
        known = self._known.get(day)
        if known is None:
            return False
        return self._spent_micro(day) + known.reserved > self._admit_limit()

    # --- readings ---------------------------------------------------------------------
    def today(self) -> str:
        """The budget day now, by the store's clock (a worker whose clock is fast spends on today)."""
        return day_of(self._clock() + self._skew, self._tz)

    def snapshot(self) -> BudgetState:
        """Today's state as last seen plus this worker's unconfirmed figures (no I/O)."""
        day = self.today()
        return self._state(day, stale=self._stale())

    def _spent_micro(self, day: str) -> int:
        known = self._known.get(day, BudgetCounts(0, 0, 0))
        return known.spent + self._unconfirmed(day)

    def _state(self, day: str, *, stale: bool) -> BudgetState:
        known = self._known.get(day, BudgetCounts(0, 0, 0))
        pending = [amount for (d, _), amount in self._pending.items() if d == day]
        extra_overhead = self._overhead_unsent(day)
        spent = known.spent + sum(pending) + extra_overhead
        limit = self._limit / MICRO if self._limit >= 0 else None
        remaining = None if limit is None else (self._limit - spent - known.reserved) / MICRO
        return BudgetState(
            day=day,
            spent_usd=spent / MICRO,
            reserved_usd=known.reserved / MICRO,
            remaining_usd=remaining,
            limit_usd=limit,
            jobs=known.jobs + len(pending),
            jobs_usd=(known.job_spent + sum(pending)) / MICRO,
            overhead_usd=(known.overhead + extra_overhead) / MICRO,
            boot_usd=known.boot / MICRO,
            engine_start_usd=known.engine_start / MICRO,
            idle_usd=known.idle / MICRO,
            stale=stale,
        )

    async def daily_spend(self, days: int) -> list[dict[str, Any]]:
        """Per day, oldest first: spent (jobs and overhead apart), reserved, jobs settled, limit."""
        rows = []
        for day in recent_days(self._clock() + self._skew, self._tz, days):
            self._known[day] = await self.store.budget_read(self._keys(day))
            rows.append(self._state(day, stale=False).to_dict())
        return rows
