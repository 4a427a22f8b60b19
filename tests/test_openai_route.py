"""RunPod's OpenAI route on the local platform, called with the `openai` package and the runpod SDK.

Real workers (`python -m handler`, the SDK's deployed loop) serve it; vLLM is stood in for by the
fake engine's HTTP server (ENGINE_COMMAND), so these run in seconds. The same on the real engine:
tests/test_openai_route_engine.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import runpod

from devtools.platform import EndpointConfig, Platform
from devtools.platform.routes_openai import job_error
from handler.app import error_output
from handler.errors import BudgetExceeded, EngineCrashed
from tests.openai_support import (
    FAKE_VLLM,
    OpenAIEndpoint,
    add_openai_endpoint,
    chunks_text,
    clients,
    extra,
    module_platform,
    sse_chunks,
)
from tests.platform_support import API_KEY, REPO_ROOT

NAME = "tiny-llama"  # the tiny model's name: what the fake engine serves under
OVERRIDE = "my-llm"
GREEDY = {"max_tokens": 6, "temperature": 0}


@pytest.fixture(scope="module")
async def platform() -> AsyncIterator[Platform]:
    async with module_platform() as server:
        yield server


@pytest.fixture(scope="module")
async def oa(platform: Platform) -> OpenAIEndpoint:
    """RAW_OPENAI_OUTPUT's default (server-sent-event strings), and a served-name override."""
    return add_openai_endpoint(platform, "oa", ENGINE_COMMAND=FAKE_VLLM, OPENAI_SERVED_MODEL_NAME_OVERRIDE=OVERRIDE)


