"""The OpenAI routes' own shapes: the served names, and a streamed answer as worker-vllm yields it.

A streamed /v1/chat/completions or /v1/completions job yields what worker-vllm yields, which is
what RunPod's /openai/v1 route relays to the client:

    RAW_OPENAI_OUTPUT=1 (default)   each piece a string of server-sent events, ``data: {chunk}\\n\\n``,
                                    the last one ending with ``data: [DONE]\\n\\n``
    RAW_OPENAI_OUTPUT=0             each piece a list of chunk objects (worker-vllm's batches), no [DONE]

The same shape whether the engine or the cache answers: `OpenAIStream` shapes the engine's chunks
as they come, and a hit replays the chunks `Replay` kept (consecutive text deltas merged into one)
through the same shaper, which applies what the request asked for:

- usage as its `stream_options` say: none on the content chunks (with `continuous_usage_stats`, each
  its running count), and the closing chunk (no choices, the whole usage) only with `include_usage`.
  The engine is always asked for both, since the worker's meter bills by them;
- `model`: the name the request gave, else the first served name;
- the worker's own fields (`cached`, `cost_usd`, `timings`, `budget`, ...) as extra keys of the last
  chunk, where OpenAI clients ignore them (the `openai` package keeps them as extra attributes).
  They are known once the answer is settled, so the chunk that finishes a choice is held back until
  the next chunk or the end: a stream never ends on a chunk without choices unless `include_usage`
  asked for one (client code that reads `chunk.choices[0]` keeps working).

What a request asks of the shape (stream or not aside) is applied on the way out, so the cache keeps
one entry per answer, whatever the delivery.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.contract import CHAT_ROUTE
from handler.errors import ModelNotFound

Chunk = dict[str, Any]
Piece = str | list[Chunk]  # one piece a streamed OpenAI job yields
DONE = "data: [DONE]\n\n"
# the worker's own fields on an answer, beside OpenAI's
FRUGAL_FIELDS = ("cached", "cost_usd", "timings", "budget", "cost_bound_usd", "max_cost_usd", "cost_capped")
_MERGEABLE_CHOICE_KEYS = frozenset({"index", "delta", "text", "logprobs", "finish_reason", "stop_reason"})


def served_names(model_name: str, override: str) -> list[str]:
    """The names an OpenAI request may give as `model`: OPENAI_SERVED_MODEL_NAME_OVERRIDE first (as
    worker-vllm serves under it), then the model's own name (RunPod's docs accept either)."""
    return list(dict.fromkeys(name for name in (override, model_name) if name))


def answer_name(requested: str | None, names: list[str]) -> str:
    """The name to answer under: the requested one (`ModelNotFound` when it is none of `names`),
    else the first served name."""
    if requested is None:
        return names[0]
    if requested not in names:
        served = ", ".join(f"`{name}`" for name in names)
        raise ModelNotFound(f"The model `{requested}` does not exist (served: {served}).", field="openai_input.model")
    return requested


def frugal_fields(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: answer[name] for name in FRUGAL_FIELDS if name in answer}


def sse(chunk: Chunk) -> str:
    return f"data: {orjson.dumps(chunk).decode()}\n\n"


class OpenAIStream:
    """Engine (or cached) chunks in, the pieces a streamed OpenAI job yields out."""

    def __init__(self, *, raw: bool, include_usage: bool, continuous_usage: bool, model: str) -> None:
        self.raw = raw
        self.include_usage = include_usage
        self.continuous_usage = continuous_usage
        self.model = model
        self._held: list[Chunk] = []  # chunks that finish a choice, not yet yielded
        self._closing: Chunk | None = None  # the engine's last chunk: no choices, the whole usage

    def add(self, chunk: Chunk) -> list[Piece]:
        """The pieces to yield now for one chunk (none while it is held back)."""
        if not chunk.get("choices"):
            self._closing = chunk
            return []
        shown = self._shown(chunk)
        if any(isinstance(c, dict) and c.get("finish_reason") for c in chunk["choices"]):
            self._held.append(shown)
            return []
        ready, self._held = [*self._held, shown], []
        return [self._encode(ready)]

    def end(self, fields: dict[str, Any]) -> list[Piece]:
        """The last piece: the held chunks, the usage chunk when asked for, `fields` on the last chunk
        and, for server-sent events, [DONE]."""
        last = list(self._held)
        self._held = []
        if self.include_usage and self._closing is not None:
            last.append({**self._closing, "model": self.model})
        if not last:  # nothing finished a choice (a stream cut short): a chunk without choices carries them
            base = {k: v for k, v in (self._closing or {}).items() if k != "usage"}
            last.append({**base, "model": self.model, "choices": []})
        last[-1] = {**last[-1], **fields}
        if self.raw:
            return ["".join(sse(chunk) for chunk in last) + DONE]
        return [last]

    def _shown(self, chunk: Chunk) -> Chunk:
        shown = {**chunk, "model": self.model}
        if not self.continuous_usage:
            shown.pop("usage", None)
        return shown

    def _encode(self, chunks: list[Chunk]) -> Piece:
        return "".join(sse(chunk) for chunk in chunks) if self.raw else chunks


class Replay:
    """A streamed answer as the cache keeps it: the engine's chunks, consecutive plain text deltas of
    one choice merged into one chunk, usage only on the closing chunk (a hit replays the text at once)."""

    def __init__(self, route: str) -> None:
        self.chat = route == CHAT_ROUTE
        self.chunks: list[Chunk] = []

    def add(self, chunk: Chunk) -> None:
        kept = {k: v for k, v in chunk.items() if k != "usage"} if chunk.get("choices") else dict(chunk)
        if self.chunks and self._mergeable(self.chunks[-1], kept):
            self.chunks[-1] = self._merged(self.chunks[-1], kept)
        else:
            self.chunks.append(kept)

    def _plain(self, chunk: Chunk) -> dict[str, Any] | None:
        """The chunk's one choice when it adds plain text only (no role, tool call or logprobs)."""
        choices = chunk.get("choices")
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
            return None
        choice: dict[str, Any] = choices[0]
        if set(choice) - _MERGEABLE_CHOICE_KEYS or choice.get("logprobs") is not None:
            return None
        if self.chat:
            delta = choice.get("delta")
            if not isinstance(delta, dict) or set(delta) - {"content"} or not isinstance(delta.get("content", ""), str):
                return None
        elif not isinstance(choice.get("text", ""), str):
            return None
        return choice

    def _mergeable(self, last: Chunk, chunk: Chunk) -> bool:
        before, after = self._plain(last), self._plain(chunk)
        return (
            before is not None
            and after is not None
            and before.get("index") == after.get("index")
            and not before.get("finish_reason")
            and before.get("stop_reason") is None
        )

    def _text(self, choice: dict[str, Any]) -> str:
        return str((choice.get("delta") or {}).get("content") or "") if self.chat else str(choice.get("text") or "")

    def _merged(self, last: Chunk, chunk: Chunk) -> Chunk:
        before, after = last["choices"][0], chunk["choices"][0]
        text = self._text(before) + self._text(after)
        choice = {**after, "delta": {"content": text}} if self.chat else {**after, "text": text}
        return {**chunk, "choices": [choice]}
