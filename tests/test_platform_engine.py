"""The real worker (`python -m handler`, the tiny model on vLLM) as RunPod runs it, on the local platform."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import runpod

from devtools.platform import Endpoint, EndpointConfig, Platform
from tests.engine_support import require_model, worker_env
from tests.platform_support import REPO_ROOT, ProcWatch, running_platform

pytestmark = pytest.mark.engine
RATE = 3.6  # USD per worker-hour: a tenth of a cent per second
PER_WORKER_SLACK_S = 0.25  # the ledger's account of a life against /proc's, on a loaded machine (test_ledger_bill)


async def watch_first_worker(ep: Endpoint) -> ProcWatch:
    deadline = time.monotonic() + 60
    while not (pids := [e.pid for e in ep.ledger() if e.pid]):
        assert time.monotonic() < deadline, f"no worker process started: {ep.health()}"
        await asyncio.sleep(0.005)
    return ProcWatch(pids[0])


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    require_model("tiny")
    async with running_platform(monkeypatch) as server:
        yield server


async def test_the_real_worker_answers_through_the_sdk_loop_and_is_billed(platform: Platform) -> None:
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"],
        env=worker_env("tiny", GPU_HOURLY_RATE=str(RATE)),
        workers_max=1,
        idle_timeout=1.0,
        gpu_hourly_rate=RATE,
        cwd=REPO_ROOT,
    )
    ep = platform.add_endpoint("real", config)
    job = {"prompt": "Hello", "sampling_params": {"max_tokens": 8, "temperature": 0, "ignore_eos": True}}

    def calls() -> tuple[Any, Any]:
        endpoint = runpod.Endpoint("real")
        first = endpoint.run_sync(job, timeout=600)  # cold: worker start, then the engine on the first miss
        return first, endpoint.run_sync(job, timeout=60)  # the same deterministic request: a cache hit

    answered = asyncio.create_task(asyncio.to_thread(calls))
    watch = await watch_first_worker(ep)  # the worker process, seen from outside from its start
    exited = asyncio.create_task(watch.wait_exit(600))
    first, second = await answered
    assert isinstance(first, list) and first[-1]["usage"]["completion_tokens"] == 8  # the generator's aggregate
    assert second[-1].get("cached") is True
    await exited
    await ep.wait_workers(0, timeout=60)
    (entry,) = ep.ledger()
    assert entry.stop_reason == "idle timeout" and entry.exit_code == 0 and entry.jobs_taken == 2
    assert entry.seconds["running"] > 5  # the engine started inside the first job (lazily, on the miss)
    assert ep.bill_usd() == pytest.approx(entry.lifetime_seconds * RATE / 3600)
    # the bill against the process's life by /proc (its start time; its exit, polled every 5 ms)
    assert watch.exited_at is not None
    lived = watch.exited_at - watch.started_at
    assert entry.lifetime_seconds == pytest.approx(lived, abs=PER_WORKER_SLACK_S)
    assert ep.bill_usd() == pytest.approx(lived * RATE / 3600, abs=PER_WORKER_SLACK_S * RATE / 3600)


async def test_engine_start_boot_starts_the_engine_before_the_worker_takes_jobs(platform: Platform) -> None:
    """ENGINE_START=boot: the worker asks for no job until its engine runs, so the start-up is
    Initializing on the bill (free where RunPod does not bill Initializing) and no job waits for it."""
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"],
        env=worker_env("tiny", GPU_HOURLY_RATE=str(RATE), ENGINE_START="boot"),
        workers_max=1, idle_timeout=1.0, gpu_hourly_rate=RATE, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("boot", config)
    job = {"prompt": "Hello", "sampling_params": {"max_tokens": 4, "ignore_eos": True}, "cache": {"bypass": True}}
    out = await asyncio.to_thread(lambda: runpod.Endpoint("boot").run_sync(job, timeout=600))
    answer = out[-1]
    assert answer["usage"]["completion_tokens"] == 4
    assert answer["timings"]["engine_start_ms"] == 0  # the engine was up before the job was taken
    await ep.wait_workers(0, timeout=60)
    (entry,) = ep.ledger()
    assert entry.seconds["initializing"] > 5  # the engine's start-up, before the first job-take
    assert entry.seconds["running"] < entry.seconds["initializing"]
    assert ep.billed_seconds(include_initializing=False) < ep.billed_seconds(include_initializing=True) - 5
