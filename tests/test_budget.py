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

from handler.alerts import Alerter
from handler.budget import Budget, BudgetState, hourly_rate
from handler.errors import BudgetExceeded, ConfigError
from handler.settings import load_settings
from handler.store import Store
from tests.redis_server import delete_namespace

DAY_ONE = 1_794_908_800.0  # 2026-11-17 09:46:40 UTC


class Clock:
    def __init__(self, now: float = DAY_ONE) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_budget(store: Store, namespace: str, clock: Clock | None = None, **kwargs: Any) -> Budget:
    env = {"CACHE_NAMESPACE": namespace, "DAILY_BUDGET_USD": "1.0", "GPU_HOURLY_RATE": "3.6"}
    env.update({k: str(v) for k, v in kwargs.pop("env", {}).items()})
    return Budget(store, load_settings(env), clock=clock or Clock(), **kwargs)


async def test_reserve_refuses_what_would_cross_the_limit(store: Store, namespace: str) -> None:
    budget = make_budget(store, namespace)
    first = await budget.reserve("a", 0.6)
    with pytest.raises(BudgetExceeded) as refused:
        await budget.reserve("b", 0.5)
    assert refused.value.type == "budget_exceeded"
    assert "daily budget exceeded" in refused.value.message and "2026-11-17" in refused.value.message
    state = await budget.settle(first, 0.25)
    assert (state.spent_usd, state.reserved_usd, state.remaining_usd) == (0.25, 0.0, 0.75)
    await budget.reserve("b", 0.5)  # fits now that a settled below its worst case
    assert (await budget.state()).reserved_usd == 0.5


async def test_settle_is_idempotent_and_release_gives_back(store: Store, namespace: str) -> None:
    budget = make_budget(store, namespace)
    reservation = await budget.reserve("a", 0.3)
    await budget.settle(reservation, 0.2)
    again = await budget.settle(reservation, 0.2)
    assert again.spent_usd == pytest.approx(0.2) and again.jobs == 1
    other = make_budget(store, namespace)  # another worker settling the same job
    assert (await other.settle(reservation, 0.2)).spent_usd == pytest.approx(0.2)
    failed = await budget.reserve("b", 0.7)
    assert (await budget.state()).remaining_usd == pytest.approx(0.1)
    await budget.release(failed)
    state = await budget.state()
    assert (state.reserved_usd, state.remaining_usd) == (0.0, pytest.approx(0.8))
    assert await budget.reserve("b", 0.7)  # a retried reserve of the same job keeps one reservation
    assert await budget.reserve("b", 0.7)
    assert (await budget.state()).reserved_usd == pytest.approx(0.7)


async def test_a_crashed_workers_reservation_lapses(store: Store, namespace: str) -> None:
    crashed = make_budget(store, namespace, reservation_ttl=0.3)
    await crashed.reserve("lost", 0.9)  # the worker dies here: never settled nor released
    alive = make_budget(store, namespace)
    with pytest.raises(BudgetExceeded):
        await alive.reserve("next", 0.5)
    await asyncio.sleep(0.5)
    await alive.reserve("next", 0.5)
    state = await alive.state()
    assert state.reserved_usd == pytest.approx(0.5) and state.spent_usd == 0


async def test_day_rollover_uses_the_injected_clock_and_time_zone(store: Store, namespace: str) -> None:
    clock = Clock()
    budget = make_budget(store, namespace, clock)
    spent_all = await budget.reserve("a", 1.0)
    await budget.settle(spent_all, 1.0)
    with pytest.raises(BudgetExceeded):
        await budget.reserve("b", 0.01)
    clock.now += 86_400
    assert budget.today() == "2026-11-18"
    fresh = await budget.reserve("b", 0.5)
    assert fresh.day == "2026-11-18"
    assert (await budget.state()).spent_usd == 0.0
    rows = await budget.daily_spend(2)
    assert [(r["day"], r["spent_usd"]) for r in rows] == [("2026-11-17", 1.0), ("2026-11-18", 0.0)]
    # A job reserved before midnight settles into its own day.
    clock.now = DAY_ONE + 86_400 + 50_000  # 2026-11-18 23:40 UTC
    late = await budget.reserve("late", 0.1)
    clock.now += 3600
    await budget.settle(late, 0.1)
    assert [r["spent_usd"] for r in await budget.daily_spend(2)] == [0.1, 0.0]
    # The day follows BUDGET_TIMEZONE: 09:46 UTC is still the previous day in Honolulu (UTC-10).
    honolulu = make_budget(store, namespace, Clock(DAY_ONE - 3600 * 2), env={"BUDGET_TIMEZONE": "Pacific/Honolulu"})
    assert honolulu.today() == "2026-11-16"


async def test_unlimited_budget_still_counts(store: Store, namespace: str) -> None:
    budget = make_budget(store, namespace, env={"DAILY_BUDGET_USD": "0"})
    for i in range(5):
        await budget.settle(await budget.reserve(f"j{i}", 100.0), 10.0)
    state = await budget.state()
    assert (state.limit_usd, state.remaining_usd, state.spent_usd, state.jobs) == (None, None, 50.0, 5)


async def test_exhaustion_hook_is_called_once_per_day(store: Store, namespace: str) -> None:
    calls: list[BudgetState] = []

    async def scale_to_zero(state: BudgetState) -> None:
        calls.append(state)

    clock = Clock()
    budget = make_budget(store, namespace, clock, on_exhausted=scale_to_zero)
    in_flight = await budget.reserve("a", 1.0)
    with pytest.raises(BudgetExceeded):  # refused because of a reservation in flight: not exhausted
        await budget.reserve("early", 0.1)
    assert calls == []
    await budget.settle(in_flight, 0.95)
    for i in range(3):
        with pytest.raises(BudgetExceeded):
            await budget.reserve(f"b{i}", 0.1)
    assert len(calls) == 1 and calls[0].spent_usd == pytest.approx(0.95)
    clock.now += 86_400
    await budget.settle(await budget.reserve("c", 1.0), 1.0)
    with pytest.raises(BudgetExceeded):
        await budget.reserve("d", 0.1)
    assert len(calls) == 2


