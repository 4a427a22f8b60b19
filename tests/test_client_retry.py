"""POST /run is sent again only when no job can exist; the spot job carries a ttl; failures keep their labels.

Against real sockets: `Scripted`, a small aiohttp server that answers each
POST /run as its script says (a 500, a dropped connection after reading the
body, a body that is not JSON, a 429, no answer at all after reading the body)
and counts what arrives; a port nothing
listens on for refused connections; and the local RunPod platform
(devtools.platform), which checks a job's policy against RunPod's bounds.
Every test runs the sync client (in a thread) and the async client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from client.breaker import CircuitBreaker
from client.endpoint_api import AsyncEndpointAPI, EndpointAPI
from client.errors import AllTiersFailed, AttemptFailed, FailureReason, JobRejected
from client.fallback import (
    TTL_MAX_MS,
    TTL_MIN_MS,
    EndpointSpec,
    FallbackClient,
    FallbackResult,
    Policy,
    TierPair,
    job_ttl_ms,
    should_retry,
)
from client.fallback_async import AsyncFallbackClient
from devtools.platform import Platform
from tests.platform_support import API_KEY, echo_config

MODES = ["sync", "async"]
FAST = Policy(backoff_initial_s=0.01, backoff_max_s=0.05, poll_initial_s=0.02, poll_max_s=0.1)
PAIR = TierPair(spot=EndpointSpec("spot", timeout_s=5.0), on_demand=EndpointSpec("ondemand", timeout_s=5.0))
VALIDATION_ERROR = {"type": "validation_error", "message": "prompt is empty", "field": "prompt"}


@dataclass
class Script:
    """How one endpoint behaves. `run`: the answers to the first POSTs to /run, in order ("ok" after)."""

    run: list[str] = field(default_factory=list)  # "ok", "429", "500", "drop", "not_json", "no_id", "hang"
    poll: str = "COMPLETED"  # the job's status until a cancel arrives
    at_cancel: str = "CANCELLED"  # its status once a cancel arrives (a job that finished first: FAILED, COMPLETED)
    error: Any = None  # the job's `error` when FAILED
    readable_after_cancel: bool = True  # False: /status answers 500 once the job was cancelled


@dataclass
class Job:
    id: str
    input: Any
    script: Script
    cancel_asked: bool = False


class Scripted:
    """A stand-in for the endpoint API whose /run answers follow a script; it records every body that arrived."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.bodies: dict[str, list[Any]] = {}  # endpoint -> bodies of POST /run, read in full
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()  # set at stop: the "hang" answers end (their clients are gone)
        self.url = ""

    def posts(self, endpoint_id: str) -> int:
        return len(self.bodies.get(endpoint_id, []))

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.add_routes(
            [
                web.post("/v2/{ep}/run", self._run),
                web.get("/v2/{ep}/status/{job}", self._status),
                web.post("/v2/{ep}/cancel/{job}", self._cancel),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        host, bound = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _run(self, request: web.Request) -> web.StreamResponse:
        ep = request.match_info["ep"]
        body = await request.json()  # the whole request arrived: from here a real endpoint would have queued it
        self.bodies.setdefault(ep, []).append(body)
        script = self.scripts.setdefault(ep, Script())
        answer = script.run.pop(0) if script.run else "ok"
        if answer == "429":
            return web.json_response({"error": "too many requests"}, status=429)
        if answer == "500":
            return web.json_response({"error": "internal server error"}, status=500)
        if answer == "drop":
            assert request.transport is not None
            request.transport.abort()  # close the socket with no answer at all
            return web.Response(status=500)  # never reaches the client
        if answer == "hang":  # the body arrived (the job is queued); the answer never comes
            await self._release.wait()
            return web.Response(status=500)  # at stop, to a client that gave up long ago
        if answer == "not_json":
            return web.Response(text="<html>queued</html>", content_type="text/html")
        if answer == "no_id":
            return web.json_response({"status": "IN_QUEUE"})
        job = Job(f"{ep}-{next(self._ids)}", body["input"], script)
        self.jobs[job.id] = job
        return web.json_response({"id": job.id, "status": "IN_QUEUE"})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs[request.match_info["job"]]
        if job.cancel_asked and not job.script.readable_after_cancel:
            return web.json_response({"error": "internal server error"}, status=500)
        status = job.script.at_cancel if job.cancel_asked else job.script.poll
        state: dict[str, Any] = {"id": job.id, "status": status}
        if status == "COMPLETED":
            state["output"] = {"echo": job.input}
        if status == "FAILED":
            state["error"] = job.script.error
        return web.json_response(state)

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs[request.match_info["job"]]
        job.cancel_asked = True
        return web.json_response({"id": job.id, "status": job.script.at_cancel})


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = Scripted()
    await server.start()
    yield server
    await server.stop()


def free_port() -> int:
    """A port nothing listens on (bound, then closed): a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def run(
    mode: str,
    url: str,
    job: Any,
    *,
    pair: TierPair = PAIR,
    policy: Policy = FAST,
    sync_sleep: Callable[[float], None] = time.sleep,
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    request_timeout: float = 10.0,
) -> FallbackResult:
    """One call through the sync client (in a thread) or the async client, health checks off."""
    breaker = CircuitBreaker(health_interval_s=None)
    if mode == "sync":
        api = EndpointAPI(f"{url}/v2", API_KEY, request_timeout=request_timeout)
        client = FallbackClient(pair, api=api, policy=policy, breaker=breaker, sleep=sync_sleep)
        try:
            return await asyncio.to_thread(client.run_sync, job)
        finally:
            client.close()
    aapi = AsyncEndpointAPI(f"{url}/v2", API_KEY, request_timeout=request_timeout)
    aclient = AsyncFallbackClient(pair, api=aapi, policy=policy, breaker=breaker, sleep=async_sleep)
    try:
        return await aclient.run_sync(job)
    finally:
        await aclient.aclose()


# ------------------------------------------------------------ POST /run: sent once unless surely not queued
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", ["500", "drop", "not_json", "no_id"])
async def test_a_submit_lost_after_the_body_arrived_is_never_resent(scripted: Scripted, mode: str, answer: str) -> None:
    scripted.scripts["spot"] = Script(run=[answer])
    result = await run(mode, scripted.url, {"prompt": "hi"})
    assert scripted.posts("spot") == 1  # a second POST could have queued (and billed) a second spot job
    assert (result.tier, result.output) == ("on_demand", {"echo": {"prompt": "hi"}})
    assert [(a.tier, a.outcome) for a in result.attempts] == [("spot", "submit_unknown"), ("on_demand", "served")]
    assert result.attempts[0].job_id is None


@pytest.mark.parametrize("mode", MODES)
async def test_a_submit_whose_answer_timed_out_is_never_resent(scripted: Scripted, mode: str) -> None:
    """The server reads the whole POST /run and never answers: httpx's ReadTimeout is not "never arrived"."""
    scripted.scripts["spot"] = Script(run=["hang"])  # a resent POST would be answered "ok" and served on spot
    pair = TierPair(spot=EndpointSpec("spot", timeout_s=10.0, max_attempts=3), on_demand=EndpointSpec("ondemand", 10.0))
    started = time.monotonic()
    result = await run(mode, scripted.url, {"prompt": "hi"}, pair=pair, request_timeout=1.0)
    assert scripted.posts("spot") == 1  # a second POST could have queued (and billed) a second spot job
    assert (result.tier, result.output) == ("on_demand", {"echo": {"prompt": "hi"}})
    assert [(a.tier, a.outcome) for a in result.attempts] == [("spot", "submit_unknown"), ("on_demand", "served")]
    assert "ReadTimeout" in result.attempts[0].message and result.attempts[0].job_id is None
    assert 1.0 <= time.monotonic() - started < 9.0  # the client gave up at its request timeout, not the tier's


@pytest.mark.parametrize("mode", MODES)
async def test_a_timed_out_submit_on_the_last_tier_is_not_resent_either(scripted: Scripted, mode: str) -> None:
    scripted.scripts["spot"] = Script(run=["500"])
    scripted.scripts["ondemand"] = Script(run=["hang"] * 3)  # every try hangs: a resend shows in the count
    pair = TierPair(spot=EndpointSpec("spot", 10.0), on_demand=EndpointSpec("ondemand", 10.0, max_attempts=3))
    with pytest.raises(AllTiersFailed) as info:
        await run(mode, scripted.url, {"prompt": "hi"}, pair=pair, request_timeout=1.0)
    assert (scripted.posts("spot"), scripted.posts("ondemand")) == (1, 1)
    assert info.value.on_demand.reason == FailureReason.SUBMIT_UNKNOWN and "ReadTimeout" in info.value.on_demand.message


@pytest.mark.parametrize("mode", MODES)
async def test_a_lost_submit_is_raised_when_the_policy_forbids_falling_back(scripted: Scripted, mode: str) -> None:
    scripted.scripts["spot"] = Script(run=["500"])
    policy = Policy(backoff_initial_s=0.01, backoff_max_s=0.05, fallback_on_submit_unknown=False)
    with pytest.raises(AttemptFailed) as info:
        await run(mode, scripted.url, {"prompt": "hi"}, policy=policy)
    assert (info.value.reason, info.value.endpoint_id) == (FailureReason.SUBMIT_UNKNOWN, "spot")
    assert "HTTP 500" in info.value.message
    assert (scripted.posts("spot"), scripted.posts("ondemand")) == (1, 0)


@pytest.mark.parametrize("mode", MODES)
async def test_a_429_is_resent_on_the_same_endpoint(scripted: Scripted, mode: str) -> None:
    scripted.scripts["spot"] = Script(run=["429"])
    result = await run(mode, scripted.url, {"prompt": "hi"})
    assert scripted.posts("spot") == 2 and scripted.posts("ondemand") == 0
    assert result.tier == "spot" and [a.outcome for a in result.attempts] == ["served"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_refused_connection_is_resent(mode: str) -> None:
    """Nothing listens at first; the server comes up during the first backoff, and the resent POST is served."""
    port, server = free_port(), Scripted()
    loop = asyncio.get_running_loop()
    backoffs: list[float] = []

    def sync_sleep(seconds: float) -> None:
        backoffs.append(seconds)
        if len(backoffs) == 1:
            asyncio.run_coroutine_threadsafe(server.start(port), loop).result(timeout=10)
        time.sleep(min(seconds, 0.05))

    async def async_sleep(seconds: float) -> None:
        backoffs.append(seconds)
        if len(backoffs) == 1:
            await server.start(port)
        await asyncio.sleep(min(seconds, 0.05))

    try:
        result = await run(
            mode, f"http://127.0.0.1:{port}", {"prompt": "hi"}, sync_sleep=sync_sleep, async_sleep=async_sleep
        )
    finally:
        await server.stop()
    assert result.tier == "spot" and result.output == {"echo": {"prompt": "hi"}}
    assert server.posts("spot") == 1  # the refused try never arrived; the resent one did


@pytest.mark.parametrize("mode", MODES)
async def test_a_connection_refused_everywhere_is_labelled_connect(mode: str) -> None:
    backoffs: list[float] = []

    async def async_sleep(seconds: float) -> None:
        backoffs.append(seconds)

    pair = TierPair(spot=EndpointSpec("spot", 5.0, max_attempts=3), on_demand=EndpointSpec("ondemand", 5.0))
    with pytest.raises(AllTiersFailed) as info:
        await run(
            mode, f"http://127.0.0.1:{free_port()}", {}, pair=pair, sync_sleep=backoffs.append, async_sleep=async_sleep
        )
    assert info.value.spot is not None
    assert (info.value.spot.reason, info.value.on_demand.reason) == (FailureReason.CONNECT, FailureReason.CONNECT)
    assert len(backoffs) == 2 + 2  # three tries on each tier, a backoff between tries


def test_the_retry_decision() -> None:
    def failure(reason: FailureReason) -> AttemptFailed:
        return AttemptFailed("ep", reason, "x")

    resent_submit = {r for r in FailureReason if should_retry(failure(r), submit=True)}
    assert resent_submit == {FailureReason.CONNECT, FailureReason.THROTTLED}
    resent_poll = {r for r in FailureReason if should_retry(failure(r), submit=False)}
    assert resent_poll == {
        FailureReason.CONNECT,
        FailureReason.CONNECTION,
        FailureReason.THROTTLED,
        FailureReason.SERVER_ERROR,
    }
    assert not should_retry(ValueError("not ours"), submit=False)


# ------------------------------------------------------------ the spot job's ttl
def test_job_ttl_is_the_budget_plus_margin_within_runpods_bounds() -> None:
    assert job_ttl_ms(20.0, 30.0) == 50_000
    assert job_ttl_ms(12.0001, 0.0) == 12_001  # rounded up: never shorter than the budget
    assert job_ttl_ms(0.5, 0.0) == TTL_MIN_MS == 10_000
    assert job_ttl_ms(30 * 24 * 3600.0, 30.0) == TTL_MAX_MS == 7 * 24 * 3600 * 1000
    assert job_ttl_ms(float("inf"), 30.0) == TTL_MAX_MS
    with pytest.raises(ValueError, match=r"Policy\.ttl_margin_s must be a finite number of seconds >= 0, got -1"):
        Policy(ttl_margin_s=-1)


@pytest.mark.parametrize("mode", MODES)
async def test_the_spot_job_carries_its_ttl(scripted: Scripted, mode: str) -> None:
    scripted.scripts["spot"] = Script(run=["500"])  # so that on-demand is asked too
    pair = TierPair(spot=EndpointSpec("spot", timeout_s=20.0), on_demand=EndpointSpec("ondemand", timeout_s=60.0))
    policy = Policy(backoff_initial_s=0.01, poll_initial_s=0.02, ttl_margin_s=30.0)
    await run(mode, scripted.url, {"prompt": "hi"}, pair=pair, policy=policy)
    (spot,) = scripted.bodies["spot"]
    assert spot == {"input": {"prompt": "hi"}, "policy": {"ttl": 50_000}}  # 20 s budget + 30 s margin, in ms
    (on_demand,) = scripted.bodies["ondemand"]
    assert on_demand == {"input": {"prompt": "hi"}}  # the last resort keeps the endpoint's default


@pytest.mark.parametrize("mode", MODES)
async def test_the_platform_accepts_the_spot_ttl(mode: str) -> None:
    """The local RunPod platform (RunPod's policy bounds; no workers, so jobs stay queued) keeps the ttl sent."""
    async with Platform(api_key=API_KEY) as platform:
        for endpoint_id in ("spot", "ondemand"):
            platform.add_endpoint(endpoint_id, echo_config(workers_max=0))
        pair = TierPair(spot=EndpointSpec("spot", timeout_s=0.3), on_demand=EndpointSpec("ondemand", timeout_s=0.3))
        with pytest.raises(AllTiersFailed) as info:
            await run(mode, platform.url, {"n": 1}, pair=pair)
        assert info.value.spot is not None and info.value.spot.reason == FailureReason.NO_CAPACITY
        assert info.value.spot.cancelled
        (spot,) = platform.endpoint("spot").board.jobs.values()
        assert spot.policy.ttl == pytest.approx(30.3)  # 0.3 s budget + the default 30 s margin, accepted
        (on_demand,) = platform.endpoint("ondemand").board.jobs.values()
        assert on_demand.policy.ttl == platform.limits.ttl_default_ms / 1000


# ------------------------------------------------------------ a job that finished before its cancel
@pytest.mark.parametrize("mode", MODES)
async def test_a_rejection_found_at_the_cancel_is_raised_without_fallback(scripted: Scripted, mode: str) -> None:
    """The spot job is still running at its deadline and turns out rejected when the cancel comes."""
    scripted.scripts["spot"] = Script(poll="IN_PROGRESS", at_cancel="FAILED", error=json.dumps(VALIDATION_ERROR))
    pair = TierPair(spot=EndpointSpec("spot", timeout_s=0.3), on_demand=EndpointSpec("ondemand", timeout_s=5.0))
    with pytest.raises(JobRejected) as info:
        await run(mode, scripted.url, {"prompt": ""}, pair=pair)
    assert info.value.reason == FailureReason.REJECTED and info.value.worker_error == VALIDATION_ERROR
    assert scripted.posts("ondemand") == 0


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_found_at_the_cancel_is_taken(scripted: Scripted, mode: str) -> None:
    scripted.scripts["spot"] = Script(poll="IN_PROGRESS", at_cancel="COMPLETED")
    pair = TierPair(spot=EndpointSpec("spot", timeout_s=0.3), on_demand=EndpointSpec("ondemand", timeout_s=5.0))
    result = await run(mode, scripted.url, {"prompt": "late"}, pair=pair)
    assert (result.tier, result.output) == ("spot", {"echo": {"prompt": "late"}})
    assert scripted.posts("ondemand") == 0


@pytest.mark.parametrize("mode", MODES)
async def test_an_unreadable_result_is_not_reported_as_a_failed_cancel(scripted: Scripted, mode: str) -> None:
    scripted.scripts["spot"] = Script(poll="IN_PROGRESS", at_cancel="COMPLETED", readable_after_cancel=False)
    pair = TierPair(spot=EndpointSpec("spot", timeout_s=0.3), on_demand=EndpointSpec("ondemand", timeout_s=5.0))
    result = await run(mode, scripted.url, {"prompt": "x"}, pair=pair)
    assert result.tier == "on_demand"
    spot = result.attempts[0]
    assert spot.outcome == "server_error" and spot.job_id is not None and not spot.cancelled
    assert "reading its result failed: HTTP 500" in spot.message and "cancelling" not in spot.message
