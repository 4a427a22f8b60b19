"""What only a real model can show: SmolLM2-135M-Instruct through the worker and vLLM (CPU).

Temperature 0 throughout, chat requests through the model's own chat template,
short answers, one engine for the module.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handler.app import App

pytestmark = [pytest.mark.engine, pytest.mark.realmodel]

NO_CACHE = {"bypass": True}
QUESTIONS = {
    "What is the capital of France?": "Paris",
    "What is the capital of Japan?": "Tokyo",
    "What is the capital of Germany?": "Berlin",
    "Name the largest ocean on Earth.": "Pacific",
}


def chat(question: str, max_tokens: int = 24, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": question}],
        "sampling_params": {"max_tokens": max_tokens, "temperature": 0},
        "cache": NO_CACHE,
        **extra,
    }


async def ask(app: App, input_: dict[str, Any], job_id: str = "real") -> dict[str, Any]:
    out = await app.handler({"id": job_id, "input": input_})
    assert "error" not in out, out
    return out


async def test_the_capital_of_france_is_paris(smollm2_app: App) -> None:
    out = await ask(smollm2_app, chat("What is the capital of France?"))
    assert "Paris" in out["text"]
    assert out["finish_reason"] == "stop"


async def test_stream_aggregates_to_exactly_the_plain_text(smollm2_app: App) -> None:
    question = "Name the largest ocean on Earth."
    plain = await ask(smollm2_app, chat(question))
    pieces = [p async for p in smollm2_app.generator_handler({"id": "s", "input": chat(question, stream=True)})]
    assert "".join(p["text"] for p in pieces[:-1]) == plain["text"]
    assert "Pacific" in plain["text"]


async def test_each_batch_item_answers_its_own_question(smollm2_app: App) -> None:
    out = await ask(smollm2_app, {"requests": [chat(q) for q in QUESTIONS]})
    for (question, expected), result in zip(QUESTIONS.items(), out["results"], strict=True):
        others = [word for word in QUESTIONS.values() if word != expected]
        assert expected in result["text"], (question, result["text"])
        assert not any(word in result["text"] for word in others), (question, result["text"])


async def test_temperature_zero_is_the_same_alone_and_among_sixteen(smollm2_app: App) -> None:
    """The cache relies on this: a deterministic request gives the same text however it is batched."""
    probe = chat("What is the capital of Germany?", max_tokens=32)
    alone = await ask(smollm2_app, probe)
    fillers = [chat(q, max_tokens=32) for q in list(QUESTIONS) * 4][:15]
    crowd = await asyncio.gather(
        *(ask(smollm2_app, x, f"f{i}") for i, x in enumerate([*fillers[:7], probe, *fillers[7:]]))
    )
    engine = smollm2_app.settings
    assert crowd[7]["text"] == alone["text"], (
        f"temperature-0 answer changed inside a batch (dtype={engine.engine_dtype or 'default'}, "
        f"extra args={engine.engine_extra_args!r})"
    )
    assert "Berlin" in alone["text"]
