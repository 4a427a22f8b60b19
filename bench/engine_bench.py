"""Handler vs raw engine, concurrent vs sequential, first-job latency: tiny model and SmolLM2.

    python -m bench.engine_bench [tiny|smollm2 ...]

For each model one engine is started by the worker; the same requests then go
(a) straight to that engine's OpenAI server (aiohttp, the fastest client we
have) and (b) through the handler (cache bypassed), alternating rounds so both
see the same machine load. Ratios, not
absolute times, are the results.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp

from core.contract import parse_single
from handler.app import App, create_app
from tests.engine_support import require_model, settings_for

# (concurrent jobs, max tokens, jobs timed one by one): the workloads
WORKLOADS = {"tiny": (64, 32, 16), "smollm2": (32, 64, 8)}
GOALS = {"tiny": ">= 15"}  # batching gain goal (issue 2); for SmolLM2 the goal is relative to the raw engine
ROUNDS = 2


def job_input(model: str, i: int, max_tokens: int) -> dict[str, Any]:
    params = {"max_tokens": max_tokens, "temperature": 0}
    if model == "tiny":  # random weights: fix the length so every round does the same work
        return {
            "prompt": f"Item {i}: the",
            "sampling_params": {**params, "ignore_eos": True},
            "cache": {"bypass": True},
        }
    question = f"Write one sentence about the number {i}."
    return {"messages": [{"role": "user", "content": question}], "sampling_params": params, "cache": {"bypass": True}}


async def via_handler(app: App, inputs: list[dict[str, Any]], concurrent: bool) -> tuple[float, int]:
    started = time.perf_counter()
    if concurrent:
        outs = await asyncio.gather(*(app.handler({"id": f"b{i}", "input": x}) for i, x in enumerate(inputs)))
    else:
        outs = [await app.handler({"id": f"b{i}", "input": x}) for i, x in enumerate(inputs)]
    tokens = sum(o["usage"]["completion_tokens"] for o in outs)
    return time.perf_counter() - started, tokens


async def via_raw(app: App, inputs: list[dict[str, Any]], concurrent: bool) -> tuple[float, int]:
    requests = [parse_single({k: v for k, v in x.items() if k != "cache"}, app.settings.limits) for x in inputs]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{app.engine.port}", connector=connector) as client:

        async def one(route: str, body: dict[str, Any]) -> int:
            async with client.post(route, json=body) as response:
                response.raise_for_status()
                return int((await response.json())["usage"]["completion_tokens"])

        started = time.perf_counter()
        if concurrent:
            counts = await asyncio.gather(*(one(r.route, r.body) for r in requests))
        else:
            counts = [await one(r.route, r.body) for r in requests]
    return time.perf_counter() - started, sum(counts)


def rate(result: tuple[float, int]) -> float:
    seconds, tokens = result
    return tokens / seconds


async def measure_model(model: str, extra_args: str | None = None, label: str = "") -> list[dict[str, Any]]:
    require_model(model)
    overrides = {"ENGINE_EXTRA_ARGS": extra_args} if extra_args is not None else {}
    app = create_app(settings_for(model, **overrides))
    name = f"{model}{label}"
    n, max_tokens, n_seq = WORKLOADS[model]
    inputs = [job_input(model, i, max_tokens) for i in range(n)]
    try:
        first = await app.handler({"id": "first", "input": inputs[0]})
        start_s = first["timings"]["engine_start_ms"] / 1000
        gen_s = first["timings"]["generation_ms"] / 1000
        best: dict[str, float] = {"raw": 0.0, "handler": 0.0, "raw_seq": 0.0, "handler_seq": 0.0}
        for _ in range(ROUNDS):
            best["raw"] = max(best["raw"], rate(await via_raw(app, inputs, True)))
            best["handler"] = max(best["handler"], rate(await via_handler(app, inputs, True)))
        best["raw_seq"] = rate(await via_raw(app, inputs[:n_seq], False))
        best["handler_seq"] = rate(await via_handler(app, inputs[:n_seq], False))
    finally:
        await app.aclose()
    gain_raw = best["raw"] / best["raw_seq"]
    gain_handler = best["handler"] / best["handler_seq"]
    rows = [
        {"metric": f"{name}: engine start (first job)", "value": round(start_s, 1), "goal": None, "unit": "s"},
        {"metric": f"{name}: generation (first job)", "value": round(gen_s, 2), "goal": None, "unit": "s"},
        {"metric": f"{name}: raw engine throughput, {n} concurrent", "value": round(best["raw"], 1), "goal": None,
         "unit": "tokens/s"},
        {"metric": f"{name}: handler throughput, {n} concurrent", "value": round(best["handler"], 1), "goal": None,
         "unit": "tokens/s"},
        {"metric": f"{name}: handler / raw engine throughput", "value": round(best["handler"] / best["raw"], 3),
         "goal": ">= 0.95", "unit": "ratio"},
        {"metric": f"{name}: batching gain through the handler (concurrent / one by one)",
         "value": round(gain_handler, 1), "goal": GOALS.get(model), "unit": "x"},
        {"metric": f"{name}: handler batching gain / raw engine batching gain",
         "value": round(gain_handler / gain_raw, 3), "goal": ">= 0.95", "unit": "ratio"},
    ]  # fmt: skip
    return rows


async def measure(models: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model in models:
        rows += await measure_model(model)
    if "smollm2" in models:  # lighter compilation: does it start faster, and what does it cost?
        rows += await measure_model("smollm2", "--enforce-eager", " (--enforce-eager)")
    return rows


def run(models: list[str] | None = None) -> list[dict[str, Any]]:
    return asyncio.run(measure(models or list(WORKLOADS)))


if __name__ == "__main__":
    from bench.report import print_table

    print_table(run(sys.argv[1:] or None))
