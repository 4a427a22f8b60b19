"""The job contract: typed input models, validation, and normalisation (the one job-shape parser).

A job's ``input`` takes one of four shapes::

    {"prompt": "...", "sampling_params": {...}}
    {"messages": [{"role": "user", "content": "..."}], "sampling_params": {...}}
    {"openai_route": "/v1/chat/completions", "openai_input": {...}}
    {"requests": [ <any of the above>, ... ]}

plus ``"stream": true``, ``"cache": {"bypass"|"refresh"|"ttl"}`` and
``"max_cost_usd"`` (a cost cap that shortens the answer) on single jobs.
`parse_job` turns it into `EngineRequest` objects whose body is what vLLM's
OpenAI server receives, with every sampling parameter filled in (so the cache
key sees an omitted value and its explicit default alike). Bad input raises
`InputError` naming the field; each part reports it in its own terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import InputError

CHAT_ROUTE = "/v1/chat/completions"
COMPLETIONS_ROUTE = "/v1/completions"
MODELS_ROUTE = "/v1/models"
OpenAIRoute = Literal["/v1/chat/completions", "/v1/completions", "/v1/models"]
DEFAULT_MAX_TOKENS = 256  # the worker's DEFAULT_MAX_TOKENS default
MAX_STOPS = 16
MAX_STOP_CHARS = 256
MAX_LOGPROBS = 20
# OpenAI fields that are not sampling parameters but change the work: checked here, passed through
_OPENAI_COUNTS = {"best_of": (1, 16), "logprobs": (0, MAX_LOGPROBS), "top_logprobs": (0, MAX_LOGPROBS)}
_OPENAI_PROMPT_LIKE = ("tools", "functions", "response_format", "suffix")


@dataclass(frozen=True)
class JobLimits:
    """The worker's limits on a job: its settings' MAX_* and DEFAULT_MAX_TOKENS, whose defaults live
    in handler.settings (DEFAULT_MAX_TOKENS here, as the client's routing needs it too)."""

    default_max_tokens: int
    max_tokens_limit: int
    max_prompt_chars: int
    max_batch_size: int
    max_cost_usd_per_job: float  # 0: no cap unless the job sets max_cost_usd


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class SamplingParams(_Strict):
    """Sampling parameters. Defaults match vLLM's own (served with --generation-config vllm)."""

    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    seed: int | None = None
    stop: list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]] = Field(default_factory=list, max_length=MAX_STOPS)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    n: int = Field(1, ge=1, le=16)

    @model_validator(mode="before")
    @classmethod
    def _stop_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stop"), str):
            return {**data, "stop": [data["stop"]]}
        return data


class CacheSpec(_Strict):
    bypass: bool = False
    refresh: bool = False
    ttl: int | None = Field(None, ge=1)


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(min_length=1)]


class _Single(_Strict):
    stream: bool = False
    cache: CacheSpec = Field(default_factory=CacheSpec)
    max_cost_usd: float | None = Field(None, gt=0)


class PromptJob(_Single):
    prompt: Annotated[str, Field(min_length=1)]
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)


class ChatJob(_Single):
    messages: Annotated[list[Message], Field(min_length=1)]
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)


class OpenAIJob(_Single):
    openai_route: OpenAIRoute
    openai_input: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class EngineRequest:
    """One request for the engine, in the engine's own terms."""

    route: str
    body: dict[str, Any]
    stream: bool = False
    openai: bool = False  # answer in the OpenAI response shape
    cache: CacheSpec = field(default_factory=CacheSpec)
    max_cost_usd: float | None = None

    @property
    def max_tokens(self) -> int:
        return int(self.body.get("max_tokens") or 0)

    @property
    def completions(self) -> int:
        """Answers asked for (`n`): each may run to `max_tokens`."""
        return max(1, int(self.body.get("n") or 1))

    @property
    def prompt_texts(self) -> list[str]:
        """The prompt's texts, message by message (what a tokenizer counts)."""
        return _texts(self.body.get("prompt") if "prompt" in self.body else self.body.get("messages"))

    @property
    def prompt_chars(self) -> int:
        return sum(len(text) for text in self.prompt_texts)


