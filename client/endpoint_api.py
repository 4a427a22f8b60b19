"""The serverless endpoint API over HTTP (sync and async), and what its answers mean.

The same routes the `runpod` SDK's `Endpoint` calls (`/run`, `/status`,
`/cancel`, `/health`, under `runpod.endpoint_url_base`, which the SDK takes
from RUNPOD_ENDPOINT_BASE_URL). The fallback client needs two things the SDK's
`Endpoint.run_sync` does not give: the job id at once (its `/runsync` request
gives none until it returns, so a job abandoned mid-request could not be
cancelled) and the `error` of a FAILED job (`run_sync` returns None for it, so
the caller's bad input could not be told from a lost worker). Transport errors become
`AttemptFailed` with a `FailureReason` here, at the boundary.
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


def _http_failure(endpoint_id: str, exc: Exception, job_id: str | None = None) -> AttemptFailed:
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status == 429:
            reason = FailureReason.THROTTLED
        elif status >= 500:
            reason = FailureReason.SERVER_ERROR
        else:
            reason = FailureReason.HTTP_ERROR
        return AttemptFailed(endpoint_id, reason, f"HTTP {status} from {exc.request.url.path}", job_id=job_id)
    if isinstance(exc, httpx.TimeoutException):
        return AttemptFailed(
            endpoint_id, FailureReason.TIMEOUT, f"no answer in time ({type(exc).__name__})", job_id=job_id
        )
    return AttemptFailed(endpoint_id, FailureReason.CONNECTION, f"{type(exc).__name__}: {exc}", job_id=job_id)


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
    if parsed is None:  # FAILED with no worker error object: the worker crashed or vanished (preempted)
        raise AttemptFailed(
            endpoint_id, FailureReason.PREEMPTED, f"job failed without a worker error: {error!s:.300}", job_id=job_id
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
        self, endpoint_id: str, method: str, route: str, *, job_id: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, self.url(endpoint_id, route), **kwargs)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise _http_failure(endpoint_id, exc, job_id) from exc
        return body

    def run(self, endpoint_id: str, job_input: Any) -> dict[str, Any]:
        """Queue a job (`/run`): the answer carries its id at once, so it can always be cancelled."""
        return self._call(endpoint_id, "POST", "run", json={"input": job_input})

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
        self, endpoint_id: str, method: str, route: str, *, job_id: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, self.url(endpoint_id, route), **kwargs)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise _http_failure(endpoint_id, exc, job_id) from exc
        return body

    async def run(self, endpoint_id: str, job_input: Any) -> dict[str, Any]:
        return await self._call(endpoint_id, "POST", "run", json={"input": job_input})

    async def status(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        return await self._call(endpoint_id, "GET", f"status/{job_id}", job_id=job_id)

    async def cancel(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        return await self._call(endpoint_id, "POST", f"cancel/{job_id}", job_id=job_id)

    async def health(self, endpoint_id: str) -> dict[str, Any]:
        return await self._call(endpoint_id, "GET", "health")
