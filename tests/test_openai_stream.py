"""The OpenAI routes' own shapes (handler.openai_stream) on the in-process fake engine: a streamed job
yields OpenAI's server-sent events (or chunk lists) whether the engine or the cache answers, and the
request's `model` is checked against the served names."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.contract import parse_single
from core.errors import InputError
from devtools.fake_engine import FakeEngine, SimClock
from handler.billing import Meter
from handler.budget import Budget
from handler.cache import CacheOptions, ResponseCache
from handler.engine_command import ModelRef, answer_fingerprint
from handler.errors import ModelNotFound
from handler.openai_stream import DONE, OpenAIStream, Replay, answer_name, served_names
from handler.rates import hourly_rate
from handler.settings import load_settings
from handler.store.embedded import EmbeddedStore
from handler.worker import Worker
from tests.conftest import TEST_HOURLY_RATE

MODEL = "fake-model"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def make_worker(namespace: str, **env: str) -> Worker:
    """A worker over the embedded store and a fake engine whose tokens take simulated time."""
    clock = SimClock()
    settings = load_settings({"GPU_HOURLY_RATE": TEST_HOURLY_RATE, "CACHE_NAMESPACE": namespace,
                              "BUDGET_NAMESPACE": namespace, **env})  # fmt: skip
    engine = FakeEngine(clock=clock, sleep=clock.sleep, per_token_seconds=0.01, model_name=MODEL)
    store = EmbeddedStore()
    model = ModelRef(path="/nonexistent/fake", name=MODEL)
    meter = Meter(settings.seconds_per_token, clock=clock)
    meter.worker_ready()
    return Worker(
        settings.jobs,
        engine,
        model,
        cache=ResponseCache(store, settings.cache, answer_fingerprint(settings.engine, model, engine.device)),
        budget=Budget(store, settings.budget, clock=lambda: 1_794_908_800.0),
        meter=meter,
        hourly_rate=hourly_rate(settings.budget),
        clock=clock,
    )


def chat_job(content: str, **extra: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0, **extra}
    return {"openai_route": CHAT, "openai_input": body}


def events(pieces: list[Any]) -> list[str]:
    """The data of every server-sent event in the pieces, in order."""
    assert all(isinstance(p, str) for p in pieces), pieces
    return [e.removeprefix("data: ") for p in pieces for e in p.split("\n\n") if e]


def chunks_of(pieces: list[Any]) -> list[dict[str, Any]]:
    data = events(pieces)
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1  # [DONE] last, once
    return [orjson.loads(d) for d in data[:-1]]


def chat_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def collect(worker: Worker, job: dict[str, Any], job_id: str = "j") -> list[Any]:
    return [piece async for piece in worker.stream(job_id, job)]


async def test_a_streamed_hit_replays_the_chunks_a_miss_streamed(namespace: str) -> None:
    worker = make_worker(namespace)
    job = chat_job("the river runs", stream=True)
    miss, hit = chunks_of(await collect(worker, job, "m")), chunks_of(await collect(worker, job, "h"))
    plain = await worker.answer("p", {**job, "openai_input": {**job["openai_input"], "stream": False}})
    assert chat_text(miss) == chat_text(hit) == plain["choices"][0]["message"]["content"] == " the river runs the"
    for chunks, cached in ((miss, False), (hit, True)):
        assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        last = chunks[-1]
        assert last["choices"][0]["finish_reason"] == "length"  # no chunk without choices: none was asked for
        assert all("usage" not in c for c in chunks)  # none asked for
        assert last["cached"] is cached and {"cost_usd", "timings", "budget"} <= set(last)
    assert len(miss) == 5 and len(hit) == 2  # the role, 4 tokens (the last finishes); the hit: role, the text
    assert hit[-1]["cost_usd"] == 0.0 and miss[-1]["cost_usd"] > 0


async def test_include_usage_ends_with_the_usage_chunk_from_engine_and_cache(namespace: str) -> None:
    worker = make_worker(namespace)
    job = chat_job("count me", stream=True, stream_options={"include_usage": True})
    for job_id in ("miss", "hit"):
        chunks = chunks_of(await collect(worker, job, job_id))
        last = chunks[-1]
        assert last["choices"] == [] and last["usage"] == {
            "prompt_tokens": 2,
            "completion_tokens": 4,
            "total_tokens": 6,
            "prompt_tokens_details": None,
        }
        assert last["cached"] is (job_id == "hit")
        assert all("usage" not in c for c in chunks[:-1])
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"


async def test_continuous_usage_stats_keep_each_chunks_running_count(namespace: str) -> None:
    worker = make_worker(namespace)
    job = chat_job("count on", stream=True, stream_options={"continuous_usage_stats": True})
    chunks = chunks_of(await collect(worker, job))
    assert [c["usage"]["completion_tokens"] for c in chunks] == [0, 1, 2, 3, 4]


async def test_raw_openai_output_off_yields_chunk_lists_without_done(namespace: str) -> None:
    worker = make_worker(namespace, RAW_OPENAI_OUTPUT="0")
    job = {"openai_route": COMPLETIONS,
           "openai_input": {"prompt": "water boils", "max_tokens": 3, "temperature": 0, "stream": True}}  # fmt: skip
    for job_id, cached in (("miss", False), ("hit", True)):
        pieces = await collect(worker, job, job_id)
        assert all(isinstance(p, list) and p for p in pieces)
        chunks = [c for p in pieces for c in p]
        assert all(c["object"] == "text_completion" for c in chunks)
        assert "".join(c["choices"][0]["text"] for c in chunks) == " water boils water"
        assert chunks[-1]["cached"] is cached and chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_an_entry_kept_before_chunks_were_kept_is_a_miss(namespace: str) -> None:
    worker = make_worker(namespace)
    job = chat_job("old entry", stream=True)
    req = parse_single(job, worker.settings.limits)
    key = worker.cache.key_for(req.route, {**req.body, "_openai_stream": True}, CacheOptions())
    assert key is not None
    await worker.cache.put(key, {"text": " old", "finish_reason": "stop", "usage": {}})
    chunks = chunks_of(await collect(worker, job))
    assert chunks[-1]["cached"] is False and chat_text(chunks) == " old entry old entry"


async def test_the_model_is_checked_and_answered_under_the_name_given(namespace: str) -> None:
    worker = make_worker(namespace, OPENAI_SERVED_MODEL_NAME_OVERRIDE="my-llm")
    assert worker.served_names == ["my-llm", MODEL]
    for name in ("my-llm", MODEL):
        plain = await worker.answer(name, chat_job("name me", model=name))
        assert plain["model"] == name and plain["cached"] is (name == MODEL)
        chunks = chunks_of(await collect(worker, chat_job("name me", model=name, stream=True), f"s-{name}"))
        assert {c["model"] for c in chunks} == {name}
    assert (await worker.answer("anon", chat_job("name me")))["model"] == "my-llm"  # no name: the first
    with pytest.raises(ModelNotFound) as raised:
        await worker.answer("x", chat_job("name me", model="gpt-5"))
    assert raised.value.to_dict() == {"type": "model_not_found", "field": "openai_input.model",
                                      "message": "The model `gpt-5` does not exist (served: `my-llm`, "
                                                 "`fake-model`)."}  # fmt: skip
    listing = await worker.answer("l", {"openai_route": "/v1/models"})
    assert [m["id"] for m in listing["data"]] == ["my-llm", MODEL]


async def test_a_batch_item_naming_another_model_fails_alone(namespace: str) -> None:
    worker = make_worker(namespace)
    out = await worker.answer("b", {"requests": [chat_job("one"), chat_job("two", model="other")]})
    assert out["failed"] == 1 and out["results"][1]["error"]["type"] == "model_not_found"


def test_served_names_and_answer_name() -> None:
    assert served_names("org/model", "") == ["org/model"]
    assert served_names("org/model", "org/model") == ["org/model"]
    assert answer_name(None, ["a", "b"]) == "a"
    with pytest.raises(ModelNotFound):
        answer_name("c", ["a", "b"])


@pytest.mark.parametrize(
    ("openai_input", "field"),
    [
        ({"model": 7}, "openai_input.model"),
        ({"stream_options": "yes"}, "openai_input.stream_options"),
        ({"stream_options": {"include_usage": "yes"}}, "openai_input.stream_options.include_usage"),
    ],
)
def test_the_contract_checks_model_and_stream_options(openai_input: dict[str, Any], field: str) -> None:
    limits = load_settings({}).limits
    with pytest.raises(InputError) as raised:
        parse_single({"openai_route": COMPLETIONS, "openai_input": {"prompt": "x", **openai_input}}, limits)
    assert raised.value.field == field


def test_the_contract_keeps_model_and_stream_options_out_of_the_body() -> None:
    limits = load_settings({}).limits
    body = {"prompt": "x", "model": "m", "stream": True, "stream_options": {"include_usage": True}}
    req = parse_single({"openai_route": COMPLETIONS, "openai_input": body}, limits)
    assert (req.model, req.include_usage, req.continuous_usage, req.stream) == ("m", True, False, True)
    assert not {"model", "stream", "stream_options"} & set(req.body)
    listing = parse_single({"openai_route": "/v1/models", "openai_input": None}, limits)  # a body-less route
    assert listing.body == {}


def _chunk(choice: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "engine-name",
            "choices": [choice] if choice else [], **extra}  # fmt: skip


def test_replay_merges_plain_deltas_and_keeps_the_rest_apart() -> None:
    replay = Replay(CHAT)
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    for chunk in [
        _chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}, usage=usage),
        _chunk({"index": 0, "delta": {"content": "Hel"}, "logprobs": None, "finish_reason": None}, usage=usage),
        _chunk({"index": 0, "delta": {"content": "lo"}, "logprobs": None, "finish_reason": None}, usage=usage),
        _chunk({"index": 0, "delta": {"content": "!"}, "logprobs": {"content": []}, "finish_reason": None}),
        _chunk({"index": 0, "delta": {"content": " Bye"}, "finish_reason": None}),
        _chunk({"index": 0, "delta": {}, "finish_reason": "stop"}),
        _chunk(None, usage=usage),
    ]:
        replay.add(chunk)
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in replay.chunks] == [
        {"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": "!"}, {"content": " Bye"}, None,
    ]  # fmt: skip
    assert replay.chunks[3]["choices"][0]["finish_reason"] == "stop"  # the finish merged into the last text
    assert [("usage" in c) for c in replay.chunks] == [False, False, False, False, True]


def test_the_shaper_holds_the_finishing_chunk_for_the_fields() -> None:
    shaper = OpenAIStream(raw=True, include_usage=False, continuous_usage=False, model="asked")
    assert shaper.add(_chunk({"index": 0, "delta": {"content": "a"}, "finish_reason": None})) != []
    assert shaper.add(_chunk({"index": 0, "delta": {}, "finish_reason": "stop"})) == []  # held
    assert shaper.add(_chunk(None, usage={"total_tokens": 3})) == []
    (last,) = shaper.end({"cached": True})
    assert last.endswith(DONE)
    (chunk,) = [orjson.loads(e) for e in events([last]) if e != "[DONE]"]
    assert chunk["choices"][0]["finish_reason"] == "stop" and chunk["cached"] is True and chunk["model"] == "asked"
