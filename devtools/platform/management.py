"""Endpoint management: RunPod's REST API v2 (`/v2/serverless`) and GraphQL `saveEndpoint`.

REST v2 (docs.runpod.io/api-reference-v2, served by api.runpod.io; RunPod
retired REST v1 `rest.runpod.io/v1/endpoints` in 2026-11):

    POST   /v2/serverless               create: `name`, `image`, `gpu` required -> 201 + the endpoint
    GET    /v2/serverless               list
    GET    /v2/serverless/{id}          one endpoint
    PATCH  /v2/serverless/{id}          change only the fields given -> the endpoint
    DELETE /v2/serverless/{id}          only with workers min = max = 0 (as GraphQL's deleteEndpoint)
    GET    /v2/serverless/{id}/workers  {"workers": [...], "summary": {running, idle, initializing, ...}}

Body fields: name, image, args, disk, ports, env, registry, gpu {pools, count},
workers {min, max}, scaling {type, value, idleTimeout}, dataCenterIds,
networkVolumes, timeout (execution timeout, ms), flashboot
(OFF | FLASHBOOT | PRIORITY_FLASHBOOT). Unknown fields, at the top or inside
an object, are refused with 400, as are wrong types. RunPod's examples show
`scaling` as {value, idleTimeout}; `type` is accepted too (the scaler type has
to live somewhere; its REST name is not documented). `timeout` defaults to the
platform's default endpoint (600 s; RunPod's v2 page says 300000 ms, its
endpoint settings page 600 s). Image, gpu, disk and the rest are stored and
echoed: every endpoint runs the platform's worker command. Changes take effect
on the running endpoint: workers min/max, scaling and timeout at the next
control tick, env for workers started afterwards (RunPod rolls workers over to
a new release; here running workers keep their environment).

GraphQL (`POST /graphql`): `saveEndpoint` (create, or update with `id`),
`saveTemplate` and `myself { endpoints }` through `devtools.fake_graphql.Registry`,
kept in step with the live endpoints in both directions; unknown input fields
are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devtools.fake_graphql import ENDPOINT_DEFAULTS, GraphQLInputError, Registry, parse_mutation
from devtools.platform.config import ConfigError, EndpointConfig
from devtools.platform.endpoint import Endpoint
from devtools.platform.routes_client import error, not_found

FLASHBOOT = ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT")
_str, _int = (str,), (int,)
TOP: dict[str, tuple[type, ...]] = {
    "name": _str, "image": _str, "args": _str, "disk": _int, "ports": (list,), "env": (dict,),
    "registry": (str, type(None)), "gpu": (dict,), "workers": (dict,), "scaling": (dict,),
    "dataCenterIds": (list,), "networkVolumes": (list,), "timeout": _int, "flashboot": _str,
}  # fmt: skip
NESTED: dict[str, dict[str, tuple[type, ...]]] = {
    "gpu": {"pools": (list,), "count": _int},
    "workers": {"min": _int, "max": _int},
    "scaling": {"type": _str, "value": (int, float), "idleTimeout": (int, float)},
}
REQUIRED = ("name", "image", "gpu")
GRAPHQL_INPUT = frozenset(
    {"id", "name", "templateId", "gpuIds", "gpuCount", "networkVolumeId", "locations", "idleTimeout", "scalerType",
     "scalerValue", "workersMin", "workersMax", "allowedCudaVersions", "flashBootType", "executionTimeoutMs"}
)  # fmt: skip


def check_body(body: Any, *, create: bool) -> dict[str, Any]:
    """The REST body, or ConfigError naming what RunPod would refuse."""
    if not isinstance(body, dict):
        raise ConfigError("body must be a JSON object")
    unknown = set(body) - set(TOP)
    if unknown:
        raise ConfigError(f"unknown fields {sorted(unknown)}")
    missing = [f for f in REQUIRED if create and f not in body]
    if missing:
        raise ConfigError(f"missing required fields {missing}")
    for name, value in body.items():
        if isinstance(value, bool) or not isinstance(value, TOP[name]):
            raise ConfigError(f"{name}: wrong type {type(value).__name__}")
        if not isinstance(value, dict) or name not in NESTED:
            continue
        for key, inner in value.items():
            if key not in NESTED[name]:
                raise ConfigError(f"unknown field {name}.{key}")
            if isinstance(inner, bool) or not isinstance(inner, NESTED[name][key]):
                raise ConfigError(f"{name}.{key}: wrong type {type(inner).__name__}")
    if "name" in body and not body["name"]:
        raise ConfigError("name must not be empty")
    if "flashboot" in body and body["flashboot"] not in FLASHBOOT:
        raise ConfigError(f"flashboot must be one of {FLASHBOOT}")
    if "env" in body and not all(isinstance(v, str) for v in body["env"].values()):
        raise ConfigError("env values must be strings")
    return body


def rest_changes(body: dict[str, Any], current: EndpointConfig) -> dict[str, Any]:
    """EndpointConfig changes for a checked REST body."""
    changes: dict[str, Any] = {}
    workers, scaling = body.get("workers", {}), body.get("scaling", {})
    for key, field_name in (("min", "workers_min"), ("max", "workers_max")):
        if key in workers:
            changes[field_name] = workers[key]
    for key, field_name in (("type", "scaler_type"), ("value", "scaler_value"), ("idleTimeout", "idle_timeout")):
        if key in scaling:
            changes[field_name] = scaling[key]
    if "timeout" in body:
        changes["execution_timeout"] = body["timeout"] / 1000
    if "env" in body:
        changes["env"] = {**current.env, **body["env"]}
    if "flashboot" in body:
        changes["flashboot"] = body["flashboot"]
    return changes


def meta_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields stored and echoed only (no effect on the platform)."""
    return {k: v for k, v in body.items() if k not in ("workers", "scaling", "timeout", "env", "flashboot")}


