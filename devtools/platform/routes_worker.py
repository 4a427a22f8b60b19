"""The worker side: the webhooks the runpod SDK's deployed worker loop calls (runpod 1.12.0).

    GET  /v2/{ep}/job-take/{worker}?gpu=..&job_in_progress=0|1          one job {"id", "input"} or 204
    GET  /v2/{ep}/job-take-batch/{worker}?gpu=..&batch_size=N&job_in_progress=..   [jobs] or 204
    POST /v2/{ep}/job-done/{worker}/{job}?gpu=..&isStream=true|false   the result (JSON text as a form body)
    POST /v2/{ep}/job-stream/{worker}/{job}?gpu=..&isStream=false      one piece {"output": ...}
    GET  /v2/{ep}/job-stop/{worker}?gpu=..                              {"jobsToStop": [...]} or 204
    GET  /v2/{ep}/ping/{worker}?gpu=..&job_id=a,b&runpod_version=..     heartbeat (status=unhealthy: a
                                                                        failed fitness check)

What the SDK does with these (rp_job.py, rp_scale.py, rp_http.py, rp_ping.py):
`JobScaler.get_jobs` asks for `concurrency - occupancy` jobs (job-take when 1,
job-take-batch with `&batch_size=` when more; `&job_in_progress=` either way)
inside `asyncio.wait_for(..., 90)`; 204 and 400 mean "no job"; 429 makes it
sleep 5 s; any other error is logged and retried at once, so this side never
answers errors to a take (it holds, then answers 204). When its slots are full
it sleeps 1 s between checks, and a taken job waits up to 0.1 s in its local
queue before it starts. Its occupancy counts a job twice while it waits in that
local queue (JobsProgress + queue size), so a burst of N jobs on a worker of
concurrency N leaves the last ones about 1 s behind (measured in
bench/platform_bench.py: longest queue delay). Results go to job-done with the body `json.dumps(result)`
sent as `application/x-www-form-urlencoded`, retried 3 times on HTTP errors; a
generator handler's pieces go to job-stream first and the job-done then has
`isStream=true`. `stopPod: true` in a result is how a worker asks to be
replaced; the job-stop long-poll (derived from the job-take URL) cancels a
single job's task, but only once the task exists: a stop that arrives while
the job still waits in the SDK's local queue (up to 0.1 s) is dropped, so the
platform repeats the stop when the worker's heartbeat (every
RUNPOD_PING_INTERVAL ms, default 10 s; it lists the job ids in progress) still
names a job that is no longer the worker's, and counts the worker busy until a
heartbeat or a job-take with `job_in_progress=0` shows the job gone. The SDK
sends `Authorization: <RUNPOD_AI_API_KEY>` (no "Bearer").
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from devtools.platform.config import Limits
from devtools.platform.endpoint import Endpoint
from devtools.platform.routes_client import error

MAX_BATCH = 1024


class WorkerRoutes:
    def __init__(self, endpoints: dict[str, Endpoint], limits: Limits) -> None:
        self.endpoints = endpoints
        self.limits = limits

    def routes(self) -> list[web.RouteDef]:
        p = "/v2/{ep}"
        return [
            web.get(f"{p}/job-take/{{worker}}", self.take),
            web.get(f"{p}/job-take-batch/{{worker}}", self.take_batch),
            web.post(f"{p}/job-done/{{worker}}/{{job}}", self.done),
            web.post(f"{p}/job-stream/{{worker}}/{{job}}", self.stream),
            web.get(f"{p}/job-stop/{{worker}}", self.stop),
            web.get(f"{p}/ping/{{worker}}", self.ping),
        ]

    def _ep(self, request: web.Request) -> Endpoint | None:
        return self.endpoints.get(request.match_info["ep"])

    async def take(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        if ep is None:
            return web.Response(status=204)
        jobs = await ep.take(request.match_info["worker"], 1, request.query.get("job_in_progress") == "1")
        if not jobs:
            return web.Response(status=204)
        return web.json_response(jobs[0].payload())

    async def take_batch(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        if ep is None:
            return web.Response(status=204)
        try:
            want = min(MAX_BATCH, max(1, int(request.query.get("batch_size", "1"))))
        except ValueError:
            want = 1
        jobs = await ep.take(request.match_info["worker"], want, request.query.get("job_in_progress") == "1")
        if not jobs:
            return web.Response(status=204)
        return web.json_response([job.payload() for job in jobs])

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = json.loads(await request.text())
        except json.JSONDecodeError:
            return error(400, "result is not JSON")
        if not isinstance(body, dict):
            return error(400, "result must be a JSON object")
        return body

    async def done(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if ep is not None:
            ep.complete(request.match_info["worker"], request.match_info["job"], body)
        return web.json_response({})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if ep is not None:
            ep.board.add_stream(request.match_info["worker"], request.match_info["job"], body)
        return web.json_response({})

    async def stop(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        if ep is None:
            return web.Response(status=204)
        worker = ep.pool.workers.get(request.match_info["worker"])
        hold = self.limits.stopping_take_hold if worker is None or worker.stopping else self.limits.stop_poll_hold
        ids = await ep.board.wait_stop_signals(request.match_info["worker"], hold)
        if not ids:
            return web.Response(status=204)
        return web.json_response({"jobsToStop": ids})

    async def ping(self, request: web.Request) -> web.StreamResponse:
        ep = self._ep(request)
        if ep is not None:
            job_ids = [j for j in request.query.get("job_id", "").split(",") if j]
            ep.ping(request.match_info["worker"], request.query.get("status"), job_ids)
        return web.json_response({})
