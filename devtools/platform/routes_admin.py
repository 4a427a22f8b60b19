"""The platform's own routes (not RunPod's): the bill, workers, logs, jobs and faults, for tests and humans.

GET  /_platform/bill                           every endpoint's bill
GET  /_platform/{ep}/ledger                    the endpoint's bill: totals (both readings) and one line per worker
GET  /_platform/{ep}/timeline?step=1           per-step counts of workers by state
GET  /_platform/{ep}/workers                   workers: id, pid, status, jobs held
GET  /_platform/{ep}/workers/{worker}/logs     a worker's stdout and stderr (text)
GET  /_platform/{ep}/jobs                      every job's state
POST /_platform/{ep}/fault                     {"noCapacity": true|false}
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from aiohttp import web

from devtools.platform.routes_client import error, not_found

if TYPE_CHECKING:
    from devtools.platform.endpoint import Endpoint
    from devtools.platform.server import Platform


class AdminRoutes:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def routes(self) -> list[web.RouteDef]:
        p = "/_platform/{ep}"
        return [
            web.get("/_platform/bill", self.all_bills),
            web.get(f"{p}/ledger", self.ledger),
            web.get(f"{p}/timeline", self.timeline),
            web.get(f"{p}/workers", self.workers),
            web.get(f"{p}/workers/{{worker}}/logs", self.logs),
            web.get(f"{p}/jobs", self.jobs),
            web.post(f"{p}/fault", self.fault),
        ]

    def _ep(self, request: web.Request) -> Endpoint:
        ep = self.platform.endpoints.get(request.match_info["ep"])
        if ep is None:
            raise not_found("endpoint not found")
        return ep

    async def all_bills(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.platform.bill())

    async def ledger(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._ep(request).bill())

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        try:
            step = float(request.query.get("step", "1"))
        except ValueError:
            return error(400, "step must be a number of seconds")
        if step <= 0:
            return error(400, "step must be > 0")
        return web.json_response(self._ep(request).books.timeline(time.monotonic(), step))

    async def workers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._ep(request).workers())

    async def logs(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self._ep(request).worker_logs(request.match_info["worker"]))

    async def jobs(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([job.state() for job in self._ep(request).board.jobs.values()])

    async def fault(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return error(400, "body is not JSON")
        if not isinstance(body, dict) or set(body) - {"noCapacity"} or not isinstance(body.get("noCapacity"), bool):
            return error(400, 'body must be {"noCapacity": true|false}')
        ep = self._ep(request)
        ep.set_no_capacity(body["noCapacity"])
        return web.json_response({"noCapacity": ep.no_capacity})
