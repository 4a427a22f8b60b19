"""The cap's worst cases, each worked by hand (issue 21): what a worker reserves must really bound
what it can be billed, and what it learns of its endpoint must be the endpoint's own figures.

The worker is billed 3.6 USD an hour, 0.001 USD a second, so a dollar figure is read in
thousandths of seconds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from core.endpoints import create_endpoint
from devtools.fake_engine import FakeEngine
from devtools.platform import Platform
from devtools.redis_server import RedisServer
from handler.app import create_app
from handler.budget import Budget
from handler.errors import BudgetExceeded
from handler.settings import load_settings
from handler.store.embedded import EmbeddedStore
from handler.store.redis_store import RedisStore
from tests.conftest import TEST_HOURLY_RATE
from tests.engine_support import require_model, settings_for
from tests.platform_support import echo_config

KEY = "cap-key"
USD_PER_S = 0.001


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    require_model("tiny")
    async with Platform(api_key=KEY, default_config=echo_config(workers_max=0)) as server:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)  # what a deployed worker is given
        yield server


async def test_the_worker_takes_its_endpoints_idle_timeout_and_workers_max(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """An endpoint idle timeout of 60 s with ENDPOINT_IDLE_TIMEOUT left at 5 made every worker's tail
    55 s short (1.62x a limit); with an API key the worker reads the endpoint's own figures."""
    body = {"name": "read", "type": "QUEUE", "image": "frugal-worker:v1", "gpu": {"pools": ["ADA_24"]},
            "workers": {"min": 0, "max": 4, "idleTimeout": 60},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4}}  # fmt: skip
    endpoint = await asyncio.to_thread(lambda: create_endpoint(body, api_key=KEY))
    caplog.set_level(logging.WARNING, logger="handler.app")
    app = create_app(settings_for(
        "tiny", GPU_HOURLY_RATE=TEST_HOURLY_RATE, DAILY_BUDGET_USD="1", ENDPOINT_IDLE_TIMEOUT="5",
        ENDPOINT_WORKERS_MAX="1", BUDGET_HEARTBEAT_SECONDS="5", RUNPOD_ENDPOINT_ID=endpoint["id"], RUNPOD_API_KEY=KEY,
        BUDGET_NAMESPACE=f"read-{uuid.uuid4().hex[:8]}",
    ), store=EmbeddedStore())  # fmt: skip
    try:
        app.start_background()
        assert app._endpoint_read is not None
        await app._endpoint_read
        worker = await app.worker()
        # its tail: the endpoint's 60 s idle timeout + one 5 s heartbeat + 1 s exit = 66 s
        assert worker.exposure_usd() == pytest.approx(66 * USD_PER_S)
        # the margin for workers still to start: 4 x (2 s start + 2 s boot + 66 s tail) = 280 s
        with pytest.raises(BudgetExceeded, match=r"less 0\.280000 USD kept"):
            await worker.budget.reserve("big", 0.8)
        assert any("idle timeout is 60 s" in r.getMessage() for r in caplog.records)
    finally:
        await app.aclose()


async def test_a_key_that_cannot_read_the_endpoint_is_said_at_start(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="handler.endpoint_control")
    app = create_app(settings_for("tiny", GPU_HOURLY_RATE=TEST_HOURLY_RATE, DAILY_BUDGET_USD="1",
                                  RUNPOD_ENDPOINT_ID="ep-nowhere", RUNPOD_API_KEY="wrong-key"),
                     store=EmbeddedStore())  # fmt: skip
    try:
        app.start_background()
        assert app._endpoint_read is not None
        await app._endpoint_read
        errors = [r.getMessage() for r in caplog.records]
        assert len(errors) == 1 and "cannot scale it to zero" in errors[0]
    finally:
        await app.aclose()


