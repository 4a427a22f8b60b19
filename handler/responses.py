"""Pure shaping of answers: engine chunks -> job output, stream deltas, aggregation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.contract import CHAT_ROUTE


def chunk_text(chunk: dict[str, Any], route: str) -> str:
    """The text a streamed chunk adds (first choice)."""
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    first = choices[0]
    if route == CHAT_ROUTE:
        return str((first.get("delta") or {}).get("content") or "")
    return str(first.get("text") or "")


def usage_of(raw: dict[str, Any] | None) -> dict[str, int]:
    raw = raw or {}
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass
class StreamAccumulator:
    """Collects a streamed generation: text per choice, finish reasons, running usage."""

    route: str
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: usage_of(None))

    def add(self, chunk: dict[str, Any]) -> tuple[str, int]:
        """Take one chunk; return (text of choice 0 it adds, tokens it adds to the total)."""
        before = self.usage["total_tokens"]
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        first_text = ""
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            text = chunk_text({"choices": [choice]}, self.route)
            self.texts[index] = self.texts.get(index, "") + text
            if choice.get("finish_reason"):
                self.finish[index] = str(choice["finish_reason"])
            if index == 0:
                first_text = text
        return first_text, max(0, self.usage["total_tokens"] - before)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.texts.get(0, ""),
            "finish_reason": self.finish.get(0),
            "usage": dict(self.usage),
        }
        if len(self.texts) > 1:
            out["choices"] = [
                {"index": i, "text": self.texts[i], "finish_reason": self.finish.get(i)} for i in sorted(self.texts)
            ]
        return out


def text_result(response: dict[str, Any], route: str) -> dict[str, Any]:
    """A non-streamed OpenAI completion or chat response in the worker's text shape."""
    texts = []
    for choice in response.get("choices") or []:
        text = (choice.get("message") or {}).get("content") if route == CHAT_ROUTE else choice.get("text")
        texts.append({"index": int(choice.get("index", 0)), "text": str(text or ""),
                      "finish_reason": choice.get("finish_reason")})  # fmt: skip
    texts.sort(key=lambda c: c["index"])
    first = texts[0] if texts else {"text": "", "finish_reason": None}
    out: dict[str, Any] = {"text": first["text"], "finish_reason": first["finish_reason"],
                           "usage": usage_of(response.get("usage"))}  # fmt: skip
    if len(texts) > 1:
        out["choices"] = texts
    return out


def openai_finish(response: dict[str, Any]) -> str | None:
    choices = response.get("choices") or []
    return str(choices[0].get("finish_reason")) if choices and choices[0].get("finish_reason") else None


def sum_usage(usages: list[dict[str, int]]) -> dict[str, int]:
    total = usage_of(None)
    for usage in usages:
        for key in total:
            total[key] += int(usage.get(key, 0))
    return total
