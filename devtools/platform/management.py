"""Endpoint management: RunPod's REST API v2 (`/v2/serverless`, `/v2/templates`) and GraphQL `saveEndpoint`.

REST v2, as RunPod's OpenAPI document describes it (runpod/docs
`api-reference-v2/openapi.json`, served by https://api.runpod.io; REST v1
`rest.runpod.io/v1` retires in 2026-11, GraphQL in early 2027):

    POST   /v2/serverless               create -> 201 + the endpoint
    GET    /v2/serverless               {"endpoints": [...]}
    GET    /v2/serverless/{id}          one endpoint
    PATCH  /v2/serverless/{id}          change only the fields given -> 200 + the endpoint
    DELETE /v2/serverless/{id}          -> 204; its workers are stopped
    GET    /v2/serverless/{id}/workers  {"workers": [...], "summary": {running, idle, initializing, ...}}
    POST   /v2/templates                create a template -> 201
    GET    /v2/templates[/{id}]         {"templates": [...]} / one template

Endpoint body: `name`, `type` (QUEUE | LOAD_BALANCER; create only), the
container settings `image`, `args`, `disk`, `ports`, `env`, `registry`,
`templateId` (its container settings are applied once, body fields winning,
`env` merged per key; no link is kept), `gpu {pools (in priority order),
excludedTypes, count, allowedCudaVersions, minCudaVersion}`, `workers {min,
max, idleTimeout}`, `scaling {type: QUEUE_DELAY, queueDelay}` or `{type:
REQUEST_COUNT, requestCount}`, `dataCenterIds`, `networkVolumes`, `timeout`
(execution timeout, ms), `flashboot` (OFF | FLASHBOOT | PRIORITY_FLASHBOOT).
Create needs `name`, `type`, `scaling`, `gpu` and `image` (or `templateId`).
As RunPod does: unknown fields, at the top or inside an object, and wrong types
are refused with 400; a non-empty `allowedCudaVersions` beside a
`minCudaVersion` is refused; `idleTimeout` is refused (and not shown) on a
queue endpoint scaling on REQUEST_COUNT; a PATCH's `env` replaces the
endpoint's env; a PATCH's `gpu.pools` replaces the pool selection (and its
`excludedTypes`). Errors are `application/problem+json` `{title, status,
detail}`. Only queue endpoints on GPU pools run here (LOAD_BALANCER and `cpu`
are refused).

Image, gpu, disk and the rest are stored and echoed: every endpoint runs the
platform's worker command. The platform's default config's env stands for the
image's own ENV: workers get it, the API does not show it. Changes take effect
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
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from devtools.fake_graphql import ENDPOINT_DEFAULTS, GraphQLInputError, Registry, parse_mutation
from devtools.platform.config import ConfigError, EndpointConfig
from devtools.platform.endpoint import Endpoint

FLASHBOOT = ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT")
ENDPOINT_TYPES = ("QUEUE", "LOAD_BALANCER")
SCALING_VALUE = {"QUEUE_DELAY": "queueDelay", "REQUEST_COUNT": "requestCount"}
CUDA_VERSION = re.compile(r"^\d+\.\d+$")
_str, _int, _list = (str,), (int,), (list,)
CONTAINER: dict[str, tuple[type, ...]] = {
    "image": _str, "args": _str, "disk": _int, "ports": _list, "env": (dict,), "registry": (str, type(None)),
}  # fmt: skip
TOP: dict[str, tuple[type, ...]] = {
    **CONTAINER, "name": _str, "type": _str, "templateId": _str, "gpu": (dict,), "workers": (dict,),
    "scaling": (dict,), "dataCenterIds": _list, "networkVolumes": _list, "timeout": _int, "flashboot": _str,
}  # fmt: skip
NESTED: dict[str, dict[str, tuple[type, ...]]] = {
    "gpu": {"pools": _list, "excludedTypes": _list, "count": _int, "allowedCudaVersions": _list,
            "minCudaVersion": _str},
    "workers": {"min": _int, "max": _int, "idleTimeout": _int},
    "scaling": {"type": _str, "queueDelay": (int, float), "requestCount": _int},
}  # fmt: skip
TEMPLATE_FIELDS: dict[str, tuple[type, ...]] = {
    **CONTAINER, "name": _str, "allowedCudaVersions": _list, "category": _str, "public": (bool,),
    "serverless": (bool,), "startSsh": (bool,), "startJupyter": (bool,),
}  # fmt: skip
STORED = ("name", "type", "image", "args", "disk", "ports", "registry", "dataCenterIds", "networkVolumes")
GRAPHQL_INPUT = frozenset(
    {"id", "name", "templateId", "gpuIds", "gpuCount", "networkVolumeId", "locations", "idleTimeout", "scalerType",
     "scalerValue", "workersMin", "workersMax", "allowedCudaVersions", "flashBootType", "executionTimeoutMs"}
)  # fmt: skip


class ApiError(Exception):
    """A refused management call: its HTTP status and RunPod's `detail`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def problem(status: int, detail: str) -> web.Response:
    """RunPod's error shape (RFC 9457 problem details)."""
    body = {"title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json")


