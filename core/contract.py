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

Each request also bounds its own work, for the budget's reservations: the
sequences the engine generates (`EngineRequest.completions`: every prompt of a
completions list, times `n` or `best_of`) and its prompt tokens
(`EngineRequest.prompt_tokens_max`: every text that reaches the prompt, counted
in UTF-8 bytes, plus the chat template's own tokens). `max_prompt_chars` limits
all of that text, not only the prompt or the messages' contents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

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
# OpenAI/vLLM request fields whose text reaches the prompt (through the chat template: tools, documents,
# the template's kwargs, a named tool choice, the reasoning effort; a completion's suffix) or
# is compiled beside it (formats and guided decoding): limited and counted with the prompt
_OPENAI_PROMPT_LIKE = (
    "tools",
    "functions",
    "tool_choice",
    "documents",
    "chat_template_kwargs",
    "reasoning_effort",
    "response_format",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "structural_tag",
    "suffix",
)
# fields that would make the prompt unbounded: refused (vLLM refuses both too, as this worker starts it)
_OPENAI_REFUSED = {
    "chat_template": "a request's own chat template is not accepted (it can make a prompt of any size); "
    "the model's template is used",
    "prompt_embeds": "prompt embeddings are not accepted (the engine is not started for them)",
}
# Prompt-size bounds (`EngineRequest.prompt_tokens_max`): a chat template's own tokens around one
# message (role, delimiters, the separators vLLM puts between content parts aside) and per prompt
# (BOS, the generation prompt, a default system prompt: SmolLM2's adds 26 tokens to a lone message)
TEMPLATE_TOKENS_PER_MESSAGE = 16
TEMPLATE_TOKENS_PER_REQUEST = 64
# A template writes a structure (tools, tool-call arguments, documents) as JSON, at most this indented
# (Llama 3.1's template: `tools | tojson(indent=4)`); indented JSON is longer than its compact form
TEMPLATE_JSON_INDENT = 4
# roles whose name the per-message allowance covers; any other role's name counts as prompt text
_TEMPLATE_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


@dataclass(frozen=True)
class JobLimits:
    """The worker's limits on a job: its settings' MAX_* and DEFAULT_MAX_TOKENS, whose defaults live
    in handler.settings (DEFAULT_MAX_TOKENS here, as the client's routing needs it too)."""

    default_max_tokens: int
    max_tokens_limit: int
    max_prompt_chars: int  # all the text that reaches the prompt, every prompt of a list together
    max_batch_size: int  # items of a batch job, and prompts of a completions list
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
    openai_input: dict[str, Any] | None = Field(default_factory=dict)  # None: a body-less route (/v1/models)


@dataclass(frozen=True)
class EngineRequest:
    """One request for the engine, in the engine's own terms."""

    route: str
    body: dict[str, Any]
    stream: bool = False
    openai: bool = False  # answer in the OpenAI response shape
    cache: CacheSpec = field(default_factory=CacheSpec)
    max_cost_usd: float | None = None
    # OpenAI routes: the `model` the request named (None: not named), and what its `stream_options`
    # ask of a streamed answer's usage (the engine itself is always asked for both)
    model: str | None = None
    include_usage: bool = False
    continuous_usage: bool = False

    @property
    def max_tokens(self) -> int:
        return int(self.body.get("max_tokens") or 0)

    @property
    def prompts(self) -> int:
        """The prompts the engine runs: each prompt of a completions list (of strings or of token-id
        lists), else 1 (a string, one token-id list, a chat)."""
        return _prompt_count(self.body.get("prompt")) if self.route == COMPLETIONS_ROUTE else 1

    @property
    def completions(self) -> int:
        """The sequences the engine generates, each of which may run to `max_tokens`: every prompt
        times max(`n`, `best_of`) (vLLM samples `best_of` and returns the best `n`)."""
        per_prompt = max(1, int(self.body.get("n") or 1), int(self.body.get("best_of") or 1))
        return self.prompts * per_prompt

    @property
    def prompt_texts(self) -> list[str]:
        """The prompt's texts, message by message (what a tokenizer counts)."""
        return _texts(self.body.get("prompt") if "prompt" in self.body else self.body.get("messages"))

    @property
    def prompt_chars(self) -> int:
        """Characters of all the text that reaches the prompt (what `max_prompt_chars` limits): the
        prompts (a token id counts one), the messages (contents, names, tool calls...) and the
        prompt-like fields (tools, documents, template kwargs...), structures as compact JSON."""
        return sum(size.chars for size in _prompt_sizes(self.route, self.body).values())

    @property
    def prompt_tokens_max(self) -> int:
        """An upper bound of the request's prompt tokens, every prompt of a list together.

        Each text that reaches the prompt counts its UTF-8 bytes: the prompts (a token-id list its
        length), the messages' contents (content parts, plus a separator between parts), names,
        tool calls and tool-call ids, a role other than the standard ones, and the prompt-like
        fields (`_OPENAI_PROMPT_LIKE`). A structure counts the bytes of its JSON indented by
        TEMPLATE_JSON_INDENT, as a template may write it (tool-call arguments also once parsed, as
        vLLM hands them to the template). On top: TEMPLATE_TOKENS_PER_MESSAGE per message and
        TEMPLATE_TOKENS_PER_REQUEST per prompt, and the request-level fields once per prompt.

        Why bytes bound tokens: a byte-level BPE vocabulary (GPT-2's, SmolLM2's, Llama 3's, Qwen's)
        holds every one of the 256 bytes and each merge joins two symbols into one, so a text never
        takes more tokens than its bytes; a SentencePiece vocabulary with byte fallback (Llama 2,
        Mistral) writes a character it lacks as one token per UTF-8 byte and one it holds as a single
        token (a vocabulary without fallback: one unknown token). Characters do not bound tokens:
        SmolLM2 gives Chinese 0.5 characters per token and emoji 0.3. It assumes no normaliser that
        lengthens text (NFKC): none of those tokenizers has one.

        Deliberately loose for English (about 4 bytes a token, so about 4 times the real count) and
        for short prompts (the template allowance): it is a reservation, settled on the usage."""
        sizes = _prompt_sizes(self.route, self.body)
        own = sizes.pop("messages" if self.route == CHAT_ROUTE else "prompt", _Size())
        messages = self.body.get("messages")
        template = TEMPLATE_TOKENS_PER_MESSAGE * len(messages) if isinstance(messages, list) else 0
        per_prompt = TEMPLATE_TOKENS_PER_REQUEST + sum(size.tokens for size in sizes.values())
        return own.tokens + template + self.prompts * per_prompt


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
    if req.prompts > limits.max_batch_size:
        where = f"{prefix}prompt"
        raise InputError(f"{where}: {req.prompts} prompts is over the limit of {limits.max_batch_size}", field=where)
    try:
        sizes = _prompt_sizes(req.route, body)
    except RecursionError:
        where = prefix.rstrip(".") or "input"
        raise InputError(f"{where}: nested too deeply", field=where) from None
    counted = {name: size.chars for name, size in sizes.items() if size.chars}
    total = sum(counted.values())
    if total > limits.max_prompt_chars:
        name = max(counted, key=lambda n: counted[n])
        where = f"{prefix}{name}"
        if len(counted) == 1:
            together = f" (its {req.prompts} prompts together)" if req.prompts > 1 else ""
            message = f"{total} characters{together} is over the limit of {limits.max_prompt_chars}"
        else:
            parts = ", ".join(f"{n} {chars}" for n, chars in counted.items())
            message = (
                f"the text that reaches the prompt is {total} characters ({parts}), over the limit of "
                f"{limits.max_prompt_chars}"
            )
        raise InputError(f"{where}: {message}", field=where)
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


@dataclass(frozen=True)
class _Size:
    """A text's size: its characters (`max_prompt_chars`) and a bound of its tokens (UTF-8 bytes)."""

    chars: int = 0
    tokens: int = 0

    def __add__(self, other: _Size) -> _Size:
        return _Size(self.chars + other.chars, self.tokens + other.tokens)


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # JSON may carry a lone surrogate: 3 bytes


def _text_size(text: str) -> _Size:
    return _Size(len(text), _utf8(text))


def _json_size(value: Any) -> _Size:
    """A structure: its compact JSON's characters; the bytes of its JSON as a template writes it
    (transformers' `tojson`: non-ASCII kept, at most TEMPLATE_JSON_INDENT indented, which is longer
    than its `", "`/`": "` form and than Python's repr)."""
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    wide = json.dumps(value, ensure_ascii=False, indent=TEMPLATE_JSON_INDENT, default=str)
    return _Size(len(compact), _utf8(wide))


def _value_size(value: Any) -> _Size:
    return _text_size(value) if isinstance(value, str) else _json_size(value)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_token(t) for t in value)


