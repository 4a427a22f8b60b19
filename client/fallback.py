"""Spot first, on-demand when spot fails: `FallbackClient.run_sync`, blocking (`AsyncFallbackClient`: asyncio).

The policy (which tier, budgets and the spot job's ttl, retries and backoff,
the health gate and circuit breaker, cancel-or-take, `submit_unknown`) is
`client.fallback_policy`, written once as pure steps; its module doc says what
it does. `FallbackClient` only carries those steps out with blocking calls.
The policy's names are importable from here too, as the README shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from client.breaker import CircuitBreaker
from client.endpoint_api import EndpointAPI
from client.errors import AttemptFailed
from client.fallback_policy import (
    FINISHED_BEFORE_CANCEL,
    SUBMIT_RETRYABLE,
    TRANSIENT,
    TTL_MAX_MS,
    TTL_MIN_MS,
    Attempt,
    Config,
    ConfigReader,
    EndpointSpec,
    Exchange,
    FallbackResult,
    FallbackRun,
    Policy,
    Sleep,
    Steps,
    TierPair,
    check_gate,
    config_unread,
    failed_attempt,
    health_check,
    job_ttl_ms,
    may_fall_back,
    note_failure,
    result_unread,
    should_retry,
    spot_ttl_ms,
    still_running,
    tier_budget,
)
from core.errors import CoreError

__all__ = [
    "FINISHED_BEFORE_CANCEL",
    "SUBMIT_RETRYABLE",
    "TRANSIENT",
    "TTL_MAX_MS",
    "TTL_MIN_MS",
    "Attempt",
    "EndpointSpec",
    "FallbackClient",
    "FallbackResult",
    "Policy",
    "TierPair",
    "check_gate",
    "failed_attempt",
    "job_ttl_ms",
    "may_fall_back",
    "note_failure",
    "result_unread",
    "should_retry",
    "spot_ttl_ms",
    "still_running",
    "tier_budget",
]

T = TypeVar("T")


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
        endpoints: ConfigReader | None = None,
    ) -> None:
        """`endpoints` reads an endpoint's configuration (management API), so that a cheap tier scaled
        to zero is skipped at once; without it, such a tier is found out by its time-to-start."""
        self.pair = pair
        self.endpoints = endpoints
        self.api = api or EndpointAPI()
        self.policy = policy or Policy()
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._sleep = sleep  # backoff and polling waits
        self._clock = clock

    def close(self) -> None:
        self.api.close()

    def check_health(self, endpoint_id: str) -> bool:
        """Ask `/health`; an endpoint that cannot serve is taken out of rotation for the cool-down."""
        return self._drive(health_check(self.breaker, endpoint_id))

    def run_sync(self, job_input: Any, timeout: float | None = None) -> FallbackResult:
        """The job's result from the first tier that serves it; `timeout` bounds the whole call."""
        run = FallbackRun(self.pair, self.policy, self.breaker, self._clock, read_config=self.endpoints is not None)
        return self._drive(run.steps(job_input, timeout))

    def _drive(self, steps: Steps[T]) -> T:
        run = Exchange(steps)
        for request in run:
            try:
                if isinstance(request, Sleep):
                    self._sleep(request.seconds)
                    run.answer(None)
                elif isinstance(request, Config):
                    run.answer(self._config(request.endpoint_id))
                else:
                    run.answer(request.call(self.api))
            except AttemptFailed as exc:
                run.fail(exc)
        return run.result

    def _config(self, endpoint_id: str) -> dict[str, Any]:
        assert self.endpoints is not None  # `Config` is yielded only when there is a reader
        try:
            return self.endpoints(endpoint_id)
        except CoreError as exc:
            raise config_unread(endpoint_id, exc) from exc
