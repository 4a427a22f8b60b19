"""Endpoint management over RunPod's REST API v2: the one module that talks to it.

The client's deploy (create, update) and the worker's budget scale-to-zero
both go through here, over httpx. The API lives at `{base}/v2/serverless`
(and `{base}/v2/templates`), `base` being `RUNPOD_API_BASE_URL` as the runpod
SDK reads it (at each call, never at import), by default
https://api.runpod.io; the key is sent as `Authorization: Bearer <key>`.
Shapes follow RunPod's OpenAPI document for v2 (runpod/docs
`api-reference-v2/openapi.json`); `devtools.platform.management` serves the
same shapes locally:

    GET    /v2/serverless        {"endpoints": [<endpoint>, ...]}
    GET    /v2/serverless/{id}   <endpoint>
    POST   /v2/serverless        <create body> -> 201 <endpoint>
    PATCH  /v2/serverless/{id}   only the fields given change -> <endpoint>
    GET    /v2/templates/{id}    <template>

    <endpoint>: id, name, type (QUEUE | LOAD_BALANCER), image, args, disk, ports, env, registry,
        gpu {pools (priority order), excludedTypes, count, allowedCudaVersions, minCudaVersion},
        workers {min, max, idleTimeout}, scaling {type: QUEUE_DELAY, queueDelay} or
        {type: REQUEST_COUNT, requestCount}, dataCenterIds, networkVolumes,
        timeout (execution timeout, ms), flashboot (OFF | FLASHBOOT | PRIORITY_FLASHBOOT), createdAt

A PATCH's `env` replaces the endpoint's env, and its `gpu.pools` replaces the
pool selection (exclusions included); `endpoint_diff` builds PATCH bodies
with that in mind. Errors come back as problem details (`{title, status,
detail, errors}`) and leave here as one `EndpointApiError` line naming the
endpoint and the problem.

GraphQL: none. RunPod retires its GraphQL API in early 2027 and REST v1 in
2026-11; REST v2 has every call this project needs (list, read, create,
update and scale endpoints; read templates), so nothing here uses either.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from core.errors import EndpointApiError

DEFAULT_BASE_URL = "https://api.runpod.io"
TIMEOUT_S = 30.0
# the fields a PATCH may carry (`type` is set at creation only)
UPDATABLE = frozenset(
    {"name", "image", "args", "disk", "ports", "env", "registry", "gpu", "workers", "scaling", "dataCenterIds",
     "networkVolumes", "timeout", "flashboot"}
)  # fmt: skip
UNORDERED = frozenset({"allowedCudaVersions", "excludedTypes", "dataCenterIds", "networkVolumes", "ports"})
# fields a PATCH replaces as a whole (a changed one is sent complete)
WHOLE = frozenset({"env", "scaling"})


def api_base(base_url: str | None = None) -> str:
    """The API's base URL: `base_url`, else RUNPOD_API_BASE_URL, else RunPod's."""
    return (base_url or os.environ.get("RUNPOD_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def _detail(response: httpx.Response) -> str:
    """RunPod's explanation of a refusal (problem details), or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(body.get("detail") or body.get("error") or body.get("title") or "")]
    errors = body.get("errors")
    if isinstance(errors, list):
        parts += [str(e) for e in errors]
    return "; ".join(p for p in parts if p) or response.reason_phrase