def _check_types(body: dict[str, Any], fields: dict[str, tuple[type, ...]], where: str = "") -> None:
    unknown = set(body) - set(fields)
    if unknown:
        raise ConfigError(f"unknown fields {sorted(where + k for k in unknown)}")
    for name, value in body.items():
        if (isinstance(value, bool) and bool not in fields[name]) or not isinstance(value, fields[name]):
            raise ConfigError(f"{where}{name}: wrong type {type(value).__name__}")


def _strings(name: str, values: list[Any], *, cuda: bool = False) -> None:
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{name} must be a list of non-empty strings")
    if cuda and not all(CUDA_VERSION.match(v) for v in values):
        raise ConfigError(f"{name} must be `major.minor` versions, got {values}")


def check_body(body: Any, *, create: bool) -> dict[str, Any]:
    """The REST endpoint body, or ConfigError naming what RunPod would refuse."""
    if not isinstance(body, dict):
        raise ConfigError("body must be a JSON object")
    if "cpu" in body:
        raise ConfigError("cpu: CPU endpoints are not served by this platform")
    _check_types(body, TOP)
    if not create and "type" in body:
        raise ConfigError("unknown fields ['type'] (an endpoint's type is set at creation)")
    for name, fields in NESTED.items():
        if name in body:
            _check_types(body[name], fields, f"{name}.")
    if create:
        missing = [f for f in ("name", "type", "scaling", "gpu") if f not in body]
        if "image" not in body and "templateId" not in body:
            missing.append("image")
        if missing:
            raise ConfigError(f"missing required fields {missing}")
    if "name" in body and not body["name"]:
        raise ConfigError("name must not be empty")
    if "type" in body and body["type"] not in ENDPOINT_TYPES:
        raise ConfigError(f"type must be one of {ENDPOINT_TYPES}")
    if body.get("type") == "LOAD_BALANCER":
        raise ConfigError("type: this platform serves queue endpoints only")
    if "flashboot" in body and body["flashboot"] not in FLASHBOOT:
        raise ConfigError(f"flashboot must be one of {FLASHBOOT}")
    if "env" in body and not all(isinstance(v, str) for v in body["env"].values()):
        raise ConfigError("env values must be strings")
    if body.get("disk", 1) < 1:
        raise ConfigError("disk must be >= 1")
    for name in ("ports", "dataCenterIds", "networkVolumes"):
        _strings(name, body.get(name, []))
    _check_gpu(body.get("gpu"), create=create)
    _check_workers(body.get("workers", {}))
    if "scaling" in body:
        _check_scaling(body["scaling"])
    return body


