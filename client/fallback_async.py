"""`AsyncFallbackClient`: the spot-then-on-demand policy of `client.fallback_policy`, on asyncio.

The same steps `FallbackClient` carries out with blocking calls, awaited here;
every decision is the policy's. If the calling task is cancelled while a job
runs, the job is cancelled on the endpoint too (shielded), so an abandoned
spot job is not billed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from client.breaker import CircuitBreaker
from client.endpoint_api import AsyncEndpointAPI
from client.errors import AttemptFailed
from client.fallback_policy import (
    Config,
    ConfigReader,
    Exchange,
    FallbackResult,
    FallbackRun,
    Policy,
    Sleep,
    Steps,
    TierPair,
    config_unread,
    health_check,
)
from core.errors import CoreError

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
        endpoints: ConfigReader | None = None,
    ) -> None:
        """As `FallbackClient`; `endpoints` (a blocking reader) runs in a thread."""
        self.pair = pair
        self.endpoints = endpoints
        self.api = api or AsyncEndpointAPI()
        self.policy = policy or Policy()
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._sleep = sleep  # backoff and polling waits, as `FallbackClient`'s `sleep`
        self._clock = clock

    async def aclose(self) -> None:
        await self.api.aclose()

    async def check_health(self, endpoint_id: str) -> bool:
        return await self._drive(health_check(self.breaker, endpoint_id))

    async def run_sync(self, job_input: Any, timeout: float | None = None) -> FallbackResult:  # noqa: ASYNC109
        """Like `FallbackClient.run_sync`; `timeout` is the caller's overall deadline, split across tiers."""
        run = FallbackRun(self.pair, self.policy, self.breaker, self._clock, read_config=self.endpoints is not None)
        try:
            return await self._drive(run.steps(job_input, timeout))
        except asyncio.CancelledError:
            await asyncio.shield(self._drive(run.abandon()))
            raise

    async def _drive(self, steps: Steps[T]) -> T:
        run = Exchange(steps)
        for request in run:
            try:
                if isinstance(request, Sleep):
                    await self._sleep(request.seconds)
                    run.answer(None)
                elif isinstance(request, Config):
                    run.answer(await asyncio.to_thread(self._config, request.endpoint_id))
                else:
                    run.answer(await request.call(self.api))
            except AttemptFailed as exc:
                run.fail(exc)
        return run.result

    def _config(self, endpoint_id: str) -> dict[str, Any]:
        assert self.endpoints is not None  # `Config` is yielded only when there is a reader
        try:
            return self.endpoints(endpoint_id)
        except CoreError as exc:
            raise config_unread(endpoint_id, exc) from exc
