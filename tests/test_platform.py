"""The local RunPod platform runs real worker processes through the SDK's deployed loop, scales and bills them.

Workers are `devtools.platform.echo_worker` (the runpod SDK's own worker loop
around a trivial handler), so each test pays only the SDK's start-up (about
1.5 s per worker here).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import runpod

from devtools.platform import Platform
from tests.platform_support import (
    API_KEY,
    FAST,
    Client,
    ProcWatch,
    echo_config,
    running_platform,
    wait_status,
)

SLACK_S = 0.25  # two readings of one moment, on a loaded 2-core machine


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    async with running_platform(monkeypatch, FAST) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        yield http


async def test_scale_from_zero_through_the_sdk_and_back_to_zero(platform: Platform) -> None:
    ep = platform.add_endpoint("ep1", echo_config(workers_max=1, idle_timeout=0.5))
    await asyncio.sleep(0.2)
    assert ep.pool.alive() == [] and ep.ledger() == []  # nothing runs (or is billed) before a job

    def calls() -> tuple[Any, Any]:
        endpoint = runpod.Endpoint("ep1")
        return endpoint.run_sync({"n": 1}, timeout=30), endpoint.health()

    answer, health = await asyncio.to_thread(calls)
    (entry,) = ep.ledger()
    assert answer == {"echo": {"n": 1}, "worker": entry.worker_id}
    assert health["jobs"]["completed"] == 1 and health["workers"]["idle"] + health["workers"]["running"] == 1

    async with aiohttp.ClientSession() as http:
        endpoint = runpod.AsyncioEndpoint("ep1", http)
        job = await endpoint.run({"n": 2})
        assert await job.output(timeout=30) == {"echo": {"n": 2}, "worker": entry.worker_id}  # the warm worker

    await ep.wait_workers(0, timeout=15)
    (entry,) = ep.ledger()
    assert entry.stop_reason == "idle timeout" and entry.exit_code == 0 and entry.jobs_taken == 2
    assert entry.seconds["initializing"] > 0.3 and entry.seconds["idle"] >= 0.5 and entry.seconds["running"] > 0
    assert ep.health()["workers"] == dict.fromkeys(
        ("idle", "initializing", "ready", "running", "throttled", "unhealthy"), 0
    )


async def test_jobs_spread_over_workers_and_idle_scale_down_keeps_workers_min(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    ep = platform.add_endpoint(
        "spread", echo_config(workers_min=1, workers_max=3, scaler_type="REQUEST_COUNT", scaler_value=1)
    )
    await ep.wait_workers(1, timeout=5)  # workersMin is kept warm without any job
    client = Client(session, platform.url, "spread")
    ids = [(await client.run({"sleep": 1.5, "i": i}))["id"] for i in range(3)]
    states = [await wait_status(client, job_id, {"COMPLETED"}) for job_id in ids]
    assert len({s["workerId"] for s in states}) == 3  # one job per worker: REQUEST_COUNT 1 asked for three
    assert all(s["delayTime"] >= 0 and s["executionTime"] >= 1500 for s in states)
    await asyncio.sleep(1.0)
    await ep.wait_workers(1, timeout=10)  # idle ones stopped, workersMin kept
    stopped = [e for e in ep.ledger() if e.exited_at is not None]
    assert len(stopped) == 2 and {e.stop_reason for e in stopped} == {"idle timeout"}


async def test_a_worker_killed_mid_job_has_the_job_retried_on_another_worker(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    ep = platform.add_endpoint("kill", echo_config(workers_max=1))
    client = Client(session, platform.url, "kill")
    job_id = (await client.run({"sleep": 2}))["id"]
    first = await wait_status(client, job_id, {"IN_PROGRESS"})
    victim = next(e for e in ep.ledger() if e.worker_id == first["workerId"])
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    final = await wait_status(client, job_id, {"COMPLETED", "FAILED"})
    assert final["status"] == "COMPLETED" and final["retries"] == 1
    assert final["workerId"] != victim.worker_id and final["output"]["worker"] == final["workerId"]
    assert ep.health()["jobs"]["retried"] == 1
    killed = next(e for e in ep.ledger() if e.worker_id == victim.worker_id)
    assert killed.exit_code == -signal.SIGKILL and killed.stop_reason is None


async def test_a_job_that_kills_every_worker_fails_after_the_retry_bound(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    ep = platform.add_endpoint("crash", echo_config(workers_max=1, max_job_retries=1))
    client = Client(session, platform.url, "crash")
    job_id = (await client.run({"exit": 3}))["id"]
    final = await wait_status(client, job_id, {"COMPLETED", "FAILED"})
    assert final["status"] == "FAILED" and "retried 1 times" in final["error"] and final["retries"] == 1
    assert [e.exit_code for e in ep.ledger()] == [3, 3]


async def test_execution_timeout_times_the_job_out_and_stops_its_worker(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    ep = platform.add_endpoint("slow", echo_config(workers_max=1))
    client = Client(session, platform.url, "slow")
    job_id = (await client.run({"sleep": 30}, policy={"executionTimeout": 300}))["id"]
    state = await wait_status(client, job_id, {"TIMED_OUT", "COMPLETED", "FAILED"})
    assert state["status"] == "TIMED_OUT" and "execution timeout" in state["error"]
    assert 300 <= state["executionTime"] < 5000  # timed out at 300 ms (by the next tick), not after the 30 s sleep
    await ep.wait_workers(0, timeout=10)  # the SDK cancelled the job on the stop channel, then left on SIGTERM
    (entry,) = ep.ledger()
    assert entry.stop_reason == "execution timeout" and entry.exit_code == 0
    assert (await client.call("POST", f"retry/{job_id}")) == (200, {"id": job_id, "status": "IN_QUEUE"})
    assert ep.health()["jobs"]["failed"] == 1


async def test_refresh_worker_from_a_plain_handler_replaces_the_worker(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    ep = platform.add_endpoint("refresh", echo_config(workers_min=1, workers_max=1))
    client = Client(session, platform.url, "refresh")
    job_id = (await client.run({"refresh_worker": True}))["id"]
    state = await wait_status(client, job_id, {"COMPLETED"})
    assert state["output"] == {"echo": {"refresh_worker": True}, "worker": state["workerId"]}  # the SDK pops the flag
    deadline = time.monotonic() + 15
    while len(ep.ledger()) < 2 or ep.ledger()[0].exited_at is None or ep.ledger()[1].ready_at is None:
        assert time.monotonic() < deadline, ep.workers()
        await asyncio.sleep(0.05)
    first, second = ep.ledger()
    assert first.worker_id == state["workerId"] and first.stop_reason == "stopPod (refresh_worker)"
    assert second.exited_at is None  # the replacement (workersMin 1)


async def test_generator_handler_streams_and_refreshes_only_through_the_sdk_config(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    """runpod 1.12's generator path drops a `refresh_worker` piece; only `config["refresh_worker"]` sends stopPod."""
    ep = platform.add_endpoint("gen", echo_config(idle_timeout=5, env={"ECHO_WORKER_MODE": "generator"}))

    def stream() -> list[Any]:
        return list(runpod.Endpoint("gen").run({"pieces": 3, "sleep": 0.5, "refresh": "piece"}).stream())

    pieces = await asyncio.to_thread(stream)
    assert [p.get("piece") for p in pieces] == [0, 1, 2, None] and pieces[-1] == {"refresh_worker": True}
    client = Client(session, platform.url, "gen")
    failed = await wait_status(client, (await client.run({"error": "boom"}))["id"], {"FAILED", "COMPLETED"})
    assert failed["status"] == "FAILED" and failed["error"] == "boom"  # an error piece fails the job
    assert failed["workerId"] == pieces[0]["worker"]  # the same worker: the refresh piece was dropped
    honoured = await wait_status(client, (await client.run({"refresh": "config"}))["id"], {"COMPLETED"})
    assert honoured["workerId"] == pieces[0]["worker"]
    await ep.wait_workers(0, timeout=10)
    (entry,) = ep.ledger()
    assert entry.stop_reason == "stopPod (refresh_worker)"


