"""Cold start to the first token, by start-up setting, and what each costs in serving speed.

    python -m bench.cold_start_bench [tiny|smollm2 ...]

For each model, engines are started one after another by the worker (the same
app, settings and first job a cold worker runs), each alone on the machine:

- compiled, no cache: vLLM's default (torch.compile, and on CPU vLLM's three
  processes), with an empty cache folder (ENGINE_CACHE_DIR: vLLM's cache and
  torch's inductor and Triton caches inside it);
- restart: the same cache folder again (a restart in the same container);
- kept cache: a copy of that folder in a new place (a new container from an image
  that carries `builder warm`'s cache);
- eager: --enforce-eager (nothing compiled), vLLM's processes;
- the worker's default (ENGINE_COMPILE=auto: on CPU eager, in one engine process);
- compiled in one engine process, from a copy of the kept cache.

Cold start to first token is the engine's start plus a one-token job. Serving
speed is the raw engine's throughput on the engine_bench workload; the engines
run side by side, in alternating rounds (the best of each is the result), the
compiled one loading the graphs the first start compiled.
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

ROUNDS = 4
VLLM_LAYOUT = "--distributed-executor-backend mp"  # vLLM's own process layout (on CPU: three processes)
SETUPS: dict[str, dict[str, str]] = {  # name: worker settings
    "compiled": {"ENGINE_COMPILE": "compiled", "ENGINE_EXTRA_ARGS": VLLM_LAYOUT},
    "eager": {"ENGINE_COMPILE": "eager", "ENGINE_EXTRA_ARGS": VLLM_LAYOUT},
    "default": {"ENGINE_COMPILE": "auto", "ENGINE_EXTRA_ARGS": ""},
    "compiled-one-process": {"ENGINE_COMPILE": "compiled", "ENGINE_EXTRA_ARGS": ""},
}


async def cold_app(model: str, setup: str, cache: Path) -> tuple[App, float, dict[str, float]]:
    """A started app, the seconds its cold first job took to its one token, and the start's phases."""
    app = create_app(settings_for(model, **SETUPS[setup], ENGINE_CACHE_DIR=str(cache)))
    first = {**job_input(model, 0, 1), "sampling_params": {"max_tokens": 1, "temperature": 0}}
    try:
        out = await app.handler({"id": "cold", "input": first})
    except BaseException:
        await app.aclose()
        raise
    return app, out["timings"]["total_ms"] / 1000, dict(out["timings"].get("engine_phases", {}))


async def cold_start(model: str, setup: str, cache: Path) -> tuple[float, dict[str, float]]:
    app, seconds, phases = await cold_app(model, setup, cache)
    await app.aclose()
    return seconds, phases


async def throughputs(model: str, engines: dict[str, tuple[str, Path]]) -> dict[str, float]:
    """The best tokens/s of each engine (name: setup, cache), started together, measured in alternating rounds."""
    n, max_tokens, _ = WORKLOADS[model]
    inputs = [job_input(model, i, max_tokens) for i in range(n)]
    apps: dict[str, App] = {}
    try:
        for name, (setup, cache) in engines.items():
            apps[name] = (await cold_app(model, setup, cache))[0]
        best = dict.fromkeys(apps, 0.0)
        for round_ in range(ROUNDS):
            for name in list(apps) if round_ % 2 == 0 else list(reversed(apps)):
                await asyncio.sleep(2)  # the last engine's OpenMP threads stop spinning
                best[name] = max(best[name], rate(await via_raw(apps[name], inputs, True)))
        return best
    finally:
        for app in apps.values():
            await app.aclose()


async def measure_model(model: str) -> list[dict[str, Any]]:
    require_model(model)
    with tempfile.TemporaryDirectory(prefix=f"cold-{model}-") as tmp:
        folder = Path(tmp)
        first, kept, one = folder / "first", folder / "kept", folder / "one-process"
        first.mkdir()
        cold_s, cold_phases = await cold_start(model, "compiled", first)
        restart_s, _ = await cold_start(model, "compiled", first)
        shutil.copytree(first, kept)  # the image's copy, in a new container
        kept_s, kept_phases = await cold_start(model, "compiled", kept)
        eager_s, _ = await cold_start(model, "eager", folder / "eager")
        default_s, default_phases = await cold_start(model, "default", folder / "default")
        shutil.copytree(first, one)
        one_s, _ = await cold_start(model, "compiled-one-process", one)
        tps = await throughputs(
            model,
            {"compiled": ("compiled", first), "default": ("default", folder / "default"),
             "eager": ("eager", folder / "eager"), "compiled-one-process": ("compiled-one-process", one)},
        )  # fmt: skip
    print(f"{model}: phases compiled {cold_phases}; from the kept cache {kept_phases}; default {default_phases}")
    print(f"{model}: tokens/s {tps}", flush=True)

    def start(label: str, seconds: float) -> dict[str, Any]:
        return {"metric": f"cold start to first token, {model}: {label}", "value": round(seconds, 1), "goal": None,
                "unit": "s"}  # fmt: skip

    def ratio(label: str, value: float, goal: str | None) -> dict[str, Any]:
        return {"metric": label, "value": round(value, 3), "goal": goal, "unit": "ratio"}

    return [
        start("compiled, no cache (vLLM's default)", cold_s),
        start("compiled, restart in the same container", restart_s),
        start("compiled, new container from the kept cache", kept_s),
        start("eager", eager_s),
        start("the worker's default (eager, one engine process)", default_s),
        start("compiled, one engine process, from the kept cache", one_s),
        ratio(f"cold start, {model}: the worker's default / compiled no cache", default_s / cold_s, "<= 0.35"),
        ratio(f"cold start, {model}: kept cache / compiled no cache", kept_s / cold_s, None),
        ratio(f"cold start, {model}: eager / compiled no cache", eager_s / cold_s, None),
        ratio(f"cold start, {model}: compiled one process, kept cache / compiled no cache", one_s / cold_s, None),
        ratio(f"cold start, {model}: new container from kept cache / restart", kept_s / restart_s, "<= 1.05"),
        ratio(
            f"serving throughput, {model}: the worker's default / compiled", tps["default"] / tps["compiled"], ">= 0.97"
        ),
        ratio(f"serving throughput, {model}: eager / compiled", tps["eager"] / tps["compiled"], None),
        ratio(
            f"serving throughput, {model}: compiled one process / compiled",
            tps["compiled-one-process"] / tps["compiled"],
            None,
        ),
    ]


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