def _check_gpu(gpu: dict[str, Any] | None, *, create: bool) -> None:
    if gpu is None:
        return
    if "pools" in gpu:
        if not gpu["pools"]:
            raise ConfigError("gpu.pools must not be empty")
        _strings("gpu.pools", gpu["pools"])
    elif create:
        raise ConfigError("missing required fields ['gpu.pools']")
    elif "excludedTypes" in gpu:
        raise ConfigError("gpu.excludedTypes needs gpu.pools (the two are one selection)")
    _strings("gpu.excludedTypes", gpu.get("excludedTypes", []))
    _strings("gpu.allowedCudaVersions", gpu.get("allowedCudaVersions", []), cuda=True)
    floor = gpu.get("minCudaVersion")
    if floor is not None and not (CUDA_VERSION.match(floor) or (floor == "" and not create)):
        raise ConfigError(f"gpu.minCudaVersion must be a `major.minor` version, got {floor!r}")
    if gpu.get("allowedCudaVersions") and floor:
        raise ConfigError("gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive")
    if gpu.get("count", 1) < 1:
        raise ConfigError("gpu.count must be >= 1")


def _check_workers(workers: dict[str, Any]) -> None:
    if workers.get("min", 0) < 0 or workers.get("max", 0) < 0:
        raise ConfigError("workers.min and workers.max must be >= 0")
    if not 1 <= workers.get("idleTimeout", 1) <= 3600:
        raise ConfigError("workers.idleTimeout must be within 1..3600 s")


def _check_scaling(scaling: dict[str, Any]) -> None:
    kind = scaling.get("type")
    if kind not in SCALING_VALUE:
        raise ConfigError(f"scaling.type must be one of {sorted(SCALING_VALUE)}")
    value_key = SCALING_VALUE[kind]
    extra = set(scaling) - {"type", value_key}
    if extra or value_key not in scaling:
        raise ConfigError(f"scaling of type {kind} takes exactly `type` and `{value_key}`")
    if scaling[value_key] < (0.5 if kind == "QUEUE_DELAY" else 1):
        raise ConfigError(f"scaling.{value_key} is below its minimum")


def rest_changes(body: dict[str, Any], current: EndpointConfig, image_env: dict[str, str]) -> dict[str, Any]:
    """EndpointConfig changes for a checked REST body; `image_env` is the env the API does not show."""
    changes: dict[str, Any] = {}
    workers, scaling = body.get("workers", {}), body.get("scaling", {})
    for key, field_name in (("min", "workers_min"), ("max", "workers_max"), ("idleTimeout", "idle_timeout")):
        if key in workers:
            changes[field_name] = workers[key]
    if scaling:
        changes["scaler_type"] = scaling["type"]
        changes["scaler_value"] = scaling[SCALING_VALUE[scaling["type"]]]
    if "idleTimeout" in workers and changes.get("scaler_type", current.scaler_type) == "REQUEST_COUNT":
        raise ConfigError("workers.idleTimeout does not apply to a queue endpoint scaling on REQUEST_COUNT")
    if "timeout" in body:
        changes["execution_timeout"] = body["timeout"] / 1000
    if "env" in body:
        changes["env"] = {**image_env, **body["env"]}  # replaces what the API set before
    if "flashboot" in body:
        changes["flashboot"] = body["flashboot"]
    return changes


def default_gpu(c: EndpointConfig) -> dict[str, Any]:
    return {"pools": [c.gpu_type], "count": 1, "allowedCudaVersions": [], "minCudaVersion": None}


