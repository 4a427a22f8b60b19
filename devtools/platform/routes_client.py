"""The endpoint API callers use (`runpod.Endpoint`, `AsyncioEndpoint`, raw HTTP), under /v2/{endpoint}.

    POST /run                      {"input", "policy"?, "webhook"?} -> {"id", "status": "IN_QUEUE"}
    POST /runsync?wait=ms          waits (default 90 s, clamped to 1-300 s) -> the job's state
    GET|POST /status/{job}?ttl=ms  the job's state; 404 once deleted (ttl, retention); ?ttl shortens its life
    GET|POST /status-sync/{job}    waits like /runsync, then the job's state
    GET|POST /stream/{job}         {"status", "stream": [{"output": piece}, ...]}: pieces not read before
    POST /cancel/{job}             {"id", "status"}
    POST /retry/{job}              re-queues a FAILED or TIMED_OUT job -> {"id", "status": "IN_QUEUE"}
    POST /purge-queue              {"removed": n, "status": "completed"}
    GET  /health                   {"jobs": {...}, "workers": {...}}

429 past RunPod's documented rates (per endpoint, sliding 10 s windows),
past 400 open /runsync requests, and when the queue holds more than 50 jobs
and more than 500 per max worker. 413 for bodies over 10 MB (/run) or 20 MB
(/runsync). A job's state carries `delayTime`, `executionTime` (ms) and
`workerId`. `/stream` holds the request up to 1 s while no new piece is there.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from devtools.platform.config import ConfigError, Limits
from devtools.platform.endpoint import Endpoint
from devtools.platform.jobs import Job

STREAM_HOLD = 1.0
WINDOW = 10.0


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def not_found(message: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": message}), content_type="application/json")


class Window:
    """At most `limit` events in any `period` seconds."""

    def __init__(self, limit: int, period: float = WINDOW) -> None:
        self.limit, self.period = limit, period
        self.times: deque[float] = deque()

    def allow(self, now: float) -> float:
        """0.0 if allowed (and counted), else seconds until a slot frees."""
        while self.times and now - self.times[0] >= self.period:
            self.times.popleft()
        if len(self.times) >= self.limit:
            return self.period - (now - self.times[0])
        self.times.append(now)
        return 0.0


class ClientRoutes:
    def __init__(self, endpoints: Callable[[str], Endpoint | None], limits: Limits) -> None:
        self.endpoints = endpoints
        self.limits = limits
        self._windows: dict[tuple[str, str], Window] = {}
        self._runsync_open: dict[str, int] = {}
        self._rates = {
            "run": limits.run_per_10s,
            "runsync": limits.runsync_per_10s,
            "status": limits.status_per_10s,
            "cancel": limits.cancel_per_10s,
            "purge": limits.purge_per_10s,
        }

    def routes(self) -> list[web.RouteDef]:
        p = "/v2/{ep}"
        return [
            web.post(f"{p}/run", self.run),
            web.post(f"{p}/runsync", self.runsync),
            web.route("*", f"{p}/status/{{job}}", self.status),
            web.route("*", f"{p}/status-sync/{{job}}", self.status_sync),
            web.route("*", f"{p}/stream/{{job}}", self.stream),
            web.post(f"{p}/cancel/{{job}}", self.cancel),
            web.post(f"{p}/retry/{{job}}", self.retry),
            web.post(f"{p}/purge-queue", self.purge),
            web.get(f"{p}/health", self.health),
        ]

    # ------------------------------------------------------------ helpers
    def _limited(self, ep: Endpoint, group: str) -> web.Response | None:
        window = self._windows.setdefault((ep.id, group), Window(self._rates[group]))
        wait = window.allow(time.monotonic())
        if wait:
            return error(429, f"rate limit of /{group} exceeded", **{"Retry-After": str(max(1, round(wait)))})
        return None

    def _ep(self, request: web.Request) -> Endpoint:
        ep = self.endpoints(request.match_info["ep"])
        if ep is None:
            raise not_found("endpoint not found")
        return ep

    def _job(self, ep: Endpoint, request: web.Request) -> Job:
        job = ep.board.jobs.get(request.match_info["job"])
        if job is None:
            raise not_found("request does not exist")
        return job

    def _wait_s(self, request: web.Request) -> float:
        lim = self.limits
        try:
            wait_ms = int(request.query.get("wait", lim.runsync_wait_default_ms))
        except ValueError:
            wait_ms = lim.runsync_wait_default_ms
        return min(max(wait_ms, lim.runsync_wait_min_ms), lim.runsync_wait_max_ms) / 1000

    async def _submit(self, request: web.Request, ep: Endpoint, *, sync: bool) -> Job | web.Response:
        max_bytes = self.limits.runsync_payload_bytes if sync else self.limits.run_payload_bytes
        if (request.content_length or 0) > max_bytes:
            return error(413, f"payload over {max_bytes} bytes")
        raw = await request.read()
        if len(raw) > max_bytes:
            return error(413, f"payload over {max_bytes} bytes")
        try:
            body: Any = json.loads(raw or b"null")
        except json.JSONDecodeError:
            return error(400, "body is not JSON")
        if not isinstance(body, dict) or "input" not in body:
            return error(400, "body needs an `input` field")
        queued, cap = len(ep.board.queue), ep.config.workers_max * self.limits.queue_per_max_worker
        if queued >= self.limits.queue_floor and queued >= cap:
            return error(429, f"queue full ({queued} jobs)")
        try:
            return ep.submit(body["input"], body.get("policy"), sync=sync)
        except ConfigError as exc:
            return error(400, str(exc))

    # ------------------------------------------------------------ routes
    async def run(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        refused = self._limited(ep, "run")
        if refused is not None:
            return refused
        job = await self._submit(request, ep, sync=False)
        if not isinstance(job, Job):
            return job
        return web.json_response({"id": job.id, "status": job.status})

    async def runsync(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        refused = self._limited(ep, "runsync")
        if refused is not None:
            return refused
        if self._runsync_open.get(ep.id, 0) >= self.limits.runsync_concurrent:
            return error(429, "too many open /runsync requests")
        self._runsync_open[ep.id] = self._runsync_open.get(ep.id, 0) + 1
        try:
            job = await self._submit(request, ep, sync=True)
            if not isinstance(job, Job):
                return job
            await ep.board.wait_final(job, self._wait_s(request))
            return web.json_response(job.state())
        finally:
            self._runsync_open[ep.id] -= 1

    async def status(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        refused = self._limited(ep, "status")
        if refused is not None:
            return refused
        job = self._job(ep, request)
        if "ttl" in request.query:
            try:
                job.expires_at = time.monotonic() + int(request.query["ttl"]) / 1000
            except ValueError:
                return error(400, "ttl must be an integer number of milliseconds")
        return web.json_response(job.state())

    async def status_sync(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        refused = self._limited(ep, "status")
        if refused is not None:
            return refused
        job = self._job(ep, request)
        await ep.board.wait_final(job, self._wait_s(request))
        return web.json_response(job.state())

    async def stream(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        refused = self._limited(ep, "status")
        if refused is not None:
            return refused
        job = self._job(ep, request)
        deadline = time.monotonic() + STREAM_HOLD
        while not job.final and len(job.stream) == job.stream_read and (left := deadline - time.monotonic()) > 0:
            await ep.board.wait_change(left)
        pieces, job.stream_read = job.stream[job.stream_read :], len(job.stream)
        body: dict[str, Any] = {"status": job.status, "stream": [{"output": p} for p in pieces]}
        if job.error is not None:
            body["error"] = job.error
        return web.json_response(body)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        refused = self._limited(ep, "cancel")
        if refused is not None:
            return refused
        job = self._job(ep, request)
        ep.board.cancel(job, time.monotonic())
        return web.json_response({"id": job.id, "status": job.status})

    async def retry(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        job = self._job(ep, request)
        if not ep.retry(job):
            return error(400, f"only FAILED or TIMED_OUT jobs can be retried; this one is {job.status}")
        return web.json_response({"id": job.id, "status": job.status})

    async def purge(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        refused = self._limited(ep, "purge")
        if refused is not None:
            return refused
        return web.json_response({"removed": ep.board.purge(time.monotonic()), "status": "completed"})

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._ep(request).health())
