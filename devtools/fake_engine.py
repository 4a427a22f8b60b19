"""An in-process engine for unit tests: deterministic answers, timings and faults.

`FakeEngine` is a `handler.engine_protocol.Engine`, as `handler.engine.EngineManager`
is, so a `handler.worker.Worker` runs on it unchanged, without vLLM:

- **answers**: the prompt's words (a chat's message contents), one per token, again
  and again: ``"a b c"`` answers ``" a b c a b"``. The prompt counts one token per word;
  the answer runs `answer_tokens` tokens and stops, or to `max_tokens` ("length"),
  or always to `max_tokens` with ``ignore_eos``; ``n`` answers are alike. Plain
  answers and streamed chunks are shaped as vLLM's OpenAI server sends them on
  /v1/completions and /v1/chat/completions (streams with running usage in every
  chunk, then a last chunk with usage and no choices); GET /v1/models lists the model.
- **time**: a start takes `start_seconds`; an answer `per_token_seconds` per token
  step (the `n` answers of a request in parallel, as a batch). Time passes by
  `sleep` (`asyncio.sleep` by default). With a `SimClock` as both `clock` and
  `sleep` time is simulated: each sleep moves the clock at once (concurrent
  sleeps add up, never overlap), so money figures can be worked by hand.
- **faults**, each used once: `fail_starts` (`EngineStartError`), `crash` after
  some tokens (`EngineCrashed`; the engine dies and the requests in flight fail with
  it, or only the connection drops), `refuse` with an HTTP status (mapped to errors
  as `EngineManager` maps vLLM's answers). A fault applies to the next request, or
  to the next one whose prompt contains `match`.

`calls` records every request that reached the engine (route, body).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from core.contract import CHAT_ROUTE, MODELS_ROUTE
from handler.engine import raise_for_status  # the real mapping of an error answer to the worker's errors
from handler.errors import EngineCrashed, EngineStartError

if TYPE_CHECKING:
    from handler.engine import EngineManager
    from handler.engine_protocol import Engine

VLLM_DEFAULT_MAX_TOKENS = 16  # vLLM's own default on /v1/completions when a body gives none


class SimClock:
    """Simulated seconds: a clock to call and a `sleep` that moves it forward at once."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real wait would


@dataclass
class _Fault:
    match: str | None  # None: the next request
    after_tokens: int = 0
    engine_dies: bool = True
    status: int | None = None  # an error answer instead of a crash
    message: str = ""


@dataclass(frozen=True)
class _Answer:
    """What the fake generates for one request."""

    route: str
    model: str
    request_id: str
    created: int
    prompt_tokens: int
    tokens: list[str]  # one answer's tokens, each a word with its leading space
    finish: str
    n: int

    def usage(self, completion_tokens: int) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens + completion_tokens,
                "completion_tokens": completion_tokens, "prompt_tokens_details": None}  # fmt: skip

    def response(self) -> dict[str, Any]:
        text = "".join(self.tokens)
        common = {"id": self.request_id, "created": self.created, "model": self.model}
        usage = self.usage(len(self.tokens) * self.n)
        if self.route == CHAT_ROUTE:
            choices = [{"index": i, "message": {"role": "assistant", "content": text, "tool_calls": []},
                        "logprobs": None, "finish_reason": self.finish, "stop_reason": None}
                       for i in range(self.n)]  # fmt: skip
            return {**common, "object": "chat.completion", "choices": choices, "usage": usage, "prompt_logprobs": None}
        choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": self.finish, "stop_reason": None,
                    "prompt_logprobs": None} for i in range(self.n)]  # fmt: skip
        return {**common, "object": "text_completion", "choices": choices, "usage": usage}

    def _chunk(self, choice: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.route == CHAT_ROUTE else "text_completion"
        return {"id": self.request_id, "object": kind, "created": self.created, "model": self.model,
                "choices": [choice], "usage": self.usage(completion_tokens)}  # fmt: skip

    def opening_chunks(self) -> list[dict[str, Any]]:
        """A chat stream opens with each answer's role (no token yet)."""
        if self.route != CHAT_ROUTE:
            return []
        return [self._chunk({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}, 0) for i in range(self.n)]  # fmt: skip

    def step_chunks(self, step: int) -> list[dict[str, Any]]:
        """Token `step` of every answer, one chunk each; the last step carries the finish reason."""
        finish = self.finish if step == len(self.tokens) - 1 else None
        out = []
        for i in range(self.n):
            made = step * self.n + i + 1
            if self.route == CHAT_ROUTE:
                choice = {"index": i, "delta": {"content": self.tokens[step]}, "logprobs": None,
                          "finish_reason": finish}  # fmt: skip
            else:
                choice = {"index": i, "text": self.tokens[step], "logprobs": None, "finish_reason": finish,
                          "stop_reason": None}  # fmt: skip
            out.append(self._chunk(choice, made))
        return out

    def closing_chunk(self) -> dict[str, Any]:
        """The last chunk (`include_usage`): no choices, the whole usage."""
        chunk = self._chunk({}, len(self.tokens) * self.n)
        chunk["choices"] = []
        return chunk


def prompt_text(body: Mapping[str, Any]) -> str:
    """The prompt, or a chat's message contents joined by spaces."""
    if "prompt" in body:
        prompt = body["prompt"]
        return " ".join(str(p) for p in prompt) if isinstance(prompt, list) else str(prompt)
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, Mapping)]
        elif content:
            parts.append(str(content))
    return " ".join(parts)


