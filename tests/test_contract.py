"""The job contract, without an engine."""

from __future__ import annotations

from typing import Any

import pytest

from core.contract import CHAT_ROUTE, COMPLETIONS_ROUTE, EngineRequest, parse_job, parse_single
from core.errors import InputError
from handler.settings import load_settings

SETTINGS = load_settings({"DEFAULT_MAX_TOKENS": "100", "MAX_TOKENS_LIMIT": "500", "MAX_BATCH_SIZE": "3",
                          "MAX_PROMPT_CHARS": "50"})  # fmt: skip


def single(data: dict[str, Any]) -> EngineRequest:
    return parse_single(data, SETTINGS.limits)


def test_prompt_job_fills_every_sampling_default() -> None:
    req = single({"prompt": "hi"})
    assert req.route == COMPLETIONS_ROUTE
    assert req.body["max_tokens"] == 100
    assert req.body["temperature"] == 1.0
    assert {"top_p", "top_k", "min_p", "seed", "stop", "repetition_penalty", "n"} <= set(req.body)


def test_omitted_and_explicit_defaults_give_the_same_body() -> None:
    explicit = single({"prompt": "hi", "sampling_params": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 100}})
    assert explicit.body == single({"prompt": "hi"}).body


def test_stop_string_becomes_a_list() -> None:
    assert single({"prompt": "hi", "sampling_params": {"stop": "\n"}}).body["stop"] == ["\n"]


def test_chat_job_keeps_messages() -> None:
    req = single({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert req.route == CHAT_ROUTE and req.stream
    assert req.body["messages"] == [{"role": "user", "content": "hi"}]


def test_openai_input_is_passed_through_with_defaults_and_without_model() -> None:
    openai_input = {
        "model": "x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 7,
        "stream": True,
        "response_format": {"type": "text"},
    }
    req = single({"openai_route": "/v1/chat/completions", "openai_input": openai_input})
    assert req.openai and req.stream
    assert "model" not in req.body and "stream" not in req.body
    assert req.body["max_tokens"] == 7
    assert req.body["response_format"] == {"type": "text"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x", "extra": 1}, "extra"),
        ({"prompt": "x", "messages": []}, "input"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content"),
        ({"prompt": "x", "sampling_params": {"temperature": -1}}, "sampling_params.temperature"),
        ({"prompt": "x", "sampling_params": {"max_tokens": 501}}, "sampling_params.max_tokens"),
        ({"prompt": "x" * 51}, "prompt"),
        ({"prompt": "x", "cache": {"ttl": 0}}, "cache.ttl"),
        ({"openai_route": "/v1/completions", "openai_input": {}}, "openai_input.prompt"),
        (
            {"openai_route": "/v1/completions", "openai_input": {"prompt": "x", "max_tokens": 900}},
            "openai_input.max_tokens",
        ),
        ("text", "input"),
    ],
)
def test_bad_input_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_job(data, SETTINGS.limits)
    assert info.value.field == field
    assert field in info.value.message


def test_batch_keeps_bad_items_in_place() -> None:
    job = parse_job({"requests": [{"prompt": "a"}, {"prompt": ""}, {"prompt": "c", "stream": True}]}, SETTINGS.limits)
    assert job.batch
    assert isinstance(job.items[0], EngineRequest)
    assert isinstance(job.items[1], InputError) and job.items[1].field == "requests.1.prompt"
    assert isinstance(job.items[2], InputError) and job.items[2].field == "requests.2.stream"


@pytest.mark.parametrize(
    ("data", "field"),
    [({"requests": []}, "requests"), ({"requests": [{"prompt": "a"}] * 4}, "requests"),
     ({"requests": [{"prompt": "a"}], "stream": True}, "stream")],
)  # fmt: skip
def test_bad_batches_fail_as_a_whole(data: Any, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_job(data, SETTINGS.limits)
    assert info.value.field == field


def test_max_completion_tokens_is_the_cap_and_is_limited() -> None:
    chat = {"openai_route": "/v1/chat/completions", "openai_input": {"messages": [{"role": "user", "content": "hi"}]}}
    req = single({**chat, "openai_input": {**chat["openai_input"], "max_tokens": 10, "max_completion_tokens": 20}})
    assert req.body["max_tokens"] == 20 and "max_completion_tokens" not in req.body  # vLLM would prefer it
    with pytest.raises(InputError) as over:
        single({**chat, "openai_input": {**chat["openai_input"], "max_completion_tokens": 501}})
    assert over.value.field == "openai_input.max_completion_tokens" and "over the limit of 500" in over.value.message
    with pytest.raises(InputError, match="whole number"):
        single({**chat, "openai_input": {**chat["openai_input"], "max_completion_tokens": "lots"}})
    completions = {"openai_route": "/v1/completions", "openai_input": {"prompt": "hi", "max_completion_tokens": 7}}
    assert single(completions).body["max_tokens"] == 7


def test_openai_content_parts_count_toward_the_prompt_limit() -> None:
    parts = [{"type": "text", "text": "x" * 30}, {"type": "text", "text": "y" * 30}]
    data = {"openai_route": "/v1/chat/completions", "openai_input": {"messages": [{"role": "user", "content": parts}]}}
    with pytest.raises(InputError) as refused:
        single(data)
    assert refused.value.field == "openai_input.messages" and "60 characters" in refused.value.message


def test_max_cost_usd_is_carried_and_validated() -> None:
    assert single({"prompt": "hi", "max_cost_usd": 0.01}).max_cost_usd == 0.01
    assert single({"prompt": "hi"}).max_cost_usd is None
    capped = parse_single({"prompt": "hi"}, load_settings({"MAX_COST_USD_PER_JOB": "0.5"}).limits)
    assert capped.max_cost_usd == 0.5
    with pytest.raises(InputError) as bad:
        single({"prompt": "hi", "max_cost_usd": -1})
    assert bad.value.field == "max_cost_usd"


@pytest.mark.parametrize(
    ("openai_input", "field", "problem"),
    [
        ({"prompt": "hi", "best_of": 99}, "openai_input.best_of", "from 1 to 16"),
        ({"prompt": "hi", "n": 3, "best_of": 2}, "openai_input.best_of", "at least n"),
        ({"prompt": "hi", "logprobs": 50}, "openai_input.logprobs", "from 0 to 20"),
        ({"prompt": "hi", "stop": ["x"] * 17}, "openai_input.stop", "at most 16"),
        ({"prompt": "hi", "stop": ["x" * 300]}, "openai_input.stop.0", "at most 256"),
        ({"prompt": "hi", "tools": [{"type": "function", "function": {"name": "f", "description": "d" * 60}}]},
         "openai_input.tools", "over the limit of 50"),
    ],
)  # fmt: skip
def test_every_limit_applies_to_openai_inputs(openai_input: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(InputError) as refused:
        single({"openai_route": "/v1/completions", "openai_input": openai_input})
    assert refused.value.field == field and problem in refused.value.message, refused.value.message


def test_the_same_stop_limits_apply_to_plain_shapes() -> None:
    with pytest.raises(InputError) as refused:
        single({"prompt": "hi", "sampling_params": {"stop": ["x"] * 17}})
    assert refused.value.field == "sampling_params.stop"
    chat_logprobs = {"openai_route": "/v1/chat/completions",
                     "openai_input": {"messages": [{"role": "user", "content": "hi"}], "logprobs": True,
                                      "top_logprobs": 5}}  # fmt: skip
    assert single(chat_logprobs).body["top_logprobs"] == 5
