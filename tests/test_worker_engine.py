"""The worker against the real vLLM engine (CPU build) serving the tiny model.

One engine is shared by the whole module (the `tiny_app` session fixture).
Random weights print noise, so these tests check the contract, not the words;
tests/test_real_model.py checks words on SmolLM2.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from handler.app import App

pytestmark = pytest.mark.engine

NO_CACHE = {"bypass": True}


def job(input_: dict[str, Any], job_id: str = "t") -> dict[str, Any]:
    return {"id": job_id, "input": input_}


def error_of(output: dict[str, Any]) -> dict[str, Any]:
    assert "error" in output, output
    parsed: dict[str, Any] = orjson.loads(output["error"])
    return parsed


async def test_prompt_job_answers_with_usage_finish_reason_and_timings(tiny_app: App) -> None:
    out = await tiny_app.handler(job({"prompt": "Hello there", "sampling_params": {"max_tokens": 8, "temperature": 0},
                                      "cache": NO_CACHE}))  # fmt: skip
    assert isinstance(out["text"], str) and out["text"]
    assert out["usage"]["completion_tokens"] == 8
    assert out["usage"]["prompt_tokens"] > 0
    assert out["finish_reason"] == "length"
    # a cold job (the first of the session may be) also reports the engine start's phases
    assert set(out["timings"]) - {"engine_phases"} == {"queued_ms", "engine_start_ms", "generation_ms", "total_ms"}
    assert out["cached"] is False


async def test_default_max_tokens_applies_when_none_given(tiny_app: App) -> None:
    out = await tiny_app.handler(job({"prompt": "Count:", "sampling_params": {"ignore_eos": True}, "cache": NO_CACHE}))
    assert out["usage"]["completion_tokens"] == tiny_app.settings.default_max_tokens


async def test_chat_job_uses_the_chat_template(tiny_app: App) -> None:
    out = await tiny_app.handler(
        job({"messages": [{"role": "user", "content": "hi"}], "sampling_params": {"max_tokens": 4, "ignore_eos": True},
             "cache": NO_CACHE})
    )  # fmt: skip
    plain = await tiny_app.handler(job({"prompt": "hi", "sampling_params": {"max_tokens": 4}, "cache": NO_CACHE}))
    # the template wraps the message in role markers: more prompt tokens than the bare text
    assert out["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
    assert out["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize(
    ("route", "body", "kind"),
    [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "ignore_eos": True},
            "chat.completion",
        ),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 5, "ignore_eos": True}, "text_completion"),
        ("/v1/models", {}, "list"),
    ],
)
async def test_openai_routes_answer_in_openai_shape(tiny_app: App, route: str, body: dict[str, Any], kind: str) -> None:
    out = await tiny_app.handler(job({"openai_route": route, "openai_input": body}))
    assert out["object"] == kind
    if kind == "list":
        assert out["data"][0]["id"] == tiny_app.model.name
    else:
        assert out["usage"]["completion_tokens"] == 5  # ignore_eos: exactly max_tokens
        assert out["choices"][0]["finish_reason"] == "length"


async def test_batch_runs_items_in_order_and_fails_one_by_one(tiny_app: App) -> None:
    items = [
        {"prompt": "one", "sampling_params": {"max_tokens": 3, "temperature": 0, "ignore_eos": True}},
        {"prompt": "", "sampling_params": {"max_tokens": 3}},
        {"prompt": "three", "sampling_params": {"max_tokens": 6, "temperature": 0, "ignore_eos": True}},
        {"prompt": "four", "sampling_params": {"max_tokens": 99_999}},
    ]
    out = await tiny_app.handler(job({"requests": items}))
    results = out["results"]
    assert len(results) == 4
    assert results[0]["usage"]["completion_tokens"] == 3
    assert results[1]["error"]["type"] == "validation_error"
    assert results[1]["error"]["field"] == "requests.1.prompt"
    assert results[2]["usage"]["completion_tokens"] == 6
    assert results[3]["error"]["field"] == "requests.3.sampling_params.max_tokens"
    assert out["failed"] == 2
    assert out["usage"]["completion_tokens"] == sum(results[i]["usage"]["completion_tokens"] for i in (0, 2))


async def test_stream_aggregates_to_the_plain_answer(tiny_app: App) -> None:
    body = {
        "messages": [{"role": "user", "content": "tell me"}],
        "sampling_params": {"max_tokens": 12, "temperature": 0},
    }
    plain = await tiny_app.handler(job({**body, "cache": NO_CACHE}))
    pieces = [p async for p in tiny_app.generator_handler(job({**body, "stream": True, "cache": NO_CACHE}))]
    deltas = [p["text"] for p in pieces[:-1]]
    assert len(deltas) > 1  # really streamed, piece by piece
    assert "".join(deltas) == plain["text"]
    assert pieces[-1]["text"] == plain["text"]
    assert pieces[-1]["usage"] == plain["usage"]


async def test_openai_stream_yields_raw_chunks(tiny_app: App) -> None:
    body = {"messages": [{"role": "user", "content": "go"}], "max_tokens": 6, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}  # fmt: skip
    pieces = [
        p async for p in tiny_app.generator_handler(job({"openai_route": "/v1/chat/completions", "openai_input": body}))
    ]
    # OpenAI's server-sent events, as worker-vllm yields them (RAW_OPENAI_OUTPUT=1): [DONE] last
    events = [e.removeprefix("data: ") for p in pieces for e in p.split("\n\n") if e]
    assert events[-1] == "[DONE]", pieces
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    last = chunks[-1]  # include_usage: the usage chunk, with the worker's own fields
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 6 and "cost_usd" in last


async def test_many_concurrent_jobs_all_answer(tiny_app: App) -> None:
    jobs = [
        job(
            {"prompt": f"Item {i}:", "sampling_params": {"max_tokens": 16, "ignore_eos": True}, "cache": NO_CACHE},
            f"c{i}",
        )
        for i in range(40)
    ]
    outs = await asyncio.gather(*(tiny_app.handler(j) for j in jobs))
    assert all(o["usage"]["completion_tokens"] == 16 for o in outs)


@pytest.mark.parametrize(
    ("input_", "field"),
    [
        ({"prompt": "x", "sampling_params": {"temperature": "hot"}}, "sampling_params.temperature"),
        ({"prompt": "x", "sampling_params": {"max_tokens": 10**6}}, "sampling_params.max_tokens"),
        ({"prompt": "x", "sampling_params": {"bogus": 1}}, "sampling_params.bogus"),
        ({"prompt": "x" * 40_000}, "prompt"),
        ({"messages": []}, "messages"),
        ({"requests": [{"prompt": "x"}] * 65}, "requests"),
        ({"openai_route": "/v1/embeddings", "openai_input": {}}, "openai_route"),
        ({"nothing": True}, "input"),
    ],
)
async def test_bad_input_names_the_field_and_the_worker_keeps_serving(
    tiny_app: App, input_: dict[str, Any], field: str
) -> None:
    err = error_of(await tiny_app.handler(job(input_)))
    assert err["type"] == "validation_error"
    assert err["field"] == field
    params = {"max_tokens": 2, "ignore_eos": True}
    ok = await tiny_app.handler(job({"prompt": "still here", "sampling_params": params, "cache": NO_CACHE}))
    assert ok["usage"]["completion_tokens"] == 2


async def test_prompt_over_the_context_length_is_a_validation_error(tiny_app: App) -> None:
    words = " ".join(["word"] * 3000)  # far over max_model_len tokens, under the character limit
    err = error_of(
        await tiny_app.handler(job({"prompt": words, "sampling_params": {"max_tokens": 4}, "cache": NO_CACHE}))
    )
    assert err["type"] == "validation_error"
