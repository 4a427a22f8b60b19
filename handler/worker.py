"""The worker: one job in, answers out, through cache, budget and engine.

For each request of a job: a cache hit answers at once (no engine, no cost);
otherwise one caller per identical request (single flight) is admitted by the
budget (the worker's exposure with it: `handler.exposure`), makes sure the
engine runs, generates, settles what its share of the worker's seconds really
cost, and stores the answer for the others. The worker's own overhead (boot,
engine start, idle) reaches the budget through `heartbeat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from core.contract import MODELS_ROUTE, EngineRequest, Job, parse_job
from core.errors import InputError
from core.money import cost_usd
from handler.billing import Meter, work_units
from handler.budget import Budget, BudgetState, Reservation
from handler.cache import CacheOptions, ResponseCache
from handler.engine_command import ModelRef
from handler.engine_protocol import Engine
from handler.errors import ValidationFailed, WorkerError
from handler.exposure import (
    ENGINE_STOP_S,
    EXIT_ALLOWANCE_S,
    REQUEST_FLOOR_S,
    InFlight,
    alone_seconds,
    exposure_seconds,
    idle_tail_seconds,
    max_tokens_for_cost,
)
from handler.openai_stream import OpenAIStream, Replay, answer_name, frugal_fields, served_names
from handler.responses import StreamAccumulator, openai_finish, sum_usage, text_result, usage_of
from handler.settings import JobSettings

log = logging.getLogger(__name__)

_PER_JOB_FIELDS = ("cached", "timings", "cost_usd", "budget", "cost_bound_usd")
_CHUNKS = "_chunks"  # a streamed OpenAI answer's chunks, kept with it in the cache (handler.openai_stream)


@dataclass
class _Timer:
    clock: Callable[[], float]
    entered: float
    engine_start_s: float = 0.0
    sent: float | None = None
    engine_phases: dict[str, float] | None = None  # a cold job: the start it waited for, by phase

    def timings(self) -> dict[str, Any]:
        now = self.clock()
        sent = self.sent if self.sent is not None else now
        out: dict[str, Any] = {
            "queued_ms": round(max(0.0, sent - self.entered - self.engine_start_s) * 1000, 2),
            "engine_start_ms": round(self.engine_start_s * 1000, 2),
            "generation_ms": round((now - sent) * 1000, 2),
            "total_ms": round((now - self.entered) * 1000, 2),
        }
        if self.engine_phases:
            out["engine_phases"] = self.engine_phases
        return out


class Worker:
    def __init__(
        self,
        settings: JobSettings,
        engine: Engine,
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
        self.in_flight = InFlight()

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
        return await self._answer(job_id, self._parse(data))

    async def _answer(self, job_id: str, job: Job) -> dict[str, Any]:
        if not job.batch:
            item = job.items[0]
            assert isinstance(item, EngineRequest)
            return await self._final(self._serve(job_id, item, stream=False))
        costs: list[float] = []  # every item's cost, failed ones included (their seconds were billed)
        results = await asyncio.gather(
            *(self._batch_item(f"{job_id}#{i}", item, costs) for i, item in enumerate(job.items))
        )
        ok = [r for r in results if "error" not in r]
        return {
            "results": results,
            "usage": sum_usage([r.get("usage", {}) for r in ok]),
            "cost_usd": round(sum(costs), 8),
            "failed": len(results) - len(ok),
        }

    async def stream(self, job_id: str, data: Any) -> AsyncIterator[Any]:
        """Stream pieces: ``{"text": delta}``... then the final answer; one piece for other jobs. A
        streamed OpenAI job yields OpenAI's own stream instead (handler.openai_stream): strings of
        server-sent events, or lists of chunks (RAW_OPENAI_OUTPUT=0)."""
        job = self._parse(data)
        item = job.items[0]
        if job.batch or not isinstance(item, EngineRequest) or not item.stream:
            yield await self._answer(job_id, job)
            return
        async for piece in self._serve(job_id, item, stream=True):
            yield piece

    def _parse(self, data: Any) -> Job:
        try:
            return parse_job(data, self.settings.limits)
        except InputError as exc:
            raise ValidationFailed.of(exc) from None

    async def _batch_item(self, item_id: str, item: EngineRequest | InputError, costs: list[float]) -> dict[str, Any]:
        if isinstance(item, InputError):
            return {"error": ValidationFailed.of(item).to_dict()}
        try:
            return await self._final(self._serve(item_id, item, stream=False, costs=costs))
        except WorkerError as exc:
            return {"error": exc.to_dict()}

    @staticmethod
    async def _final(pieces: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        last: dict[str, Any] = {}
        async for piece in pieces:
            last = piece
        return last

    # --------------------------------------------------------- one request
    async def _serve(
        self, job_id: str, req: EngineRequest, *, stream: bool, costs: list[float] | None = None
    ) -> AsyncIterator[Any]:
        timer = _Timer(self._clock, self._clock())
        if req.route == MODELS_ROUTE:  # answered from the worker's own settings: no engine
            yield self._models_listing(timer)
            return
        # an OpenAI request answers under the name it gave (ModelNotFound when it is not served)
        name = answer_name(req.model, self.served_names) if req.openai else None
        shaper = None
        if stream and name is not None:
            shaper = OpenAIStream(raw=self.settings.raw_openai_output, include_usage=req.include_usage,
                                  continuous_usage=req.continuous_usage, model=name)  # fmt: skip
        options = CacheOptions(bypass=req.cache.bypass, refresh=req.cache.refresh, ttl=req.cache.ttl)
        # OpenAI-shaped answers are kept as the response or as its chunks; text answers are one shape.
        # What else a request asks of the shape (RAW_OPENAI_OUTPUT, stream_options, the name) is applied
        # on the way out.
        key_body = {**req.body, "_openai_stream": stream} if req.openai else req.body
        key = self.cache.key_for(req.route, key_body, options)
        if key is not None:
            hit = await self.cache.get(key, options)
            if hit is not None and (shaper is None or _CHUNKS in hit):
                async for piece in self._from_cache(hit, timer, stream, name, shaper):
                    yield piece
                return
            if hit is not None:  # kept without its chunks (by an older worker): made again, and replaced
                options = replace(options, refresh=True)
        flight = self.cache.flight(key, options) if key is not None else contextlib.nullcontext(None)
        async with flight as leader:
            if leader is not None and leader.result is not None:
                async for piece in self._from_cache(leader.result, timer, stream, name, shaper):
                    yield piece
                return
            if key is not None:
                self._background(self.cache.record(hit=False, saved_usd=0.0))
            result: dict[str, Any] = {}
            async for final, piece in self._generate(job_id, req, timer, stream, costs, shaper=shaper):
                if final:
                    result = piece
                else:
                    yield piece
            if leader is not None and not result.get("cost_capped"):
                # it hands the answer to waiters; errors, empty and cost-capped answers are not stored
                await leader.store({k: v for k, v in result.items() if k not in _PER_JOB_FIELDS}, options.ttl)
            if shaper is not None:
                for piece in shaper.end(frugal_fields(result)):
                    yield piece
                return
            yield _named({k: v for k, v in result.items() if not k.startswith("_")}, name)

    async def _from_cache(
        self, hit: dict[str, Any], timer: _Timer, stream: bool, name: str | None, shaper: OpenAIStream | None
    ) -> AsyncIterator[Any]:
        # A hit costs one store read: the budget figures are the last known ones and
        # the statistics are written in the background.
        state = self.budget.snapshot()
        self._background(self.cache.record(hit=True, saved_usd=float(hit.get("_cost_usd", 0.0))))
        answer = {k: v for k, v in hit.items() if not k.startswith("_")}
        fields = {"cached": True, "cost_usd": 0.0, "timings": timer.timings(), "budget": state.to_dict()}
        if shaper is not None:  # a streamed OpenAI answer replays its chunks, as the engine's were shaped
            for chunk in hit[_CHUNKS]:
                for piece in shaper.add(chunk):
                    yield piece
            for piece in shaper.end(fields):
                yield piece
            return
        if stream and answer.get("text"):
            yield {"text": answer["text"]}
        yield _named({**answer, **fields}, name)

    @property
    def served_names(self) -> list[str]:
        """The names OpenAI requests may give as `model` (OPENAI_SERVED_MODEL_NAME_OVERRIDE, the model's)."""
        return served_names(self.model.name, self.settings.openai_served_model_name_override)

    def _models_listing(self, timer: _Timer) -> dict[str, Any]:
        models = [{"id": name, "object": "model", "created": 0, "owned_by": "frugal-worker", "root": self.model.name,
                   "max_model_len": self.model.max_model_len or self.settings.max_model_len}
                  for name in self.served_names]  # fmt: skip
        return {"object": "list", "data": models, "usage": usage_of(None), "finish_reason": None, "cached": False,
                "cost_usd": 0.0, "timings": timer.timings(), "budget": self.budget.snapshot().to_dict()}  # fmt: skip

    async def _generate(
        self,
        job_id: str,
        req: EngineRequest,
        timer: _Timer,
        stream: bool,
        costs: list[float] | None,
        *,
        shaper: OpenAIStream | None = None,
    ) -> AsyncIterator[tuple[bool, Any]]:
        """Yields (False, stream piece)... then (True, the answer)."""
        # each attempt is billed on its own (a job id may come again: a retry, a local test)
        job_id = f"{job_id}/{uuid.uuid4().hex[:12]}"
        req, capped = self._capped(req)
        reservation = await self._admit(job_id, req)
        timer.engine_start_s = await self._start_engine(reservation)
        if timer.engine_start_s > 0:
            timer.engine_phases = self.engine.last_start_phases
        timer.sent = self._clock()
        self.in_flight.running(job_id, timer.sent)
        self.meter.job_started(job_id, reports_tokens=stream)
        usage: dict[str, int] = {}
        try:
            if stream:  # pieces as they come; the meter sees tokens as they are made
                acc, replay = StreamAccumulator(req.route), Replay(req.route)
                async for chunk in self.engine.stream(req.route, req.body):
                    text, tokens = acc.add(chunk)
                    self.meter.add_tokens(job_id, tokens)
                    if shaper is not None:  # OpenAI's own stream, as the reference worker yields it
                        replay.add(chunk)
                        for piece in shaper.add(chunk):
                            yield False, piece
                    elif text:
                        yield False, {"text": text}
                result = acc.result()
                if shaper is not None:
                    result[_CHUNKS] = replay.chunks
            else:  # one plain request: streaming costs the engine and the worker ~30% of throughput
                raw = await self.engine.request(req.route, req.body)
                result = {**raw, "finish_reason": openai_finish(raw)} if req.openai else text_result(raw, req.route)
                self.meter.add_tokens(job_id, usage_of(raw.get("usage"))["total_tokens"])
            usage = usage_of(result.get("usage"))
        finally:
            # settled whether it answered or failed: the seconds it ran were billed all the same
            prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
            seconds = self.meter.job_finished(
                job_id, work=work_units(prompt, completion), prompt_tokens=prompt, completion_tokens=completion,
                sequences=req.completions,
            )  # fmt: skip
            cost = round(cost_usd(seconds, self.hourly_rate), 8)
            self.in_flight.done(job_id)
            if costs is not None:
                costs.append(cost)
            state = await self.budget.settle(reservation, cost, self.exposure_usd())
        extra = {"max_cost_usd": req.max_cost_usd, "cost_capped": True} if capped else {}
        bound = {"cost_bound_usd": round(reservation.worst_usd, 8)}  # what it could have cost at worst
        yield True, {**result, **extra, "_cost_usd": cost, **self._job_fields(cost, timer, state), **bound}

    async def _admit(self, job_id: str, req: EngineRequest) -> Reservation:
        """Admit the job into the worker's exposure; the budget refuses it if that does not fit."""
        paces = self.meter.paces()
        work = self._work_bound(req)
        alone = alone_seconds(req.prompt_tokens_max, self._tokens(req), work, paces)
        worst_s = self.in_flight.admit(job_id, work, alone, paces.busy)
        try:
            return await self.budget.reserve(
                job_id, self.exposure_usd(needs_engine=True), worst_usd=cost_usd(worst_s, self.hourly_rate)
            )
        except BaseException:
            self.in_flight.done(job_id)
            raise

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
            self.in_flight.done(reservation.job_id)
            await self.budget.release(reservation, self.exposure_usd())
            raise
        finally:
            self.meter.engine_ready()

    async def reserve_engine_start(self) -> bool:
        """Reserve the engine's start before starting it without a job (ENGINE_START=boot|background):
        False when the budget refuses it (the engine then starts on the first miss, if admitted)."""
        try:
            await self.budget.reserve("engine-start", self.exposure_usd(needs_engine=True))
        except WorkerError as exc:
            log.warning("engine not started early: %s", exc.message)
            return False
        return True

    # --------------------------------------------------------- money
    def exposure_usd(self, *, needs_engine: bool = False) -> float:
        """The worst case of what this worker will still be billed (handler.exposure). An engine
        start is bounded by ENGINE_START_TIMEOUT, past which the worker stops it."""
        engine_s = 0.0
        if not self.engine.ready and (needs_engine or len(self.in_flight) or self.engine.starting_since is not None):
            since = self.engine.starting_since
            limit = self.settings.engine_start_timeout + ENGINE_STOP_S
            engine_s = limit - (self._clock() - since) if since is not None else limit
        tail = idle_tail_seconds(self.settings.endpoint_idle_timeout, self.settings.budget_heartbeat_seconds)
        seconds = exposure_seconds(self.in_flight.remaining_seconds(self._clock()), engine_s, tail)
        return cost_usd(seconds, self.hourly_rate)

    def overhead_usd(self, *, exiting: bool = False) -> dict[str, float]:
        """The worker's overhead so far by kind (boot not counted where RunPod bills no start-up);
        `exiting`: the last settlement, which also counts the process's exit as idle."""
        seconds = self.meter.overhead_by_kind()
        if exiting:
            seconds["idle"] += EXIT_ALLOWANCE_S
        if not self.settings.bill_initializing:
            seconds["boot"] = 0.0
        return {kind: cost_usd(s, self.hourly_rate) for kind, s in seconds.items()}

    def running_usd(self) -> dict[str, float]:
        """What each job in flight has cost so far (its share of the worker's seconds)."""
        return {job: cost_usd(s, self.hourly_rate) for job, s in self.meter.running_billed().items()}

    async def heartbeat(self) -> BudgetState:
        """Settle the worker's overhead and its running jobs' seconds so far, and renew its
        reservation (the app calls it every BUDGET_HEARTBEAT_SECONDS)."""
        return await self.budget.accrue(self.overhead_usd(), self.exposure_usd(), self.running_usd())

    def _tokens(self, req: EngineRequest) -> int:
        return req.max_tokens or self.settings.default_max_tokens

    def _work_bound(self, req: EngineRequest) -> float:
        """The most work the request can do: every prompt's tokens at most, every answer to max_tokens."""
        return work_units(req.prompt_tokens_max, self._tokens(req) * req.completions)

    def _capped(self, req: EngineRequest) -> tuple[EngineRequest, bool]:
        """With `max_cost_usd`, lower max_tokens so the job cannot cost more (True: lowered)."""
        if req.max_cost_usd is None:
            return req, False
        paces = self.meter.paces()
        allowed_f = max_tokens_for_cost(req.max_cost_usd, self.hourly_rate, req.prompt_tokens_max, req.completions,
                                        paces)  # fmt: skip
        if allowed_f == float("inf"):  # nothing is priced: nothing to cap
            return req, False
        allowed = int(allowed_f)
        if allowed >= self._tokens(req):
            return req, False
        if allowed < 1:
            least_s = REQUEST_FLOOR_S + alone_seconds(req.prompt_tokens_max, 1, work_units(req.prompt_tokens_max,
                                                      req.completions), paces)  # fmt: skip
            raise ValidationFailed(
                f"max_cost_usd: {req.max_cost_usd} USD does not cover this prompt and one token at the worker's "
                f"pace (at least {cost_usd(least_s, self.hourly_rate):.8f} USD)",
                field="max_cost_usd",
            )
        return replace(req, body={**req.body, "max_tokens": allowed}), True

    def _job_fields(self, cost: float, timer: _Timer, state: BudgetState) -> dict[str, Any]:
        return {"cached": False, "cost_usd": cost, "timings": timer.timings(), "budget": state.to_dict()}


def _named(answer: dict[str, Any], name: str | None) -> dict[str, Any]:
    """An OpenAI response under the name the request gave (the engine answers under the model's own)."""
    return {**answer, "model": name} if name is not None and "model" in answer else answer
