"""The serverless endpoint API over HTTP (sync and async), and what its answers mean.

The same routes the `runpod` SDK's `Endpoint` calls (`/run`, `/status`,
`/cancel`, `/health`, under `runpod.endpoint_url_base`, which the SDK takes
from RUNPOD_ENDPOINT_BASE_URL). The fallback client needs two things the SDK's
`Endpoint.run_sync` does not give: the job id at once (its `/runsync` request
gives none until it returns, so a job abandoned mid-request could not be
cancelled) and the `error` of a FAILED job (`run_sync` returns None for it, so
the caller's bad input could not be told from a lost worker). Transport errors become
`AttemptFailed` with a `FailureReason` here, at the boundary.

`POST /run` is not idempotent: each request that arrives queues a job that may
be billed. So its failures are told apart by what they prove about the job:
`connect` (the TCP connection was never established: httpx's ConnectError,
ConnectTimeout, PoolTimeout), `throttled` (429) and `http_error` (another 4xx)
prove nothing was queued; any failure once the request was sent (a read error,
a dropped connection, a read timeout, a 5xx, a body that is not JSON or has no
job id) is `submit_unknown`: a job may be queued under an id never learnt.
A first-tier job can carry RunPod's job policy `{"ttl": ms}` (`run_body`), so
that such a job cannot outlive its tier's budget by much.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from client.errors import AttemptFailed, ClientError, FailureReason, JobRejected

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


def default_base_url() -> str:
    import runpod  # the SDK's resolution of RUNPOD_ENDPOINT_BASE_URL

    return str(runpod.endpoint_url_base).rstrip("/")


def default_api_key() -> str:
    import runpod

    return str(runpod.api_key or "")


# Failures of POST /run that prove no job was queued: the request never left (connect), or the
# endpoint refused it before queueing (429, another 4xx). Every other failure leaves the job unknown.
SUBMIT_NOT_QUEUED = frozenset({FailureReason.CONNECT, FailureReason.THROTTLED, FailureReason.HTTP_ERROR})


def failure_reason(exc: Exception) -> tuple[FailureReason, str]:
    """The reason and message for an httpx error (or a body that is not JSON)."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status == 429:
            reason = FailureReason.THROTTLED
        elif status >= 500:
            reason = FailureReason.SERVER_ERROR
        else:
            reason = FailureReason.HTTP_ERROR
        return reason, f"HTTP {status} from {exc.request.url.path}"
    # before the Timeout branch: ConnectTimeout and PoolTimeout are timeouts, but no connection
    # was made (or taken from the pool), so no byte of the request was sent
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return FailureReason.CONNECT, f"no connection ({type(exc).__name__}: {exc})"
    if isinstance(exc, httpx.TimeoutException):
        return FailureReason.TIMEOUT, f"no answer in time ({type(exc).__name__})"
    if isinstance(exc, json.JSONDecodeError):
        return FailureReason.SERVER_ERROR, f"the answer is not JSON ({exc})"
    return FailureReason.CONNECTION, f"{type(exc).__name__}: {exc}"


def http_failure(endpoint_id: str, exc: Exception, job_id: str | None = None, *, submit: bool = False) -> AttemptFailed:
    """The `AttemptFailed` for a failed call; for POST /run (`submit`), `submit_unknown` unless nothing was queued."""
    reason, message = failure_reason(exc)
    if submit and reason not in SUBMIT_NOT_QUEUED:
        return AttemptFailed(
            endpoint_id,
            FailureReason.SUBMIT_UNKNOWN,
            f"POST /run was sent but its answer was lost ({reason.value}: {message}); "
            "a job may be queued under an id never learnt",
        )
    return AttemptFailed(endpoint_id, reason, message, job_id=job_id)


def run_body(job_input: Any, ttl_ms: int | None = None) -> dict[str, Any]:
    """The body of POST /run; `ttl_ms` becomes RunPod's job policy `ttl` (queue + execution, ms)."""
    if ttl_ms is None:
        return {"input": job_input}
    return {"input": job_input, "policy": {"ttl": ttl_ms}}


def submitted(endpoint_id: str, body: Any) -> dict[str, Any]:
    """The answer to POST /run, checked: without its job id a queued job could be neither polled nor cancelled."""
    if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return body
    raise AttemptFailed(
        endpoint_id,
        FailureReason.SUBMIT_UNKNOWN,
        f"the answer to POST /run has no job `id` (a non-empty string): {body!r:.200}",
    )