class FakeEngine:
    def __init__(
        self,
        *,
        start_seconds: float = 1.0,
        per_token_seconds: float = 0.01,
        answer_tokens: int = 8,
        model_name: str = "fake-model",
        device: str = "cpu",
        max_start_failures: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.start_seconds = start_seconds
        self.per_token_seconds = per_token_seconds
        self.answer_tokens = answer_tokens
        self.model_name = model_name
        self.device = device
        self.max_start_failures = max_start_failures
        self._clock = clock
        self._sleep = sleep
        self.starting_since: float | None = None
        self.last_start_seconds: float | None = None
        self.last_start_phases: dict[str, float] = {}
        self.start_failures = 0  # failed starts in a row
        self.start_attempts = 0
        self.starts = 0  # successful starts
        self.calls: list[tuple[str, dict[str, Any] | None]] = []
        self._running = False
        self._life = 0  # which start the engine runs from: a request of an earlier one has lost its engine
        self._start_lock = asyncio.Lock()
        self._failing_starts: list[str] = []
        self._faults: list[_Fault] = []

    # ------------------------------------------------------------------ scripting
    def fail_starts(self, count: int = 1, message: str = "engine exited with code 1 while starting") -> None:
        """The next `count` starts fail after `start_seconds`."""
        self._failing_starts += [message] * count

    def crash(self, *, after_tokens: int = 0, match: str | None = None, engine_dies: bool = True) -> None:
        """A request (the next, or the next whose prompt contains `match`) fails with `EngineCrashed`
        after `after_tokens` token steps. `engine_dies`: the engine is gone (the other requests in
        flight fail too; the next job starts it again); else only this connection drops."""
        self._faults.append(_Fault(match, after_tokens=after_tokens, engine_dies=engine_dies))

    def refuse(self, status: int = 400, message: str = "bad request", *, match: str | None = None) -> None:
        """A request gets an error answer at once: a 4xx (not 429) is `ValidationFailed`, others
        `EngineRequestError`, as from vLLM."""
        self._faults.append(_Fault(match, status=status, message=message))

    # ------------------------------------------------------------------ state
    @property
    def ready(self) -> bool:
        return self._running

    @property
    def needs_refresh(self) -> bool:
        return self.start_failures >= self.max_start_failures

    async def ensure_started(self) -> float:
        async with self._start_lock:  # callers during a start wait for that one
            if self._running:
                return 0.0
            started = self._clock()
            self.starting_since = started
            self.start_attempts += 1
            try:
                await self._sleep(self.start_seconds)
                if self._failing_starts:
                    self.start_failures += 1
                    message = self._failing_starts.pop(0)
                    raise EngineStartError(message, log_tail=[f"fake engine: {message}"])
            finally:
                self.starting_since = None
            self._running = True
            self._life += 1
            self.start_failures = 0
            self.starts += 1
            self.last_start_seconds = self._clock() - started
            self.last_start_phases = {"total_s": round(self.last_start_seconds, 2)}
            return self.last_start_seconds

    async def stop(self) -> None:
        self._running = False

    async def aclose(self) -> None:
        await self.stop()

    # ------------------------------------------------------------------ requests
    async def request(self, route: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append((route, None if body is None else dict(body)))
        life = self._require_running()
        if body is None:
            if route != MODELS_ROUTE:
                raise_for_status(404, orjson.dumps({"detail": "Not Found"}))
            return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0,
                                                "owned_by": "vllm", "root": self.model_name}]}  # fmt: skip
        answer, fault = self._answer(route, body), self._fault_for(body)
        steps = len(answer.tokens) if fault is None else min(fault.after_tokens, len(answer.tokens))
        await self._sleep(steps * self.per_token_seconds)
        self._check_alive(life)
        if fault is not None:
            self._fail(fault)
        return answer.response()

    async def stream(self, route: str, body: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.calls.append((route, dict(body)))
        life = self._require_running()
        answer, fault = self._answer(route, body), self._fault_for(body)
        if fault is not None and fault.status is not None:
            self._fail(fault)
        for chunk in answer.opening_chunks():
            yield chunk
        for step in range(len(answer.tokens)):
            if fault is not None and step == fault.after_tokens:
                self._fail(fault)
            await self._sleep(self.per_token_seconds)
            self._check_alive(life)
            for chunk in answer.step_chunks(step):
                yield chunk
        if fault is not None:  # after_tokens past the answer's end
            self._fail(fault)
        yield answer.closing_chunk()

    # ------------------------------------------------------------------ inside
    def _require_running(self) -> int:
        if not self._running:
            raise EngineCrashed("the engine is not running (it stopped or died); the next job restarts it")
        return self._life

    def _check_alive(self, life: int) -> None:
        if not self._running or self._life != life:
            raise EngineCrashed("the engine exited with code -9 during the request; the next job restarts it")

    def _fault_for(self, body: Mapping[str, Any]) -> _Fault | None:
        text = prompt_text(body)
        for fault in self._faults:
            if fault.match is None or fault.match in text:
                self._faults.remove(fault)
                return fault
        return None

    def _fail(self, fault: _Fault) -> None:
        if fault.status is not None:
            raise_for_status(fault.status, orjson.dumps({"error": {"message": fault.message}}))
        if fault.engine_dies:
            self._running = False
            raise EngineCrashed("the engine exited with code -9 during the request; the next job restarts it")
        raise EngineCrashed("the engine dropped the connection during the request; the next job restarts it")

    def _answer(self, route: str, body: Mapping[str, Any]) -> _Answer:
        words = prompt_text(body).split() or ["fake"]
        max_tokens = int(body.get("max_tokens") or VLLM_DEFAULT_MAX_TOKENS)
        if body.get("ignore_eos") or self.answer_tokens >= max_tokens:
            count, finish = max_tokens, "length"
        else:
            count, finish = self.answer_tokens, "stop"
        prefix = "chatcmpl" if route == CHAT_ROUTE else "cmpl"
        return _Answer(route=route, model=self.model_name, request_id=f"{prefix}-fake-{len(self.calls)}",
                       created=int(self._clock()), prompt_tokens=len(words),
                       tokens=[f" {words[i % len(words)]}" for i in range(count)], finish=finish,
                       n=max(1, int(body.get("n") or 1)))  # fmt: skip


if TYPE_CHECKING:  # mypy proves both engines fit what the worker and the app use of one

    def _both_are_engines(real: EngineManager, fake: FakeEngine) -> tuple[Engine, Engine]:
        return real, fake
