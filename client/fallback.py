"""Spot first, on-demand when spot fails: `FallbackClient.run_sync` (and `AsyncFallbackClient`).

For one job: the spot endpoint gets its own timeout. On a timeout, 429, no
capacity, a preempted worker, 5xx, a dropped connection, an open circuit or a
worker error other than the caller's own bad input, the spot job is cancelled
(so it is never billed twice) and the job runs on the on-demand endpoint. The
worker's `validation_error` is raised at once as `JobRejected`: the same input
would fail anywhere. HTTP calls that fail transiently (429, 5xx, connection)
are retried on the same endpoint with exponential backoff (tenacity), bounded
by `EndpointSpec.max_attempts` and by the tier's deadline. Both tiers failing
raises `AllTiersFailed` carrying both causes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_any, wait_exponential_jitter

from client.breaker import CircuitBreaker
from client.endpoint_api import FINAL_STATES, EndpointAPI, outcome
from client.errors import AllTiersFailed, AttemptFailed, FailureReason, JobRejected

T = TypeVar("T")
TRANSIENT = frozenset({FailureReason.THROTTLED, FailureReason.SERVER_ERROR, FailureReason.CONNECTION})


@dataclass(frozen=True)
class EndpointSpec:
    endpoint_id: str
    timeout_s: float = 120.0  # this tier's own deadline for one job
    max_attempts: int = 3  # HTTP tries per call on 429 / 5xx / connection errors


@dataclass(frozen=True)
class TierPair:
    on_demand: EndpointSpec
    spot: EndpointSpec | None = None

    def legs(self) -> list[tuple[str, EndpointSpec]]:
        return ([("spot", self.spot)] if self.spot is not None else []) + [("on_demand", self.on_demand)]


@dataclass(frozen=True)
class Policy:
    no_fallback_types: frozenset[str] = frozenset({"validation_error"})
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 4.0
    poll_initial_s: float = 0.1
    poll_max_s: float = 1.0
    cancel_attempts: int = 3

    def backoff(self) -> wait_exponential_jitter:
        """Exponential backoff from `backoff_initial_s`, capped, with up to one initial step of jitter."""
        return wait_exponential_jitter(
            multiplier=self.backoff_initial_s, max=self.backoff_max_s, jitter=self.backoff_initial_s
        )


@dataclass(frozen=True)
class Attempt:
    tier: str
    endpoint_id: str
    outcome: str  # "served" or a FailureReason value
    job_id: str | None = None
    cancelled: bool = False
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class FallbackResult:
    output: Any
    tier: str  # "spot" or "on_demand"
    endpoint_id: str
    job_id: str | None
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    route: str | None = None  # the size tier when routed (client.routing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed_attempt(tier: str, exc: AttemptFailed, seconds: float) -> Attempt:
    return Attempt(tier, exc.endpoint_id, exc.reason.value, exc.job_id, exc.cancelled, round(seconds, 3), exc.message)


def tier_budget(spec: EndpointSpec, timeout: float | None, elapsed: float) -> float:
    """Seconds this tier may take: its own timeout, within what is left of the caller's."""
    return spec.timeout_s if timeout is None else min(spec.timeout_s, timeout - elapsed)


def still_running(endpoint_id: str, state: dict[str, Any], budget: float) -> AttemptFailed:
    status = state.get("status")
    reason = FailureReason.NO_CAPACITY if status == "IN_QUEUE" else FailureReason.TIMEOUT
    return AttemptFailed(endpoint_id, reason, f"job still {status} after {budget:.1f}s", job_id=state.get("id"))


def check_gate(spec: EndpointSpec, budget: float, last: bool, breaker: CircuitBreaker) -> None:
    """Refuse an attempt before it starts: no time left, or (except on the last tier) out of rotation."""
    if budget <= 0:
        raise AttemptFailed(spec.endpoint_id, FailureReason.TIMEOUT, "no time left of the caller's timeout")
    if not last and breaker.is_open(spec.endpoint_id):
        raise AttemptFailed(
            spec.endpoint_id, FailureReason.CIRCUIT_OPEN, breaker.reasons.get(spec.endpoint_id, "out of rotation")
        )


