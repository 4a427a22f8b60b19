"""The platform's bill is the sum of every worker's life, checked against the processes seen from outside.

A bill of one worker cannot tell the sum of the workers' times from the longest
of them, so these tests run several workers at once (the echo worker, no
engine) and compare `billed_seconds()` with the lifetimes that /proc shows for
each worker process: its start time from /proc/<pid>/stat and the moment its
pid is gone or a zombie, polled by the test, not reported by the platform.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from devtools.platform import Platform
from devtools.platform.ledger import Ledger
from tests.platform_support import API_KEY, FAST, Client, ProcWatch, echo_config, running_platform, wait_status

# Per worker, how far the platform's account of its life may be from the one seen through /proc:
# the start (the platform's decision, then fork: /proc counts in 10 ms ticks) and the exit (the
# platform reaps the process, the test polls /proc every 5 ms), with room for a loaded 2-core machine.
PER_WORKER_SLACK_S = 0.25


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    async with running_platform(monkeypatch, FAST) as server:
        yield server


async def test_the_bill_of_three_workers_is_the_sum_of_their_process_lifetimes(platform: Platform) -> None:
    rate = 3.6  # USD per worker-hour: a tenth of a cent per second
    config = echo_config(
        workers_max=3, scaler_type="REQUEST_COUNT", scaler_value=1, idle_timeout=0.5, gpu_hourly_rate=rate
    )
    ep = platform.add_endpoint("sum", config)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        client = Client(session, platform.url, "sum")
        ids = [(await client.run({"sleep": s}))["id"] for s in (1.0, 2.0, 3.0)]
        watches: dict[int, ProcWatch] = {}
        exiting: list[asyncio.Task[float]] = []
        deadline = time.monotonic() + 30
        while len(watches) < 3:  # each worker's process, watched from the moment its pid is known
            for entry in ep.ledger():
                if entry.pid is not None and entry.pid not in watches:
                    watches[entry.pid] = watch = ProcWatch(entry.pid)
                    exiting.append(asyncio.create_task(watch.wait_exit(30)))  # polled from now on
            assert time.monotonic() < deadline, f"three workers never started: {ep.health()}"
            await asyncio.sleep(0.005)
        states = [await wait_status(client, job_id, {"COMPLETED"}) for job_id in ids]
        assert len({s["workerId"] for s in states}) == 3  # one job per worker
        exits = await asyncio.gather(*exiting)
        await ep.wait_workers(0, timeout=10)
        async with session.get(f"{platform.url}/_platform/sum/ledger") as response:
            bill = await response.json()

    lives = [exited - watch.started_at for watch, exited in zip(watches.values(), exits, strict=True)]
    entries = {e.pid: e for e in ep.ledger()}
    assert len(entries) == 3 and all(e.exited_at is not None for e in entries.values())
    outside = sum(lives)
    slack = PER_WORKER_SLACK_S * len(lives)
    # Each process lived through the SDK's start-up, its job (1, 2 or 3 s) and the 0.5 s idle timeout,
    # so the sum is above the longest life by at least two start-ups and 1.0 + 2.0 s of jobs.
    assert outside - max(lives) > 3.0 + slack
    billed = ep.billed_seconds()
    print(f"process lifetimes {[round(x, 3) for x in lives]} sum {outside:.3f}; billed {billed:.3f}")
    assert billed == pytest.approx(outside, abs=slack)
    assert bill["billed_seconds"] == pytest.approx(outside, abs=slack)
    assert ep.bill_usd() == pytest.approx(outside * rate / 3600, abs=slack * rate / 3600)
    initializing = sum(e.seconds["initializing"] for e in entries.values())
    assert ep.billed_seconds(include_initializing=False) == pytest.approx(outside - initializing, abs=slack)
    rounded = ep.billed_seconds(rounded=True)
    assert outside - slack <= rounded <= outside + slack + len(lives)  # each worker rounded up to a whole second
    for pid, watch in watches.items():  # and each line of the bill is its own process's life
        entry = entries[pid]
        assert entry.exited_at is not None
        assert entry.billed_seconds == pytest.approx(
            (watch.exited_at or 0.0) - watch.started_at, abs=PER_WORKER_SLACK_S
        )


def test_the_ledger_adds_overlapping_workers_rather_than_taking_the_longest() -> None:
    ledger = Ledger(hourly_rate=3.6, bill_initializing=True)
    lives = {"w1": (100.0, 110.0), "w2": (101.0, 104.5), "w3": (103.0, 109.25)}  # overlapping, 10 + 3.5 + 6.25 s
    for worker, (start, stop) in lives.items():
        t = ledger.open(worker, now=start, wall=0.0)
        t.enter("idle", start + 0.5)
        t.close(stop, 0)
    assert ledger.billed_seconds(200.0) == 19.75
    assert ledger.billed_seconds(200.0, include_initializing=False) == 18.25
    assert ledger.billed_seconds(200.0, rounded=True) == 10.0 + 4.0 + 7.0
    assert ledger.bill_usd(200.0) == pytest.approx(19.75 * 0.001)
    assert ledger.summary(200.0)["billed_seconds"] == 19.75