def worker_error(error: Any) -> dict[str, Any] | None:
    """The worker's `{type, message, field}` inside a FAILED job's `error`, if it is one."""
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except json.JSONDecodeError:
            return None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return error
    return None


def outcome(endpoint_id: str, state: dict[str, Any], no_fallback_types: frozenset[str]) -> Any:
    """The output of a final job state, or the `AttemptFailed` that says why there is none."""
    status, job_id = state.get("status"), state.get("id")
    if status == "COMPLETED":
        return state.get("output")
    if status == "TIMED_OUT":
        raise AttemptFailed(
            endpoint_id, FailureReason.TIMEOUT, "the endpoint's execution timeout passed", job_id=job_id
        )
    if status == "CANCELLED":
        raise AttemptFailed(endpoint_id, FailureReason.JOB_ERROR, "the job was cancelled", job_id=job_id)
    error = state.get("error")
    parsed = worker_error(error)
    if parsed is None:  # FAILED with no worker error object: the worker died (RunPod's retries spent)
        raise AttemptFailed(
            endpoint_id, FailureReason.WORKER_LOST, f"job failed without a worker error: {error!s:.300}", job_id=job_id
        )
    message = f"{parsed['type']}: {parsed.get('message', '')}"
    if parsed["type"] in no_fallback_types:
        raise JobRejected(endpoint_id, FailureReason.REJECTED, message, job_id=job_id, worker_error=parsed)
    raise AttemptFailed(endpoint_id, FailureReason.JOB_ERROR, message, job_id=job_id, worker_error=parsed)


class _Base:
    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        self.base_url = (base_url or default_base_url()).rstrip("/")
        key = api_key if api_key is not None else default_api_key()
        if not key:
            raise ClientError("no RunPod API key: set runpod.api_key (or RUNPOD_API_KEY via the SDK) or pass api_key")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def url(self, endpoint_id: str, route: str) -> str:
        return f"{self.base_url}/{endpoint_id}/{route}"


class EndpointAPI(_Base):
    """Blocking calls (httpx.Client). `transport` is injectable, as httpx allows."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        super().__init__(base_url, api_key)
        self.request_timeout = request_timeout
        self._http = httpx.Client(headers=self.headers, transport=transport, timeout=request_timeout)

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        endpoint_id: str,
        method: str,
        route: str,
        *,
        job_id: str | None = None,
        submit: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, self.url(endpoint_id, route), **kwargs)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise http_failure(endpoint_id, exc, job_id, submit=submit) from exc
        return body

    def run(self, endpoint_id: str, job_input: Any, *, ttl_ms: int | None = None) -> dict[str, Any]:
        """Queue a job (`/run`): the answer carries its id at once, so it can always be cancelled."""
        body = self._call(endpoint_id, "POST", "run", submit=True, json=run_body(job_input, ttl_ms))
        return submitted(endpoint_id, body)

    def status(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        return self._call(endpoint_id, "GET", f"status/{job_id}", job_id=job_id)

    def cancel(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        return self._call(endpoint_id, "POST", f"cancel/{job_id}", job_id=job_id)

    def health(self, endpoint_id: str) -> dict[str, Any]:
        return self._call(endpoint_id, "GET", "health")


class AsyncEndpointAPI(_Base):
    """The same calls on httpx.AsyncClient."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        super().__init__(base_url, api_key)
        self.request_timeout = request_timeout
        self._http = httpx.AsyncClient(headers=self.headers, transport=transport, timeout=request_timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        endpoint_id: str,
        method: str,
        route: str,
        *,
        job_id: str | None = None,
        submit: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, self.url(endpoint_id, route), **kwargs)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise http_failure(endpoint_id, exc, job_id, submit=submit) from exc
        return body

    async def run(self, endpoint_id: str, job_input: Any, *, ttl_ms: int | None = None) -> dict[str, Any]:
        body = await self._call(endpoint_id, "POST", "run", submit=True, json=run_body(job_input, ttl_ms))
        return submitted(endpoint_id, body)

    async def status(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        return await self._call(endpoint_id, "GET", f"status/{job_id}", job_id=job_id)

    async def cancel(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        return await self._call(endpoint_id, "POST", f"cancel/{job_id}", job_id=job_id)

    async def health(self, endpoint_id: str) -> dict[str, Any]:
        return await self._call(endpoint_id, "GET", "health")