def _prompt_count(prompt: Any) -> int:
    """A list of strings or of token-id lists is that many prompts; anything else one."""
    if isinstance(prompt, list) and prompt and not _is_token_list(prompt):
        return len(prompt)
    return 1


def _prompt_size(prompt: Any) -> _Size:
    """A completions prompt: a string, a token-id list (an id counts one), or a list of those."""
    if prompt is None:
        return _Size()
    if isinstance(prompt, str):
        return _text_size(prompt)
    if _is_token_list(prompt):
        return _Size(len(prompt), len(prompt))
    if isinstance(prompt, list):
        return sum((_prompt_size(p) for p in prompt), _Size())
    return _json_size(prompt)


def _content_size(content: Any) -> _Size:
    """A message's content: a string or content parts (vLLM may join text parts with a newline)."""
    if content is None:
        return _Size()
    if isinstance(content, str):
        return _text_size(content)
    if not isinstance(content, list):
        return _json_size(content)
    size = _Size(0, max(0, len(content) - 1))
    for part in content:
        if isinstance(part, str):
            size += _text_size(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str) and set(part) <= {"type", "text"}:
            size += _text_size(part["text"])
        else:
            size += _json_size(part)  # an image, audio or other part: all of it
    return size


def _tool_calls_size(tool_calls: Any) -> _Size:
    """Tool calls as sent, and as vLLM hands them to the template (each call's `arguments` string
    parsed into an object, which a template may write indented): the larger bound."""
    size = _json_size(tool_calls)
    if not isinstance(tool_calls, list):
        return size
    parsed = [_with_parsed_arguments(call) for call in tool_calls]
    return _Size(size.chars, max(size.tokens, _json_size(parsed).tokens))