async def test_concurrent_jobs_never_overspend(store: Store, namespace: str) -> None:
    budget = make_budget(store, namespace)
    rng = random.Random(5)
    refused = 0

    async def job(i: int) -> None:
        nonlocal refused
        try:
            reservation = await budget.reserve(f"j{i}", 0.01)
        except BudgetExceeded:
            refused += 1
            return
        await asyncio.sleep(rng.random() * 0.01)
        await budget.settle(reservation, rng.uniform(0.005, 0.01))

    await asyncio.gather(*(job(i) for i in range(300)))
    state = await budget.state()
    assert state.spent_usd <= 1.0 and state.reserved_usd == 0
    assert refused > 0 and state.jobs + refused == 300


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
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
        budget = workers[i % 2]
        await budget.settle(await budget.reserve(f"j{i}", 0.1), 0.1)
    assert len(received) == 1
    alert = received[0]
    assert alert["event"] == "budget_threshold" and alert["threshold"] == 0.5
    assert alert["day"] == "2026-11-17" and alert["spent_usd"] == pytest.approx(0.5) and alert["limit_usd"] == 1.0
    assert len([r for r in caplog.records if "budget alert" in r.getMessage()]) == 1
    clock.now += 86_400
    for i in range(6):
        budget = workers[i % 2]
        await budget.settle(await budget.reserve(f"d2-{i}", 0.1), 0.1)
    assert [a["day"] for a in received] == ["2026-11-17", "2026-11-18"]


async def test_a_failing_webhook_is_logged_not_raised(
    store: Store, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    alerter = Alerter("http://127.0.0.1:9/nothing-listens-here", timeout=1.0)
    budget = make_budget(store, namespace, alerter=alerter)
    caplog.set_level(logging.WARNING, logger="handler.alerts")
    state = await budget.settle(await budget.reserve("a", 0.9), 0.9)
    assert state.spent_usd == pytest.approx(0.9)
    assert alerter.sent == 0
    assert any("webhook failed" in r.getMessage() for r in caplog.records)


# --- the hourly rate ------------------------------------------------------------------------


def test_hourly_rate_from_setting_or_price_table() -> None:
    assert hourly_rate(load_settings({"GPU_HOURLY_RATE": "2.5", "GPU_TYPE": "NVIDIA GeForce RTX 4090"})) == 2.5
    assert hourly_rate(load_settings({"GPU_TYPE": "NVIDIA GeForce RTX 4090"})) == 0.44
    assert hourly_rate(load_settings({})) == 0.0
    with pytest.raises(ConfigError, match="GPU_TYPE"):
        hourly_rate(load_settings({"GPU_TYPE": "Imaginary GPU 9000"}))
    with pytest.raises(ConfigError, match="GPU_HOURLY_RATE"):
        hourly_rate(load_settings({"DAILY_BUDGET_USD": "5"}))


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
    from handler.store import RedisStore

    env = {"REDIS_URL": redis_url, "CACHE_NAMESPACE": namespace, "DAILY_BUDGET_USD": "2", "GPU_HOURLY_RATE": "1"}

    async def spend() -> None:
        store = RedisStore(redis_url)
        budget = Budget(store, load_settings(env))
        await budget.settle(await budget.reserve("a", 0.5), 0.125)
        cache = ResponseCache(store, load_settings(env), {})
        await cache.record(hit=True, saved_usd=0.25)
        await cache.record(hit=False, saved_usd=0.0)
        await store.close()

    asyncio.run(spend())
    request.addfinalizer(lambda: delete_namespace(redis_url, namespace))
    assert main(["spend", "--days", "2", "--json"], env) == 0
    out = json.loads(capsys.readouterr().out)
    today = out["rows"][-1]
    assert len(out["rows"]) == 2
    assert (today["spent_usd"], today["jobs"], today["limit_usd"], today["remaining_usd"]) == (0.125, 1, 2.0, 1.875)
    assert main(["cache", "--days", "1"], env) == 0
    text = capsys.readouterr().out
    assert "hit_rate" in text and "0.5000" in text and "0.2500" in text
    assert main(["spend"], {**env, "REDIS_URL": "redis://127.0.0.1:1/0"}) == 2
    assert "unreachable" in capsys.readouterr().err


# --- amounts of zero and under a micro-dollar (Redis's Lua once made them "-0") -----------------


@pytest.mark.parametrize("amount", [0.0, 4e-7])
async def test_zero_and_sub_micro_amounts_settle_release_and_lapse(store: Store, namespace: str, amount: float) -> None:
    budget = make_budget(store, namespace)
    settled = await budget.reserve("settled", amount)
    await budget.settle(settled, amount)
    released = await budget.reserve("released", amount)
    await budget.release(released)
    crashed = make_budget(store, namespace, reservation_ttl=0.05)
    await crashed.reserve("lapsed", amount)  # never settled: its worker died
    await asyncio.sleep(0.15)
    # the sweep of the lapsed reservation runs inside reserve and state, for every worker
    after = await budget.reserve("after", 0.25)
    state = await budget.state()
    assert state.reserved_usd == pytest.approx(0.25) and state.spent_usd < 1e-6
    await budget.settle(after, 0.25)
    assert (await make_budget(store, namespace).state()).spent_usd == pytest.approx(0.25, abs=1e-6)
