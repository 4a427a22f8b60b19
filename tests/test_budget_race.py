"""8 worker processes, each with many concurrent jobs, share one budget that runs out mid-way."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time

import pytest

from devtools.redis_server import delete_namespace
from handler import keys
from handler.budget import Budget
from handler.errors import BudgetExceeded
from handler.settings import load_settings
from handler.store.redis_store import RedisStore

PROCESSES = 8
JOBS_PER_PROCESS = 60
CONCURRENCY = 20
LIMIT_USD = 1.0
WORST_USD = 0.01  # 480 jobs could cost 4.80: the budget runs out after about a quarter


def _worker(url: str, namespace: str, seed: int, start_at: float) -> dict[str, object]:
    async def main() -> dict[str, object]:
        store = RedisStore(url)
        env = {"BUDGET_NAMESPACE": namespace, "DAILY_BUDGET_USD": str(LIMIT_USD), "GPU_HOURLY_RATE": "3.6"}
        budget = Budget(store, load_settings(env).budget)
        rng = random.Random(seed)
        billed: list[float] = []
        refused: list[str] = []
        gate = asyncio.Semaphore(CONCURRENCY)
        in_flight = 0  # the worker's exposure: WORST_USD for each job it holds

        async def job(i: int) -> None:
            nonlocal in_flight
            async with gate:
                in_flight += 1
                try:
                    reservation = await budget.reserve(f"p{seed}-j{i}", WORST_USD * in_flight)
                except BudgetExceeded as exc:
                    in_flight -= 1
                    refused.append(exc.type)
                    return
                await asyncio.sleep(rng.random() * 0.01)
                actual = rng.uniform(WORST_USD / 2, WORST_USD)
                in_flight -= 1
                await budget.settle(reservation, actual, WORST_USD * in_flight)
                await budget.settle(reservation, actual, WORST_USD * in_flight)  # a retried settle counts once
                billed.append(actual)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(job(i) for i in range(JOBS_PER_PROCESS)))
        await budget.retire({})  # the worker stops: its reservation goes
        await store.close()
        return {"billed": billed, "refused": refused}

    return asyncio.run(main())


@pytest.mark.redis
async def test_eight_processes_never_overspend(redis_url: str, namespace: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 4.0
    with ctx.Pool(PROCESSES) as pool:
        pending = [pool.apply_async(_worker, (redis_url, namespace, seed, start_at)) for seed in range(PROCESSES)]
        results = [await asyncio.to_thread(p.get, 120) for p in pending]
    store = RedisStore(redis_url)
    day_keys = keys.budget_day(namespace, Budget(store, load_settings({}).budget).today())
    state = {k.decode(): int(v) for k, v in (await store.client.hgetall(day_keys.state)).items()}
    await store.close()
    delete_namespace(redis_url, namespace)

    billed = [amount for r in results for amount in r["billed"]]  # type: ignore[attr-defined]
    per_process = [round(sum(r["billed"]) * 1_000_000) for r in results]  # type: ignore[arg-type]
    refused = [kind for r in results for kind in r["refused"]]  # type: ignore[attr-defined]
    assert len(billed) + len(refused) == PROCESSES * JOBS_PER_PROCESS
    assert refused and billed  # the budget ran out mid-way
    assert set(refused) == {"budget_exceeded"}
    assert state["spent"] <= LIMIT_USD * 1_000_000
    assert abs(state["spent"] - sum(per_process)) <= PROCESSES  # rounded once per worker: under a micro-dollar each
    assert state["jobs"] == len(billed)
    assert state["reserved"] == 0
    assert state["spent"] > (LIMIT_USD - WORST_USD) * 1_000_000 * 0.5  # the jobs did use the budget
