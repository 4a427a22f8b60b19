"""Cache keys: everything that changes the answer changes the key; nothing else does."""

from __future__ import annotations

from typing import Any

import pytest

from core.contract import _OPENAI_COUNTS, _OPENAI_PROMPT_LIKE, SamplingParams, parse_single
from handler.cache_keys import cache_key, is_cacheable
from handler.settings import load_settings

FINGERPRINT = {"model": "smollm2", "revision": "abc", "quantization": "", "dtype": "float32", "max_model_len": 2048}
BODY: dict[str, Any] = {
    "prompt": "What is the capital of France?",
    "max_tokens": 32,
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "seed": None,
    "stop": [],
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "min_tokens": 0,
    "ignore_eos": False,
    "n": 1,
}
CHANGED = {
    "prompt": "What is the capital of Spain?",
    "max_tokens": 33,
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.05,
    "seed": 7,
    "stop": ["\n"],
    "presence_penalty": 0.1,
    "frequency_penalty": 0.1,
    "repetition_penalty": 1.1,
    "min_tokens": 1,
    "ignore_eos": True,
    "n": 2,
}


def key(body: dict[str, Any], **overrides: Any) -> str:
    params = {"namespace": "ns", "fingerprint": FINGERPRINT, "route": "/v1/completions", **overrides}
    return cache_key(params["namespace"], params["fingerprint"], params["route"], body)


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_sampling_parameter_changes_the_key(name: str) -> None:
    assert key({**BODY, name: CHANGED[name]}) != key(BODY)


def test_every_parameter_of_the_body_is_covered() -> None:
    """The tables above name the contract's own parameters: one it adds fails here until it is tested."""
    contract = {"prompt", *SamplingParams.model_fields}
    assert set(BODY) == contract, set(BODY) ^ contract
    assert set(CHANGED) == contract, set(CHANGED) ^ contract
    settings = load_settings({})
    parsed = parse_single({"prompt": BODY["prompt"], "sampling_params": {"temperature": 0}}, settings.limits)
    assert set(parsed.body) == contract  # and the body the contract makes carries exactly them


OPENAI_EXTRAS = sorted({*_OPENAI_COUNTS, *_OPENAI_PROMPT_LIKE})  # the contract's list, passed through to vLLM


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("name", OPENAI_EXTRAS)
def test_each_openai_extra_the_contract_passes_changes_the_key(route: str, name: str) -> None:
    """Every field the contract lets through to vLLM beside the sampling parameters is in the key."""
    limits = load_settings({}).limits
    shape = {"prompt": "hi"} if route == "/v1/completions" else {"messages": [{"role": "user", "content": "hi"}]}
    plain = parse_single({"openai_route": route, "openai_input": {**shape, "temperature": 0}}, limits)
    value = 2 if name in _OPENAI_COUNTS else "x"
    extra = parse_single({"openai_route": route, "openai_input": {**shape, "temperature": 0, name: value}}, limits)
    assert extra.body[name] == value  # passed through as given
    assert key(extra.body, route=route) != key(plain.body, route=route)


@pytest.mark.parametrize(
    "override",
    [
        {"namespace": "other"},
        {"route": "/v1/chat/completions"},
        {"fingerprint": {**FINGERPRINT, "revision": "def"}},
        {"fingerprint": {**FINGERPRINT, "quantization": "awq"}},
        {"fingerprint": {**FINGERPRINT, "dtype": "bfloat16"}},
        {"fingerprint": {**FINGERPRINT, "model": "other"}},
    ],
)
def test_namespace_model_and_route_change_the_key(override: dict[str, Any]) -> None:
    assert key(BODY, **override) != key(BODY)


def test_order_and_number_spelling_do_not_change_the_key() -> None:
    reordered = dict(reversed(list(BODY.items())))
    assert key(reordered) == key(BODY)
    assert key({**BODY, "temperature": 0, "top_p": 1, "repetition_penalty": 1}) == key(BODY)
    fingerprint = dict(reversed(list(FINGERPRINT.items())))
    assert key(BODY, fingerprint=fingerprint) == key(BODY)


def test_stream_keys_do_not_change_the_key() -> None:
    assert key({**BODY, "stream": True, "stream_options": {"include_usage": True}}) == key(BODY)


def test_messages_content_and_order_change_the_key() -> None:
    chat = {**{k: v for k, v in BODY.items() if k != "prompt"}}
    one = {**chat, "messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]}
    two = {**chat, "messages": [{"role": "user", "content": "b"}, {"role": "system", "content": "a"}]}
    three = {**chat, "messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "c"}]}
    assert len({key(one), key(two), key(three)}) == 3


def test_omitted_values_and_explicit_defaults_share_a_key_through_the_contract() -> None:
    settings = load_settings({})
    omitted = parse_single({"prompt": "hi", "sampling_params": {"temperature": 0}}, settings.limits)
    explicit = parse_single(
        {
            "prompt": "hi",
            "sampling_params": {
                "temperature": 0.0,
                "max_tokens": settings.default_max_tokens,
                "top_p": 1,
                "top_k": -1,
                "stop": [],
                "n": 1,
                "seed": None,
                "repetition_penalty": 1.0,
            },
        },
        settings.limits,
    )
    assert key(omitted.body) == key(explicit.body)
    other = parse_single({"prompt": "hi", "sampling_params": {"temperature": 0, "top_k": 5}}, settings.limits)
    assert key(other.body) != key(omitted.body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0, "n": 1}, True),
        ({"temperature": 0.8, "seed": 3}, True),
        ({"temperature": 0.8}, False),
        ({"temperature": 0.8, "seed": None}, False),
        ({}, False),
        ({"temperature": 0, "n": 2}, False),
        ({"temperature": 0, "best_of": 1}, True),
        ({"temperature": 0, "best_of": 2}, False),
        ({"temperature": 0, "best_of": 3}, False),
        ({"temperature": False}, False),
    ],
)
def test_only_deterministic_single_choice_requests_are_cacheable(body: dict[str, Any], expected: bool) -> None:
    assert is_cacheable({"prompt": "x", **body}) is expected


def test_null_and_the_text_none_are_different_keys() -> None:
    assert key({**BODY, "stop": None}) != key({**BODY, "stop": "None"})


def test_the_key_of_a_known_request_stays_what_workers_stored() -> None:
    """Workers of the last release stored answers under these keys: a change of the key's layout
    loses the whole cache (and must come with a new KEY_VERSION, and this figure)."""
    body = {"prompt": "hi", "temperature": 0.0, "stop": None}
    assert (
        cache_key("ns", {"model": "tiny", "revision": "r1"}, "/v1/completions", body)
        == "bc11c6a6889f9d662ff9f38463d58c507f8a775f5c744e94ec8fc0ec31bb84c0"
    )
