"""RunPod's OpenAI-compatible route, under /v2/{endpoint}/openai/v1 (what the `openai` client calls):

    POST /openai/v1/chat/completions   job {"openai_route": "/v1/chat/completions", "openai_input": body}
    POST /openai/v1/completions        job {"openai_route": "/v1/completions", "openai_input": body}
    GET  /openai/v1/models             job {"openai_route": "/v1/models"}

Each request becomes a job on the endpoint's queue, as RunPod turns it into one for the worker
(worker-vllm reads exactly these two fields). A plain request answers with the job's output as the
body (a generator worker's output is the list of its pieces: its one piece). A streamed one
(`"stream": true`) answers `text/event-stream` and relays the job's stream pieces as they come:
strings as they are (worker-vllm's and this worker's RAW_OPENAI_OUTPUT=1: `data: {chunk}\\n\\n`...),
objects and lists of objects as `data:` events (RAW_OPENAI_OUTPUT=0); `data: [DONE]` ends it when
the worker sent none. A client that goes away cancels its job.

Errors answer OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the status
OpenAI would give (`job_error`). A job that fails before its first piece answers the status; one
that fails mid-stream ends the stream with a `data: {"error": ...}` event (the `openai` package
raises it as APIError). The worker's error types map as:

    validation_error                       400 invalid_request_error (param: the field, without `openai_input.`)
    model_not_found                        404 invalid_request_error, code model_not_found, param model
    budget_exceeded                        429 insufficient_quota (OpenAI's own answer to a spent quota), with
                                           `x-should-retry: false`: the openai client would otherwise retry it,
                                           and each retry is a job that keeps a worker billed past the limit
    budget_unavailable, store_unavailable,
    engine_start_failed                    503 service_unavailable, `code` the type (a retry may find it back)
    any other (engine_crashed ...)         500 server_error (`code`: the worker's type)
    a TIMED_OUT job, no answer in time     504 timeout

An error body in OpenAI's or vLLM's own shape (`{"error": {...}}`, `{"object": "error", ...}`) keeps
its message and its code as the status.

Not verified against RunPod (it publishes no more than the base URL, the three routes and the `model`
rule): the exact job input for /models, whether RunPod answers an error with a status (in 2024 it
answered a vLLM error body with 200: runpod-workers/worker-vllm#57), whether it cancels a job whose
client left, how long it waits, and its rate limits for this route; here it counts like /runsync in
a window of its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devtools.platform.config import ConfigError, Limits
from devtools.platform.endpoint import Endpoint
from devtools.platform.jobs import Job
from devtools.platform.routes_client import Window

ROUTES = {"chat/completions": "/v1/chat/completions", "completions": "/v1/completions"}
DONE = "data: [DONE]\n\n"
# this worker's error type: (status, OpenAI type, OpenAI code); any other: 500 server_error, code the type
ERROR_TYPES: dict[str, tuple[int, str, str | None]] = {
    "validation_error": (400, "invalid_request_error", None),
    "model_not_found": (404, "invalid_request_error", "model_not_found"),
    "budget_exceeded": (429, "insufficient_quota", "insufficient_quota"),
    "budget_unavailable": (503, "service_unavailable", "budget_unavailable"),
    "store_unavailable": (503, "service_unavailable", "store_unavailable"),
    "engine_start_failed": (503, "service_unavailable", "engine_start_failed"),
}
_TYPE_OF_STATUS = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                   429: "rate_limit_exceeded", 503: "service_unavailable", 504: "timeout"}  # fmt: skip


@dataclass(frozen=True)
class OpenAIError:
    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None

    @classmethod
    def of(cls, status: int, message: str, kind: str | None = None, **extra: str | None) -> OpenAIError:
        return cls(status, message, kind or _TYPE_OF_STATUS.get(status, "server_error"), **extra)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        headers = {"x-should-retry": "false"} if self.type == "insufficient_quota" else None
        return web.json_response(self.body(), status=self.status, headers=headers)


def openai_error(status: int, message: str, kind: str | None = None) -> web.Response:
    return OpenAIError.of(status, message, kind).response()


def job_error(error: Any) -> OpenAIError:
    """A failed job's error (this worker's JSON string `{"type", "message", "field"}`, an OpenAI or
    vLLM error body, or any text) as OpenAI's error."""
    parsed = error
    if isinstance(error, str):
        with contextlib.suppress(ValueError):
            parsed = json.loads(error)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        parsed = parsed["error"]  # OpenAI's shape (vLLM's ErrorResponse since 2025)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("message"), str):
        return OpenAIError.of(500, str(error), "server_error")
    message, kind = parsed["message"], str(parsed.get("type") or "")
    if "field" in parsed:  # this worker's error
        status, openai_type, code = ERROR_TYPES.get(kind, (500, "server_error", kind or None))
        field = "model" if code == "model_not_found" else parsed.get("field")
        param = field.removeprefix("openai_input.") if isinstance(field, str) else None
        return OpenAIError(status, message, openai_type, param=param, code=code)
    raw_code, raw_param = parsed.get("code"), parsed.get("param")
    status = raw_code if isinstance(raw_code, int) and 400 <= raw_code < 600 else 500
    return OpenAIError.of(status, message, kind or None, param=raw_param if isinstance(raw_param, str) else None,
                          code=raw_code if isinstance(raw_code, str) else None)  # fmt: skip