def chat(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


async def test_sync_chat_misses_then_hits_under_the_name_given(oa: OpenAIEndpoint) -> None:
    def calls() -> list[Any]:
        return [oa.client.chat.completions.create(model=OVERRIDE, messages=chat("sync plain chat"), **GREEDY)
                for _ in range(2)]  # fmt: skip

    miss, hit = await asyncio.to_thread(calls)
    assert miss.choices[0].message.content == hit.choices[0].message.content == " sync plain chat sync plain chat"
    assert miss.model == hit.model == OVERRIDE and miss.object == "chat.completion"
    assert miss.usage is not None and miss.usage.completion_tokens == 6
    assert (extra(miss)["cached"], extra(hit)["cached"]) == (False, True)
    assert extra(miss)["cost_usd"] > 0 and extra(hit)["cost_usd"] == 0.0 and "budget" in extra(hit)


async def test_sync_stream_misses_then_hits_with_the_same_chunks(oa: OpenAIEndpoint) -> None:
    def streams() -> list[list[Any]]:
        return [list(oa.client.chat.completions.create(model=NAME, messages=chat("streamed chat"), stream=True,
                                                       **GREEDY)) for _ in range(2)]  # fmt: skip

    miss, hit = await asyncio.to_thread(streams)
    plain = await oa.aclient.chat.completions.create(model=NAME, messages=chat("streamed chat"), **GREEDY)
    assert chunks_text(miss) == chunks_text(hit) == plain.choices[0].message.content
    for chunks, cached in ((miss, False), (hit, True)):
        assert all(c.object == "chat.completion.chunk" and c.model == NAME and c.choices for c in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason == "length" and extra(chunks[-1])["cached"] is cached
        assert all(c.usage is None for c in chunks)  # none asked for


async def test_include_usage_ends_the_stream_with_the_usage_chunk(oa: OpenAIEndpoint) -> None:
    for cached in (False, True):
        stream = await oa.aclient.completions.create(model=NAME, prompt="count the usage", stream=True,
                                                     stream_options={"include_usage": True}, **GREEDY)  # fmt: skip
        chunks = [chunk async for chunk in stream]
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 6
        assert extra(last)["cached"] is cached
        assert chunks_text(chunks) == " count the usage count the usage"


async def test_async_completions_plain_and_streamed(oa: OpenAIEndpoint) -> None:
    plain = await oa.aclient.completions.create(model=OVERRIDE, prompt="water boils at", **GREEDY)
    stream = await oa.aclient.completions.create(model=OVERRIDE, prompt="water boils at", stream=True, **GREEDY)
    chunks = [chunk async for chunk in stream]
    assert plain.object == "text_completion" and plain.model == OVERRIDE
    assert plain.choices[0].text == chunks_text(chunks) == " water boils at water boils at"
    assert all(c.model == OVERRIDE for c in chunks)


async def test_models_list_names_the_served_names(oa: OpenAIEndpoint) -> None:
    models = await asyncio.to_thread(oa.client.models.list)
    assert [m.id for m in models.data] == [OVERRIDE, NAME]
    assert (await oa.aclient.models.list()).data[0].id == OVERRIDE


@pytest.mark.parametrize("stream", [False, True])
async def test_a_bad_request_is_a_400_naming_the_parameter(oa: OpenAIEndpoint, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await oa.aclient.chat.completions.create(model=NAME, messages=chat("hot"), temperature=7, stream=stream)
    assert raised.value.status_code == 400
    assert raised.value.body == {"message": "openai_input.temperature: Input should be less than or equal to 2",
                                 "type": "invalid_request_error", "param": "temperature", "code": None}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_a_wrong_model_is_openais_404_model_not_found(oa: OpenAIEndpoint, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await oa.aclient.completions.create(model="gpt-4o", prompt="who are you", stream=stream, **GREEDY)
    body = raised.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"], body["param"]) == ("invalid_request_error", "model_not_found", "model")
    assert body["message"].startswith("The model `gpt-4o` does not exist")


async def test_the_runpod_sdk_gets_the_same_text_in_the_workers_shape_and_as_a_stream(oa: OpenAIEndpoint) -> None:
    """The worker's own shape (/runsync, a prompt job) and the OpenAI route's stream through the SDK's
    /stream: one text."""
    body = {"prompt": "same words here", **GREEDY}
    own = {"prompt": body["prompt"], "sampling_params": GREEDY}
    streamed = {"openai_route": "/v1/completions", "openai_input": {**body, "stream": True}}

    def calls() -> tuple[Any, list[Any], list[Any]]:
        endpoint = runpod.Endpoint("oa")
        return (endpoint.run_sync(own, timeout=60), list(endpoint.run(streamed).stream()),
                endpoint.run_sync(streamed, timeout=60))  # fmt: skip

    answer, pieces, aggregate = await asyncio.to_thread(calls)
    via_openai = await oa.aclient.completions.create(model=NAME, **body)
    assert answer[-1]["text"] == chunks_text(sse_chunks(pieces)) == via_openai.choices[0].text
    assert all(isinstance(p, str) and p.startswith("data: ") for p in pieces)
    assert chunks_text(sse_chunks(aggregate)) == answer[-1]["text"]  # /runsync: the list of the pieces


async def test_raw_openai_output_off_yields_chunk_lists_the_route_relays(platform: Platform) -> None:
    parsed = add_openai_endpoint(platform, "oa-lists", ENGINE_COMMAND=FAKE_VLLM, RAW_OPENAI_OUTPUT="0")
    job = {"openai_route": "/v1/chat/completions",
           "openai_input": {"messages": chat("lists please"), "stream": True, **GREEDY}}  # fmt: skip
    pieces = await asyncio.to_thread(lambda: list(runpod.Endpoint("oa-lists").run(job).stream()))
    assert pieces and all(isinstance(p, list) and all(isinstance(c, dict) for c in p) for p in pieces)
    stream = await parsed.aclient.chat.completions.create(model=NAME, messages=chat("lists please"), stream=True,
                                                         **GREEDY)  # fmt: skip
    chunks = [chunk async for chunk in stream]  # the route adds [DONE]; the client reads chunks as ever
    assert chunks_text(chunks) == chunks_text(sse_chunks(pieces)) == " lists please lists please lists please"
    assert extra(chunks[-1])["cached"] is True


# a worker that refuses every job for the budget, as this worker's app answers it
BROKE_WORKER = (
    "import runpod\n"
    f"ERROR = {error_output(BudgetExceeded('daily budget of 1.00 USD spent'))!r}\n"
    "runpod.serverless.start({'handler': lambda job: ERROR})\n"
)


async def test_a_spent_budget_is_a_429_insufficient_quota_the_client_does_not_retry(platform: Platform) -> None:
    config = EndpointConfig([sys.executable, "-c", BROKE_WORKER], workers_max=1, idle_timeout=60.0, cwd=REPO_ROOT)
    ep = platform.add_endpoint("oa-broke", config)
    _, aclient = clients(platform, "oa-broke")
    retrying = aclient.with_options(max_retries=2)  # the openai client's default: it retries 429s
    with pytest.raises(openai.RateLimitError) as raised:
        await retrying.completions.create(model=NAME, prompt="spend", max_tokens=4)
    assert raised.value.body == {"message": "daily budget of 1.00 USD spent", "type": "insufficient_quota",
                                 "param": None, "code": "insufficient_quota"}  # fmt: skip
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len(ep.board.jobs) == 1  # one job: no retry kept a worker busy


# a worker whose stream fails after its first chunk, as this worker's app ends a stream the engine broke
MIDSTREAM_WORKER = (
    "import runpod\n"
    f"ERROR = {error_output(EngineCrashed('the engine exited during the request'))!r}\n"
    'CHUNK = \'data: {"id": "c", "object": "text_completion", "created": 0, "model": "m", \''
    '\'"choices": [{"index": 0, "text": " half", "finish_reason": null}]}\\n\\n\'\n'
    "async def handler(job):\n"
    "    yield CHUNK\n"
    "    yield ERROR\n"
    "runpod.serverless.start({'handler': handler, 'return_aggregate_stream': True})\n"
)


async def test_a_stream_that_fails_midway_ends_with_an_error_event(platform: Platform) -> None:
    config = EndpointConfig([sys.executable, "-c", MIDSTREAM_WORKER], workers_max=1, idle_timeout=60.0, cwd=REPO_ROOT)
    platform.add_endpoint("oa-midway", config)
    _, aclient = clients(platform, "oa-midway")
    stream = await aclient.completions.create(model=NAME, prompt="break", max_tokens=4, stream=True)
    seen = []
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            seen.append(chunk)
    assert chunks_text(seen) == " half"  # the chunk made before the failure reached the client
    assert raised.value.message == "the engine exited during the request"
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "engine_crashed"


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (EngineCrashed("the engine exited"), 500, "server_error"),
        (BudgetExceeded("spent"), 429, "insufficient_quota"),
        (
            '{"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404}',
            404,
            "NotFoundError",
        ),
        ({"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}}, 400, "BadRequestError"),
        ("Traceback: something", 500, "server_error"),
    ],
)
def test_job_errors_map_to_openai_errors(error: Any, status: int, kind: str) -> None:
    raw = error_output(error)["error"] if isinstance(error, Exception) else error
    mapped = job_error(raw)
    assert (mapped.status, mapped.type) == (status, kind)


async def test_the_route_answers_openai_shaped_401_and_404(platform: Platform) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{platform.url}/v2/oa/openai/v1/models") as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "authentication_error"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with session.post(f"{platform.url}/v2/oa/openai/v1/embeddings", json={}, headers=headers) as response:
            assert response.status == 404 and "no such route" in (await response.json())["error"]["message"]
        async with session.get(f"{platform.url}/v2/nowhere/openai/v1/models", headers=headers) as response:
            assert response.status == 404


async def test_a_streamed_hit_comes_as_one_piece_without_the_engine(oa: OpenAIEndpoint) -> None:
    """A hit replays the kept chunks in one piece (the SDK's loop takes up to 0.1 s to start a job)."""
    messages = chat("quick hit")
    miss = await oa.aclient.chat.completions.create(model=NAME, messages=messages, stream=True, **GREEDY)
    assert [chunk async for chunk in miss]
    started = time.monotonic()
    stream = await oa.aclient.chat.completions.create(model=NAME, messages=messages, stream=True, **GREEDY)
    chunks = [chunk async for chunk in stream]
    assert time.monotonic() - started < 1.0
    assert extra(chunks[-1])["cached"] is True and len(chunks) == 2  # the role, then the whole text


def readme_example() -> str:
    """The README's example under "Calling it with the openai client"."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Calling it with the openai client") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readmes_example_runs_as_written(platform: Platform, oa: OpenAIEndpoint) -> None:
    code = readme_example().replace("https://api.runpod.ai/v2", f"{platform.url}/v2")
    names: dict[str, Any] = {"RUNPOD_API_KEY": API_KEY, "ENDPOINT_ID": "oa"}
    out = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), names)  # the README's own example

    await asyncio.to_thread(run)
    lines = out.getvalue().splitlines()
    answer, last = names["answer"], names["chunk"]
    assert names["MODEL"] == OVERRIDE and answer.model == OVERRIDE
    assert lines[0] == answer.choices[0].message.content == " What is the capital of France? What is"
    assert lines[1] == f"False {extra(answer)['cost_usd']}"
    assert lines[2] == " Name three rivers. Name three rivers. Name three"
    assert lines[3].split() == [str(last.usage.completion_tokens), "False", str(extra(last)["cost_usd"])]
