"""`Platform`: the aiohttp server, its endpoints, and their start and stop.

    async with Platform() as platform:                 # 127.0.0.1, a free port
        ep = platform.add_endpoint("ep1", EndpointConfig(worker_command=[...]))
        ...                                            # runpod SDK: RUNPOD_ENDPOINT_BASE_URL=f"{platform.url}/v2"
    # leaving stops every worker (SIGTERM, grace, SIGKILL) and waits for each process to exit

Authentication: caller routes (/v2/{ep}/run ..., /v2/{ep}/openai/v1/...) and management (/v2/serverless,
/graphql) need an `Authorization` header (`Bearer <key>`); with `api_key`
given, that key. Worker webhooks need the key the platform put in the workers'
`RUNPOD_AI_API_KEY`. The platform's own routes (/_platform) are open.

Workers also get `RUNPOD_API_BASE_URL=<url>` and `RUNPOD_ENDPOINT_BASE_URL=<url>/v2`
(unless the endpoint's env sets them), so a worker that manages its endpoint
(scale to zero) or calls endpoints reaches this platform, as it would reach
RunPod's API when deployed.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from devtools.platform.config import EndpointConfig, Limits
from devtools.platform.endpoint import Endpoint
from devtools.platform.management import ManagementRoutes
from devtools.platform.process import worker_env
from devtools.platform.routes_admin import AdminRoutes
from devtools.platform.routes_client import ClientRoutes, error
from devtools.platform.routes_openai import OpenAIRoutes, openai_error
from devtools.platform.routes_worker import WorkerRoutes

WORKER_ROUTES = frozenset({"job-take", "job-take-batch", "job-done", "job-stream", "job-stop", "ping"})
Handler = Any


class Platform:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        limits: Limits | None = None,
        default_config: EndpointConfig | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.api_key = api_key
        self.limits = limits or Limits()
        self.default_config = default_config
        self.worker_key = f"rp-worker-{secrets.token_hex(8)}"
        self.endpoints: dict[str, Endpoint] = {}
        self.url = ""
        self.started_at: float | None = None
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="rp-platform-"))
        self._runner: web.AppRunner | None = None
        self.management = ManagementRoutes(self.endpoints, self.add_endpoint, lambda: self.default_config)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        max_body = self.limits.runsync_payload_bytes + 1024 * 1024
        app = web.Application(middlewares=[self._auth], client_max_size=max_body)
        app.add_routes(self.management.routes())  # before /v2/{ep}/...: `serverless` is not an endpoint id
        app.add_routes(WorkerRoutes(self.endpoints, self.limits).routes())
        app.add_routes(ClientRoutes(self.endpoints.get, self.limits).routes())
        app.add_routes(OpenAIRoutes(self.endpoints.get, self.limits).routes())
        app.add_routes(AdminRoutes(self).routes())
        # shutdown_timeout: requests still open when the platform stops (a /runsync waiting) are cut after 1 s
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self.started_at = time.monotonic()
        return self.url

    async def stop(self) -> None:
        """Stop every worker (and wait for each to exit), then the server."""
        endpoints = list(self.endpoints.values())
        await asyncio.gather(*(ep.close() for ep in endpoints))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    async def __aenter__(self) -> Platform:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------ endpoints
    def add_endpoint(self, endpoint_id: str, config: EndpointConfig) -> Endpoint:
        """A live endpoint (needs a running event loop; workers start once the server is up)."""
        if endpoint_id in self.endpoints:
            raise ValueError(f"endpoint {endpoint_id!r} exists")
        if not endpoint_id or "/" in endpoint_id or endpoint_id == "serverless":
            raise ValueError(f"bad endpoint id {endpoint_id!r}")

        def env_for(worker_id: str, cfg: EndpointConfig) -> dict[str, str]:
            urls = {"RUNPOD_API_BASE_URL": self.url, "RUNPOD_ENDPOINT_BASE_URL": f"{self.url}/v2"}
            return worker_env(
                base_url=self.url,
                endpoint_id=endpoint_id,
                worker_id=worker_id,
                api_key=self.worker_key,
                gpu=cfg.gpu_type,
                endpoint_env={**urls, **cfg.env},
            )

        ep = Endpoint(endpoint_id, config, self.limits, self.log_dir, env_for)
        self.endpoints[endpoint_id] = ep
        return ep

    def endpoint(self, endpoint_id: str) -> Endpoint:
        return self.endpoints[endpoint_id]

    async def remove_endpoint(self, endpoint_id: str) -> None:
        ep = self.endpoints.pop(endpoint_id)
        await ep.close()

    def bill(self) -> dict[str, Any]:
        """Every endpoint's bill (see `Endpoint.bill`)."""
        return {"endpoints": [ep.bill() for ep in self.endpoints.values()]}

    # ------------------------------------------------------------ auth
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        parts = request.path.split("/")
        if request.path.startswith("/_platform"):
            response: web.StreamResponse = await handler(request)
            return response
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if len(parts) > 3 and parts[1] == "v2" and parts[3] in WORKER_ROUTES:
            if token != self.worker_key:
                await asyncio.sleep(self.limits.stopping_take_hold)  # a misconfigured SDK loop retries at once
                return error(401, "worker key refused")
        elif not token or (self.api_key is not None and token != self.api_key):
            if len(parts) > 3 and parts[1] == "v2" and parts[3] == "openai":
                return openai_error(401, "Unauthorized", "authentication_error")
            return error(401, "Unauthorized")
        response = await handler(request)
        return response
