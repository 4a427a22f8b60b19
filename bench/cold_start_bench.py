"""Cold start to the first token, by start-up setting, and what each costs in serving speed.

    python -m bench.cold_start_bench [tiny|smollm2 ...]

For each model, engines are started one after another by the worker (the same
app, settings and first job a cold worker runs), each alone on the machine:

- compiled, no cache: vLLM's default, with an empty cache folder (ENGINE_CACHE_DIR:
  vLLM's cache and torch's inductor and Triton caches inside it);
- restart: the same cache folder again (a restart in the same container);
- kept cache: a copy of that folder in a new place (a new container from an image
  that carries `builder warm`'s cache);
- eager: --enforce-eager (nothing compiled).

Cold start to first token is the engine's start plus a one-token job. Serving
speed is the raw engine's throughput on the engine_bench workload: the compiled
engine (its graphs loaded from the first cache), the kept-cache one and the eager
one run side by side, in alternating rounds (the best of each is the result).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.engine_bench import WORKLOADS, job_input, rate, via_raw
from handler.app import App, create_app
from tests.engine_support import require_model, settings_for

ROUNDS = 3


async def cold_app(model: str, cache: Path, eager: bool) -> tuple[App, float, dict[str, float]]:
    """A started app, the seconds its cold first job took to its one token, and the start's phases."""
    args = "--enforce-eager" if eager else ""
    app = create_app(settings_for(model, ENGINE_EXTRA_ARGS=args, ENGINE_CACHE_DIR=str(cache)))
    first = {**job_input(model, 0, 1), "sampling_params": {"max_tokens": 1, "temperature": 0}}
    try:
        out = await app.handler({"id": "cold", "input": first})
    except BaseException:
        await app.aclose()
        raise
    return app, out["timings"]["total_ms"] / 1000, dict(out["timings"].get("engine_phases", {}))


async def cold_start(model: str, cache: Path, eager: bool) -> tuple[float, dict[str, float]]:
    app, seconds, phases = await cold_app(model, cache, eager)
    await app.aclose()
    return seconds, phases


async def throughputs(model: str, caches: dict[str, tuple[Path, bool]]) -> dict[str, float]:
    """The best tokens/s of each engine, started together and measured in alternating rounds."""
    n, max_tokens, _ = WORKLOADS[model]
    inputs = [job_input(model, i, max_tokens) for i in range(n)]
    apps: dict[str, App] = {}
    try:
        for name, (cache, eager) in caches.items():
            apps[name] = (await cold_app(model, cache, eager))[0]
        best = dict.fromkeys(apps, 0.0)
        for round_ in range(ROUNDS):
            order = list(apps) if round_ % 2 == 0 else list(reversed(apps))
            for name in order:
                best[name] = max(best[name], rate(await via_raw(apps[name], inputs, True)))
        return best
    finally:
        for app in apps.values():
            await app.aclose()


async def measure_model(model: str) -> list[dict[str, Any]]:
    require_model(model)
    with tempfile.TemporaryDirectory(prefix=f"cold-{model}-") as tmp:
        first_cache, kept_cache, eager_cache = Path(tmp) / "first", Path(tmp) / "kept", Path(tmp) / "eager"
        first_cache.mkdir()
        cold_s, cold_phases = await cold_start(model, first_cache, eager=False)
        restart_s, _ = await cold_start(model, first_cache, eager=False)
        shutil.copytree(first_cache, kept_cache)  # the image's copy, in a new container
        kept_s, kept_phases = await cold_start(model, kept_cache, eager=False)
        eager_s, eager_phases = await cold_start(model, eager_cache, eager=True)
        tps = await throughputs(
            model, {"compiled": (first_cache, False), "kept": (kept_cache, False), "eager": (eager_cache, True)}
        )
    print(f"{model}: phases compiled {cold_phases}; from the kept cache {kept_phases}; eager {eager_phases}")
    print(f"{model}: tokens/s {tps}", flush=True)
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
        {"metric": f"serving throughput, {model}: kept cache / compiled",
         "value": round(tps["kept"] / tps["compiled"], 3), "goal": ">= 0.97", "unit": "ratio"},
        {"metric": f"serving throughput, {model}: eager / compiled", "value": round(tps["eager"] / tps["compiled"], 3),
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
