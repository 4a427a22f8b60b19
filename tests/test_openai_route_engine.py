"""The users' own clients against the real worker on the real engine: RunPod's OpenAI route on the
local platform, `python -m handler` serving the tiny model on vLLM (one warm worker for the module;
its engine starts on the first miss).

For one temperature-0 request, every way of asking gives one text: the worker's own shape through
the runpod SDK (/runsync), the `openai` package (sync and async, plain and streamed, miss and hit,
chat and completions), and the OpenAI job's stream through the SDK's /stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import runpod

from devtools.platform import Platform
from tests.engine_support import require_model
from tests.openai_support import OpenAIEndpoint, add_openai_endpoint, chunks_text, extra, module_platform, sse_chunks

pytestmark = pytest.mark.engine
NAME = "tiny-llama"
PARAMS = {"max_tokens": 8, "temperature": 0}
IGNORE_EOS = {"ignore_eos": True}  # vLLM's own parameter: every answer is 8 tokens


@pytest.fixture(scope="module")
async def platform() -> AsyncIterator[Platform]:
    require_model("tiny")
    async with module_platform() as server:
        yield server


@pytest.fixture(scope="module")
async def oa(platform: Platform) -> OpenAIEndpoint:
    return add_openai_endpoint(platform, "oa-engine")


def chat(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


async def test_a_chat_is_one_text_through_every_client(oa: OpenAIEndpoint) -> None:
    messages = chat("Tell me about rivers.")
    own_job = {"messages": messages, "sampling_params": {**PARAMS, **IGNORE_EOS}}
    kwargs: dict[str, Any] = {"model": NAME, "messages": messages, "extra_body": IGNORE_EOS, **PARAMS}

    def sync_calls() -> tuple[Any, Any, Any, list[Any]]:
        own = runpod.Endpoint("oa-engine").run_sync(own_job, timeout=600)  # cold: the engine starts here
        plain = oa.client.chat.completions.create(**kwargs)
        plain_hit = oa.client.chat.completions.create(**kwargs)
        streamed = list(oa.client.chat.completions.create(stream=True, **kwargs))
        return own, plain, plain_hit, streamed

    own, plain, plain_hit, streamed = await asyncio.to_thread(sync_calls)
    hit_stream = await oa.aclient.chat.completions.create(stream=True, **kwargs)
    streamed_hit = [chunk async for chunk in hit_stream]
    text = own[-1]["text"]
    assert own[-1]["usage"]["completion_tokens"] == 8 and text
    assert plain.choices[0].message.content == plain_hit.choices[0].message.content == text
    assert chunks_text(streamed) == chunks_text(streamed_hit) == text
    assert (extra(plain)["cached"], extra(plain_hit)["cached"]) == (False, True)
    assert (extra(streamed[-1])["cached"], extra(streamed_hit[-1])["cached"]) == (False, True)
    assert plain.model == streamed[0].model == NAME and plain.usage is not None and plain.usage.completion_tokens == 8
    assert all(c.object == "chat.completion.chunk" and c.choices for c in streamed + streamed_hit)

    job = {"openai_route": "/v1/chat/completions", "openai_input": {**kwargs, "stream": True, **IGNORE_EOS}}
    job["openai_input"].pop("extra_body")
    pieces = await asyncio.to_thread(lambda: list(runpod.Endpoint("oa-engine").run(job).stream()))
    chunks = sse_chunks(pieces)  # server-sent-event strings, [DONE] last
    assert chunks_text(chunks) == text and chunks[-1]["cached"] is True


async def test_completions_are_one_text_through_every_client(oa: OpenAIEndpoint) -> None:
    prompt = "The sky over the sea is"
    own_job = {"prompt": prompt, "sampling_params": {**PARAMS, **IGNORE_EOS}}
    kwargs: dict[str, Any] = {"model": NAME, "prompt": prompt, "extra_body": IGNORE_EOS, **PARAMS}
    own = await asyncio.to_thread(lambda: runpod.Endpoint("oa-engine").run_sync(own_job, timeout=600))
    plain = await oa.aclient.completions.create(**kwargs)
    texts, cached = [], []
    for _ in range(2):  # a miss, then a hit
        stream = await oa.aclient.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
        chunks = [chunk async for chunk in stream]
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 8
        texts.append(chunks_text(chunks))
        cached.append(extra(last)["cached"])
    assert plain.choices[0].text == texts[0] == texts[1] == own[-1]["text"]
    assert cached == [False, True]


async def test_models_and_errors(oa: OpenAIEndpoint) -> None:
    assert [m.id for m in (await oa.aclient.models.list()).data] == [NAME]
    with pytest.raises(openai.BadRequestError) as bad:
        await asyncio.to_thread(
            lambda: oa.client.completions.create(model=NAME, prompt="x", max_tokens=10**6, temperature=0)
        )
    assert bad.value.body == {"message": "openai_input.max_tokens: 1000000 is over the limit of 2048",
                              "type": "invalid_request_error", "param": "max_tokens", "code": None}  # fmt: skip
    with pytest.raises(openai.NotFoundError) as missing:
        await oa.aclient.chat.completions.create(model="gpt-4o-mini", messages=chat("hi"), stream=True, **PARAMS)
    assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "model_not_found"