def _with_parsed_arguments(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    arguments = function["arguments"]
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return call  # vLLM gives the template an empty object
    return {**call, "function": {**function, "arguments": parsed}}


def _message_size(message: Any) -> _Size:
    """Every field of a message reaches the template: content, name, tool calls, tool-call id,
    reasoning... (a standard role is in the per-message allowance)."""
    if not isinstance(message, dict):
        return _json_size(message)
    size = _Size()
    for key, value in message.items():
        if key == "role" and value in _TEMPLATE_ROLES:
            continue
        if key == "content":
            size += _content_size(value)
        elif key == "tool_calls":
            size += _tool_calls_size(value)
        else:
            size += _value_size(value)
    return size


def _prompt_sizes(route: str, body: dict[str, Any]) -> dict[str, _Size]:
    """The size of each body field whose text reaches the prompt, by field name."""
    sizes: dict[str, _Size] = {}
    if route == CHAT_ROUTE:
        messages = body.get("messages")
        if isinstance(messages, list):
            sizes["messages"] = sum((_message_size(m) for m in messages), _Size())
        elif messages is not None:
            sizes["messages"] = _json_size(messages)
    elif route == COMPLETIONS_ROUTE:
        sizes["prompt"] = _prompt_size(body.get("prompt"))
    for name in _OPENAI_PROMPT_LIKE:
        if body.get(name) is not None:
            sizes[name] = _value_size(body[name])
    return sizes


def _sampling_body(params: SamplingParams, limits: JobLimits) -> dict[str, Any]:
    body = params.model_dump()
    if body["max_tokens"] is None:
        body["max_tokens"] = limits.default_max_tokens
    return body


def _openai_model(body: dict[str, Any], prefix: str) -> str | None:
    """The request's `model` (checked against the served names by the worker), taken out of the body:
    the engine serves one model under the model's own name."""
    model = body.pop("model", None)
    if model is not None and not isinstance(model, str):
        where = f"{prefix}openai_input.model"
        raise InputError(f"{where}: must be a string", field=where)
    return model


def _stream_options(body: dict[str, Any], prefix: str) -> tuple[bool, bool]:
    """The request's `stream_options` (include_usage, continuous_usage_stats), taken out of the body."""
    options = body.pop("stream_options", None)
    where = f"{prefix}openai_input.stream_options"
    if options is None:
        return False, False
    if not isinstance(options, dict):
        raise InputError(f"{where}: must be an object", field=where)
    flags = []
    for name in ("include_usage", "continuous_usage_stats"):
        value = options.get(name)
        if value is not None and not isinstance(value, bool):
            raise InputError(f"{where}.{name}: must be a boolean", field=f"{where}.{name}")
        flags.append(bool(value))
    return flags[0], flags[1]


def _openai_body(job: OpenAIJob, limits: JobLimits, prefix: str) -> dict[str, Any]:
    body = dict(job.openai_input or {})
    body.pop("model", None)  # taken by `_openai_model`
    if job.openai_route == MODELS_ROUTE:
        return {}
    needed = "messages" if job.openai_route == CHAT_ROUTE else "prompt"
    where = f"{prefix}openai_input.{needed}"
    if not body.get(needed):
        raise InputError(f"{where}: required for {job.openai_route}", field=where)
    if needed == "messages" and not (isinstance(body[needed], list) and all(isinstance(m, dict) for m in body[needed])):
        raise InputError(f"{where}: must be a list of message objects", field=where)
    if needed == "prompt" and not _prompt_shape_ok(body[needed]):
        raise InputError(
            f"{where}: must be a string, a list of strings, a list of token ids or a list of token-id lists",
            field=where,
        )
    if body.get("stream") is not None and not isinstance(body.get("stream"), bool):
        where = f"{prefix}openai_input.stream"
        raise InputError(f"{where}: must be a boolean", field=where)
    _check_openai_extras(body, f"{prefix}openai_input.")
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


def _prompt_shape_ok(prompt: Any) -> bool:
    """vLLM's completions prompt: a string, a token-id list, or a list of either."""
    if isinstance(prompt, str) or _is_token_list(prompt):
        return True
    if not isinstance(prompt, list) or not prompt:
        return False
    return all(isinstance(p, str) for p in prompt) or all(_is_token_list(p) for p in prompt)


def _check_openai_extras(body: dict[str, Any], prefix: str) -> None:
    """Limits on what the OpenAI shape passes to vLLM beyond the sampling parameters (the size of
    its prompt-like fields is limited with the prompt, in `_check_limits`)."""
    for name, (low, high) in _OPENAI_COUNTS.items():
        value = body.get(name)
        if value is None or (name == "logprobs" and isinstance(value, bool)):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InputError(f"{prefix}{name}: must be a whole number from {low} to {high}", field=prefix + name)
    if isinstance(body.get("best_of"), int) and body["best_of"] < int(body.get("n") or 1):
        raise InputError(f"{prefix}best_of: must be at least n", field=f"{prefix}best_of")
    kwargs = body.get("chat_template_kwargs")
    refused = {name: body.get(name) for name in _OPENAI_REFUSED}
    if isinstance(kwargs, dict):  # vLLM takes a template from the kwargs too
        refused["chat_template_kwargs.chat_template"] = kwargs.get("chat_template")
    for name, value in refused.items():
        if value is not None:
            reason = _OPENAI_REFUSED[name.rpartition(".")[2]]
            raise InputError(f"{prefix}{name}: {reason}", field=prefix + name)


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
        given = dict(job.openai_input or {})
        named, (include_usage, continuous_usage) = _openai_model(given, prefix), _stream_options(given, prefix)
        body = _openai_body(job, limits, prefix)
        stream = job.stream or bool(body.pop("stream", False))
        body.pop("stream_options", None)
        req = EngineRequest(job.openai_route, body, stream=stream, openai=True, cache=job.cache, model=named,
                            include_usage=include_usage, continuous_usage=continuous_usage)  # fmt: skip
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