def _call(method: str, path: str, *, subject: str, api_key: str | None, base_url: str | None, body: Any = None) -> Any:
    """The JSON answer of one call; EndpointApiError (`subject: problem`) when there is none."""
    if not api_key:
        raise EndpointApiError(f"{subject}: no RunPod API key (set RUNPOD_API_KEY)")
    base = api_base(base_url)
    try:
        response = httpx.request(
            method, f"{base}{path}", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=TIMEOUT_S
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise EndpointApiError(f"{subject}: RunPod API at {base} unreachable: {exc}") from exc
    code = response.status_code
    if code in (401, 403):
        raise EndpointApiError(f"{subject}: RunPod API refused the API key (HTTP {code}: {_detail(response)})")
    if code == 404:
        raise EndpointApiError(f"{subject}: not found for this API key (HTTP 404: {_detail(response)})")
    if code >= 400:
        raise EndpointApiError(f"{subject}: RunPod API refused the call (HTTP {code}: {_detail(response)})")
    if code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise EndpointApiError(f"{subject}: RunPod API answered HTTP {code} with a body that is not JSON") from exc


def _endpoint(answer: Any, subject: str) -> dict[str, Any]:
    if not isinstance(answer, dict) or "id" not in answer:
        raise EndpointApiError(f"{subject}: RunPod API answered without an endpoint: {str(answer)[:200]}")
    return answer


def get_endpoint(endpoint_id: str, *, api_key: str | None, base_url: str | None = None) -> dict[str, Any]:
    """One endpoint in the REST shape (`workers {min, max}`, `flashboot`, ...)."""
    subject = f"endpoint {endpoint_id!r}"
    if not endpoint_id:
        raise EndpointApiError("endpoint '': no endpoint id given")
    answer = _call("GET", f"/v2/serverless/{endpoint_id}", subject=subject, api_key=api_key, base_url=base_url)
    return _endpoint(answer, subject)


def list_endpoints(*, api_key: str | None, base_url: str | None = None) -> list[dict[str, Any]]:
    answer = _call("GET", "/v2/serverless", subject="endpoint list", api_key=api_key, base_url=base_url)
    endpoints = answer.get("endpoints") if isinstance(answer, dict) else answer
    if not isinstance(endpoints, list) or not all(isinstance(e, dict) for e in endpoints):
        raise EndpointApiError(f"endpoint list: RunPod API answered an unexpected shape: {str(answer)[:200]}")
    return endpoints


def find_endpoint_by_name(name: str, *, api_key: str | None, base_url: str | None = None) -> dict[str, Any] | None:
    """The endpoint called `name`, None when there is none; an error when several share the name."""
    found = [e for e in list_endpoints(api_key=api_key, base_url=base_url) if e.get("name") == name]
    if len(found) > 1:
        ids = ", ".join(str(e.get("id")) for e in found)
        raise EndpointApiError(f"endpoint {name!r}: several endpoints have this name ({ids}); rename or delete one")
    return found[0] if found else None


def create_endpoint(body: dict[str, Any], *, api_key: str | None, base_url: str | None = None) -> dict[str, Any]:
    subject = f"endpoint {body.get('name')!r}"
    answer = _call("POST", "/v2/serverless", subject=subject, api_key=api_key, base_url=base_url, body=body)
    return _endpoint(answer, subject)


def update_endpoint(
    endpoint_id: str, changes: dict[str, Any], *, api_key: str | None, base_url: str | None = None
) -> dict[str, Any]:
    """PATCH only the fields in `changes` (nothing is sent when it is empty); the endpoint afterwards."""
    if not changes:
        return get_endpoint(endpoint_id, api_key=api_key, base_url=base_url)
    subject = f"endpoint {endpoint_id!r}"
    path = f"/v2/serverless/{endpoint_id}"
    answer = _call("PATCH", path, subject=subject, api_key=api_key, base_url=base_url, body=changes)
    return _endpoint(answer, subject)


def scale_endpoint(
    endpoint_id: str, workers_min: int, workers_max: int, *, api_key: str | None, base_url: str | None = None
) -> dict[str, Any]:
    """Set the endpoint's workers min and max: a PATCH of `workers` alone, so FlashBoot and the rest stay."""
    if not 0 <= workers_min <= workers_max:
        raise EndpointApiError(
            f"endpoint {endpoint_id!r}: need 0 <= workers min <= max, got {workers_min}/{workers_max}"
        )
    changes = {"workers": {"min": workers_min, "max": workers_max}}
    saved = update_endpoint(endpoint_id, changes, api_key=api_key, base_url=base_url)
    workers = saved.get("workers") or {}
    if (workers.get("min"), workers.get("max")) != (workers_min, workers_max):
        raise EndpointApiError(
            f"endpoint {endpoint_id!r}: still has workers {workers.get('min')}/{workers.get('max')} after the update"
        )
    return saved


def scale_to_zero(endpoint_id: str, api_key: str, *, base_url: str | None = None) -> None:
    """Set the endpoint's workers min and max to 0, keeping the rest of its configuration (FlashBoot included).

    Running jobs finish; queued jobs wait until someone raises workers max again.
    Raises `EndpointApiError` (naming the endpoint) when the endpoint is unknown or the API refuses.
    """
    if not endpoint_id:
        raise EndpointApiError("scale_to_zero: no endpoint id (RUNPOD_ENDPOINT_ID is empty)")
    scale_endpoint(endpoint_id, 0, 0, api_key=api_key, base_url=base_url)


def get_template(template_id: str, *, api_key: str | None, base_url: str | None = None) -> dict[str, Any]:
    """A template (`image`, `env`, `args`, `disk`, `ports`, `registry`, `allowedCudaVersions`, ...)."""
    subject = f"template {template_id!r}"
    answer = _call("GET", f"/v2/templates/{template_id}", subject=subject, api_key=api_key, base_url=base_url)
    if not isinstance(answer, dict) or "id" not in answer:
        raise EndpointApiError(f"{subject}: RunPod API answered without a template: {str(answer)[:200]}")
    return answer


def _same(key: str, current: Any, wanted: Any) -> bool:
    if key in UNORDERED:
        return sorted(current or []) == sorted(wanted or [])
    return bool(current == wanted)


def _gpu_changes(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    excluded = wanted.get("excludedTypes") or []
    if "pools" in wanted and (
        current.get("pools") != wanted["pools"] or not _same("excludedTypes", current.get("excludedTypes"), excluded)
    ):
        changes["pools"] = wanted["pools"]  # the selection as a whole: pools and exclusions
        if excluded:
            changes["excludedTypes"] = excluded
    if "count" in wanted and current.get("count", 1) != wanted["count"]:
        changes["count"] = wanted["count"]
    if "allowedCudaVersions" in wanted:
        if not _same("allowedCudaVersions", current.get("allowedCudaVersions"), wanted["allowedCudaVersions"]):
            changes["allowedCudaVersions"] = wanted["allowedCudaVersions"]
        if wanted["allowedCudaVersions"] and current.get("minCudaVersion") and "minCudaVersion" not in wanted:
            changes["minCudaVersion"] = ""  # RunPod refuses a set beside a floor: clear the floor
    if "minCudaVersion" in wanted and (current.get("minCudaVersion") or "") != (wanted["minCudaVersion"] or ""):
        changes["minCudaVersion"] = wanted["minCudaVersion"] or ""
    return changes


def endpoint_diff(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body that turns `current` into `wanted` (REST shapes): only what differs.

    Only the fields `wanted` names are compared; `workers` and `gpu` carry only their
    changed parts, `env` and `scaling` are sent whole when they change (a PATCH replaces them).
    Pure: no call is made.
    """
    changes: dict[str, Any] = {}
    for key, value in wanted.items():
        if key not in UPDATABLE:
            continue
        have = current.get(key)
        if key == "gpu":
            part = _gpu_changes(have or {}, value)
        elif key == "workers":
            part = {k: v for k, v in value.items() if (have or {}).get(k) != v}
        else:
            if not _same(key, have, value):
                changes[key] = value
            continue
        if part:
            changes[key] = part
    return changes


def diff_rows(current: dict[str, Any], changes: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, current, wanted) for each changed value of `endpoint_diff`'s result, nested fields dotted."""
    rows: list[tuple[str, Any, Any]] = []
    for key, value in changes.items():
        have = current.get(key)
        if isinstance(value, dict):
            have = have if isinstance(have, dict) else {}
            names = list(value) + [k for k in have if k not in value and key in WHOLE]
            rows += [(f"{key}.{k}", have.get(k), value.get(k)) for k in names if have.get(k) != value.get(k)]
        else:
            rows.append((key, have, value))
    return rows
