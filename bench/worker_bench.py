"""Worker start-up (process start to ready for jobs, no engine) and idle memory.

    python -m bench.worker_bench

The probe is a fresh `python -m bench.worker_bench --probe` process: it builds the
app exactly as `python -m handler` does, opens its store, and reports. A bare
interpreter start is timed beside it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from handler.settings import REPO_ROOT
from tests.engine_support import worker_env

RUNS = 5


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _probe() -> None:
    from handler.sdk_boot import fast_cpu_probe

    fast_cpu_probe()  # as python -m handler does, before the SDK's import
    import runpod  # noqa: F401  (the worker imports the SDK at start)

    from handler.app import create_app
    from handler.settings import load_settings

    app = create_app(load_settings(os.environ))
    await app.worker()
    print(f"ready {_rss_mb():.1f}", flush=True)
    await app.aclose()


def _spawn(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env={**os.environ, **worker_env("tiny")},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - started, out.stdout


def run() -> list[dict[str, Any]]:
    worker, bare, rss = [], [], []
    for _ in range(RUNS):
        seconds, out = _spawn(["-m", "bench.worker_bench", "--probe"])
        worker.append(seconds)
        rss.append(float(out.split()[-1]))
        bare.append(_spawn(["-c", "print('ready')"])[0])
    best = min(worker)
    return [
        {"metric": "worker start to ready for jobs (no engine)", "value": round(best, 3), "goal": "< 1", "unit": "s"},
        {"metric": "bare python start, same run", "value": round(min(bare), 3), "goal": None, "unit": "s"},
        {"metric": "worker resident memory, idle, no engine", "value": round(max(rss), 1), "goal": "< 150",
         "unit": "MB"},
    ]  # fmt: skip


if __name__ == "__main__":
    if "--probe" in sys.argv:
        asyncio.run(_probe())
    else:
        from bench.report import print_table

        print_table(run())
