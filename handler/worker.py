"""The worker: one job in, answers out, through cache, budget and engine.

For each request of a job: a cache hit answers at once (no engine, no cost);
otherwise one caller per identical request (single flight) reserves its
worst-case cost, makes sure the engine runs, generates, settles what its share
of the worker's seconds really cost, and stores the answer for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from handler.billing import Meter, cost_usd, worst_case_usd
from handler.budget import Budget, BudgetState, Reservation
from handler.cache import CacheOptions, ResponseCache
from handler.contract import MODELS_ROUTE, EngineRequest, Job, parse_job
from handler.engine import EngineManager
from handler.engine_command import ModelRef
from handler.errors import WorkerError
from handler.responses import StreamAccumulator, openai_finish, sum_usage, text_result, usage_of
from handler.settings import Settings

_PER_JOB_FIELDS = ("cached", "timings", "cost_usd", "budget")


@dataclass
class _Timer:
    clock: Callable[[], float]
    entered: float
    engine_start_s: float = 0.0
    sent: float | None = None

    def timings(self) -> dict[str, float]:
        now = self.clock()
        sent = self.sent if self.sent is not None else now
        return {
            "queued_ms": round(max(0.0, sent - self.entered - self.engine_start_s) * 1000, 2),
            "engine_start_ms": round(self.engine_start_s * 1000, 2),
            "generation_ms": round((now - sent) * 1000, 2),
            "total_ms": round((now - self.entered) * 1000, 2),
        }


class Worker:
    def __init__(
        self,
        settings: Settings,
        engine: EngineManager,
        model: ModelRef,
        *,
        cache: ResponseCache,
        budget: Budget,
        meter: Meter,
        hourly_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.model = model
        self.cache = cache
        self.budget = budget
        self.meter = meter
        self.hourly_rate = hourly_rate
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for background writes (statistics) to finish."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    # ------------------------------------------------------------- jobs
    async def answer(self, job_id: str, data: Any) -> dict[str, Any]:
        """The whole answer of a job (streaming jobs are answered whole)."""
        return await self._answer(job_id, parse_job(data, self.settings))

    async def _answer(self, job_id: str, job: Job) -> dict[str, Any]:
        if not job.batch:
            item = job.items[0]
            assert isinstance(item, EngineRequest)
            return await self._final(self._serve(job_id, item, stream=False))
        results = await asyncio.gather(*(self._batch_item(f"{job_id}#{i}", item) for i, item in enumerate(job.items)))
        ok = [r for r in results if "error" not in r]
        return {
            "results": results,
            "usage": sum_usage([r.get("usage", {}) for r in ok]),
            "cost_usd": round(sum(float(r.get("cost_usd", 0.0)) for r in ok), 8),
            "failed": len(results) - len(ok),
        }

    async def stream(self, job_id: str, data: Any) -> AsyncIterator[dict[str, Any]]:
        """Stream pieces: ``{"text": delta}``... then the final answer; one piece for other jobs."""
        job = parse_job(data, self.settings)
        item = job.items[0]
        if job.batch or not isinstance(item, EngineRequest) or not item.stream:
            yield await self._answer(job_id, job)
            return
        async for piece in self._serve(job_id, item, stream=True):
            yield piece

    async def _batch_item(self, item_id: str, item: EngineRequest | WorkerError) -> dict[str, Any]:
        if isinstance(item, WorkerError):
            return {"error": item.to_dict()}
        try:
            return await self._final(self._serve(item_id, item, stream=False))
        except WorkerError as exc:
            return {"error": exc.to_dict()}

    @staticmethod
    async def _final(pieces: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        last: dict[str, Any] = {}
        async for piece in pieces:
            last = piece
        return last

    # --------------------------------------------------------- one request
    async def _serve(self, job_id: str, req: EngineRequest, *, stream: bool) -> AsyncIterator[dict[str, Any]]:
        timer = _Timer(self._clock, self._clock())
        options = CacheOptions(bypass=req.cache.bypass, refresh=req.cache.refresh, ttl=req.cache.ttl)
        # OpenAI-shaped answers differ between streamed and plain; text answers do not.
        key_body = {**req.body, "_openai_stream": stream} if req.openai else req.body
        key = self.cache.key_for(req.route, key_body, options)
        if key is not None:
            hit = await self.cache.get(key, options)
            if hit is not None:
                async for piece in self._from_cache(hit, timer, stream):
                    yield piece
                return
        flight = self.cache.flight(key, options) if key is not None else contextlib.nullcontext(None)
        async with flight as leader:
            if leader is not None and leader.result is not None:
                async for piece in self._from_cache(leader.result, timer, stream):
                    yield piece
                return
            if key is not None:
                self._background(self.cache.record(hit=False, saved_usd=0.0))
            result: dict[str, Any] = {}
            async for final, piece in self._generate(job_id, req, timer, stream):
                if final:
                    result = piece
                else:
                    yield piece
            if leader is not None:  # it hands the answer to waiters; errors and empty ones are not stored
                await leader.store({k: v for k, v in result.items() if k not in _PER_JOB_FIELDS}, options.ttl)
            yield {k: v for k, v in result.items() if not k.startswith("_")}

    async def _from_cache(self, hit: dict[str, Any], timer: _Timer, stream: bool) -> AsyncIterator[dict[str, Any]]:
        # A hit costs one store read: the budget figures are the last known ones and
        # the statistics are written in the background.
        state = self.budget.snapshot()
        self._background(self.cache.record(hit=True, saved_usd=float(hit.get("_cost_usd", 0.0))))
        answer = {k: v for k, v in hit.items() if not k.startswith("_")}
        if stream and answer.get("text"):
            yield {"text": answer["text"]}
        yield {**answer, "cached": True, "cost_usd": 0.0, "timings": timer.timings(), "budget": state.to_dict()}

    async def _generate(
        self, job_id: str, req: EngineRequest, timer: _Timer, stream: bool
    ) -> AsyncIterator[tuple[bool, dict[str, Any]]]:
        """Yields (False, stream piece)... then (True, the answer)."""
        if req.route == MODELS_ROUTE:
            timer.engine_start_s = await self.engine.ensure_started()  # free: nothing generated
            timer.sent = self._clock()
            listing = await self.engine.request(MODELS_ROUTE)
            yield True, {**listing, "usage": usage_of(None), "finish_reason": None, "cached": False, "cost_usd": 0.0,
                   "timings": timer.timings(), "budget": (await self.budget.state()).to_dict()}  # fmt: skip
            return
        # each attempt is billed on its own (a job id may come again: a retry, a local test)
        job_id = f"{job_id}/{uuid.uuid4().hex[:12]}"
        worst = self._worst_case_usd(req)
        reservation = await self.budget.reserve(job_id, worst)
        timer.engine_start_s = await self._start_engine(reservation)
        timer.sent = self._clock()
        self.meter.job_started(job_id, reports_tokens=stream)
        try:
            if stream:  # pieces as they come; the meter sees tokens as they are made
                acc = StreamAccumulator(req.route)
                async for chunk in self.engine.stream(req.route, req.body):
                    text, tokens = acc.add(chunk)
                    self.meter.add_tokens(job_id, tokens)
                    if req.openai:
                        yield False, chunk  # raw OpenAI chunks, as the reference worker streams them
                    elif text:
                        yield False, {"text": text}
                result = acc.result()
            else:  # one plain request: streaming costs the engine and the worker ~30% of throughput
                raw = await self.engine.request(req.route, req.body)
                result = {**raw, "finish_reason": openai_finish(raw)} if req.openai else text_result(raw, req.route)
                self.meter.add_tokens(job_id, usage_of(raw.get("usage"))["total_tokens"])
        except BaseException:
            # the seconds it ran were spent all the same: settle them, so the budget stays exact
            spent = round(cost_usd(self.meter.job_finished(job_id), self.hourly_rate), 8)
            await self.budget.settle(reservation, spent)
            raise
        seconds = self.meter.job_finished(job_id)
        cost = round(cost_usd(seconds, self.hourly_rate), 8)
        state = await self.budget.settle(reservation, cost)
        yield True, {**result, "_cost_usd": cost, **self._job_fields(cost, timer, state)}

    async def _start_engine(self, reservation: Reservation) -> float:
        """Make sure the engine runs; its start-up seconds are the worker's overhead, not this job's."""
        if self.engine.ready:
            return 0.0
        self.meter.engine_starting()
        waited_from = self._clock()
        try:
            await self.engine.ensure_started()  # jobs arriving during a start wait for that one
            return self._clock() - waited_from
        except BaseException:
            await self.budget.release(reservation)
            raise
        finally:
            self.meter.engine_ready()

    def _job_fields(self, cost: float, timer: _Timer, state: BudgetState) -> dict[str, Any]:
        return {"cached": False, "cost_usd": cost, "timings": timer.timings(), "budget": state.to_dict()}

    def _worst_case_usd(self, req: EngineRequest) -> float:
        tokens = req.max_tokens or self.settings.default_max_tokens
        return worst_case_usd(tokens, self.meter.seconds_per_token(), self.hourly_rate)
