"""The SDK's job loop without its polling sleeps (handler.sdk_loop), in `python -m handler` as deployed.

runpod 1.12's JobScaler sleeps 1 s whenever its slots look full (and counts a queued job twice):
a burst of short jobs on a concurrency-8 worker takes about a second per 8 jobs. The same burst
through the same worker with PromptJobScaler (the default) and with the SDK's own loop
(SDK_LOOP=sdk), in one run: the ratio is asserted, not a time. A concurrency_modifier that answers 0
still takes no job, on the platform and in the loop itself.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from devtools.platform import EndpointConfig, Platform
from handler import sdk_loop
from tests.engine_support import require_model, worker_env
from tests.platform_support import API_KEY, REPO_ROOT, Client, running_platform, wait_status

BURST = 64
CONCURRENCY = 8


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    require_model("tiny")  # resolved at start; these jobs never start its engine
    async with running_platform(monkeypatch) as server:
        yield server


def handler_config(**env: str) -> EndpointConfig:
    return EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"],
        env=worker_env("tiny", MAX_CONCURRENCY=str(CONCURRENCY), COLD_CONCURRENCY=str(CONCURRENCY), **env),
        workers_min=1, workers_max=1, idle_timeout=60.0, cwd=REPO_ROOT,
    )  # fmt: skip


async def burst_seconds(platform: Platform, http: aiohttp.ClientSession, endpoint_id: str) -> float:
    """Seconds for BURST jobs that never touch the engine (/v1/models), sent at once, to all complete."""
    ep = platform.endpoints[endpoint_id]
    await ep.wait_workers(1, timeout=60)

    async def runsync(i: int) -> None:
        url = f"{platform.url}/v2/{endpoint_id}/runsync?wait=120000"
        async with http.post(url, json={"input": {"openai_route": "/v1/models"}}) as response:
            state = await response.json()
        assert state["status"] == "COMPLETED", state

    await runsync(-1)  # the worker is up and its loop running
    await asyncio.sleep(1.2)  # the SDK's loop, full after that job, polls again only after its 1 s sleep
    started = time.perf_counter()
    await asyncio.gather(*(runsync(i) for i in range(BURST)))
    return time.perf_counter() - started


async def test_a_burst_of_short_jobs_finishes_without_the_sdks_one_second_stalls(platform: Platform) -> None:
    platform.add_endpoint("prompt", handler_config())
    platform.add_endpoint("sdk", handler_config(SDK_LOOP="sdk"))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        sdk = await burst_seconds(platform, http, "sdk")
        prompt = await burst_seconds(platform, http, "prompt")
    print(f"{BURST} jobs, concurrency {CONCURRENCY}: SDK loop {sdk:.2f} s, PromptJobScaler {prompt:.2f} s, "
          f"ratio {prompt / sdk:.3f}")  # fmt: skip
    assert sdk > 0.5 * BURST / CONCURRENCY  # the stalls this removes are there in the SDK's loop
    assert prompt < 0.25 * sdk


async def test_a_worker_whose_modifier_answers_zero_takes_no_job(platform: Platform) -> None:
    # ENGINE_START=boot: the modifier answers 0 until the engine runs, and this one never does
    never = f"{sys.executable} -c 'import time; time.sleep(600)'"
    ep = platform.add_endpoint("zero", handler_config(ENGINE_START="boot", ENGINE_COMMAND=never))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        client = Client(http, platform.url, "zero")
        await ep.wait_workers(1, timeout=60)
        jobs = [await client.run({"openai_route": "/v1/models"}) for _ in range(3)]
        await asyncio.sleep(3.0)  # three of the loop's rechecks of the modifier
        for job in jobs:
            assert (await wait_status(client, job["id"], {"IN_QUEUE"}))["status"] == "IN_QUEUE"
    (entry,) = ep.ledger()
    assert entry.jobs_taken == 0


# ---------------------------------------------------------------- the loop itself, in this process


def scaler(modifier: Any, fetched: list[int], handled: list[str], seconds: float = 0.0) -> Any:
    async def fetcher(_session: Any, count: int) -> list[dict[str, Any]]:
        fetched.append(count)
        await asyncio.sleep(0)
        return [{"id": f"job-{len(fetched)}-{i}", "input": {}} for i in range(count)]

    async def handler(_session: Any, _config: Any, job: dict[str, Any]) -> None:
        handled.append(job["id"])
        await asyncio.sleep(seconds)

    cls = sdk_loop.prompt_job_scaler()
    config = {"concurrency_modifier": modifier, "jobs_fetcher": fetcher, "jobs_handler": handler}
    return cls(config)


async def run_for(loop: Any, seconds: float) -> None:
    task = asyncio.gather(loop.get_jobs(None), loop.run_jobs(None))
    await asyncio.sleep(seconds)
    loop.kill_worker()
    stopped = time.perf_counter()
    await asyncio.wait_for(task, 5)
    assert time.perf_counter() - stopped < 0.5  # both loops end once the jobs in flight have (no 1 s sleep)
    loop.job_progress.clear()


async def test_concurrency_zero_fetches_nothing_and_a_new_value_resizes() -> None:
    fetched: list[int] = []
    handled: list[str] = []
    answer = {"n": 0}
    loop = scaler(lambda _current: answer["n"], fetched, handled, seconds=0.01)
    task = asyncio.gather(loop.get_jobs(None), loop.run_jobs(None))
    await asyncio.sleep(0.5)
    assert fetched == [] and handled == []  # 0: no job asked for
    answer["n"] = 4
    await asyncio.sleep(1.5)  # asked again within the SDK's 1 s
    loop.kill_worker()
    await asyncio.wait_for(task, 5)
    loop.job_progress.clear()
    assert fetched and max(fetched) <= 4 and loop.jobs_queue.maxsize == 4
    assert len(handled) > 4 * 5  # far more than one batch a second: slots refilled as they freed


async def test_a_job_counts_once_and_the_loop_stays_within_the_concurrency() -> None:
    fetched: list[int] = []
    handled: list[str] = []
    loop = scaler(lambda _current: 3, fetched, handled, seconds=0.02)
    running = {"now": 0, "most": 0}
    inner = loop.jobs_handler

    async def counting(session: Any, config: Any, job: dict[str, Any]) -> None:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"], loop.current_occupancy())
        try:
            await inner(session, config, job)
        finally:
            running["now"] -= 1

    loop.jobs_handler = counting
    await run_for(loop, 0.5)
    assert running["most"] <= 3
    assert len(handled) >= 0.5 / 0.02 * 3 * 0.5  # at least half the slots' capacity used


def test_install_refuses_an_sdk_without_what_it_relies_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from runpod.serverless.modules import rp_scale

    class Bare:
        def __init__(self, config: Any) -> None:
            self.config = config

    monkeypatch.setattr(rp_scale, "JobScaler", Bare)
    with pytest.raises(sdk_loop.SdkLoopError, match=r"JobScaler.get_jobs is gone.*SDK_LOOP=sdk"):
        sdk_loop.install({})
    assert sdk_loop.install({"SDK_LOOP": "sdk"}) == "sdk"  # the SDK's own loop needs nothing of it
    with pytest.raises(sdk_loop.SdkLoopError, match="SDK_LOOP='fast'"):
        sdk_loop.install({"SDK_LOOP": "fast"})


def test_install_sets_the_class_the_sdk_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from runpod.serverless.modules import rp_scale

    monkeypatch.setattr(rp_scale, "JobScaler", rp_scale.JobScaler)  # restored after the test
    assert sdk_loop.install({}) == "prompt"
    assert rp_scale.JobScaler is sdk_loop.prompt_job_scaler()
    assert sdk_loop.install({}) == "prompt" and rp_scale.JobScaler is sdk_loop.prompt_job_scaler()