async def test_low_priority_and_no_capacity_leave_jobs_queued(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    ep = platform.add_endpoint("full", echo_config(workers_max=1))
    client = Client(session, platform.url, "full")
    low = (await client.run({"n": "low"}, policy={"lowPriority": True}))["id"]
    await asyncio.sleep(0.3)
    _, health = await client.call("GET", "health")
    assert health["workers"]["throttled"] == 0 and ep.ledger() == []  # a low-priority job starts no worker
    ep.set_no_capacity(True)
    normal = (await client.run({"n": "normal"}))["id"]
    deadline = time.monotonic() + 10
    while (health := (await client.call("GET", "health"))[1])["workers"]["throttled"] == 0:  # the scaler's next tick
        assert time.monotonic() < deadline, health
        await asyncio.sleep(0.02)
    assert health["workers"]["throttled"] == 1 and health["jobs"]["inQueue"] == 2
    assert ep.ledger() == []  # throttled workers are not billed
    async with session.post(f"{platform.url}/_platform/full/fault", json={"noCapacity": False}) as response:
        assert response.status == 200
    first = await wait_status(client, normal, {"COMPLETED"})
    second = await wait_status(client, low, {"COMPLETED"})  # runs on the worker the normal job started
    assert second["workerId"] == first["workerId"] and second["delayTime"] > first["delayTime"]


async def test_the_ledger_matches_the_worker_processes_seen_from_outside(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    rate = 3.6  # USD per hour: a tenth of a cent per second
    config = echo_config(workers_max=1, idle_timeout=1.0, container_start_delay=0.5, gpu_hourly_rate=rate)
    ep = platform.add_endpoint("bill", config)
    client = Client(session, platform.url, "bill")
    before = time.monotonic()
    job_id = (await client.run({"sleep": 1}))["id"]
    while not ep.ledger() or ep.ledger()[0].pid is None:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    watch = ProcWatch(ep.ledger()[0].pid or 0)
    await wait_status(client, job_id, {"COMPLETED"})
    exited = await watch.wait_exit(15)
    await ep.wait_workers(0, timeout=5)
    (entry,) = ep.ledger()
    assert entry.exited_at is not None and entry.process_started_at is not None and entry.ready_at is not None

    # Each reading against another, with SLACK_S for a loaded 2-core machine (the platform's timers and
    # the test's /proc polls share one event loop; /proc counts in 10 ms ticks); the container start
    # (0.5 s) is ten times that.
    assert before <= entry.spawned_at < before + SLACK_S  # the start is the platform's decision (container start)
    assert abs(entry.process_started_at - (entry.spawned_at + 0.5)) < SLACK_S  # then the container-start delay
    assert abs(watch.started_at - entry.process_started_at) < SLACK_S  # /proc's start time
    assert abs(exited - entry.exited_at) < SLACK_S  # the exit the test saw by polling /proc every 5 ms
    life = entry.exited_at - entry.spawned_at
    assert sum(entry.seconds.values()) == pytest.approx(life) == entry.billed_seconds == entry.lifetime_seconds
    assert entry.seconds["initializing"] == pytest.approx(entry.ready_at - entry.spawned_at)
    # the 1 s job; running never takes in the 1 s idle timeout that follows it
    assert entry.seconds["initializing"] > 0.5 and 1.0 <= entry.seconds["running"] < 2.0
    assert entry.seconds["idle"] >= 1.0  # the idle timeout, then SIGTERM to exit

    assert ep.billed_seconds() == pytest.approx(life)
    assert ep.billed_seconds(include_initializing=False) == pytest.approx(life - entry.seconds["initializing"])
    assert ep.bill_usd() == pytest.approx(life * rate / 3600)
    assert ep.billed_seconds(rounded=True) == float(int(life) + 1)
    async with session.get(f"{platform.url}/_platform/bill/ledger") as response:
        bill = await response.json()
    assert bill["ledger"][0]["worker_id"] == entry.worker_id
    assert bill["readings"]["without_initializing"]["billed_seconds"] == pytest.approx(
        life - entry.seconds["initializing"]
    )