def note_failure(breaker: CircuitBreaker, spec: EndpointSpec, exc: AttemptFailed) -> None:
    if exc.reason != FailureReason.CIRCUIT_OPEN:
        breaker.record_failure(spec.endpoint_id, exc.reason.value)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, AttemptFailed) and exc.reason in TRANSIENT


class FallbackClient:
    """Blocking client. `api` defaults to `EndpointAPI()` (the SDK's base URL and API key)."""

    def __init__(
        self,
        pair: TierPair,
        *,
        api: EndpointAPI | None = None,
        policy: Policy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pair = pair
        self.api = api or EndpointAPI()
        self.policy = policy or Policy()
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._sleep = sleep
        self._clock = clock

    def close(self) -> None:
        self.api.close()

    def check_health(self, endpoint_id: str) -> bool:
        """Ask `/health`; an endpoint that cannot serve is taken out of rotation for the cool-down."""
        try:
            return self.breaker.record_health(endpoint_id, self.api.health(endpoint_id))
        except AttemptFailed as exc:
            return self.breaker.record_health(endpoint_id, None, f"{exc.reason.value}: {exc.message}")

    def run_sync(self, job_input: Any, timeout: float | None = None) -> FallbackResult:
        start, attempts = self._clock(), []
        failures: dict[str, AttemptFailed] = {}
        legs = self.pair.legs()
        for index, (tier, spec) in enumerate(legs):
            t0 = self._clock()
            budget = tier_budget(spec, timeout, t0 - start)
            last = index == len(legs) - 1
            if not last and self.breaker.health_due(spec.endpoint_id):
                self.check_health(spec.endpoint_id)
            try:
                check_gate(spec, budget, last, self.breaker)
                output, job_id = self._attempt(spec, job_input, t0 + budget, budget)
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

    # ------------------------------------------------------------ one tier
    def _call(self, fn: Callable[[], T], attempts: int, deadline: float | None) -> T:
        stops: list[Any] = [stop_after_attempt(attempts)]
        if deadline is not None:
            stops.append(lambda _state: self._clock() >= deadline)
        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_any(*stops),
            reraise=True,
            sleep=self._sleep,
            wait=self.policy.backoff(),
        )
        return retrying(fn)

    def _attempt(self, spec: EndpointSpec, job_input: Any, deadline: float, budget: float) -> tuple[Any, str | None]:
        ep = spec.endpoint_id
        state = self._call(lambda: self.api.run(ep, job_input), spec.max_attempts, deadline)
        job_id = state.get("id")
        delay = self.policy.poll_initial_s
        while state.get("status") not in FINAL_STATES:
            if self._clock() >= deadline or job_id is None:
                return self._cancel_or_take(spec, still_running(ep, state, budget))
            self._sleep(max(0.0, min(delay, deadline - self._clock())))
            delay = min(delay * 2, self.policy.poll_max_s)
            try:
                state = self._call(lambda: self.api.status(ep, str(job_id)), spec.max_attempts, deadline)
            except AttemptFailed as exc:
                exc.job_id = job_id
                return self._cancel_or_take(spec, exc)
        return outcome(ep, state, self.policy.no_fallback_types), job_id

    def _cancel_or_take(self, spec: EndpointSpec, failure: AttemptFailed) -> tuple[Any, str | None]:
        """Cancel the failed attempt's job; if it completed meanwhile, take its answer instead."""
        if failure.job_id is None:
            raise failure
        ep, job_id = spec.endpoint_id, failure.job_id
        try:
            answer = self._call(lambda: self.api.cancel(ep, job_id), self.policy.cancel_attempts, None)
            if answer.get("status") == "COMPLETED":
                state = self._call(lambda: self.api.status(ep, job_id), self.policy.cancel_attempts, None)
                return outcome(ep, state, self.policy.no_fallback_types), job_id
        except AttemptFailed as exc:
            failure.message += f"; cancelling job {job_id} failed: {exc.reason.value}"
            raise failure from exc
        failure.cancelled = answer.get("status") == "CANCELLED"
        raise failure