def render(ep: Endpoint) -> dict[str, Any]:
    c, meta = ep.config, ep.meta
    return {
        "id": ep.id,
        "name": meta.get("name", ep.id),
        "image": meta.get("image", " ".join(c.worker_command)),
        "args": meta.get("args", ""),
        "disk": meta.get("disk", 20),
        "ports": meta.get("ports", []),
        "env": c.env,
        "registry": meta.get("registry"),
        "gpu": meta.get("gpu", {"pools": [c.gpu_type], "count": 1}),
        "workers": {"min": c.workers_min, "max": c.workers_max},
        "scaling": {"type": c.scaler_type, "value": c.scaler_value, "idleTimeout": c.idle_timeout},
        "dataCenterIds": meta.get("dataCenterIds", []),
        "networkVolumes": meta.get("networkVolumes", []),
        "timeout": round(c.execution_timeout * 1000),
        "flashboot": c.flashboot,
        "createdAt": meta.get("createdAt"),
    }


def graphql_record(ep: Endpoint) -> dict[str, Any]:
    c = ep.config
    return {
        **ENDPOINT_DEFAULTS,
        **ep.meta.get("graphql", {}),
        "id": ep.id,
        "name": ep.meta.get("name", ep.id),
        "idleTimeout": c.idle_timeout,
        "scalerType": c.scaler_type,
        "scalerValue": c.scaler_value,
        "workersMin": c.workers_min,
        "workersMax": c.workers_max,
        "flashBootType": c.flashboot,
        "executionTimeoutMs": round(c.execution_timeout * 1000),
    }


def graphql_changes(record: dict[str, Any]) -> dict[str, Any]:
    names = {"workersMin": "workers_min", "workersMax": "workers_max", "idleTimeout": "idle_timeout",
             "scalerType": "scaler_type", "scalerValue": "scaler_value", "flashBootType": "flashboot"}  # fmt: skip
    changes = {names[k]: v for k, v in record.items() if k in names}
    if "executionTimeoutMs" in record:
        changes["execution_timeout"] = record["executionTimeoutMs"] / 1000
    return changes


