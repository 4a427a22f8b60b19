"""Every error the client raises, in one tree.

    ClientError                       base
    ├── ConfigFileError               runpod.toml missing, unparsable or with a bad field
    ├── DeployError                   the endpoint create/update call failed
    ├── TraceError                    a replay trace or configuration is unreadable or invalid
    ├── AttemptFailed                 one endpoint attempt failed; `.reason` says how (raised
    │   │                             by itself for `submit_unknown` when the policy forbids falling back)
    │   └── JobRejected               the worker refused the caller's input (validation_error):
    │                                 raised at once, never retried nor sent to another tier
    └── AllTiersFailed                spot and on-demand both failed; carries both causes

A bad price table is `core.errors.PriceTableError`, shared with the worker.

`AttemptFailed.reason` is one of the `FailureReason` values below: the fallback
client decides by that value (and by the worker's error `type`), never by text.
Third-party exceptions (requests, aiohttp, runpod) are translated where they
enter (``raise X(...) from exc``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class FailureReason(StrEnum):
    TIMEOUT = "timeout"  # the caller's per-tier timeout passed
    THROTTLED = "throttled"  # HTTP 429
    NO_CAPACITY = "no_capacity"  # the endpoint has no worker to give (or it is unhealthy)
    # the worker died mid-job: RunPod re-queued the job more often than the policy allows, or failed it
    # without a worker error once its own retries were spent
    WORKER_LOST = "worker_lost"
    START_TIMEOUT = "start_timeout"  # still queued past the tier's time-to-start (cold or throttled workers)
    SCALED_TO_ZERO = "scaled_to_zero"  # the endpoint's workers max is 0 (budget spent, or scaled down)
    SERVER_ERROR = "server_error"  # HTTP 5xx
    CONNECT = "connect"  # the TCP connection was never established: the request surely did not arrive
    CONNECTION = "connection"  # the connection dropped after the request was sent
    HTTP_ERROR = "http_error"  # another HTTP error (401, 404: wrong key or endpoint id)
    CIRCUIT_OPEN = "circuit_open"  # taken out of rotation by a failed health check
    JOB_ERROR = "job_error"  # the worker answered with an error other than validation
    REJECTED = "rejected"  # the worker's validation_error: the caller's own bad input
    # POST /run was sent but its answer was lost (read error, 5xx, not JSON, no job id): a job may
    # be queued, and billed, under an id the client never learnt, so it is not sent again
    SUBMIT_UNKNOWN = "submit_unknown"


FALLBACK_REASONS = frozenset(FailureReason) - {FailureReason.REJECTED}


class ClientError(Exception):
    """Base of every client error."""


class ConfigFileError(ClientError):
    pass


class DeployError(ClientError):
    pass


class TraceError(ClientError):
    pass


class AttemptFailed(ClientError):
    def __init__(
        self,
        endpoint_id: str,
        reason: FailureReason,
        message: str,
        *,
        job_id: str | None = None,
        worker_error: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"endpoint {endpoint_id}: {reason.value}: {message}")
        self.endpoint_id = endpoint_id
        self.reason = reason
        self.message = message
        self.job_id = job_id
        self.worker_error = worker_error
        self.cancelled = False  # set when the fallback client cancelled this attempt's job

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint_id,
            "reason": self.reason.value,
            "message": self.message,
            "job_id": self.job_id,
            "worker_error": self.worker_error,
            "cancelled": self.cancelled,
        }


class JobRejected(AttemptFailed):
    """The worker's `validation_error`: the caller must fix the input; no fallback."""


class AllTiersFailed(ClientError):
    """Every tier failed; `spot` is None when the pair has no spot endpoint."""

    def __init__(self, spot: AttemptFailed | None, on_demand: AttemptFailed) -> None:
        first = f"spot: {spot}; " if spot is not None else ""
        super().__init__(f"every tier failed: {first}on-demand: {on_demand}")
        self.spot = spot
        self.on_demand = on_demand