def _failure(job: Job) -> OpenAIError:
    if job.status == "TIMED_OUT":
        return OpenAIError.of(504, "the job ran past the endpoint's execution timeout", "timeout")
    if job.status == "CANCELLED":
        return OpenAIError.of(500, "the job was cancelled", "server_error")
    return job_error(job.error)


def _body_of(output: Any) -> Any:
    """A plain answer: a generator worker's output is the list of its pieces (one, for a plain request)."""
    if isinstance(output, list) and output and all(isinstance(p, dict) for p in output):
        return output[-1]
    return output


def events(piece: Any) -> str:
    """A stream piece as server-sent events: a string as it is, an object or a list of them as `data:`."""
    if isinstance(piece, str):
        return piece
    items = piece if isinstance(piece, list) else [piece]
    return "".join(f"data: {json.dumps(item, separators=(',', ':'))}\n\n" for item in items)


class OpenAIRoutes:
    def __init__(self, endpoints: Callable[[str], Endpoint | None], limits: Limits) -> None:
        self.endpoints = endpoints
        self.limits = limits
        self._windows: dict[str, Window] = {}
        self._open: dict[str, int] = {}

    def routes(self) -> list[web.RouteDef]:
        p = "/v2/{ep}/openai/v1"
        return [
            web.post(f"{p}/chat/completions", self.completion),
            web.post(f"{p}/completions", self.completion),
            web.get(f"{p}/models", self.models),
            web.route("*", "/v2/{ep}/openai/{rest:.*}", self.unknown),
        ]

    # ------------------------------------------------------------ routes
    async def completion(self, request: web.Request) -> web.StreamResponse:
        route = ROUTES[request.path.split("/openai/v1/", 1)[1]]
        if (request.content_length or 0) > self.limits.runsync_payload_bytes:
            return openai_error(413, f"payload over {self.limits.runsync_payload_bytes} bytes")
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return openai_error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return openai_error(400, "the body must be a JSON object")
        job_input = {"openai_route": route, "openai_input": body}
        if body.get("stream") is True:
            return await self._run(request, job_input, self._relay)
        return await self._run(request, job_input, self._answer)

    async def models(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, {"openai_route": "/v1/models"}, self._answer)

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        return openai_error(404, f"{request.method} {request.path}: no such route (the OpenAI routes are "
                            "/openai/v1/chat/completions, /completions and /models)")  # fmt: skip

    # ------------------------------------------------------------ a job
    async def _run(
        self, request: web.Request, job_input: dict[str, Any], answer: Callable[..., Any]
    ) -> web.StreamResponse:
        ep = self.endpoints(request.match_info["ep"])
        if ep is None:
            return openai_error(404, "endpoint not found")
        window = self._windows.setdefault(ep.id, Window(self.limits.runsync_per_10s))
        wait = window.allow(time.monotonic())
        if wait:
            return openai_error(429, "rate limit exceeded", "rate_limit_exceeded")
        if self._open.get(ep.id, 0) >= self.limits.runsync_concurrent:
            return openai_error(429, "too many open requests", "rate_limit_exceeded")
        self._open[ep.id] = self._open.get(ep.id, 0) + 1
        try:
            try:
                job = ep.submit(job_input, sync=True)
            except ConfigError as exc:
                return openai_error(400, str(exc))
            response: web.StreamResponse = await answer(request, ep, job)
            return response
        finally:
            self._open[ep.id] -= 1

    async def _answer(self, request: web.Request, ep: Endpoint, job: Job) -> web.StreamResponse:
        await ep.board.wait_final(job, self.limits.openai_wait_s)
        if not job.final:
            ep.board.cancel(job, time.monotonic())
            return openai_error(504, f"no answer within {self.limits.openai_wait_s:.0f} s", "timeout")
        if job.status != "COMPLETED":
            return _failure(job).response()
        body = _body_of(job.output)
        if isinstance(body, dict) and (isinstance(body.get("error"), dict) or body.get("object") == "error"):
            return job_error(body).response()  # an error answered as output (vLLM's ErrorResponse, worker-vllm)
        return web.json_response(body)

    async def _relay(self, request: web.Request, ep: Endpoint, job: Job) -> web.StreamResponse:
        deadline = time.monotonic() + self.limits.openai_wait_s
        while not job.final and not job.stream and (left := deadline - time.monotonic()) > 0:
            await ep.board.wait_change(left)  # the first piece, or the end: a failure before it is a status
        if not job.stream:
            if not job.final:
                ep.board.cancel(job, time.monotonic())
                return openai_error(504, f"no answer within {self.limits.openai_wait_s:.0f} s", "timeout")
            if job.status != "COMPLETED":
                return _failure(job).response()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        sent, done = 0, False
        # the pieces as they come; a job that streamed none (a plain handler) answered with its output
        output = job.output if isinstance(job.output, list) else [job.output] if job.has_output else []
        pieces: list[Any] = job.stream or output
        try:
            while True:
                for piece in pieces[sent:]:
                    text = events(piece)
                    done = done or DONE.strip() in text
                    await response.write(text.encode())
                sent = len(pieces)
                if job.final and sent == len(pieces):
                    break
                await ep.board.wait_change(1.0)
            if job.status != "COMPLETED":
                await response.write(events(_failure(job).body()).encode())
            elif not done:
                await response.write(DONE.encode())
            await response.write_eof()
        except ConnectionResetError:  # the client went away: nobody reads the rest
            ep.board.cancel(job, time.monotonic())
        return response
