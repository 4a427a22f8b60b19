"""A cache hit through the whole handler vs a raw Redis GET, side by side.

    python -m bench.hit_bench

The entry is stored through the worker's own cache; then handler hits and raw
GETs of the same key alternate, so both see the same machine load.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from bench.cache_bench import percentile
from core.contract import parse_single
from devtools.redis_server import existing_or_new
from handler import keys
from handler.app import create_app
from handler.cache import CacheOptions
from tests.engine_support import settings_for

SAMPLES = 2000
WARMUP = 200
JOB = {"messages": [{"role": "user", "content": "What is the capital of France?"}],
       "sampling_params": {"max_tokens": 32, "temperature": 0}}  # fmt: skip
ANSWER = {"text": "The capital of France is Paris.", "finish_reason": "stop",
          "usage": {"prompt_tokens": 36, "completion_tokens": 8, "total_tokens": 44}, "_cost_usd": 0.0001}  # fmt: skip


async def measure(url: str) -> list[dict[str, Any]]:
    namespace = f"bench-hit-{uuid.uuid4().hex[:8]}"
    app = create_app(
        settings_for(
            "tiny", REDIS_URL=url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace, GPU_HOURLY_RATE="0.44"
        )
    )
    raw = aioredis.from_url(url)
    try:
        worker = await app.worker()
        req = parse_single(JOB, app.settings.limits)
        key = worker.cache.key_for(req.route, req.body, CacheOptions())
        assert key is not None
        await worker.cache.put(key, ANSWER)
        redis_key = keys.cache_entry(namespace, key)
        hit_ms, get_ms = [], []
        for i in range(WARMUP + SAMPLES):
            started = time.perf_counter()
            out = await app.handler({"id": "hit", "input": JOB})
            middle = time.perf_counter()
            await raw.get(redis_key)
            done = time.perf_counter()
            assert out.get("cached") is True, out
            if i >= WARMUP:
                hit_ms.append((middle - started) * 1000)
                get_ms.append((done - middle) * 1000)
        assert app.engine.starts == 0
    finally:
        await raw.aclose()
        await app.aclose()
    p50_hit, p50_get = percentile(hit_ms, 0.5), percentile(get_ms, 0.5)
    return [
        {"metric": "handler cache hit p50", "value": round(p50_hit, 3), "goal": None, "unit": "ms"},
        {"metric": "raw Redis GET p50, same run", "value": round(p50_get, 3), "goal": None, "unit": "ms"},
        {"metric": "handler cache hit p50 / raw GET p50", "value": round(p50_hit / p50_get, 2), "goal": "<= 3",
         "unit": "ratio"},
        {"metric": "handler cache hit p99", "value": round(percentile(hit_ms, 0.99), 3), "goal": "< 2", "unit": "ms"},
        {"metric": "raw Redis GET p99, same run", "value": round(percentile(get_ms, 0.99), 3), "goal": None,
         "unit": "ms"},
    ]  # fmt: skip


def run() -> list[dict[str, Any]]:
    with existing_or_new() as (url, _owned):
        return asyncio.run(measure(url))


if __name__ == "__main__":
    from bench.report import print_table

    print_table(run())
