"""A local RunPod API: the serverless endpoint routes and the management GraphQL call.

Routes (as `runpod.Endpoint`/`AsyncioEndpoint` and `runpod.create_endpoint` call them):

    POST /v2/{endpoint}/run            {"input": ...} -> {"id", "status"}
    POST /v2/{endpoint}/runsync        waits up to ?wait= ms (default 90 s) -> job state
    GET  /v2/{endpoint}/status/{job}   job state: id, status, output | error, delayTime, executionTime
    GET  /v2/{endpoint}/stream/{job}   {"status", "stream": [{"output": ...}]} (pieces not read before)
    POST /v2/{endpoint}/cancel/{job}   {"id", "status"}
    GET  /v2/{endpoint}/health         {"jobs": {...}, "workers": {...}}
    POST /v2/{endpoint}/purge-queue    cancels queued jobs
    POST /graphql                      saveEndpoint / saveTemplate / myself{endpoints}
    POST /_admin/{endpoint}/fault      set a fault mode (JSON of `Fault`'s fields)
    GET  /_admin/jobs                  every job's record (for tests in other processes)

Point the SDK at it with RUNPOD_ENDPOINT_BASE_URL=<url>/v2 (read when `runpod`
is imported; `runpod.endpoint_url_base` after) and RUNPOD_API_BASE_URL=<url>
(read at each GraphQL call). `python -m devtools.fake_runpod` serves an echo
handler, or the real worker with `--worker`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, fields
from typing import Any

from aiohttp import web

from devtools.fake_graphql import Registry
from devtools.fake_jobs import FINAL, REQUEST_FAULTS, Backend, FakeEndpoint, Fault, JobRecord, JobStore

RUNSYNC_WAIT_MS = 90_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeRunPod:
    """The server. `default_backend` serves every endpoint not registered with `add_endpoint`."""

    def __init__(self, default_backend: Backend | None = None, *, api_key: str | None = None) -> None:
        self.default_backend = default_backend
        self.api_key = api_key
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.jobs = JobStore()
        self.registry = Registry()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------ control
    def add_endpoint(self, endpoint_id: str, backend: Backend | None = None, *, workers_max: int = 3) -> FakeEndpoint:
        chosen = backend or self.default_backend
        if chosen is None:
            raise ValueError(f"endpoint {endpoint_id!r}: no backend given and the server has no default one")
        self.endpoints[endpoint_id] = FakeEndpoint(endpoint_id, chosen, workers_max=workers_max)
        return self.endpoints[endpoint_id]

    def endpoint(self, endpoint_id: str) -> FakeEndpoint:
        if endpoint_id not in self.endpoints:
            managed = self.registry.endpoints.get(endpoint_id)
            ep = self.add_endpoint(endpoint_id)
            if managed is not None:
                ep.workers_max = int(managed.get("workersMax", ep.workers_max))
        return self.endpoints[endpoint_id]

    def set_fault(self, endpoint_id: str, fault: Fault) -> None:
        self.endpoint(endpoint_id).fault = fault

    def jobs_of(self, endpoint_id: str) -> list[JobRecord]:
        return self.jobs.of(endpoint_id)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._auth])
        app.add_routes(
            [
                web.post("/v2/{ep}/run", self._run),
                web.post("/v2/{ep}/runsync", self._runsync),
                web.get("/v2/{ep}/status/{job}", self._status),
                web.get("/v2/{ep}/stream/{job}", self._stream),
                web.post("/v2/{ep}/cancel/{job}", self._cancel),
                web.get("/v2/{ep}/health", self._health),
                web.post("/v2/{ep}/purge-queue", self._purge),
                web.post("/graphql", self._graphql),
                web.post("/_admin/{ep}/fault", self._admin_fault),
                web.get("/_admin/jobs", self._admin_jobs),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        for job in list(self.jobs.jobs.values()):
            if job.task is not None and not job.task.done():
                job.task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ helpers
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_admin"):
            return await handler(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or (self.api_key is not None and token != self.api_key):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    def _request_fault(self, ep: FakeEndpoint, request: web.Request) -> web.StreamResponse | None:
        mode = ep.fault.take(REQUEST_FAULTS)
        if mode == "throttled":
            return web.json_response({"error": "too many requests"}, status=429, headers={"Retry-After": "0"})
        if mode == "server_error":
            return web.json_response({"error": "internal server error"}, status=ep.fault.status)
        if mode == "drop":
            if request.transport is not None:  # close the socket with no answer at all
                request.transport.abort()
            return web.Response(status=500)  # never reaches the caller
        return None

    async def _new_job(self, request: web.Request) -> JobRecord | web.StreamResponse:
        ep = self.endpoint(request.match_info["ep"])
        refused = self._request_fault(ep, request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or "input" not in body:
            return web.json_response({"error": "body needs an `input` field"}, status=400)
        return self.jobs.create(ep, body["input"])

    def _job(self, request: web.Request) -> JobRecord | None:
        job = self.jobs.jobs.get(request.match_info["job"])
        return job if job is not None and job.endpoint_id == request.match_info["ep"] else None

    # ------------------------------------------------------------ routes
    async def _run(self, request: web.Request) -> web.StreamResponse:
        job = await self._new_job(request)
        if not isinstance(job, JobRecord):
            return job
        return web.json_response({"id": job.id, "status": job.status})

    async def _runsync(self, request: web.Request) -> web.StreamResponse:
        job = await self._new_job(request)
        if not isinstance(job, JobRecord):
            return job
        wait_ms = int(request.query.get("wait", RUNSYNC_WAIT_MS))
        await self.jobs.wait(job, wait_ms / 1000)
        return web.json_response(job.state())

    async def _status(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        return web.json_response(job.state())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        if job.status not in FINAL:
            await asyncio.sleep(0.05)
        pieces, job.stream_read = job.stream[job.stream_read :], len(job.stream)
        return web.json_response({"id": job.id, "status": job.status, "stream": pieces})

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        self.jobs.cancel(job)
        return web.json_response({"id": job.id, "status": job.status})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        ep = self.endpoint(request.match_info["ep"])
        refused = self._request_fault(ep, request)
        if refused is not None:
            return refused
        jobs = self.jobs.of(ep.id)
        count = {s: sum(1 for j in jobs if j.status == s) for s in ("COMPLETED", "FAILED", "IN_PROGRESS", "IN_QUEUE")}
        no_capacity = ep.fault.mode == "no_capacity" and ep.fault.times != 0
        running = min(ep.workers_max, count["IN_PROGRESS"])
        workers = {
            "idle": 0 if no_capacity else max(0, min(1, ep.workers_max) - running),
            "initializing": 0,
            "ready": 0 if no_capacity else min(1, ep.workers_max),
            "running": running,
            "throttled": ep.workers_max if no_capacity else 0,
            "unhealthy": 0,
        }
        return web.json_response(
            {
                "jobs": {
                    "completed": count["COMPLETED"],
                    "failed": count["FAILED"],
                    "inProgress": count["IN_PROGRESS"],
                    "inQueue": count["IN_QUEUE"],
                    "retried": 0,
                },
                "workers": workers,
            }
        )

    async def _purge(self, request: web.Request) -> web.StreamResponse:
        queued = [j for j in self.jobs.of(request.match_info["ep"]) if j.status == "IN_QUEUE"]
        for job in queued:
            self.jobs.cancel(job)
        return web.json_response({"removed": len(queued), "status": "completed"})

    async def _graphql(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        result = self.registry.execute(str(body.get("query", "")))
        for record in (result.get("data") or {}).values():
            if isinstance(record, dict) and record.get("id") in self.endpoints:  # an update reaches live endpoints
                self.endpoints[record["id"]].workers_max = int(record.get("workersMax", 3))
        return web.json_response(result)

    async def _admin_fault(self, request: web.Request) -> web.StreamResponse:
        known = {f.name for f in fields(Fault)}
        body = await request.json()
        unknown = set(body) - known
        if unknown:
            return web.json_response(
                {"error": f"unknown fault fields {sorted(unknown)}; known: {sorted(known)}"}, status=400
            )
        self.set_fault(request.match_info["ep"], Fault(**body))
        return web.json_response(asdict(self.endpoint(request.match_info["ep"]).fault))

    async def _admin_jobs(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            [
                {
                    "id": j.id,
                    "endpoint_id": j.endpoint_id,
                    "status": j.status,
                    "completed": j.completed,
                    "handler_completed": j.handler_completed,
                    "cancelled": j.cancelled,
                    "billed_seconds": j.billed_seconds,
                }
                for j in self.jobs.jobs.values()
            ]
        )


async def echo_handler(job: dict[str, Any]) -> dict[str, Any]:
    """The demo handler: answers with its input (an `error` key in the input comes back as the job's error)."""
    data = job.get("input")
    if isinstance(data, dict) and "error" in data:
        return {"error": data["error"]}
    return {"echo": data}


async def _serve(args: argparse.Namespace) -> None:
    app: Any = None
    if args.worker:
        import os

        from handler.app import create_app
        from handler.settings import load_settings

        app = create_app(load_settings(os.environ))
        backend = Backend(app.generator_handler, return_aggregate_stream=True, concurrency=app.concurrency_modifier(0))
    else:
        backend = Backend(echo_handler)
    server = FakeRunPod(backend, api_key=args.api_key)
    url = await server.start(args.host, args.port)
    print(f"local RunPod API on {url}: RUNPOD_ENDPOINT_BASE_URL={url}/v2 RUNPOD_API_BASE_URL={url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
        if app is not None:
            await app.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fake_runpod", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require this API key (default: any non-empty key)")
    parser.add_argument("--worker", action="store_true", help="serve the real worker (settings from the env)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
