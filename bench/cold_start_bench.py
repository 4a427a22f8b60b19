"""Cold start to the first token, by start-up setting, and what each costs in serving speed.

    python -m bench.cold_start_bench [tiny|smollm2 ...]

For each model, engines are started one after another by the worker (the same
app, settings and first job a cold worker runs):

- compiled, no cache: vLLM's default, with an empty VLLM_CACHE_ROOT;
- restart: the same cache folder again (a restart in the same container);
- kept cache: a copy of that folder in a new place (a new container from an image
  that carries `builder warm`'s cache);
- eager: --enforce-eager (nothing compiled).

Cold start to first token is the engine's start plus a one-token job. Serving speed
is the raw engine's throughput on the engine_bench workload, measured on the
compiled, kept-cache and eager engines in turn (ratios are the results).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.engine_bench import WORKLOADS, job_input, rate, via_raw
from handler.app import create_app
from tests.engine_support import require_model, settings_for

ROUNDS = 2


async def start_and_serve(model: str, cache: Path, eager: bool) -> tuple[float, float, dict[str, float]]:
    """(seconds to the first token, best throughput, the start's phases) of one cold engine."""
    args = "--enforce-eager" if eager else ""
    app = create_app(settings_for(model, ENGINE_EXTRA_ARGS=args, ENGINE_CACHE_DIR=str(cache)))
    n, max_tokens, _ = WORKLOADS[model]
    first = {**job_input(model, 0, 1), "sampling_params": {"max_tokens": 1, "temperature": 0}}
    try:
        out = await app.handler({"id": "cold", "input": first})
        to_first_token = out["timings"]["total_ms"] / 1000
        phases = dict(out["timings"].get("engine_phases", {}))
        inputs = [job_input(model, i, max_tokens) for i in range(n)]
        best = 0.0
        for _ in range(ROUNDS):
            best = max(best, rate(await via_raw(app, inputs, True)))
    finally:
        await app.aclose()
    return to_first_token, best, phases


async def measure_model(model: str) -> list[dict[str, Any]]:
    require_model(model)
    with tempfile.TemporaryDirectory(prefix=f"cold-{model}-") as tmp:
        first_cache, kept_cache = Path(tmp) / "first", Path(tmp) / "kept"
        first_cache.mkdir()
        cold_s, compiled_tps, cold_phases = await start_and_serve(model, first_cache, eager=False)
        restart_s, _, _ = await start_and_serve(model, first_cache, eager=False)
        shutil.copytree(first_cache, kept_cache)  # the image's copy, in a new container
        kept_s, kept_tps, kept_phases = await start_and_serve(model, kept_cache, eager=False)
        eager_s, eager_tps, _ = await start_and_serve(model, Path(tmp) / "eager", eager=True)
    print(f"{model}: phases compiled {cold_phases}; from the kept cache {kept_phases}", flush=True)
    return [
        {"metric": f"cold start to first token, {model}: compiled, no cache (vLLM's default)",
         "value": round(cold_s, 1), "goal": None, "unit": "s"},
        {"metric": f"cold start to first token, {model}: compiled, restart in the same container",
         "value": round(restart_s, 1), "goal": None, "unit": "s"},
        {"metric": f"cold start to first token, {model}: compiled, new container from the kept cache",
         "value": round(kept_s, 1), "goal": None, "unit": "s"},
        {"metric": f"cold start to first token, {model}: eager", "value": round(eager_s, 1), "goal": None, "unit": "s"},
        {"metric": f"cold start, {model}: kept cache / compiled no cache", "value": round(kept_s / cold_s, 3),
         "goal": "<= 0.35", "unit": "ratio"},
        {"metric": f"cold start, {model}: eager / compiled no cache", "value": round(eager_s / cold_s, 3),
         "goal": "<= 0.35", "unit": "ratio"},
        {"metric": f"cold start, {model}: new container from kept cache / restart",
         "value": round(kept_s / restart_s, 3), "goal": "<= 1.05", "unit": "ratio"},
        {"metric": f"serving throughput, {model}: kept cache / compiled", "value": round(kept_tps / compiled_tps, 3),
         "goal": ">= 0.97", "unit": "ratio"},
        {"metric": f"serving throughput, {model}: eager / compiled", "value": round(eager_tps / compiled_tps, 3),
         "goal": ">= 0.97", "unit": "ratio"},
    ]  # fmt: skip


async def measure(models: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model in models:
        rows += await measure_model(model)
    return rows


def run(models: list[str] | None = None) -> list[dict[str, Any]]:
    return asyncio.run(measure(models or ["tiny", "smollm2"]))


if __name__ == "__main__":
    from bench.report import print_table

    print_table(run(sys.argv[1:] or None))