@dataclass(frozen=True)
class Job:
    """A parsed job: one request, or a batch whose items may have failed validation."""

    items: list[EngineRequest | InputError]
    batch: bool


_SINGLE_KEYS: dict[str, type[_Single]] = {"prompt": PromptJob, "messages": ChatJob, "openai_route": OpenAIJob}


def _field_of(err: Any, prefix: str) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    return f"{prefix}{loc}" if loc else prefix.rstrip(".") or "input"


def _validate(model: type[_Strict], data: dict[str, Any], prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _field_of(err, prefix)
        raise InputError(f"{where}: {err['msg']}", field=where) from exc


def _check_limits(req: EngineRequest, limits: JobLimits, prefix: str, params_prefix: str) -> EngineRequest:
    body = req.body
    if "max_tokens" in body and body["max_tokens"] > limits.max_tokens_limit:
        where = f"{params_prefix}max_tokens"
        raise InputError(f"{where}: {body['max_tokens']} is over the limit of {limits.max_tokens_limit}", field=where)
    text = body.get("prompt") if "prompt" in body else body.get("messages")
    size = _prompt_chars(text)
    if size > limits.max_prompt_chars:
        where = f"{prefix}{'prompt' if 'prompt' in body else 'messages'}"
        raise InputError(f"{where}: {size} characters is over the limit of {limits.max_prompt_chars}", field=where)
    return req


def _texts(value: Any) -> list[str]:
    """The prompt's texts: a string, messages, or OpenAI content parts ({"type": "text", "text": ...})."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for v in value for text in _texts(v)]
    if isinstance(value, dict):
        return [text for name in ("content", "text", "image_url", "url") for text in _texts(value.get(name))]
    return [str(value)]


def _prompt_chars(value: Any) -> int:
    return sum(len(text) for text in _texts(value))


def _sampling_body(params: SamplingParams, limits: JobLimits) -> dict[str, Any]:
    body = params.model_dump()
    if body["max_tokens"] is None:
        body["max_tokens"] = limits.default_max_tokens
    return body


def _openai_body(job: OpenAIJob, limits: JobLimits, prefix: str) -> dict[str, Any]:
    body = dict(job.openai_input)
    body.pop("model", None)  # the worker serves one model; its name is filled in by the engine
    if job.openai_route == MODELS_ROUTE:
        return {}
    needed = "messages" if job.openai_route == CHAT_ROUTE else "prompt"
    if not body.get(needed):
        where = f"{prefix}openai_input.{needed}"
        raise InputError(f"{where}: required for {job.openai_route}", field=where)
    if body.get("stream") is not None and not isinstance(body.get("stream"), bool):
        where = f"{prefix}openai_input.stream"
        raise InputError(f"{where}: must be a boolean", field=where)
    _check_openai_extras(body, limits, f"{prefix}openai_input.")
    known = set(SamplingParams.model_fields)
    sampling = {k: v for k, v in body.items() if k in known}
    if "max_completion_tokens" in body:
        # vLLM prefers it over max_tokens: it is the cap, validated and limited like max_tokens
        completion = body.pop("max_completion_tokens")
        where = f"{prefix}openai_input.max_completion_tokens"
        if not isinstance(completion, int) or isinstance(completion, bool) or completion < 1:
            raise InputError(f"{where}: must be a whole number of at least 1", field=where)
        if completion > limits.max_tokens_limit:
            raise InputError(f"{where}: {completion} is over the limit of {limits.max_tokens_limit}", field=where)
        sampling["max_tokens"] = completion
    filled = _sampling_body(_validate(SamplingParams, sampling, f"{prefix}openai_input."), limits)
    body.update(filled)
    return body


def _check_openai_extras(body: dict[str, Any], limits: JobLimits, prefix: str) -> None:
    """Limits on what the OpenAI shape passes to vLLM beyond the sampling parameters."""
    for name, (low, high) in _OPENAI_COUNTS.items():
        value = body.get(name)
        if value is None or (name == "logprobs" and isinstance(value, bool)):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InputError(f"{prefix}{name}: must be a whole number from {low} to {high}", field=prefix + name)
    if isinstance(body.get("best_of"), int) and body["best_of"] < int(body.get("n") or 1):
        raise InputError(f"{prefix}best_of: must be at least n", field=f"{prefix}best_of")
    extra = sum(len(orjson.dumps(body[name])) for name in _OPENAI_PROMPT_LIKE if body.get(name) is not None)
    prompt = _prompt_chars(body.get("prompt") if "prompt" in body else body.get("messages"))
    if extra and prompt + extra > limits.max_prompt_chars:
        where = f"{prefix}{next(n for n in _OPENAI_PROMPT_LIKE if body.get(n) is not None)}"
        raise InputError(
            f"{where}: the prompt with its tools and formats is {prompt + extra} characters, over the limit of "
            f"{limits.max_prompt_chars}",
            field=where,
        )


def parse_single(data: Any, limits: JobLimits, prefix: str = "") -> EngineRequest:
    """Validate one request (a job's input, or one item of a batch)."""
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "input"
        raise InputError(f"{where}: must be an object", field=where)
    shapes = [k for k in _SINGLE_KEYS if k in data]
    if len(shapes) != 1:
        where = prefix.rstrip(".") or "input"
        found = ", ".join(shapes) or "none of them"
        raise InputError(
            f"{where}: give exactly one of 'prompt', 'messages', 'openai_route' or 'requests' (found {found})",
            field=where,
        )
    model = _SINGLE_KEYS[shapes[0]]
    job = _validate(model, data, prefix)
    if isinstance(job, OpenAIJob):
        body = _openai_body(job, limits, prefix)
        stream = job.stream or bool(body.pop("stream", False))
        body.pop("stream_options", None)
        req = EngineRequest(job.openai_route, body, stream=stream, openai=True, cache=job.cache)
    elif isinstance(job, PromptJob):
        body = {"prompt": job.prompt, **_sampling_body(job.sampling_params, limits)}
        req = EngineRequest(COMPLETIONS_ROUTE, body, stream=job.stream, cache=job.cache)
    else:
        messages = [m.model_dump() for m in job.messages]
        body = {"messages": messages, **_sampling_body(job.sampling_params, limits)}
        req = EngineRequest(CHAT_ROUTE, body, stream=job.stream, cache=job.cache)
    cap = job.max_cost_usd or limits.max_cost_usd_per_job or None
    if cap is not None:
        req = replace(req, max_cost_usd=cap)
    if req.openai:
        return _check_limits(req, limits, f"{prefix}openai_input.", f"{prefix}openai_input.")
    return _check_limits(req, limits, prefix, f"{prefix}sampling_params.")


def parse_job(data: Any, limits: JobLimits) -> Job:
    """Validate a job's input. Raises InputError for a bad job as a whole;
    a bad item of a batch is kept in place as its InputError."""
    if isinstance(data, dict) and "requests" in data:
        extra = sorted(set(data) - {"requests"})
        if extra:
            raise InputError(f"{extra[0]}: not allowed beside 'requests'", field=extra[0])
        items = data["requests"]
        if not isinstance(items, list) or not items:
            raise InputError("requests: must be a non-empty list", field="requests")
        if len(items) > limits.max_batch_size:
            raise InputError(
                f"requests: {len(items)} items is over the limit of {limits.max_batch_size}", field="requests"
            )
        parsed: list[EngineRequest | InputError] = []
        for i, item in enumerate(items):
            try:
                req = parse_single(item, limits, prefix=f"requests.{i}.")
                if req.stream:
                    raise InputError(f"requests.{i}.stream: batch items cannot stream", field=f"requests.{i}.stream")
                parsed.append(req)
            except InputError as exc:
                parsed.append(exc)
        return Job(parsed, batch=True)
    return Job([parse_single(data, limits)], batch=False)
