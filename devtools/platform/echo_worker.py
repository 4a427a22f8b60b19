"""A trivial worker for the platform's tests and benchmark: `python -m devtools.platform.echo_worker`.

It starts the runpod SDK's own worker loop (`runpod.serverless.start`) with a
handler whose behaviour each job's input picks:

    {"sleep": s}                  sleep s seconds (asyncio) first
    {"error": "msg"}              return {"error": "msg"} (the job FAILED)
    {"refresh_worker": true}      plain handler: return it with the output (the SDK sets stopPod)
    {"exit": code}                end the process at once with os._exit(code) (a crash mid-job)
    {"pieces": n}                 generator mode: yield n pieces
    {"refresh": "piece"}          generator mode: yield {"refresh_worker": True} (the SDK drops it)
    {"refresh": "config"}         generator mode: set the SDK config's refresh_worker (stopPod is sent)

The answer is {"echo": input, "worker": RUNPOD_POD_ID} (plain), or the pieces
(generator, aggregated into the result). Environment: ECHO_WORKER_MODE=plain |
generator, ECHO_WORKER_CONCURRENCY (default 1), ECHO_WORKER_BOOT_SECONDS (a
sleep before the loop starts: a model load).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

CONFIG: dict[str, Any] = {}


def _worker_id() -> str:
    return os.environ.get("RUNPOD_POD_ID", "local")


async def _common(data: dict[str, Any]) -> None:
    if data.get("sleep"):
        await asyncio.sleep(float(data["sleep"]))
    if "exit" in data:
        os._exit(int(data["exit"]))


async def plain_handler(job: dict[str, Any]) -> dict[str, Any]:
    data = job.get("input") or {}
    await _common(data)
    if "error" in data:
        return {"error": data["error"]}
    answer: dict[str, Any] = {"echo": data, "worker": _worker_id()}
    if data.get("refresh_worker"):
        answer["refresh_worker"] = True
    return answer


async def generator_handler(job: dict[str, Any]) -> AsyncIterator[Any]:
    data = job.get("input") or {}
    await _common(data)
    if "error" in data:
        yield {"error": data["error"]}
        return
    for i in range(int(data.get("pieces", 1))):
        yield {"piece": i, "worker": _worker_id()}
    if data.get("refresh") == "piece":
        yield {"refresh_worker": True}
    if data.get("refresh") == "config":
        CONFIG["refresh_worker"] = True  # the SDK reads it after the job: stopPod, and its loop stops


def main() -> None:
    import runpod

    boot = float(os.environ.get("ECHO_WORKER_BOOT_SECONDS", "0"))
    if boot > 0:
        time.sleep(boot)
    concurrency = int(os.environ.get("ECHO_WORKER_CONCURRENCY", "1"))
    generator = os.environ.get("ECHO_WORKER_MODE", "plain") == "generator"
    CONFIG.update(
        {
            "handler": generator_handler if generator else plain_handler,
            "concurrency_modifier": lambda _current: concurrency,
            "return_aggregate_stream": True,
        }
    )
    runpod.serverless.start(CONFIG)


if __name__ == "__main__":
    main()