async def test_an_engine_start_is_reserved_as_long_as_the_worker_lets_it_run() -> None:
    """Reserved at ENGINE_START_ESTIMATE_SECONDS (180 s) but allowed ENGINE_START_TIMEOUT (600 s), a
    slow start cost up to 2.9x its reservation; the reservation is now the timeout and the stop."""
    require_model("tiny")
    engine = FakeEngine()
    app = create_app(settings_for("tiny", GPU_HOURLY_RATE=TEST_HOURLY_RATE, DAILY_BUDGET_USD="1",
                                  ENGINE_START_TIMEOUT="300", ENDPOINT_IDLE_TIMEOUT="5",
                                  BUDGET_HEARTBEAT_SECONDS="5"), engine=engine, store=EmbeddedStore())  # fmt: skip
    try:
        worker = await app.worker()
        # 300 s allowed + 15 s to stop a start past it + the 11 s tail
        assert worker.exposure_usd(needs_engine=True) == pytest.approx((300 + 15 + 11) * USD_PER_S)
        assert worker.exposure_usd() == pytest.approx(11 * USD_PER_S)  # no engine needed: the tail alone
    finally:
        await app.aclose()


@pytest.mark.parametrize("mode", ["boot", "background"])
async def test_an_engine_start_at_boot_needs_the_budget_first(mode: str) -> None:
    """ENGINE_START=boot|background with start-up billed started the engine with no reservation, even
    when the day was spent."""
    require_model("tiny")
    store = EmbeddedStore()
    namespace = f"early-{uuid.uuid4().hex[:8]}"
    env = {"GPU_HOURLY_RATE": TEST_HOURLY_RATE, "DAILY_BUDGET_USD": "1", "BUDGET_NAMESPACE": namespace,
           "ENGINE_START": mode, "BILL_INITIALIZING": "true", "ENGINE_START_TIMEOUT": "60"}  # fmt: skip
    spender = Budget(store, load_settings(env).budget)
    await spender.settle(await spender.reserve("earlier", 0.97), 0.97, 0.0)  # 0.03 left: under a 60 s start
    engine = FakeEngine()
    app = create_app(settings_for("tiny", **env), engine=engine, store=store)
    try:
        app.start_background()
        assert app._early is not None
        await app._early
        assert engine.starts == 0 and not engine.ready
    finally:
        await app.aclose()
    roomy = FakeEngine()
    app = create_app(settings_for("tiny", **{**env, "BUDGET_NAMESPACE": namespace + "-roomy"}), engine=roomy,
                     store=EmbeddedStore())  # fmt: skip
    try:
        app.start_background()
        assert app._early is not None
        await app._early
        assert roomy.starts == 1
    finally:
        await app.aclose()


async def test_fail_open_spends_nothing_on_a_day_it_never_saw() -> None:
    """A worker started during an outage with BUDGET_FAIL_MODE=open took limit / workers as "left",
    even when the day was spent (1.28x, more with each fresh worker)."""
    server = RedisServer()  # never started: its port refuses
    store = RedisStore(server.url)
    env = {"BUDGET_NAMESPACE": "open", "DAILY_BUDGET_USD": "1", "BUDGET_FAIL_MODE": "open",
           "ENDPOINT_WORKERS_MAX": "2"}  # fmt: skip
    budget = Budget(store, load_settings(env).budget)
    try:
        with pytest.raises(BudgetExceeded, match="share of what was left"):
            await budget.reserve("a", 0.001)
    finally:
        await store.close()


@pytest.mark.redis
async def test_settlements_kept_in_an_outage_reach_the_budget_when_it_returns_during_the_exit() -> None:
    """BUDGET_FAIL_MODE=closed: a worker that exited before Redis returned dropped its kept
    settlements (count/bill 0.009) and others spent that money again."""
    server = RedisServer().start()
    store = RedisStore(server.url)
    env = {"BUDGET_NAMESPACE": "kept", "DAILY_BUDGET_USD": "10"}
    budget = Budget(store, load_settings(env).budget)
    try:
        job = await budget.reserve("a", 0.5)
        server.stop()
        await asyncio.sleep(0.3)  # the store's "unreachable" window
        assert (await budget.settle(job, 0.4, 0.0)).stale
        back = asyncio.get_running_loop().call_later(1.5, server.start)
        state = await budget.retire({"idle": 0.02})  # retried while Redis is away
        assert not state.stale
        fresh = RedisStore(server.url)
        try:
            counted = await Budget(fresh, load_settings(env).budget).state()
        finally:
            await fresh.close()
        assert counted.spent_usd == pytest.approx(0.42) and (counted.jobs, counted.reserved_usd) == (1, 0.0)
        back.cancel()
    finally:
        await store.close()
        server.stop()
