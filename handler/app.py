"""The runpod-facing application: handler functions around one Worker.

`create_app(settings)` resolves the model at once (a missing model fails the
worker at start-up, not at the first job) but starts nothing else: the store
connects on the first job and the engine on the first cache miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from handler.billing import Meter
from handler.budget import Budget, BudgetState, ExhaustedHook, hourly_rate
from handler.cache import ResponseCache
from handler.engine import EngineManager
from handler.engine_command import answer_fingerprint
from handler.errors import ConfigError, WorkerError
from handler.model import resolve_model
from handler.settings import Settings
from handler.store import Store, open_store
from handler.worker import Worker

log = logging.getLogger(__name__)


def scale_to_zero_hook(settings: Settings) -> ExhaustedHook | None:
    """With BUDGET_SCALE_TO_ZERO, the budget's exhaustion sets this endpoint's workers to 0."""
    if not settings.budget_scale_to_zero:
        return None
    if not (settings.runpod_endpoint_id and settings.runpod_api_key):
        raise ConfigError(
            "BUDGET_SCALE_TO_ZERO needs RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY", field="BUDGET_SCALE_TO_ZERO"
        )

    async def hook(state: BudgetState) -> None:
        from client.scale import scale_to_zero

        log.warning("daily budget spent (%s): scaling endpoint %s to zero", state.day, settings.runpod_endpoint_id)
        await asyncio.to_thread(scale_to_zero, settings.runpod_endpoint_id, settings.runpod_api_key)

    return hook


def error_output(exc: WorkerError) -> dict[str, Any]:
    """A job-level error. A JSON string, because runpod's streaming path turns errors into strings."""
    return {"error": orjson.dumps(exc.to_dict()).decode()}


class App:
    def __init__(
        self, settings: Settings, env: Mapping[str, str] | None = None, *, engine: EngineManager | None = None
    ) -> None:
        self.settings = settings
        self.model = resolve_model(settings)
        # `engine`: an engine already serving this model (tests share one across apps)
        self._owns_engine = engine is None
        self.engine = engine or EngineManager(settings, self.model, env=env)
        self.meter = Meter(settings.seconds_per_token, clock=time.monotonic)
        self.rate = hourly_rate(settings)
        self.fingerprint = answer_fingerprint(settings, self.model, self.engine.device)
        self._on_exhausted = scale_to_zero_hook(settings)
        self._worker: Worker | None = None
        self._store: Store | None = None
        self._lock: asyncio.Lock | None = None

    async def worker(self) -> Worker:
        if self._worker is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._worker is None:
                    self._store = await open_store(self.settings)
                    self._worker = Worker(
                        self.settings,
                        self.engine,
                        self.model,
                        cache=ResponseCache(self._store, self.settings, self.fingerprint),
                        budget=Budget(self._store, self.settings, on_exhausted=self._on_exhausted),
                        meter=self.meter,
                        hourly_rate=self.rate,
                    )
        return self._worker

    def _failed(self, exc: WorkerError) -> dict[str, Any]:
        out = error_output(exc)
        if self.engine.needs_refresh:
            log.error("engine failed to start %d times in a row: asking RunPod to replace this worker",
                      self.engine.start_failures)  # fmt: skip
            out["refresh_worker"] = True
        return out

    async def handler(self, job: dict[str, Any]) -> dict[str, Any]:
        """Plain handler: the whole answer (local testing, /runsync of --rp_serve_api)."""
        worker = await self.worker()
        try:
            return await worker.answer(str(job.get("id", "local")), job.get("input"))
        except WorkerError as exc:
            return self._failed(exc)

    async def generator_handler(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Streaming handler (with return_aggregate_stream, /run and /runsync get the list of pieces)."""
        worker = await self.worker()
        try:
            async for piece in worker.stream(str(job.get("id", "local")), job.get("input")):
                yield piece
        except WorkerError as exc:
            yield self._failed(exc)

    def concurrency_modifier(self, current: int) -> int:
        return self.settings.max_concurrency

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.drain()
        if self._owns_engine:
            await self.engine.aclose()
        if self._store is not None:
            await self._store.close()


def create_app(settings: Settings, env: Mapping[str, str] | None = None, *, engine: EngineManager | None = None) -> App:
    return App(settings, env, engine=engine)
