"""Cache-hit lookup, budget reserve+settle and the budget heartbeat against a raw Redis round trip.

    python -m bench.cache_bench        prints a table (also collected by `python -m bench`)

Uses REDIS_URL when a server answers there, else starts a private redis-server.
Samples of the measured path and of the raw GET alternate in one loop, so both
see the same machine load. The heartbeat's cost is its CPU time per beat over
the beat's interval: the share of one core the worker spends on it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from devtools.redis_server import existing_or_new
from handler import keys
from handler.budget import Budget
from handler.cache import CacheOptions, ResponseCache
from handler.settings import load_settings
from handler.store.redis_store import RedisStore

SAMPLES = 3000
WARMUP = 200
BODY = {
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 64,
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": -1,
    "seed": None,
    "stop": [],
    "n": 1,
}
ANSWER = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The capital of France is Paris."}}],
    "usage": {"prompt_tokens": 36, "completion_tokens": 8, "total_tokens": 44},
}
FINGERPRINT = {"model": "smollm2", "revision": "bench", "quantization": "", "dtype": "float32"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000.0


async def measure(url: str) -> list[dict[str, Any]]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings({"REDIS_URL": url, "CACHE_NAMESPACE": namespace, "BUDGET_NAMESPACE": namespace,
                              "DAILY_BUDGET_USD": "1000000", "GPU_HOURLY_RATE": "3.6"})  # fmt: skip
    store = RedisStore(url)
    cache = ResponseCache(store, settings.cache, FINGERPRINT)
    budget = Budget(store, settings.budget)
    options = CacheOptions()
    key = cache.key_for("/v1/chat/completions", BODY, options)
    assert key is not None
    await cache.put(key, ANSWER)
    entry_key = keys.cache_entry(namespace, key)
    raw = store.client

    async def hit_path() -> None:
        k = cache.key_for("/v1/chat/completions", BODY, options)
        assert k is not None and await cache.get(k, options) is not None

    async def raw_get() -> None:
        await raw.get(entry_key)

    counter = 0

    async def reserve_settle() -> None:
        nonlocal counter
        counter += 1
        reservation = await budget.reserve(f"bench-{counter}", 0.002)
        await budget.settle(reservation, 0.0005, 0.001)

    async def heartbeat() -> None:
        overhead = {"boot": 0.002, "engine_start": 0.05, "idle": counter * 1e-6}
        await budget.accrue(overhead, 0.001)

    series: dict[str, list[float]] = {"hit": [], "get": [], "budget": [], "beat": [], "get2": []}
    cpu = {"beat": 0.0}
    try:
        for i in range(WARMUP + SAMPLES):
            pairs = [("hit", hit_path), ("get", raw_get), ("budget", reserve_settle), ("beat", heartbeat),
                     ("get2", raw_get)]  # fmt: skip
            for name, fn in pairs if i % 2 else reversed(pairs):
                cpu_before = time.process_time()
                elapsed = await _timed(fn)
                if i >= WARMUP:
                    series[name].append(elapsed)
                    if name in cpu:
                        cpu[name] += time.process_time() - cpu_before
    finally:
        async for k in raw.scan_iter(match=f"*{namespace}*"):
            await raw.delete(k)
        await store.close()

    get = series["get"] + series["get2"]
    get50, get99 = statistics.median(get), percentile(get, 0.99)
    hit50, hit99 = statistics.median(series["hit"]), percentile(series["hit"], 0.99)
    bud50, bud99 = statistics.median(series["budget"]), percentile(series["budget"], 0.99)
    beat99 = percentile(series["beat"], 0.99)
    beat_share = cpu["beat"] / SAMPLES / settings.budget_heartbeat_seconds
    return [
        row("raw Redis GET p50", get50, None, "ms"),
        row("raw Redis GET p99", get99, None, "ms"),
        row("cache hit lookup p50 (key+get+decode)", hit50, None, "ms"),
        row("cache hit lookup p99", hit99, 2.0, "ms"),
        row("cache hit p50 / raw GET p50", hit50 / get50, 3.0, "x"),
        row("budget reserve+settle p50", bud50, None, "ms"),
        row("budget reserve+settle p99", bud99, 1.0, "ms"),
        row("budget reserve+settle p99 / raw GET p99", bud99 / get99, None, "x"),
        row("budget heartbeat p99", beat99, None, "ms"),
        row(
            f"budget heartbeat CPU, share of a core (one beat per {settings.budget_heartbeat_seconds:g} s)",
            beat_share * 100,
            1.0,
            "%",
        ),
        row("machine load average (1 min, context)", os.getloadavg()[0], None, "procs"),
    ]


def row(metric: str, value: float, goal: float | None, unit: str) -> dict[str, Any]:
    """One result; `goal` is an upper bound (None: context only)."""
    return {
        "metric": metric,
        "value": round(value, 4),
        "goal": None if goal is None else f"<= {goal:g}",
        "unit": unit,
        "ok": None if goal is None else value <= goal,
    }


def run() -> list[dict[str, Any]]:
    with existing_or_new() as (url, _owned):
        return asyncio.run(measure(url))


def main() -> None:
    rows = run()
    width = max(len(r["metric"]) for r in rows)
    print(f"{'metric'.ljust(width)}  {'value':>9}  unit   goal     ok")
    for r in rows:
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        print(f"{r['metric'].ljust(width)}  {r['value']:>9.4f}  {r['unit']:<5}  {r['goal'] or '':<7}  {ok}")


if __name__ == "__main__":
    main()
