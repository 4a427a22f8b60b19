"""Scale an endpoint to zero workers (the worker's budget hook calls this when BUDGET_SCALE_TO_ZERO is on)."""

from __future__ import annotations

from client.errors import DeployError
from client.management import find_endpoint, save_endpoint

KEPT = (
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
)


def scale_to_zero(endpoint_id: str, api_key: str) -> None:
    """Set the endpoint's `workersMin` and `workersMax` to 0, keeping the rest of its configuration.

    Running jobs finish; queued jobs wait until someone raises `workersMax` again.
    Raises `DeployError` (naming the endpoint) when the endpoint is unknown or the API refuses.
    """
    if not endpoint_id:
        raise DeployError("scale_to_zero: no endpoint id (RUNPOD_ENDPOINT_ID is empty)")
    current = find_endpoint(api_key, endpoint_id=endpoint_id)
    if current is None:
        raise DeployError(f"scale_to_zero: endpoint {endpoint_id!r} not found for this API key")
    fields = {key: current[key] for key in KEPT if current.get(key) not in (None, "")}
    fields.update(id=endpoint_id, workersMin=0, workersMax=0)
    saved = save_endpoint(fields, api_key)
    if saved.get("workersMax") != 0:
        raise DeployError(f"scale_to_zero: endpoint {endpoint_id!r} still has workersMax={saved.get('workersMax')}")
