"""Engine life cycle with the real vLLM child: idle stop, lazy restart, crash, start failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from typing import Any

import orjson
import pytest

from handler.app import App, create_app
from handler.exposure import EXIT_ALLOWANCE_S
from tests.engine_support import require_model, settings_for
from tests.platform_support import ProcWatch

pytestmark = pytest.mark.engine


def job(input_: dict[str, Any]) -> dict[str, Any]:
    return {"id": "life", "input": input_}  # the same id every time: each attempt is still billed


SHORT = {"prompt": "Hello", "sampling_params": {"max_tokens": 4, "ignore_eos": True}, "cache": {"bypass": True}}
LONG = {"prompt": "Go on", "sampling_params": {"max_tokens": 1500, "ignore_eos": True}, "cache": {"bypass": True}}


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_for(predicate: Any, seconds: float) -> bool:
    for _ in range(int(seconds * 10)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


async def timed(app: App, input_: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The job's answer, and its wall seconds as the test measured them."""
    started = time.monotonic()
    out = await app.handler(job(input_))
    return out, time.monotonic() - started


async def test_idle_stop_lazy_restart_and_crash_recovery() -> None:
    require_model("tiny")
    process_start = ProcWatch(os.getpid()).started_at  # this process's start, from /proc
    app = create_app(settings_for("tiny", IDLE_TIMEOUT="2", GPU_HOURLY_RATE="3.6"))
    walls: dict[str, float] = {}  # each job's wall seconds, measured here
    try:
        assert not app.engine.running  # lazy: nothing starts before the first miss
        first, walls["first"] = await timed(app, SHORT)
        assert first["timings"]["engine_start_ms"] > 0
        # a cold job tells where the start went, from vLLM's own log lines
        phases = first["timings"]["engine_phases"]
        assert {"process_and_imports_s", "weights_s", "kv_cache_and_warmup_s", "total_s"} <= set(phases), phases
        assert "compile_s" not in phases  # the tiny model runs eager in tests
        assert phases["total_s"] == pytest.approx(first["timings"]["engine_start_ms"] / 1000, abs=1.0)
        pid, port = app.engine.pid, app.engine.port
        assert pid is not None and port is not None

        # idle: the child is stopped and really gone (no process, no port)
        assert await wait_for(lambda: not app.engine.running, 30)
        assert await wait_for(lambda: not process_alive(pid), 15)
        assert not port_open(port)

        # the next job starts it again
        second, walls["second"] = await timed(app, SHORT)
        assert second["usage"]["completion_tokens"] == 4
        assert app.engine.starts == 2
        warm, walls["warm"] = await timed(app, SHORT)
        assert warm["timings"]["engine_start_ms"] == 0

        # SIGKILL mid-job: the job in flight fails clearly, the next one recovers
        long_job = asyncio.create_task(timed(app, LONG))
        await asyncio.sleep(1.5)
        assert app.engine.pid is not None
        os.kill(app.engine.pid, signal.SIGKILL)
        failed, walls["failed"] = await asyncio.wait_for(long_job, 60)
        err = orjson.loads(failed["error"])
        assert err["type"] == "engine_crashed"
        assert "restarts" in err["message"]
        recovered, walls["recovered"] = await timed(app, SHORT)
        assert recovered.get("usage", {}).get("completion_tokens") == 4, recovered
        assert app.engine.starts == 3

        # the budget stays exact: every second billed to a job, the crashed one included, is spent
        beat_from = time.monotonic()
        await app.beat()  # and the overhead up to now
        beat_to = time.monotonic()
        state = await (await app.worker()).budget.state()
        tail = app.settings.endpoint_idle_timeout + app.settings.budget_heartbeat_seconds + EXIT_ALLOWANCE_S
        assert state.reserved_usd == pytest.approx(tail * app.rate / 3600, abs=1e-6)  # idle: its tail only
        jobs_seconds = app.meter.running_seconds() - app.meter.overhead_seconds()
        costs = [o.get("cost_usd") for o in (first, second, warm, failed, recovered)]
        assert state.jobs_usd == pytest.approx(jobs_seconds * app.rate / 3600, abs=1e-5), (state, costs, jobs_seconds)
        assert state.spent_usd == pytest.approx(app.meter.running_seconds() * app.rate / 3600, abs=2e-5)
        # ... and against counts the meter does not make. All of it: the worker's boot allowance and this
        # process's life from its start (/proc and /proc/uptime: 10 ms each) to the heartbeat.
        per_s = app.rate / 3600
        boot = app.settings.worker_boot_seconds if app.settings.bill_initializing else 0.0
        assert (boot + beat_from - process_start - 0.05) * per_s <= state.spent_usd
        assert state.spent_usd <= (boot + beat_to - process_start + 0.05) * per_s
        # the jobs: at most their wall seconds; at least those of the two that ran on a running engine
        # (the others waited for a start, overhead), less a tenth for what a job does before the engine
        assert 0.9 * (walls["warm"] + walls["failed"]) * per_s <= state.jobs_usd <= sum(walls.values()) * per_s
    finally:
        await app.aclose()


async def test_start_failure_is_clear_keeps_the_worker_and_asks_for_refresh(tmp_path: Any) -> None:
    missing = tmp_path / "no-such-model"
    app: App = create_app(settings_for("tiny", MODEL_NAME=str(missing), ENGINE_MAX_START_FAILURES="2",
                                       ENGINE_EXTRA_ARGS=""))  # fmt: skip
    try:
        out = await app.handler(job(SHORT))
        err = orjson.loads(out["error"])
        assert err["type"] == "engine_start_failed"
        assert "engine log" in err["message"]  # the child's last lines come with it
        assert "refresh_worker" not in out

        # the worker keeps serving: validation still answers, no engine needed
        bad = orjson.loads((await app.handler(job({"prompt": ""})))["error"])
        assert bad["type"] == "validation_error"

        again = await app.handler(job(SHORT))
        assert orjson.loads(again["error"])["type"] == "engine_start_failed"
        assert again["refresh_worker"] is True  # RunPod replaces the worker after repeated failures
        assert not app.engine.running
    finally:
        await app.aclose()
