"""`AsyncFallbackClient`: the same spot-then-on-demand policy as `FallbackClient`, on asyncio.

If the calling task is cancelled while a job runs, the job is cancelled on
the endpoint too (shielded), so an abandoned spot job is not billed. Every
decision (which call is retried, the spot job's ttl, when to fall back, what a
failure is called) is `client.fallback`'s pure function, shared, not copied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_any

from client.breaker import CircuitBreaker
from client.endpoint_api import FINAL_STATES, AsyncEndpointAPI, outcome
from client.errors import AllTiersFailed, AttemptFailed, JobRejected
from client.fallback import (
    FINISHED_BEFORE_CANCEL,
    Attempt,
    EndpointSpec,
    FallbackResult,
    Policy,
    TierPair,
    check_gate,
    failed_attempt,
    may_fall_back,
    note_failure,
    result_unread,
    should_retry,
    spot_ttl_ms,
    still_running,
    tier_budget,
)

T = TypeVar("T")


class AsyncFallbackClient:
    def __init__(
        self,
        pair: TierPair,
        *,
        api: AsyncEndpointAPI | None = None,
        policy: Policy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pair = pair
        self.api = api or AsyncEndpointAPI()
        self.policy = policy or Policy()
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._sleep = sleep  # backoff and polling waits, as `FallbackClient`'s `sleep`
        self._clock = clock

    async def aclose(self) -> None:
        await self.api.aclose()

    async def check_health(self, endpoint_id: str) -> bool:
        try:
            return self.breaker.record_health(endpoint_id, await self.api.health(endpoint_id))
        except AttemptFailed as exc:
            return self.breaker.record_health(endpoint_id, None, f"{exc.reason.value}: {exc.message}")

    async def run_sync(self, job_input: Any, timeout: float | None = None) -> FallbackResult:  # noqa: ASYNC109
        """Like `FallbackClient.run_sync`; `timeout` is the caller's overall deadline, split across tiers."""
        start, attempts = self._clock(), []
        failures: dict[str, AttemptFailed] = {}
        legs = self.pair.legs()
        for index, (tier, spec) in enumerate(legs):
            t0 = self._clock()
            budget = tier_budget(spec, timeout, t0 - start)
            last = index == len(legs) - 1
            if not last and self.breaker.health_due(spec.endpoint_id):
                await self.check_health(spec.endpoint_id)
            try:
                check_gate(spec, budget, last, self.breaker)
                ttl_ms = spot_ttl_ms(tier, budget, self.policy)
                output, job_id = await self._attempt(spec, job_input, t0 + budget, budget, ttl_ms)
            except JobRejected as exc:
                attempts.append(failed_attempt(tier, exc, self._clock() - t0))
                raise
            except AttemptFailed as exc:
                attempts.append(failed_attempt(tier, exc, self._clock() - t0))
                note_failure(self.breaker, spec, exc)
                if not last and not may_fall_back(exc, self.policy):
                    raise
                failures[tier] = exc
                continue
            self.breaker.record_success(spec.endpoint_id)
            attempts.append(Attempt(tier, spec.endpoint_id, "served", job_id, seconds=round(self._clock() - t0, 3)))
            return FallbackResult(output, tier, spec.endpoint_id, job_id, tuple(attempts))
        raise AllTiersFailed(failures.get("spot"), failures["on_demand"])

    async def _call(
        self, fn: Callable[[], Awaitable[T]], attempts: int, deadline: float | None, *, submit: bool = False
    ) -> T:
        stops: list[Any] = [stop_after_attempt(attempts)]
        if deadline is not None:
            stops.append(lambda _state: self._clock() >= deadline)
        retrying = AsyncRetrying(
            retry=retry_if_exception(partial(should_retry, submit=submit)),
            stop=stop_any(*stops),
            reraise=True,
            sleep=self._sleep,
            wait=self.policy.backoff(),
        )
        async for attempt in retrying:
            with attempt:
                result = await fn()
        return result

    async def _attempt(
        self, spec: EndpointSpec, job_input: Any, deadline: float, budget: float, ttl_ms: int | None
    ) -> tuple[Any, str | None]:
        ep = spec.endpoint_id
        state = await self._call(
            lambda: self.api.run(ep, job_input, ttl_ms=ttl_ms), spec.max_attempts, deadline, submit=True
        )
        job_id: str = state["id"]  # `submitted` checked it
        delay = self.policy.poll_initial_s
        try:
            while state.get("status") not in FINAL_STATES:
                if self._clock() >= deadline:
                    return await self._cancel_or_take(spec, still_running(ep, state, budget))
                await self._sleep(max(0.0, min(delay, deadline - self._clock())))
                delay = min(delay * 2, self.policy.poll_max_s)
                try:
                    state = await self._call(lambda: self.api.status(ep, job_id), spec.max_attempts, deadline)
                except AttemptFailed as exc:
                    exc.job_id = job_id
                    return await self._cancel_or_take(spec, exc)
        except asyncio.CancelledError:
            await asyncio.shield(self._best_effort_cancel(ep, job_id))
            raise
        return outcome(ep, state, self.policy.no_fallback_types), job_id

    async def _best_effort_cancel(self, endpoint_id: str, job_id: str) -> None:
        try:
            await self._call(lambda: self.api.cancel(endpoint_id, job_id), self.policy.cancel_attempts, None)
        except AttemptFailed:
            return  # the caller is gone; nothing to report to

    async def _cancel_or_take(self, spec: EndpointSpec, failure: AttemptFailed) -> tuple[Any, str | None]:
        """As `FallbackClient._cancel_or_take`: cancel, or take the outcome of a job that finished first."""
        if failure.job_id is None:
            raise failure
        ep, job_id = spec.endpoint_id, failure.job_id
        try:
            answer = await self._call(lambda: self.api.cancel(ep, job_id), self.policy.cancel_attempts, None)
        except AttemptFailed as exc:
            failure.message += f"; cancelling job {job_id} failed: {exc.reason.value}"
            raise failure from exc
        status = answer.get("status")
        if status not in FINISHED_BEFORE_CANCEL:
            failure.cancelled = status == "CANCELLED"
            raise failure
        try:
            state = await self._call(lambda: self.api.status(ep, job_id), self.policy.cancel_attempts, None)
        except AttemptFailed as exc:
            raise result_unread(failure, exc, job_id, str(status)) from exc
        return outcome(ep, state, self.policy.no_fallback_types), job_id
