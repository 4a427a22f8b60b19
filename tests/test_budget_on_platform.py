"""The budget counts the bill: the real worker run as RunPod runs it, on the local platform.

`python -m handler` is driven by the runpod SDK's deployed worker loop; its bill is
counted from outside (the process's life read from /proc by the test) and compared
with what the shared budget in Redis says it spent.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import runpod

from devtools.platform import EndpointConfig, Platform
from handler.budget import Budget, BudgetState
from handler.exposure import EXIT_ALLOWANCE_S
from handler.settings import load_settings
from handler.store.redis_store import RedisStore
from tests.engine_support import require_model, worker_env
from tests.platform_support import API_KEY, REPO_ROOT, Client, ProcWatch, running_platform, wait_status

pytestmark = [pytest.mark.engine, pytest.mark.redis]
PER_SECOND = 1.0  # USD per worker-second: a dollar figure is a number of seconds


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    require_model("tiny")
    async with running_platform(monkeypatch) as server:
        yield server


def worker(redis_url: str, namespace: str, **env: str) -> dict[str, str]:
    return worker_env(
        "tiny", REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace,
        GPU_HOURLY_RATE=str(PER_SECOND * 3600), WORKER_BOOT_SECONDS="0", BUDGET_HEARTBEAT_SECONDS="1", **env,
    )  # fmt: skip


async def budget_state(redis_url: str, namespace: str) -> BudgetState:
    store = RedisStore(redis_url)
    try:
        return await Budget(store, load_settings({"BUDGET_NAMESPACE": namespace}).budget).state()
    finally:
        await store.close()


async def watch_first_worker(platform: Platform, endpoint_id: str) -> ProcWatch:
    ep = platform.endpoint(endpoint_id)
    for _ in range(2000):
        entries = [e for e in ep.ledger() if e.pid]
        if entries:
            return ProcWatch(entries[0].pid)
        await asyncio.sleep(0.005)
    raise AssertionError("no worker process started")


def burst(endpoint_id: str, n: int, tag: str) -> list[Any]:
    endpoint = runpod.Endpoint(endpoint_id)
    job = {"sampling_params": {"max_tokens": 16, "temperature": 0.7, "ignore_eos": True}, "cache": {"bypass": True}}
    return [endpoint.run_sync({**job, "prompt": f"{tag} {i}"}, timeout=600) for i in range(n)]


async def test_the_budget_spends_what_the_worker_process_lived(platform: Platform, redis_url: str) -> None:
    namespace = f"bill-{uuid.uuid4().hex[:8]}"
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"],
        env=worker(redis_url, namespace, ENDPOINT_IDLE_TIMEOUT="3"),
        workers_max=1, idle_timeout=3.0, gpu_hourly_rate=PER_SECOND * 3600, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("bill", config)
    first = asyncio.gather(*(asyncio.to_thread(burst, "bill", 3, f"a{t}") for t in range(2)))
    watch = await watch_first_worker(platform, "bill")
    exited = asyncio.create_task(watch.wait_exit(900))
    outs = [o for group in await first for o in group]
    await asyncio.sleep(2.0)  # idle, under the endpoint's idle timeout: the same worker serves the next burst
    outs += [o for group in await asyncio.gather(*(asyncio.to_thread(burst, "bill", 3, f"b{t}") for t in range(2)))
             for o in group]  # fmt: skip
    await exited
    await ep.wait_workers(0, timeout=60)
    assert len(ep.ledger()) == 1 and ep.ledger()[0].stop_reason == "idle timeout"

    answers = [o[-1] for o in outs]  # the generator handler's aggregate: the last piece is the answer
    assert all(a.get("usage", {}).get("completion_tokens") == 16 for a in answers), answers
    lived = watch.exited_at - watch.started_at  # type: ignore[operator]
    state = await budget_state(redis_url, namespace)
    print(f"process lived {lived:.2f} s; budget spent {state.spent_usd:.2f} (jobs {state.jobs_usd:.2f}, "
          f"boot {state.boot_usd:.2f}, engine start {state.engine_start_usd:.2f}, idle {state.idle_usd:.2f}); "
          f"bill/budget {lived * PER_SECOND / state.spent_usd:.3f}")  # fmt: skip
    assert state.spent_usd == pytest.approx(lived * PER_SECOND, rel=0.05)
    # jobs and overhead apart, each of them there; the answers' costs are the jobs' part exactly
    assert state.jobs == len(answers)
    assert state.jobs_usd == pytest.approx(sum(a["cost_usd"] for a in answers), rel=0.001)
    assert state.boot_usd > 0 and state.engine_start_usd > 5 and state.idle_usd > 2
    assert state.jobs_usd + state.overhead_usd == pytest.approx(state.spent_usd, abs=1e-5)
    assert state.reserved_usd == 0  # the worker dropped its reservation when it stopped


async def test_refresh_worker_reaches_runpod_from_the_generator_handler(platform: Platform, redis_url: str) -> None:
    """The engine cannot start: after ENGINE_MAX_START_FAILURES the worker asks to be replaced."""
    namespace = f"refresh-{uuid.uuid4().hex[:8]}"
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"],
        env=worker(redis_url, namespace, ENGINE_COMMAND="false", ENGINE_MAX_START_FAILURES="1"),
        workers_max=1, idle_timeout=30.0, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("refresh", config)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        client = Client(session, platform.url, "refresh")
        job = await client.run({"prompt": "hi", "cache": {"bypass": True}})
        state = await wait_status(client, job["id"], {"COMPLETED", "FAILED"}, seconds=120)
    assert state["status"] == "FAILED"  # RunPod fails a job whose output carries an error
    assert orjson.loads(state["error"])["type"] == "engine_start_failed"
    await ep.wait_workers(0, timeout=60)  # replaced, not left to its idle timeout
    first = ep.ledger()[0]
    assert first.stop_reason == "stopPod (refresh_worker)" and first.jobs_taken == 1


async def test_workers_sharing_a_small_limit_never_bill_past_it(platform: Platform, redis_url: str) -> None:
    """Two worker processes, one $200 budget at $1 per worker-second, driven until refused, and then
    sent a job a second, the jobs for which RunPod keeps starting workers, for as long as two workers
    kept alive by them would take to bill past the limit. With an API key the worker past the limit
    scales its endpoint to zero and stops."""
    namespace = f"fleet-{uuid.uuid4().hex[:8]}"
    limit = 200.0
    # three jobs per worker at once, so both workers serve each round of six
    env = worker(redis_url, namespace, DAILY_BUDGET_USD=str(limit), ENDPOINT_IDLE_TIMEOUT="5",
                 ENDPOINT_WORKERS_MAX="2", ENGINE_START_TIMEOUT="60", MAX_CONCURRENCY="3",
                 RUNPOD_API_KEY=API_KEY)  # fmt: skip
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"], env=env, workers_max=2, idle_timeout=5.0,
        scaler_type="REQUEST_COUNT", scaler_value=1, gpu_hourly_rate=PER_SECOND * 3600, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("fleet", config)
    refused_at: float | None = None
    answered = 0
    params = {"max_tokens": 48, "ignore_eos": True}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        client = Client(session, platform.url, "fleet")
        for round_no in range(400):
            jobs = [await client.run({"prompt": f"Spend {round_no}.{i}", "cache": {"bypass": True},
                                      "sampling_params": params}) for i in range(6)]  # fmt: skip
            states = [await wait_status(client, j["id"], {"COMPLETED", "FAILED"}, seconds=300) for j in jobs]
            answered += sum(s["status"] == "COMPLETED" for s in states)
            errors = [orjson.loads(s["error"])["type"] for s in states if s["status"] == "FAILED"]
            assert set(errors) <= {"budget_exceeded"}, errors
            if errors:
                refused_at = (await budget_state(redis_url, namespace)).spent_usd
                break
        assert refused_at is not None and answered > 0
        late = []
        late_s = (limit - ep.billed_seconds() * PER_SECOND) / (2 * PER_SECOND) + 10.0  # 2 workers past the limit
        queue_full = 0
        for i in range(int(late_s)):  # the jobs keep coming after the first refusal
            job_input = {"prompt": f"Late {i}", "cache": {"bypass": True}, "sampling_params": params}
            status, body = await client.call("POST", "run", {"input": job_input})
            if status == 429 and "queue full" in body.get("error", ""):  # an endpoint at zero fills its queue
                queue_full += 1
            else:
                assert status == 200, body
                late.append(body["id"])
            await asyncio.sleep(1.0)
        await ep.wait_workers(0, timeout=120)
        late_states = [(await client.status(job_id))[1] for job_id in late]
    billed = ep.billed_seconds() * PER_SECOND  # the platform's ledger: every worker's life
    state = await budget_state(redis_url, namespace)
    for entry in ep.ledger():
        print(f"  {entry.worker_id}: {entry.lifetime_seconds:.1f} s, {entry.jobs_taken} jobs, {entry.stop_reason}")
    print(f"fleet: {len(ep.ledger())} workers billed {billed:.1f} of {limit:.0f}; budget spent {state.spent_usd:.1f}; "
          f"first refusal at {refused_at / limit:.2f} of the limit; {answered} jobs answered; {len(late)} late jobs: "
          f"{dict(Counter(s['status'] for s in late_states))}, {queue_full} more refused: queue full")  # fmt: skip
    # late jobs: served while they fit, refused, or left queued once the endpoint is at zero
    assert {s["status"] for s in late_states} <= {"COMPLETED", "FAILED", "IN_QUEUE"}, late_states
    assert {orjson.loads(s["error"])["type"] for s in late_states if s["status"] == "FAILED"} <= {"budget_exceeded"}
    assert billed <= limit  # the promise: the bill never passes the limit
    assert (ep.config.workers_min, ep.config.workers_max) == (0, 0)  # RunPod starts no more workers
    # the budget's own count may pass it only by what it counts in advance, on the safe side: each
    # worker's exit (EXIT_ALLOWANCE_S, settled as idle when it retires; its real exit is shorter)
    assert state.spent_usd <= limit + len(ep.ledger()) * EXIT_ALLOWANCE_S * PER_SECOND
    assert state.spent_usd == pytest.approx(billed, rel=0.05)


async def test_a_spent_budget_scales_the_endpoint_to_zero(platform: Platform, redis_url: str) -> None:
    """BUDGET_SCALE_TO_ZERO: the real worker, refused by a spent budget, sets its own endpoint's workers
    to 0 through the management API; the platform stops it, and it is billed no idle tail beyond that."""
    namespace = f"s2z-{uuid.uuid4().hex[:8]}"
    env = worker(redis_url, namespace, DAILY_BUDGET_USD="5", BUDGET_SCALE_TO_ZERO="true",
                 RUNPOD_API_KEY=API_KEY, RUNPOD_API_BASE_URL=platform.url)  # fmt: skip
    config = EndpointConfig(
        worker_command=[sys.executable, "-m", "handler"], env=env, workers_min=1, workers_max=2,
        idle_timeout=600.0, cwd=REPO_ROOT,
    )  # fmt: skip
    ep = platform.add_endpoint("s2z", config)
    store = RedisStore(redis_url)
    try:  # another worker of the endpoint already spent the day's budget
        other = Budget(store, load_settings({"BUDGET_NAMESPACE": namespace, "DAILY_BUDGET_USD": "5"}).budget)
        await other.settle(await other.reserve("earlier", 5.0), 5.0, 0.0)
    finally:
        await store.close()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        client = Client(session, platform.url, "s2z")
        job = await client.run({"prompt": "one more?", "cache": {"bypass": True}})
        state = await wait_status(client, job["id"], {"COMPLETED", "FAILED"}, seconds=120)
    assert orjson.loads(state["error"])["type"] == "budget_exceeded"
    await ep.wait_workers(0, timeout=60)  # workersMin=1 and a 600 s idle timeout: only the scale-down stops it
    assert (ep.config.workers_min, ep.config.workers_max) == (0, 0)
    (entry,) = ep.ledger()
    assert entry.jobs_taken == 1 and entry.seconds["running"] < 30
