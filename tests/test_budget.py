"""The daily budget over both backends: reserve, settle, release, expiry, days, alerts."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from devtools.redis_server import delete_namespace
from handler.alerts import Alerter
from handler.budget import Budget, BudgetState
from handler.errors import BudgetExceeded, ConfigError
from handler.rates import hourly_rate
from handler.settings import load_settings
from handler.store.base import Store
from handler.store.embedded import EmbeddedStore

DAY_ONE = 1_794_908_800.0  # 2026-11-17 09:46:40 UTC


class Clock:
    def __init__(self, now: float = DAY_ONE) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_budget(store: Store, namespace: str, clock: Clock | None = None, **kwargs: Any) -> Budget:
    env = {"BUDGET_NAMESPACE": namespace, "DAILY_BUDGET_USD": "1.0", "GPU_HOURLY_RATE": "3.6"}
    env.update({k: str(v) for k, v in kwargs.pop("env", {}).items()})
    return Budget(store, load_settings(env).budget, clock=clock or Clock(), **kwargs)


async def run_job(budget: Budget, job_id: str, cost: float, exposure: float | None = None) -> BudgetState:
    """A whole job on one worker: admitted at `exposure` (default: its cost), settled at `cost`, exposure 0 after."""
    reservation = await budget.reserve(job_id, cost if exposure is None else exposure)
    return await budget.settle(reservation, cost, 0.0)


async def test_a_workers_reservation_must_fit_under_the_limit(store: Store, namespace: str) -> None:
    one, two = make_budget(store, namespace), make_budget(store, namespace)  # two workers
    first = await one.reserve("a", 0.6)  # worker one may still be billed 0.6
    with pytest.raises(BudgetExceeded) as refused:
        await two.reserve("b", 0.5)
    assert refused.value.type == "budget_exceeded"
    assert "daily budget exceeded" in refused.value.message and "2026-11-17" in refused.value.message
    state = await one.settle(first, 0.25, 0.0)  # it cost 0.25; the worker's exposure falls to 0
    assert (state.spent_usd, state.reserved_usd, state.remaining_usd) == (0.25, 0.0, 0.75)
    await two.reserve("b", 0.5)  # fits now that a settled below its worst case
    assert (await two.state()).reserved_usd == 0.5


async def test_one_worker_holds_one_reservation_its_exposure(store: Store, namespace: str) -> None:
    budget = make_budget(store, namespace)
    await budget.reserve("a", 0.6)
    await budget.reserve("b", 0.9)  # jobs at once: the worker's exposure grows to 0.9, not 0.6 + 0.9
    assert (await budget.state()).reserved_usd == pytest.approx(0.9)
    with pytest.raises(BudgetExceeded):
        await budget.reserve("c", 1.2)
    assert (await budget.state()).reserved_usd == pytest.approx(0.9)  # a refusal changes nothing


async def test_settle_is_idempotent_and_release_gives_back(store: Store, namespace: str) -> None:
    budget = make_budget(store, namespace)
    reservation = await budget.reserve("a", 0.3)
    await budget.settle(reservation, 0.2, 0.0)
    again = await budget.settle(reservation, 0.2, 0.0)
    assert again.spent_usd == pytest.approx(0.2) and again.jobs == 1
    other = make_budget(store, namespace)  # another worker settling the same job
    assert (await other.settle(reservation, 0.2, 0.0)).spent_usd == pytest.approx(0.2)
    failed = await budget.reserve("b", 0.7)
    assert (await budget.state()).remaining_usd == pytest.approx(0.1)
    await budget.release(failed, 0.05)  # nothing generated: only the idle tail stays reserved
    state = await budget.state()
    assert (state.reserved_usd, state.remaining_usd) == (pytest.approx(0.05), pytest.approx(0.75))


async def test_a_crashed_workers_reservation_lapses(store: Store, namespace: str) -> None:
    # a 1 s hold: the refusal below must come before it lapses, even on a loaded machine
    crashed = make_budget(store, namespace, hold_ttl=1.0)
    await crashed.reserve("lost", 0.9)  # the worker dies here: never settled nor released
    alive = make_budget(store, namespace)
    with pytest.raises(BudgetExceeded):
        await alive.reserve("next", 0.5)
    await asyncio.sleep(1.1)  # past the hold, counted from its last change (the store's clock)
    await alive.reserve("next", 0.5)
    state = await alive.state()
    assert state.reserved_usd == pytest.approx(0.5) and state.spent_usd == 0


async def test_the_heartbeat_renews_a_reservation(store: Store, namespace: str) -> None:
    worker = make_budget(store, namespace, hold_ttl=1.0)
    await worker.reserve("long", 0.9)
    # the job runs longer than the hold's ttl (1.2 s); the heartbeat keeps it. Beats 0.1 s apart: a
    # beat may be late by 0.9 s (a loaded machine) before the hold lapses under it
    for _ in range(12):
        await asyncio.sleep(0.1)
        await worker.accrue(None, 0.9)
    with pytest.raises(BudgetExceeded):
        await make_budget(store, namespace).reserve("other", 0.5)


async def test_overhead_is_counted_once_by_kind(store: Store, namespace: str) -> None:
    worker = make_budget(store, namespace)
    await worker.accrue({"boot": 0.01, "engine_start": 0.0, "idle": 0.002}, 0.02)
    await worker.accrue({"boot": 0.01, "engine_start": 0.05, "idle": 0.002}, 0.02)
    await worker.accrue({"boot": 0.01, "engine_start": 0.05, "idle": 0.002}, 0.02)  # repeated: nothing more
    await run_job(worker, "j", 0.1)
    other = make_budget(store, namespace)
    await other.accrue({"boot": 0.001, "engine_start": 0.0, "idle": 0.0}, 0.0)
    state = await other.state()
    assert state.spent_usd == pytest.approx(0.01 + 0.05 + 0.002 + 0.1 + 0.001)
    assert (state.jobs_usd, state.overhead_usd) == (pytest.approx(0.1), pytest.approx(0.063))
    assert (state.boot_usd, state.engine_start_usd, state.idle_usd) == (0.011, 0.05, 0.002)
    assert state.jobs == 1
    assert state.reserved_usd == pytest.approx(0.0)  # the job's settle set worker one's exposure to 0


async def test_many_tiny_jobs_add_up_exactly(store: Store, namespace: str) -> None:
    """Each job costs under half a micro-dollar; rounded one by one they would count as nothing."""
    budget = make_budget(store, namespace)
    costs = [4.4e-7 + i * 1e-9 for i in range(500)]
    for i, cost in enumerate(costs):
        await run_job(budget, f"tiny-{i}", cost)
    spent = (await budget.state()).spent_usd
    assert spent == pytest.approx(sum(costs), abs=1e-6)
    assert spent > 0.0002


async def test_budget_namespace_is_apart_from_the_cache_namespace(store: Store, namespace: str) -> None:
    await run_job(make_budget(store, namespace, env={"CACHE_NAMESPACE": "cache-v1"}), "a", 0.4)
    rotated = make_budget(store, namespace, env={"CACHE_NAMESPACE": "cache-v2"})  # the cache rotated
    assert (await rotated.state()).spent_usd == pytest.approx(0.4)
    elsewhere = make_budget(store, namespace + "-other")
    assert (await elsewhere.state()).spent_usd == 0.0


async def test_day_rollover_uses_the_injected_clock_and_time_zone(store: Store, namespace: str) -> None:
    clock = Clock()
    budget = make_budget(store, namespace, clock)
    await run_job(budget, "a", 1.0)
    with pytest.raises(BudgetExceeded):
        await budget.reserve("b", 0.01)
    clock.now += 86_400
    assert budget.today() == "2026-11-18"
    fresh = await budget.reserve("b", 0.5)
    assert fresh.day == "2026-11-18"
    assert (await budget.state()).spent_usd == 0.0
    rows = await budget.daily_spend(2)
    assert [(r["day"], r["spent_usd"]) for r in rows] == [("2026-11-17", 1.0), ("2026-11-18", 0.0)]
    # A job running across midnight: what it used by the last heartbeat before midnight is that
    # day's, the rest the next day's (the old rule put all of it on the day it was admitted).
    clock.now = DAY_ONE + 86_400 + 50_000  # 2026-11-18 23:40 UTC
    late = await budget.reserve("late", 0.1)
    clock.now += 1000  # 23:56:40: the heartbeat counts the 0.06 it used so far
    await budget.accrue(None, 0.05, {"late": 0.06})
    clock.now += 600
    await budget.settle(late, 0.1, 0.0)
    assert [r["spent_usd"] for r in await budget.daily_spend(2)] == [pytest.approx(0.06), pytest.approx(0.04)]
    # The day follows BUDGET_TIMEZONE: 09:46 UTC is still the previous day in Honolulu (UTC-10).
    honolulu = make_budget(store, namespace, Clock(DAY_ONE - 3600 * 2), env={"BUDGET_TIMEZONE": "Pacific/Honolulu"})
    assert honolulu.today() == "2026-11-16"


async def test_unlimited_budget_still_counts(store: Store, namespace: str) -> None:
    budget = make_budget(store, namespace, env={"DAILY_BUDGET_USD": "0"})
    for i in range(5):
        await run_job(budget, f"j{i}", 10.0, exposure=100.0)
    state = await budget.state()
    assert (state.limit_usd, state.remaining_usd, state.spent_usd, state.jobs) == (None, None, 50.0, 5)


async def test_past_the_limit_when_the_workers_own_tail_no_longer_fits(store: Store, namespace: str) -> None:
    """A worker serving only hits spends nothing on jobs, but its idle seconds are billed: once
    spent and its own reserved tail pass the limit, it must stop (the app exits on `over_limit`)."""
    clock = Clock()
    budget = make_budget(store, namespace, clock)
    other = make_budget(store, namespace, clock)
    tail = 0.1  # this worker's idle tail, reserved by every heartbeat
    await budget.accrue({"idle": 0.0}, tail)
    assert not budget.over_limit()
    in_flight = await other.reserve("a", 0.85)  # another worker's job: refusals are not "over"
    with pytest.raises(BudgetExceeded):
        await budget.reserve("early", 0.2)
    assert not budget.over_limit()  # 0 spent + 0.1 + 0.85 reserved: still fits
    await other.settle(in_flight, 0.85, 0.0)
    await budget.accrue({"idle": 0.04}, tail)  # 0.89 spent + its 0.1 tail: fits
    assert not budget.over_limit()
    await budget.accrue({"idle": 0.06}, tail)  # hits kept it alive: 0.91 + 0.1 > 1.0
    assert budget.over_limit()
    clock.now += 86_400  # a new budget day: nothing spent yet
    await budget.accrue({"idle": 0.06}, tail)
    assert not budget.over_limit()


async def test_two_alerts_the_threshold_and_the_first_refusal(
    store: Store, namespace: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """The threshold alert fires when spend reaches it, even after a refusal (a refusal once used the
    day's only alert while spend was 0); the first refusal has its own alert, once a day."""
    url, received = webhook
    env = {"BUDGET_ALERT_WEBHOOK": url, "BUDGET_ALERT_THRESHOLD": "0.8"}
    budget, other = make_budget(store, namespace, env=env), make_budget(store, namespace, env=env)
    held = await other.reserve("big", 0.9)
    for job in ("r1", "r2"):
        with pytest.raises(BudgetExceeded):
            await budget.reserve(job, 0.2)
    await budget.flush_alerts()
    assert [(a["event"], a["spent_usd"]) for a in received] == [("budget_refused", 0.0)]
    await other.settle(held, 0.85, 0.0)  # spend reaches 80%: the threshold alert, now
    await other.flush_alerts()
    assert [a["event"] for a in received] == ["budget_refused", "budget_threshold"]
    assert received[1]["spent_usd"] == pytest.approx(0.85)


async def test_concurrent_workers_never_overspend(store: Store, namespace: str) -> None:
    workers = [make_budget(store, namespace) for _ in range(6)]
    in_flight = [0] * len(workers)  # each job may cost 0.01: a worker's exposure is 0.01 per job it holds
    rng = random.Random(5)
    refused = 0
    settled = [0.0] * len(workers)  # the test's own count of what each worker settled

    async def job(i: int) -> None:
        nonlocal refused
        w = i % len(workers)
        in_flight[w] += 1
        try:
            reservation = await workers[w].reserve(f"j{i}", 0.01 * in_flight[w])
        except BudgetExceeded:
            in_flight[w] -= 1
            refused += 1
            return
        await asyncio.sleep(rng.random() * 0.01)
        in_flight[w] -= 1
        cost = rng.uniform(0.005, 0.01)
        settled[w] += cost
        await workers[w].settle(reservation, cost, 0.01 * in_flight[w])

    await asyncio.gather(*(job(i) for i in range(300)))
    for worker in workers:  # a settle may have counted a job that was then refused: the heartbeat corrects it
        await worker.accrue(None, 0.0)
    state = await workers[0].state()
    assert state.spent_usd <= 1.0 and state.reserved_usd == 0
    assert refused > 0 and state.jobs + refused == 300
    # The budget's spend against the amounts settled, counted here. Each worker rounds its running total to
    # whole micro-dollars (its settlements at once chain the fraction they carry), so the two agree within a
    # micro-dollar per worker
    assert abs(state.spent_usd - sum(settled)) <= len(workers) * 1e-6
    assert sum(settled) <= 1.0 + len(workers) * 1e-6  # never overspent, by that count too
    assert state.jobs_usd == state.spent_usd  # no overhead was counted: all of it is the jobs'


async def test_concurrent_settlements_carry_their_fractions(store: Store, namespace: str) -> None:
    """A worker's settlements at once keep the fractions of a micro-dollar they carry (the module's promise:
    what a worker settles sums to its total within a micro-dollar, however small each job is)."""
    budget = make_budget(store, namespace)
    reservations = [await budget.reserve(f"j{i}", 0.001) for i in range(10)]
    await asyncio.gather(*(budget.settle(r, 0.4e-6, 0.0) for r in reservations))  # 0.4 micro-dollar each
    assert (await budget.state()).spent_usd == pytest.approx(4e-6, abs=1e-6)


# --- alerts ------------------------------------------------------------------------------


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server collecting the JSON bodies POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    # a short poll: shutdown() waits for it (the default 0.5 s made each test's teardown half a second)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


async def test_alert_once_per_day_across_workers(
    store: Store, namespace: str, webhook: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, received = webhook
    clock = Clock()
    env = {"BUDGET_ALERT_WEBHOOK": url, "BUDGET_ALERT_THRESHOLD": "0.5"}
    workers = [make_budget(store, namespace, clock, env=env) for _ in range(2)]
    caplog.set_level(logging.WARNING, logger="handler.alerts")
    for i in range(8):
        await run_job(workers[i % 2], f"j{i}", 0.1)
    for worker in workers:
        await worker.flush_alerts()
    assert len(received) == 1
    alert = received[0]
    assert alert["event"] == "budget_threshold" and alert["threshold"] == 0.5
    assert alert["day"] == "2026-11-17" and alert["spent_usd"] == pytest.approx(0.5) and alert["limit_usd"] == 1.0
    assert len([r for r in caplog.records if "budget alert" in r.getMessage()]) == 1
    clock.now += 86_400
    for i in range(6):
        await run_job(workers[i % 2], f"d2-{i}", 0.1)
    for worker in workers:
        await worker.flush_alerts()
    assert [a["day"] for a in received] == ["2026-11-17", "2026-11-18"]


async def test_a_failing_webhook_is_retried_then_logged_not_raised(
    store: Store, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    alerter = Alerter("http://127.0.0.1:9/nothing-listens-here", timeout=1.0, attempts=3, backoff=0.01)
    budget = make_budget(store, namespace, alerter=alerter)
    caplog.set_level(logging.WARNING, logger="handler.alerts")
    state = await run_job(budget, "a", 0.9)
    assert state.spent_usd == pytest.approx(0.9)  # the job is answered while the alert is delivered
    await budget.flush_alerts()
    assert alerter.sent == 0
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2
    final = [r for r in caplog.records if "failed after 3 attempts" in r.getMessage()]
    assert len(final) == 1 and final[0].levelno == logging.ERROR and "spent_usd" in final[0].getMessage()


async def test_an_alert_at_the_whole_budget_fires_when_it_refuses(
    store: Store, namespace: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    env = {"BUDGET_ALERT_WEBHOOK": url, "BUDGET_ALERT_THRESHOLD": "1.0"}
    budget = make_budget(store, namespace, env=env)
    await run_job(budget, "a", 0.9)
    await budget.flush_alerts()
    assert received == []  # under the limit
    with pytest.raises(BudgetExceeded):
        await budget.reserve("b", 0.2)  # spend never reaches 1.0 when refusals keep it under
    await budget.flush_alerts()
    assert [a["event"] for a in received] == ["budget_refused"]


# --- the hourly rate ------------------------------------------------------------------------


def test_hourly_rate_from_setting_price_table_or_the_gpu_found() -> None:
    def rate(settings: Any, detected: str) -> float:
        return hourly_rate(settings.budget, detected)

    flex = 0.00031 * 3600  # RunPod's flex rate for an RTX 4090 (ADA_24), per second, by the hour
    assert rate(load_settings({"GPU_HOURLY_RATE": "2.5", "GPU_TYPE": "NVIDIA GeForce RTX 4090"}), "") == 2.5
    assert rate(load_settings({"GPU_TYPE": "NVIDIA GeForce RTX 4090"}), "") == pytest.approx(flex)
    assert rate(load_settings({}), "") == 0.0
    # every GPU the worker holds is billed
    two = load_settings({"GPU_TYPE": "NVIDIA GeForce RTX 4090", "TENSOR_PARALLEL_SIZE": "2"})
    assert rate(two, "") == pytest.approx(2 * flex)
    # without GPU_TYPE: the GPU nvidia-smi names (a pool's second choice is priced as what it is)
    assert rate(load_settings({}), "NVIDIA GeForce RTX 4090") == pytest.approx(flex)
    with pytest.raises(ConfigError, match="GPU_HOURLY_RATE"):
        rate(load_settings({"DAILY_BUDGET_USD": "5"}), "Imaginary GPU 9000")
    assert rate(load_settings({}), "Imaginary GPU 9000") == 0.0  # unpriced, and nothing to hold to
    with pytest.raises(ConfigError, match="GPU_TYPE"):
        rate(load_settings({"GPU_TYPE": "Imaginary GPU 9000"}), "")
    with pytest.raises(ConfigError, match="GPU_HOURLY_RATE"):
        rate(load_settings({"DAILY_BUDGET_USD": "5"}), "")


def test_bad_time_zone_is_a_config_error(store: Store, namespace: str) -> None:
    with pytest.raises(ConfigError, match="BUDGET_TIMEZONE"):
        make_budget(store, namespace, env={"BUDGET_TIMEZONE": "Mars/Olympus"})


# --- the stats command ------------------------------------------------------------------------


@pytest.mark.redis
def test_stats_command_shows_spend_and_cache_per_day(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    from handler.cache import ResponseCache
    from handler.stats import main
    from handler.store.redis_store import RedisStore

    env = {"REDIS_URL": redis_url, "CACHE_NAMESPACE": namespace, "BUDGET_NAMESPACE": namespace,
           "DAILY_BUDGET_USD": "2", "GPU_HOURLY_RATE": "1"}  # fmt: skip

    async def spend() -> None:
        store = RedisStore(redis_url)
        budget = Budget(store, load_settings(env).budget)
        await budget.settle(await budget.reserve("a", 0.5), 0.125, 0.0)
        await budget.accrue({"boot": 0.25, "engine_start": 0.0, "idle": 0.0}, 0.0)
        cache = ResponseCache(store, load_settings(env).cache, {})
        await cache.record(hit=True, saved_usd=0.25)
        await cache.record(hit=False, saved_usd=0.0)
        await store.close()

    asyncio.run(spend())
    request.addfinalizer(lambda: delete_namespace(redis_url, namespace))
    assert main(["spend", "--days", "2", "--json"], env) == 0
    out = json.loads(capsys.readouterr().out)
    today = out["rows"][-1]
    assert len(out["rows"]) == 2
    assert (today["spent_usd"], today["jobs"], today["limit_usd"], today["remaining_usd"]) == (0.375, 1, 2.0, 1.625)
    assert (today["jobs_usd"], today["overhead_usd"], today["boot_usd"]) == (0.125, 0.25, 0.25)
    assert main(["cache", "--days", "1"], env) == 0
    text = capsys.readouterr().out
    assert "hit_rate" in text and " 0.5 " in text and " 0.25" in text
    assert main(["spend"], {**env, "REDIS_URL": "redis://127.0.0.1:1/0"}) == 2
    assert "unreachable" in capsys.readouterr().err


# --- amounts of zero and under a micro-dollar (Redis's Lua once made them "-0") -----------------


@pytest.mark.parametrize("amount", [0.0, 4e-7])
async def test_zero_and_sub_micro_amounts_settle_release_and_lapse(store: Store, namespace: str, amount: float) -> None:
    budget = make_budget(store, namespace)
    settled = await budget.reserve("settled", amount)
    await budget.settle(settled, amount, amount)
    released = await budget.reserve("released", amount)
    await budget.release(released, amount)
    await budget.accrue({"boot": amount, "engine_start": 0.0, "idle": amount}, amount)
    crashed = make_budget(store, namespace, hold_ttl=0.05)
    await crashed.reserve("lapsed", amount)  # never settled: its worker died
    await asyncio.sleep(0.15)
    # the sweep of the lapsed reservation runs inside reserve and state, for every worker
    after = await budget.reserve("after", 0.25)
    state = await budget.state()
    assert state.reserved_usd == pytest.approx(0.25) and state.spent_usd < 2e-6
    await budget.settle(after, 0.25, 0.0)
    assert (await make_budget(store, namespace).state()).spent_usd == pytest.approx(0.25, abs=2e-6)


async def test_a_margin_is_kept_free_of_jobs_for_workers_yet_to_start(store: Store, namespace: str) -> None:
    """$1 limit, $0.3 kept for workers RunPod may still start: jobs fit under $0.7; overhead does not ask."""
    budget = make_budget(store, namespace, margin_usd=0.3)
    await run_job(budget, "a", 0.5)
    with pytest.raises(BudgetExceeded) as refused:
        await budget.reserve("b", 0.25)  # 0.5 + 0.25 > 1.0 - 0.3
    assert "less 0.300000 USD kept for workers that may still start" in refused.value.message
    await budget.reserve("c", 0.2)  # 0.5 + 0.2 = 0.7 fits exactly
    # a worker that starts now is billed anyway: its overhead and idle tail are counted past 0.7
    late = make_budget(store, namespace, margin_usd=0.3)
    state = await late.accrue({"boot": 0.1}, 0.15)
    assert (state.spent_usd, state.reserved_usd) == (pytest.approx(0.6), pytest.approx(0.35))
    assert state.spent_usd + state.reserved_usd <= 1.0  # within the limit: the margin paid for it


# --- spent means spent (issue 21) ------------------------------------------------------------


async def test_a_running_jobs_seconds_are_spent_with_each_heartbeat(store: Store, namespace: str) -> None:
    """A heartbeat counts what a running job used so far, so (1) it never hands back used money to
    another worker and (2) a worker killed mid-job loses at most one heartbeat of it. Before, a job's
    seconds reached `spent` only when it settled: a SIGKILLed worker's 90 s of a 102 s job were
    never counted, and its lapsed reservation admitted others into money already spent."""
    clock = Clock()
    # a 1 s hold: the refusal below must come before it lapses, even on a loaded machine
    worker, other = make_budget(store, namespace, clock, hold_ttl=1.0), make_budget(store, namespace, clock)
    job = await worker.reserve("long", 0.6)  # its worst case
    await worker.accrue(None, 0.3, {"long": 0.3})  # half done: 0.3 used, 0.3 may still come
    state = await other.state()
    assert (state.spent_usd, state.reserved_usd) == (pytest.approx(0.3), pytest.approx(0.3))
    with pytest.raises(BudgetExceeded):  # 0.3 spent + 0.3 reserved + 0.5 > 1.0: used money is not free
        await other.reserve("b", 0.5)
    await worker.accrue(None, 0.1, {"long": 0.5})
    # the worker is killed here: its reservation lapses, what its job used stays spent
    await asyncio.sleep(1.1)
    state = await other.state()
    assert (state.spent_usd, state.reserved_usd) == (pytest.approx(0.5), 0.0)
    # had it lived, its settlement counts the rest once: 0.55 in all, not 0.5 + 0.55
    state = await worker.settle(job, 0.55, 0.0)
    assert state.spent_usd == pytest.approx(0.55) and state.jobs == 1
    await worker.accrue(None, 0.0, {"long": 0.6})  # a late heartbeat after the settlement counts nothing
    assert (await other.state()).spent_usd == pytest.approx(0.55)


async def test_the_budget_day_follows_the_stores_clock() -> None:
    """A worker whose clock is 65 s fast spent on tomorrow before midnight: the day is the store's."""
    day_end = DAY_ONE + 14 * 3600 + 13 * 60 + 10  # 2026-11-17 23:59:50 UTC by the store
    store = EmbeddedStore(clock=lambda: day_end)
    budget = Budget(store, load_settings({"BUDGET_NAMESPACE": "skew", "DAILY_BUDGET_USD": "1"}).budget)
    await budget.accrue(None, 0.0)  # every budget operation's answer carries the store's clock
    assert budget.today() == "2026-11-17"  # this machine's clock says otherwise (it is 2026-12 here)


async def test_a_reservation_that_lapsed_in_an_outage_is_restored_at_its_target(store: Store, namespace: str) -> None:
    """A worker whose reservation lapsed (no change reached the store for longer than its ttl) came
    back holding nothing: its next change was applied to 0. It now gets its target again."""
    budget = make_budget(store, namespace, hold_ttl=0.3)
    other = make_budget(store, namespace)
    await budget.accrue(None, 0.4)  # its exposure: 0.4 held
    await asyncio.sleep(0.6)  # no heartbeat reached the store: the hold lapses
    assert (await other.state()).reserved_usd == 0.0  # swept
    await budget.accrue(None, 0.4)  # back: the same exposure, a change of 0 from what it thinks it holds
    assert (await other.state()).reserved_usd == pytest.approx(0.4)
