"""The worker's money and error paths on the in-process fake engine (no vLLM, no Redis server).

Time is simulated (`SimClock`): the engine's start and tokens move the clock the worker,
its meter and the engine share, so every figure below is worked by hand. The worker is
billed TEST_HOURLY_RATE, 3.6 USD an hour: 0.001 USD a second. After its last job a worker
keeps reserved only its idle tail: ENDPOINT_IDLE_TIMEOUT 5 s + one heartbeat 5 s + 1 s for
its exit = 11 s, 0.011 USD.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from devtools.fake_engine import FakeEngine, SimClock
from handler.billing import Meter
from handler.budget import Budget, BudgetState
from handler.cache import ResponseCache
from handler.engine_command import ModelRef, answer_fingerprint
from handler.errors import EngineCrashed, EngineStartError
from handler.rates import hourly_rate
from handler.settings import load_settings
from handler.store.embedded import EmbeddedStore
from handler.worker import Worker
from tests.conftest import TEST_HOURLY_RATE

USD_PER_S = 0.001  # TEST_HOURLY_RATE / 3600
IDLE_TAIL_USD = (5 + 5 + 1) * USD_PER_S
BUDGET_DAY = 1_794_908_800.0  # the budget's wall clock, fixed: one budget day throughout


def make_worker(namespace: str, engine: FakeEngine, clock: SimClock) -> Worker:
    """A worker as `handler.app.App` builds one, over the embedded store, on `engine` and `clock`."""
    settings = load_settings({"GPU_HOURLY_RATE": TEST_HOURLY_RATE, "DAILY_BUDGET_USD": "10",
                              "CACHE_NAMESPACE": namespace, "BUDGET_NAMESPACE": namespace,
                              "ENDPOINT_IDLE_TIMEOUT": "5", "BUDGET_HEARTBEAT_SECONDS": "5"})  # fmt: skip
    store = EmbeddedStore()
    model = ModelRef(path="/nonexistent/fake", name=engine.model_name)
    meter = Meter(settings.seconds_per_token, clock=clock)
    meter.worker_ready()  # as the app does when it takes jobs (ENGINE_START=lazy)
    return Worker(
        settings.jobs,
        engine,
        model,
        cache=ResponseCache(store, settings.cache, answer_fingerprint(settings.engine, model, engine.device)),
        budget=Budget(store, settings.budget, clock=lambda: BUDGET_DAY),
        meter=meter,
        hourly_rate=hourly_rate(settings.budget),
        clock=clock,
    )


def fake(clock: SimClock, **kwargs: Any) -> FakeEngine:
    return FakeEngine(clock=clock, sleep=clock.sleep, **kwargs)


def greedy(prompt: str, max_tokens: int = 8, **extra: Any) -> dict[str, Any]:
    """A deterministic (cacheable) prompt job."""
    return {"prompt": prompt, "sampling_params": {"max_tokens": max_tokens, "temperature": 0}, **extra}


async def settled(budget: Budget, jobs: int) -> BudgetState:
    """The budget once `jobs` jobs are settled (an abandoned stream settles in a task of its own)."""
    state = await budget.state()
    for _ in range(200):
        if state.jobs >= jobs:
            return state
        await asyncio.sleep(0.01)
        state = await budget.state()
    raise AssertionError(f"{jobs} job(s) not settled within 2 s: {state}")


async def test_a_crash_mid_request_is_still_paid_and_its_error_never_cached(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, start_seconds=2.0, per_token_seconds=0.05)
    worker = make_worker(namespace, engine, clock)
    engine.crash(after_tokens=3)
    job = greedy("the crash test")
    with pytest.raises(EngineCrashed):
        await worker.answer("a1", job)
    state = await worker.budget.state()
    # 3 tokens at 0.05 s: 0.15 s of the worker, 0.00015 USD; its 2 s engine start is overhead, not the job's
    assert (state.jobs, state.jobs_usd) == (1, pytest.approx(0.00015, abs=1e-12))
    assert state.reserved_usd == pytest.approx(IDLE_TAIL_USD, abs=1e-12)  # the job's worst case is released
    assert len(worker.in_flight) == 0 and worker.meter.in_flight() == 0
    assert not engine.ready  # the engine died with the request

    # no error was cached: the same job reaches the engine again, which starts again
    again = await worker.answer("a2", job)
    assert again["cached"] is False and len(engine.calls) == 2 and engine.starts == 2
    assert again["text"] == " the crash test the crash test the crash"  # 8 tokens, the prompt's words
    assert again["cost_usd"] == pytest.approx(8 * 0.05 * USD_PER_S, abs=1e-12)
    assert again["timings"]["engine_start_ms"] == pytest.approx(2000.0)
    hit = await worker.answer("a3", job)  # the good answer is cached (so the miss above was no accident)
    assert hit["cached"] is True and len(engine.calls) == 2

    state = await worker.heartbeat()
    assert state.jobs_usd == pytest.approx(0.00015 + 0.0004, abs=1e-12)
    assert state.engine_start_usd == pytest.approx(2 * 2.0 * USD_PER_S, abs=1e-12)  # two starts, 2 s each


async def test_a_crash_mid_stream_passes_the_pieces_made_and_pays_for_them(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, per_token_seconds=0.02)
    worker = make_worker(namespace, engine, clock)
    engine.crash(after_tokens=2, match="river")
    job = {"openai_route": "/v1/chat/completions", "openai_input": {
        "messages": [{"role": "user", "content": "a river runs"}], "max_tokens": 8, "stream": True}}  # fmt: skip
    pieces: list[str] = []
    with pytest.raises(EngineCrashed):
        async for piece in worker.stream("c1", job):
            pieces.append(piece)
    # OpenAI's server-sent events: the role, then two tokens; the crash ends the stream (no [DONE])
    chunks = [orjson.loads(event.removeprefix("data: ")) for p in pieces for event in p.split("\n\n") if event]
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": " a"},
                                                          {"content": " river"}]  # fmt: skip
    state = await worker.budget.state()
    assert (state.jobs, state.jobs_usd) == (1, pytest.approx(2 * 0.02 * USD_PER_S, abs=1e-12))
    assert state.reserved_usd == pytest.approx(IDLE_TAIL_USD, abs=1e-12)


async def test_a_stream_costs_what_the_same_answer_costs_plain(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, per_token_seconds=0.01)
    worker = make_worker(namespace, engine, clock)
    job = greedy("flow on", max_tokens=5, cache={"bypass": True})
    pieces = [p async for p in worker.stream("s1", {**job, "stream": True})]
    plain = await worker.answer("s2", job)
    final = pieces[-1]
    assert "".join(p["text"] for p in pieces[:-1]) == final["text"] == plain["text"] == " flow on flow on flow"
    assert final["usage"] == plain["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert final["finish_reason"] == plain["finish_reason"] == "length"
    assert final["cost_usd"] == plain["cost_usd"] == pytest.approx(5 * 0.01 * USD_PER_S, abs=1e-12)


async def test_an_abandoned_stream_is_settled_not_left_reserved(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, per_token_seconds=0.05)
    worker = make_worker(namespace, engine, clock)
    job = {"messages": [{"role": "user", "content": "stream me please"}],
           "sampling_params": {"max_tokens": 8, "temperature": 0}, "stream": True}  # fmt: skip
    pieces = worker.stream("b1", job)
    assert await anext(pieces) == {"text": " stream"}
    await pieces.aclose()  # the caller went away after the first piece
    state = await settled(worker.budget, jobs=1)
    # one token was made, 0.05 s: 0.00005 USD
    assert state.jobs_usd == pytest.approx(0.05 * USD_PER_S, abs=1e-12)
    assert state.reserved_usd == pytest.approx(IDLE_TAIL_USD, abs=1e-12)
    assert len(worker.in_flight) == 0 and worker.meter.in_flight() == 0
    # its single flight was given up too: the same request is generated again, not waited for forever
    out = await asyncio.wait_for(worker.answer("b2", {**job, "stream": False}), 5)
    assert out["cached"] is False and out["text"] == " stream me please stream me please stream me"
    assert len(engine.calls) == 2


async def test_a_batch_costs_the_sum_of_its_items_failed_ones_included(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, start_seconds=1.0, per_token_seconds=0.01)
    worker = make_worker(namespace, engine, clock)
    engine.crash(after_tokens=2, match="boom", engine_dies=False)  # only this item's connection drops
    engine.refuse(400, "This model's maximum context length is 2048 tokens", match="long")
    items = [
        {"prompt": "one two", "sampling_params": {"max_tokens": 4}},
        {"prompt": "boom now", "sampling_params": {"max_tokens": 6}},
        {"prompt": "three four", "sampling_params": {"max_tokens": 6}},
        {"prompt": "far too long", "sampling_params": {"max_tokens": 6}},
        {"prompt": "", "sampling_params": {"max_tokens": 6}},  # invalid: never reaches the engine
    ]
    out = await worker.answer("batch", {"requests": items})
    results = out["results"]
    assert [r.get("error", {}).get("type") for r in results] == [
        None, "engine_crashed", None, "validation_error", "validation_error"]  # fmt: skip
    assert "the engine refused the request" in results[3]["error"]["message"]
    assert results[4]["error"]["field"] == "requests.4.prompt"
    assert out["failed"] == 3
    assert [r["text"] for r in (results[0], results[2])] == [" one two one two", " three four three four three four"]
    # tokens made: 4 + 2 (then the crash) + 6 + 0 (refused) = 12, at 0.01 s: 0.12 s, 0.00012 USD
    assert out["cost_usd"] == pytest.approx(12 * 0.01 * USD_PER_S, abs=5e-8)  # items are rounded to 1e-8 each
    assert out["cost_usd"] > results[0]["cost_usd"] + results[2]["cost_usd"]  # the crashed item's seconds count
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 10, "total_tokens": 14}
    state = await worker.budget.state()
    assert state.jobs == 4  # every item that reached the engine is settled
    assert state.jobs_usd == pytest.approx(out["cost_usd"], abs=1e-6)
    assert state.reserved_usd == pytest.approx(IDLE_TAIL_USD, abs=1e-12)


async def test_a_failed_engine_start_releases_the_job_and_the_next_job_is_served(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, start_seconds=3.0, per_token_seconds=0.01)
    worker = make_worker(namespace, engine, clock)
    engine.fail_starts(1)
    job = greedy("start me", max_tokens=5)
    with pytest.raises(EngineStartError):
        await worker.answer("d1", job)
    state = await worker.budget.state()
    assert (state.jobs, state.jobs_usd) == (0, 0.0)  # the job cost nothing: the start is the worker's overhead
    assert state.reserved_usd == pytest.approx(IDLE_TAIL_USD, abs=1e-12)
    assert len(worker.in_flight) == 0

    out = await worker.answer("d2", job)
    assert out["cached"] is False and out["text"] == " start me start me start"
    assert (engine.start_attempts, engine.starts) == (2, 1)
    assert out["timings"]["engine_start_ms"] == pytest.approx(3000.0)
    assert out["cost_usd"] == pytest.approx(5 * 0.01 * USD_PER_S, abs=1e-12)
    state = await worker.heartbeat()
    assert state.jobs == 1
    assert state.engine_start_usd == pytest.approx(2 * 3.0 * USD_PER_S, abs=1e-12)  # the failed start is paid too


async def test_a_cache_hit_is_free_and_never_reaches_the_engine(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, per_token_seconds=0.01)
    worker = make_worker(namespace, engine, clock)
    job = greedy("cache me", max_tokens=4)
    first = await worker.answer("e1", job)
    assert first["cached"] is False and first["cost_usd"] == pytest.approx(4 * 0.01 * USD_PER_S, abs=1e-12)
    hit = await worker.answer("e2", job)
    assert hit["cached"] is True and hit["cost_usd"] == 0.0
    assert hit["text"] == first["text"] == " cache me cache me" and hit["usage"] == first["usage"]
    streamed = [p async for p in worker.stream("e3", {**job, "stream": True})]
    assert streamed[0] == {"text": " cache me cache me"} and streamed[-1]["cached"] is True
    assert len(engine.calls) == 1 and engine.starts == 1
    state = await worker.budget.state()
    assert (state.jobs, state.jobs_usd) == (1, pytest.approx(4 * 0.01 * USD_PER_S, abs=1e-12))


async def test_identical_concurrent_requests_make_one_engine_call(namespace: str) -> None:
    clock = SimClock()
    engine = fake(clock, per_token_seconds=0.01)
    worker = make_worker(namespace, engine, clock)
    job = greedy("only once", max_tokens=6)
    outs = await asyncio.gather(worker.answer("f1", job), worker.answer("f2", job))
    assert len(engine.calls) == 1
    assert sorted(o["cached"] for o in outs) == [False, True]
    assert {o["text"] for o in outs} == {" only once only once only once"}
    assert sum(o["cost_usd"] for o in outs) == pytest.approx(6 * 0.01 * USD_PER_S, abs=1e-12)
    state = await worker.budget.state()
    assert state.jobs == 1