def merged_gpu(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The endpoint's gpu after a PATCH's `gpu` (RunPod: pools replace the selection, exclusions included)."""
    gpu = dict(current)
    if "pools" in change:
        gpu["pools"] = change["pools"]
        gpu.pop("excludedTypes", None)
    for key in ("excludedTypes", "count", "allowedCudaVersions"):
        if key in change:
            gpu[key] = change[key]
    if "minCudaVersion" in change:
        gpu["minCudaVersion"] = change["minCudaVersion"] or None
    if gpu.get("allowedCudaVersions") and gpu.get("minCudaVersion"):
        raise ConfigError("gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive (clear one)")
    return gpu


def render(ep: Endpoint) -> dict[str, Any]:
    c, meta = ep.config, ep.meta
    value_key = SCALING_VALUE[c.scaler_type]
    workers: dict[str, Any] = {"min": c.workers_min, "max": c.workers_max}
    if c.scaler_type != "REQUEST_COUNT":  # RunPod omits it for that combination
        workers["idleTimeout"] = round(c.idle_timeout)
    return {
        "id": ep.id,
        "name": meta.get("name", ep.id),
        "type": meta.get("type", "QUEUE"),
        "image": meta.get("image", " ".join(c.worker_command)),
        "args": meta.get("args", ""),
        "disk": meta.get("disk", 20),
        "ports": meta.get("ports", []),
        "env": meta.get("env", c.env),
        "registry": meta.get("registry"),
        "gpu": meta.get("gpu", default_gpu(c)),
        "workers": workers,
        "scaling": {
            "type": c.scaler_type,
            value_key: c.scaler_value if value_key == "queueDelay" else round(c.scaler_value),
        },
        "dataCenterIds": meta.get("dataCenterIds", []),
        "networkVolumes": meta.get("networkVolumes", []),
        "timeout": round(c.execution_timeout * 1000),
        "flashboot": c.flashboot,
        "createdAt": meta.get("createdAt"),
    }


def render_template(template_id: str, body: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "args": "", "disk": 20, "mounts": {}, "ports": [], "env": {}, "registry": None, "serverless": False,
        "public": False, "category": "NVIDIA", "startSsh": True, "startJupyter": True, "allowedCudaVersions": [],
    }  # fmt: skip
    return {"id": template_id, **defaults, **body}


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
        self.templates: dict[str, dict[str, Any]] = {}
        self._seq = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v2/serverless", self.rest_create),
            web.get("/v2/serverless", self.rest_list),
            web.get("/v2/serverless/{id}", self.rest_get),
            web.patch("/v2/serverless/{id}", self.rest_patch),
            web.delete("/v2/serverless/{id}", self.rest_delete),
            web.get("/v2/serverless/{id}/workers", self.rest_workers),
            web.post("/v2/templates", self.template_create),
            web.get("/v2/templates", self.template_list),
            web.get("/v2/templates/{id}", self.template_get),
            web.post("/graphql", self.graphql),
        ]

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq:04d}{int(time.time()) % 10000:04d}"

    def _get(self, request: web.Request) -> Endpoint:
        ep = self.endpoints.get(request.match_info["id"])
        if ep is None:
            raise ApiError(404, "endpoint not found")
        return ep

    @staticmethod
    async def _json(request: web.Request) -> Any:
        try:
            return json.loads(await request.text() or "null")
        except json.JSONDecodeError as exc:
            raise ConfigError("body is not JSON") from exc

    def _with_template(self, body: dict[str, Any], *, create: bool) -> dict[str, Any]:
        """`body` with its `templateId`'s container settings applied (body fields win; env merged per key)."""
        if "templateId" not in body:
            return body
        template = self.templates.get(body["templateId"])
        if template is None:
            raise ApiError(404, f"template {body['templateId']!r} not found")
        if not template["serverless"]:
            raise ApiError(422, f"template {body['templateId']!r} is not a serverless template")
        merged = {k: v for k, v in body.items() if k != "templateId"}
        for key in ("image", "args", "disk", "ports", "registry"):
            merged.setdefault(key, template[key])
        merged["env"] = {**template["env"], **body.get("env", {})}
        gpu = merged.get("gpu")
        if create and gpu is not None and "allowedCudaVersions" not in gpu and not gpu.get("minCudaVersion"):
            merged["gpu"] = {**gpu, "allowedCudaVersions": template["allowedCudaVersions"]}
        return merged

    @staticmethod
    def _store(ep: Endpoint, body: dict[str, Any], gpu: dict[str, Any]) -> None:
        ep.meta.update({k: body[k] for k in STORED if k in body})
        ep.meta["gpu"] = gpu
        if "env" in body:
            ep.meta["env"] = dict(body["env"])

    async def rest_create(self, request: web.Request) -> web.StreamResponse:
        base = self.default_config()
        if base is None:
            return problem(400, "this platform has no worker command for new endpoints (start it with one)")
        try:
            body = self._with_template(check_body(await self._json(request), create=True), create=True)
            gpu = merged_gpu({"count": 1, "allowedCudaVersions": [], "minCudaVersion": None}, body["gpu"])
            ep = self.create(self._next_id("ep"), base.replace(**rest_changes(body, base, base.env)))
        except ConfigError as exc:
            return problem(400, str(exc))
        except ApiError as exc:
            return problem(exc.status, exc.detail)
        ep.meta.update(image_env=dict(base.env), createdAt=datetime.now(UTC).isoformat(timespec="seconds"))
        self._store(ep, {"env": {}, **body}, gpu)
        return web.json_response(render(ep), status=201)

    async def rest_list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"endpoints": [render(ep) for ep in self.endpoints.values()]})

    async def rest_get(self, request: web.Request) -> web.StreamResponse:
        try:
            return web.json_response(render(self._get(request)))
        except ApiError as exc:
            return problem(exc.status, exc.detail)

    async def rest_patch(self, request: web.Request) -> web.StreamResponse:
        try:
            ep = self._get(request)
            body = self._with_template(check_body(await self._json(request), create=False), create=False)
            gpu = merged_gpu(ep.meta.get("gpu", default_gpu(ep.config)), body.get("gpu", {}))
            ep.update(**rest_changes(body, ep.config, ep.meta.get("image_env", {})))
        except ConfigError as exc:
            return problem(400, str(exc))
        except ApiError as exc:
            return problem(exc.status, exc.detail)
        self._store(ep, body, gpu)
        return web.json_response(render(ep))

    async def rest_delete(self, request: web.Request) -> web.StreamResponse:
        try:
            ep = self._get(request)
        except ApiError as exc:
            return problem(exc.status, exc.detail)
        del self.endpoints[ep.id]
        await ep.close()
        return web.Response(status=204)

    async def rest_workers(self, request: web.Request) -> web.StreamResponse:
        try:
            ep = self._get(request)
        except ApiError as exc:
            return problem(exc.status, exc.detail)
        workers = [w for w in ep.workers() if w["status"] != "exited"]
        summary = {s: sum(1 for w in workers if w["status"] == s) for s in ("running", "idle", "initializing")}
        health = ep.health()["workers"]
        summary.update(throttled=health["throttled"], unhealthy=health["unhealthy"], total=len(workers))
        return web.json_response({"workers": workers, "summary": summary})

    async def template_create(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json(request)
            if not isinstance(body, dict):
                raise ConfigError("body must be a JSON object")
            _check_types(body, TEMPLATE_FIELDS)
            missing = [f for f in ("name", "image") if not body.get(f)]
            if missing:
                raise ConfigError(f"missing required fields {missing}")
            if not all(isinstance(v, str) for v in body.get("env", {}).values()):
                raise ConfigError("env values must be strings")
            _strings("allowedCudaVersions", body.get("allowedCudaVersions", []), cuda=True)
        except ConfigError as exc:
            return problem(400, str(exc))
        template = render_template(self._next_id("tpl"), body)
        self.templates[template["id"]] = template
        return web.json_response(template, status=201)

    async def template_list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"templates": list(self.templates.values())})

    async def template_get(self, request: web.Request) -> web.StreamResponse:
        template = self.templates.get(request.match_info["id"])
        if template is None:
            return problem(404, "template not found")
        return web.json_response(template)

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
