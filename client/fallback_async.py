"""`AsyncFallbackClient`: the same spot-then-on-demand policy as `FallbackClient`, on asyncio.

If the calling task is cancelled while a job runs, the job is cancelled on
the endpoint too (shielded), so an abandoned spot job is not billed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_any

from client.breaker import CircuitBreaker
from client.endpoint_api import FINAL_STATES, AsyncEndpointAPI, outcome
from client.errors import AllTiersFailed, AttemptFailed, JobRejected
from client.fallback import (
    Attempt,
    EndpointSpec,
    FallbackResult,
    Policy,
    TierPair,
    _transient,
    check_gate,
    failed_attempt,
    note_failure,
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pair = pair
        self.api = api or AsyncEndpointAPI()
        self.policy = policy or Policy()
        self.breaker = breaker or CircuitBreaker(clock=clock)
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
                output, job_id = await self._attempt(spec, job_input, t0 + budget, budget)
            except JobRejected as exc:
                attempts.append(failed_attempt(tier, exc, self._clock() - t0))
                raise
            except AttemptFailed as exc:
                attempts.append(failed_attempt(tier, exc, self._clock() - t0))
                note_failure(self.breaker, spec, exc)
                failures[tier] = exc
                continue
            self.breaker.record_success(spec.endpoint_id)
            attempts.append(Attempt(tier, spec.endpoint_id, "served", job_id, seconds=round(self._clock() - t0, 3)))
            return FallbackResult(output, tier, spec.endpoint_id, job_id, tuple(attempts))
        raise AllTiersFailed(failures.get("spot"), failures["on_demand"])

    async def _call(self, fn: Callable[[], Awaitable[T]], attempts: int, deadline: float | None) -> T:
        stops: list[Any] = [stop_after_attempt(attempts)]
        if deadline is not None:
            stops.append(lambda _state: self._clock() >= deadline)
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_any(*stops),
            reraise=True,
            wait=self.policy.backoff(),
        )
        async for attempt in retrying:
            with attempt:
                result = await fn()
        return result

    async def _attempt(
        self, spec: EndpointSpec, job_input: Any, deadline: float, budget: float
    ) -> tuple[Any, str | None]:
        ep = spec.endpoint_id
        state = await self._call(lambda: self.api.run(ep, job_input), spec.max_attempts, deadline)
        job_id = state.get("id")
        delay = self.policy.poll_initial_s
        try:
            while state.get("status") not in FINAL_STATES:
                if self._clock() >= deadline or job_id is None:
                    return await self._cancel_or_take(spec, still_running(ep, state, budget))
                await asyncio.sleep(max(0.0, min(delay, deadline - self._clock())))
                delay = min(delay * 2, self.policy.poll_max_s)
                try:
                    state = await self._call(lambda: self.api.status(ep, str(job_id)), spec.max_attempts, deadline)
                except AttemptFailed as exc:
                    exc.job_id = job_id
                    return await self._cancel_or_take(spec, exc)
        except asyncio.CancelledError:
            if job_id is not None:
                await asyncio.shield(self._best_effort_cancel(ep, str(job_id)))
            raise
        return outcome(ep, state, self.policy.no_fallback_types), job_id

    async def _best_effort_cancel(self, endpoint_id: str, job_id: str) -> None:
        try:
            await self._call(lambda: self.api.cancel(endpoint_id, job_id), self.policy.cancel_attempts, None)
        except AttemptFailed:
            return  # the caller is gone; nothing to report to

    async def _cancel_or_take(self, spec: EndpointSpec, failure: AttemptFailed) -> tuple[Any, str | None]:
        if failure.job_id is None:
            raise failure
        ep, job_id = spec.endpoint_id, failure.job_id
        try:
            answer = await self._call(lambda: self.api.cancel(ep, job_id), self.policy.cancel_attempts, None)
            if answer.get("status") == "COMPLETED":
                state = await self._call(lambda: self.api.status(ep, job_id), self.policy.cancel_attempts, None)
                return outcome(ep, state, self.policy.no_fallback_types), job_id
        except AttemptFailed as exc:
            failure.message += f"; cancelling job {job_id} failed: {exc.reason.value}"
            raise failure from exc
        failure.cancelled = answer.get("status") == "CANCELLED"
        raise failure
