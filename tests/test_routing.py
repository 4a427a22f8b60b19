"""Size routing: token estimates and tier choice, against hand-worked examples."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from client.fallback import EndpointSpec, TierPair
from client.routing import Router, Thresholds, estimate_tokens

SMALL = TierPair(spot=EndpointSpec("s-spot"), on_demand=EndpointSpec("s-od"))
MEDIUM = TierPair(on_demand=EndpointSpec("m-od"))
LARGE = TierPair(spot=EndpointSpec("l-spot"), on_demand=EndpointSpec("l-od"))


class WordTokenizer:
    def encode(self, text: str) -> Sequence[int]:
        return list(range(len(text.split())))


def test_chars_over_four_rounded_up_plus_max_tokens() -> None:
    # "hello" = 5 chars -> ceil(5/4) = 2 tokens; + max_tokens 10 = 12
    assert estimate_tokens({"prompt": "hello", "sampling_params": {"max_tokens": 10}}) == 12
    # no max_tokens: the worker's default 256 -> 2 + 256 = 258
    assert estimate_tokens({"prompt": "hello"}) == 258
    # messages: "abcd" (1) + "abcdefgh" (2) = 3, + 100 = 103
    job = {
        "messages": [{"role": "system", "content": "abcd"}, {"role": "user", "content": "abcdefgh"}],
        "sampling_params": {"max_tokens": 100},
    }
    assert estimate_tokens(job) == 103
    # openai_input carries its own max_tokens: 40 chars -> 10, + 50 = 60
    assert (
        estimate_tokens({"openai_route": "/v1/completions", "openai_input": {"prompt": "x" * 40, "max_tokens": 50}})
        == 60
    )


def test_batch_sums_its_items_and_tokenizer_is_used_when_given() -> None:
    # items: (ceil(8/4)=2 + 10) + (ceil(1/4)=1 + 20) = 33
    assert (
        estimate_tokens(
            {
                "requests": [
                    {"prompt": "abcdefgh", "sampling_params": {"max_tokens": 10}},
                    {"prompt": "a", "sampling_params": {"max_tokens": 20}},
                ]
            }
        )
        == 33
    )
    # word tokenizer: "one two three" = 3 tokens, + 7 = 10 (chars/4 would give 4 + 7 = 11)
    assert estimate_tokens({"prompt": "one two three", "sampling_params": {"max_tokens": 7}}, WordTokenizer()) == 10


@pytest.mark.parametrize(
    ("tokens", "tier"), [(999, "small"), (1000, "medium"), (3999, "medium"), (4000, "large"), (100_000, "large")]
)
def test_default_thresholds(tokens: int, tier: str) -> None:
    assert Thresholds().tier(tokens) == tier


def test_router_picks_tier_and_falls_up_to_next_configured() -> None:
    router = Router({"small": SMALL, "large": LARGE}, Thresholds(small_below=100, medium_below=1000))
    # 4 chars -> 1 token + 50 = 51 < 100: small
    assert router.route({"prompt": "abcd", "sampling_params": {"max_tokens": 50}}) == ("small", SMALL)
    # 1 + 500 = 501: medium, not configured -> large serves it
    assert router.route({"prompt": "abcd", "sampling_params": {"max_tokens": 500}}) == ("large", LARGE)
    only_small = Router({"small": SMALL, "medium": MEDIUM})
    with pytest.raises(ValueError, match="'large' tier or larger"):
        only_small.route({"prompt": "x" * 20_000})


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="small_below <= medium_below"):
        Thresholds(small_below=500, medium_below=100)
    with pytest.raises(ValueError, match="at least one tier"):
        Router({})


def test_the_estimate_reads_jobs_as_the_worker_does() -> None:
    # max_completion_tokens is the cap the worker applies: 8 chars -> 2, + 30 = 32
    chat = {"openai_route": "/v1/chat/completions", "openai_input": {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}],
        "max_completion_tokens": 30}}  # fmt: skip
    assert estimate_tokens(chat) == 32
    # input the worker refuses counts nothing; a refused batch item counts nothing
    assert estimate_tokens({"prompt": ""}) == 0
    assert estimate_tokens({"prompt": "abcd", "messages": []}) == 0
    batch = {"requests": [{"prompt": "abcd", "sampling_params": {"max_tokens": 5}}, {"prompt": 7}]}
    assert estimate_tokens(batch) == 6