class ManagementRoutes:
    """`create` makes a live endpoint from the platform's default config (None: creation is refused)."""

    def __init__(
        self,
        endpoints: dict[str, Endpoint],
        create: Callable[[str, EndpointConfig], Endpoint],
        default_config: Callable[[], EndpointConfig | None],
    ) -> None:
        self.endpoints, self.create, self.default_config = endpoints, create, default_config
        self.registry = Registry()
        self._seq = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v2/serverless", self.rest_create),
            web.get("/v2/serverless", self.rest_list),
            web.get("/v2/serverless/{id}", self.rest_get),
            web.patch("/v2/serverless/{id}", self.rest_patch),
            web.delete("/v2/serverless/{id}", self.rest_delete),
            web.get("/v2/serverless/{id}/workers", self.rest_workers),
            web.post("/graphql", self.graphql),
        ]

    def _get(self, request: web.Request) -> Endpoint:
        ep = self.endpoints.get(request.match_info["id"])
        if ep is None:
            raise not_found("endpoint not found")
        return ep

    async def _body(self, request: web.Request, *, create: bool) -> dict[str, Any]:
        try:
            return check_body(json.loads(await request.text() or "null"), create=create)
        except json.JSONDecodeError as exc:
            raise ConfigError("body is not JSON") from exc

    async def rest_create(self, request: web.Request) -> web.StreamResponse:
        base = self.default_config()
        if base is None:
            return error(400, "this platform has no worker command for new endpoints (start it with one)")
        try:
            body = await self._body(request, create=True)
            self._seq += 1
            endpoint_id = f"ep{self._seq:04d}{int(time.time()) % 10000:04d}"
            ep = self.create(endpoint_id, base.replace(**rest_changes(body, base)))
        except ConfigError as exc:
            return error(400, str(exc))
        ep.meta.update(meta_fields(body))
        ep.meta["createdAt"] = datetime.now(UTC).isoformat(timespec="seconds")
        return web.json_response(render(ep), status=201)

    async def rest_list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([render(ep) for ep in self.endpoints.values()])

    async def rest_get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(render(self._get(request)))

    async def rest_patch(self, request: web.Request) -> web.StreamResponse:
        ep = self._get(request)
        try:
            body = await self._body(request, create=False)
            ep.update(**rest_changes(body, ep.config))
        except ConfigError as exc:
            return error(400, str(exc))
        ep.meta.update(meta_fields(body))
        return web.json_response(render(ep))

    async def rest_delete(self, request: web.Request) -> web.StreamResponse:
        ep = self._get(request)
        if ep.config.workers_min or ep.config.workers_max:
            return error(400, "set workers min and max to 0 before deleting the endpoint")
        del self.endpoints[ep.id]
        await ep.close()
        return web.json_response({"id": ep.id, "deleted": True})

    async def rest_workers(self, request: web.Request) -> web.StreamResponse:
        ep = self._get(request)
        workers = [w for w in ep.workers() if w["status"] != "exited"]
        summary = {s: sum(1 for w in workers if w["status"] == s) for s in ("running", "idle", "initializing")}
        health = ep.health()["workers"]
        summary.update(throttled=health["throttled"], unhealthy=health["unhealthy"], total=len(workers))
        return web.json_response({"workers": workers, "summary": summary})

    async def graphql(self, request: web.Request) -> web.StreamResponse:
        try:
            query = str((await request.json()).get("query", ""))
        except (json.JSONDecodeError, AttributeError):
            return web.json_response({"errors": [{"message": 'body must be {"query": ...}'}]}, status=400)
        for ep in self.endpoints.values():  # live endpoints are what the API lists and updates
            self.registry.endpoints[ep.id] = graphql_record(ep)
        if "mutation" in query and "saveEndpoint" in query:
            try:
                _, data = parse_mutation(query)
            except GraphQLInputError as exc:
                return web.json_response({"errors": [{"message": str(exc)}]})
            unknown = set(data) - GRAPHQL_INPUT
            if unknown:
                return web.json_response({"errors": [{"message": f"unknown EndpointInput fields {sorted(unknown)}"}]})
        result = self.registry.execute(query)
        record = (result.get("data") or {}).get("saveEndpoint")
        if isinstance(record, dict):
            message = self._apply_graphql(record)
            if message:
                return web.json_response({"errors": [{"message": message}]})
        return web.json_response(result)

    def _apply_graphql(self, record: dict[str, Any]) -> str | None:
        """Make the saved record live; an error message when its settings are refused."""
        try:
            ep = self.endpoints.get(record["id"])
            if ep is not None:
                ep.update(**graphql_changes(record))
            else:
                base = self.default_config()
                if base is None:
                    return "this platform has no worker command for new endpoints (start it with one)"
                ep = self.create(record["id"], base.replace(**graphql_changes(record)))
        except ConfigError as exc:
            return str(exc)
        ep.meta["name"] = record.get("name", ep.id)
        ep.meta["graphql"] = {k: v for k, v in record.items() if k in ENDPOINT_DEFAULTS}
        return None
