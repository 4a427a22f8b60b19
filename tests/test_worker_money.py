"""Cache, budget and billing through the handler, with the real engine and a real Redis."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import orjson
import pytest

from core.contract import parse_single
from handler.app import App, create_app
from handler.billing import work_units
from handler.exposure import EXIT_ALLOWANCE_S, REQUEST_FLOOR_S, alone_seconds
from tests.engine_support import settings_for

pytestmark = [pytest.mark.engine, pytest.mark.redis]


def deterministic(prompt: str, **cache: Any) -> dict[str, Any]:
    # ignore_eos: random weights may end at once, and an empty answer is (rightly) never cached; a
    # random prompt can still decode to "" (8 tokens of bytes that make no character), so prompts are fixed
    return {
        "prompt": prompt,
        "sampling_params": {"max_tokens": 8, "temperature": 0, "ignore_eos": True},
        "cache": cache,
    }


async def ask(app: App, input_: dict[str, Any], job_id: str = "m") -> dict[str, Any]:
    return await app.handler({"id": job_id, "input": input_})


async def test_a_hit_is_free_and_never_starts_the_engine_of_another_worker(tiny_app: App, redis_url: str) -> None:
    prompt = "Cache me: a hit"  # fixed: at temperature 0 its answer is known not to be empty (never cached)
    first = await ask(tiny_app, deterministic(prompt))
    assert first["cached"] is False and first["cost_usd"] > 0

    other = create_app(settings_for("tiny", REDIS_URL=redis_url, CACHE_NAMESPACE=tiny_app.settings.cache_namespace,
                                    GPU_HOURLY_RATE="3.6"))  # fmt: skip
    try:
        hit = await ask(other, deterministic(prompt))
        assert hit["cached"] is True, (first, hit)
        assert hit["cost_usd"] == 0
        assert hit["text"] == first["text"] and hit["usage"] == first["usage"]
        assert other.engine.starts == 0 and not other.engine.running
        streamed = [
            p async for p in other.generator_handler({"id": "s", "input": {**deterministic(prompt), "stream": True}})
        ]
        assert streamed[-1]["cached"] is True and "".join(p["text"] for p in streamed[:-1]) == first["text"]
    finally:
        await other.aclose()


async def test_bypass_refresh_and_sampling_changes_miss(tiny_app: App) -> None:
    prompt = "Options for the cache"  # fixed, with a non-empty answer; the session's namespace is fresh
    await ask(tiny_app, deterministic(prompt))
    assert (await ask(tiny_app, deterministic(prompt)))["cached"] is True
    assert (await ask(tiny_app, deterministic(prompt, bypass=True)))["cached"] is False
    assert (await ask(tiny_app, deterministic(prompt, refresh=True)))["cached"] is False
    changed = deterministic(prompt)
    changed["sampling_params"]["top_p"] = 0.5
    assert (await ask(tiny_app, changed))["cached"] is False
    random_sampling = {"prompt": prompt, "sampling_params": {"max_tokens": 8, "temperature": 0.8}}
    assert (await ask(tiny_app, random_sampling))["cached"] is False
    assert (await ask(tiny_app, random_sampling))["cached"] is False  # not deterministic: never cached


async def test_identical_concurrent_misses_generate_once(tiny_app: App) -> None:
    prompt = "Single flight prompt"  # fixed, with a non-empty answer
    outs = await asyncio.gather(*(ask(tiny_app, deterministic(prompt), f"sf{i}") for i in range(20)))
    assert sum(not o["cached"] for o in outs) == 1
    assert len({o["text"] for o in outs}) == 1
    assert sum(o["cost_usd"] for o in outs) == max(o["cost_usd"] for o in outs)


async def test_errors_are_not_cached(tiny_app: App) -> None:
    """An error the engine gives (the prompt is longer than the model's context) is never cached:
    the same request, cache on, reaches the engine again and is refused again."""
    words = " ".join(f"w{i}" for i in range(3000))  # under MAX_PROMPT_CHARS, over the tiny model's 2048 tokens
    bad = deterministic(words)
    budget = (await tiny_app.worker()).budget
    jobs_before = (await budget.state()).jobs
    for _ in range(2):
        err = orjson.loads((await ask(tiny_app, bad))["error"])
        assert err["type"] == "validation_error" and "the engine refused" in err["message"], err  # from vLLM
    assert (await budget.state()).jobs == jobs_before + 2  # both reached the engine and were billed


async def test_concurrent_jobs_and_overhead_add_up_to_the_worker_seconds(tiny_app: App) -> None:
    """Billing follows RunPod's: the jobs' costs plus the overhead equal running seconds times the rate."""
    await ask(tiny_app, {"prompt": "warm", "sampling_params": {"max_tokens": 2}})  # engine up
    meter, rate = tiny_app.meter, tiny_app.rate
    t0 = time.monotonic()  # the test's own clock, read around the meter's readings
    run0, over0 = meter.running_seconds(), meter.overhead_seconds()
    t1 = time.monotonic()
    jobs = [{"prompt": f"Job {i}", "sampling_params": {"max_tokens": 8 + 4 * i, "ignore_eos": True}} for i in range(24)]
    outs = await asyncio.gather(*(ask(tiny_app, j, f"bill{i}") for i, j in enumerate(jobs)))
    t2 = time.monotonic()
    await asyncio.sleep(0.2)  # some idle overhead too
    t3 = time.monotonic()
    run1, over1 = meter.running_seconds(), meter.overhead_seconds()
    t4 = time.monotonic()
    billed = sum(o["cost_usd"] for o in outs) + (over1 - over0) * rate / 3600
    worker = (run1 - run0) * rate / 3600
    assert billed == pytest.approx(worker, rel=0.01)
    # the worker's seconds are the seconds that passed, by the test's clock
    per_s = rate / 3600
    assert (t3 - t1) * per_s <= worker <= (t4 - t0) * per_s
    assert (t3 - t1) * per_s * 0.99 <= billed <= (t4 - t0) * per_s * 1.01
    # the jobs' costs: within the seconds they ran (the gather), and most of them (a job's cache
    # lookup and budget reservation before the engine are the worker's idle seconds)
    costs = sum(o["cost_usd"] for o in outs)
    assert 0.8 * (t2 - t1) * per_s <= costs <= (t2 - t0) * per_s
    # concurrent jobs share seconds: together they cost far less than their summed wall times
    walls = sum(o["timings"]["generation_ms"] for o in outs) / 1000 * rate / 3600
    assert sum(o["cost_usd"] for o in outs) < walls / 2
    # longer jobs (more tokens, more seconds in the engine) pay more than shorter ones; compared
    # as groups, since the first job to arrive may have the engine to itself for a moment
    costs = [o["cost_usd"] for o in outs]
    assert sum(costs[-8:]) > sum(costs[:8])


async def test_budget_refuses_before_the_engine_starts(redis_url: str) -> None:
    namespace = f"b-{uuid.uuid4().hex[:8]}"
    app = create_app(settings_for("tiny", REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace,
                                  GPU_HOURLY_RATE="3.6", DAILY_BUDGET_USD="0.05"))  # fmt: skip
    try:
        # $0.05 is 50 s of this worker: less than its boot plus an engine start (180 s before one is measured)
        out = await ask(app, {"prompt": "expensive", "sampling_params": {"max_tokens": 64}})
        err = orjson.loads(out["error"])
        assert err["type"] == "budget_exceeded"
        # the default fleet (3 workers) keeps 3 x (2 s process start + 2 s boot + 5 s idle + 5 s heartbeat + 1 s exit)
        assert "less 0.045000 USD kept for workers that may still start" in err["message"], err
        assert app.engine.starts == 0  # refused before paying for an engine start
        await app.beat()  # a heartbeat settles the overhead so far
        state = await (await app.worker()).budget.state()
        assert state.jobs_usd == 0 and state.jobs == 0
        assert state.spent_usd > 0 and state.spent_usd == state.overhead_usd  # overhead only
        assert state.overhead_usd == pytest.approx(state.boot_usd + state.idle_usd, abs=1e-9)  # boot and idle
        s = app.settings
        tail = (s.endpoint_idle_timeout + s.budget_heartbeat_seconds + EXIT_ALLOWANCE_S) * 3.6 / 3600
        assert state.reserved_usd == pytest.approx(tail, abs=1e-6)  # the worker's idle tail, nothing more
    finally:
        await app.aclose()


async def test_no_job_costs_more_than_its_bound(tiny_app: App) -> None:
    """500 jobs of mixed prompt lengths, in bursts of 1 to 64 at once: each answer's cost stays
    within the worst case the worker reserved for it (its prompt and completion tokens, n, the
    work ahead of it, at the slowest pace measured)."""
    rng = random.Random(11)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "rivers",
        "run",
        "to",
        "the",
        "sea",
    ]
    jobs = []
    for i in range(500):
        prompt = " ".join(rng.choice(words) for _ in range(rng.choice([1, 5, 40, 200, 600])))
        params = {"max_tokens": rng.choice([1, 4, 16, 48]), "n": rng.choice([1, 1, 2]), "ignore_eos": True}
        jobs.append({"prompt": f"{i} {prompt}", "sampling_params": params, "cache": {"bypass": True}})
    outs: list[dict[str, Any]] = []
    while jobs:
        size = rng.choice([1, 4, 16, 64])
        group, jobs = jobs[:size], jobs[size:]
        outs += await asyncio.gather(*(ask(tiny_app, j, f"bound{len(outs) + k}") for k, j in enumerate(group)))
    failed = [o for o in outs if "error" in o]
    assert len(outs) == 500 and not failed, failed[:3]
    over = [(o["cost_usd"], o["cost_bound_usd"], o["usage"]) for o in outs if o["cost_usd"] > o["cost_bound_usd"]]
    assert not over, over[:5]
    ratios = sorted(o["cost_usd"] / o["cost_bound_usd"] for o in outs)
    print(f"cost / bound: median {ratios[250]:.3f}, max {ratios[-1]:.3f}")


async def test_max_cost_usd_caps_the_tokens_and_says_so(tiny_app: App) -> None:
    rate_per_s = tiny_app.rate / 3600
    paces = tiny_app.meter.paces()
    prompt = parse_single({"prompt": "Go"}, tiny_app.settings.limits).prompt_tokens_max
    # a request's floor, its prompt and ten tokens at the slowest paces measured
    cap = (REQUEST_FLOOR_S + alone_seconds(prompt, 10, work_units(prompt, 10), paces)) * rate_per_s
    job = {"prompt": "Go", "sampling_params": {"max_tokens": 200, "ignore_eos": True}, "max_cost_usd": cap,
           "cache": {"bypass": True}}  # fmt: skip
    out = await ask(tiny_app, job)
    assert out.get("cost_capped") is True and out["max_cost_usd"] == cap, out
    assert 1 <= out["usage"]["completion_tokens"] < 200
    assert out["cost_usd"] <= cap
    roomy = await ask(tiny_app, {**job, "max_cost_usd": 1000.0})
    assert "cost_capped" not in roomy and roomy["usage"]["completion_tokens"] == 200
    too_small = orjson.loads((await ask(tiny_app, {**job, "max_cost_usd": 1e-12}))["error"])
    assert too_small["type"] == "validation_error" and too_small["field"] == "max_cost_usd"
