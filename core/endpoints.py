"""Endpoint management through the runpod SDK's GraphQL call (`runpod.api.graphql.run_graphql_query`):
the client's deploy and the worker's scale-to-zero both go through here.

runpod 1.12 offers `create_endpoint` (a `saveEndpoint` mutation without an id)
and `update_endpoint_template`, but no call that changes an endpoint's
workers or scaler. RunPod's `saveEndpoint` updates when its input carries the
endpoint's `id`, so updates (and scale-to-zero) send that mutation through the
SDK's own GraphQL function, with every string JSON-escaped. The SDK reads the
API base URL from RUNPOD_API_BASE_URL at each call.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import EndpointApiError

ENDPOINT_FIELDS = (
    "id name templateId gpuIds gpuCount networkVolumeId locations idleTimeout scalerType scalerValue "
    "workersMin workersMax flashBootType"
)
_QUERY = "query Endpoints { myself { endpoints { " + ENDPOINT_FIELDS + " } } }"


ENUM_FIELDS = frozenset({"flashBootType"})


def _literal(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if key in ENUM_FIELDS:
        if not str(value).replace("_", "").isalnum():
            raise EndpointApiError(f"{key}: {value!r} is not a GraphQL enum value")
        return str(value)
    return json.dumps(str(value))


def save_mutation(fields: dict[str, Any]) -> str:
    """A `saveEndpoint` mutation for `fields` (GraphQL names); with `id` it updates that endpoint."""
    body = ", ".join(f"{key}: {_literal(key, value)}" for key, value in fields.items() if value is not None)
    return f"mutation {{ saveEndpoint(input: {{ {body} }}) {{ {ENDPOINT_FIELDS} }} }}"


def _graphql(query: str, api_key: str | None) -> dict[str, Any]:
    import requests
    from runpod import error as rp_error
    from runpod.api.graphql import run_graphql_query

    try:
        answer: dict[str, Any] = run_graphql_query(query, api_key=api_key)
    except rp_error.AuthenticationError as exc:
        raise EndpointApiError(f"RunPod API refused the API key: {exc}") from exc
    except rp_error.QueryError as exc:
        raise EndpointApiError(f"RunPod API error: {exc}") from exc
    except (requests.RequestException, ValueError) as exc:
        raise EndpointApiError(f"RunPod API unreachable or answered badly: {exc}") from exc
    return answer


def list_endpoints(api_key: str | None) -> list[dict[str, Any]]:
    endpoints: list[dict[str, Any]] = _graphql(_QUERY, api_key)["data"]["myself"]["endpoints"]
    return endpoints


def find_endpoint(
    api_key: str | None, *, endpoint_id: str | None = None, name: str | None = None
) -> dict[str, Any] | None:
    for endpoint in list_endpoints(api_key):
        if (endpoint_id is not None and endpoint.get("id") == endpoint_id) or (
            name is not None and endpoint.get("name") == name
        ):
            return endpoint
    return None


def save_endpoint(fields: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    saved: dict[str, Any] = _graphql(save_mutation(fields), api_key)["data"]["saveEndpoint"]
    return saved


# kept as they are when an endpoint is scaled to zero (saveEndpoint sets what it is sent)
SCALE_KEPT = (
    "id",
    "name",
    "templateId",
    "gpuIds",
    "gpuCount",
    "idleTimeout",
    "scalerType",
    "scalerValue",
    "networkVolumeId",
    "locations",
    "flashBootType",
)


def scale_to_zero(endpoint_id: str, api_key: str) -> None:
    """Set the endpoint's `workersMin` and `workersMax` to 0, keeping the rest of its configuration.

    Running jobs finish; queued jobs wait until someone raises `workersMax` again.
    Raises `EndpointApiError` (naming the endpoint) when the endpoint is unknown or the API refuses.
    """
    if not endpoint_id:
        raise EndpointApiError("scale_to_zero: no endpoint id (RUNPOD_ENDPOINT_ID is empty)")
    current = find_endpoint(api_key, endpoint_id=endpoint_id)
    if current is None:
        raise EndpointApiError(f"scale_to_zero: endpoint {endpoint_id!r} not found for this API key")
    fields = {key: current[key] for key in SCALE_KEPT if current.get(key) not in (None, "")}
    fields.update(id=endpoint_id, workersMin=0, workersMax=0)
    saved = save_endpoint(fields, api_key)
    if saved.get("workersMax") != 0:
        raise EndpointApiError(
            f"scale_to_zero: endpoint {endpoint_id!r} still has workersMax={saved.get('workersMax')}"
        )
