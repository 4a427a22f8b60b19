"""A worker-vllm environment reaches the real vLLM engine (CPU build, the tiny model)."""

from __future__ import annotations

from typing import Any

import pytest

from handler.app import create_app
from tests.engine_support import require_model, settings_for

pytestmark = pytest.mark.engine

TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"  # the bare text: no role markers
WORKER_VLLM = {  # as a worker-vllm endpoint sets them (hub defaults and a user's choices)
    "OPENAI_RESPONSE_ROLE": "bot", "CUSTOM_CHAT_TEMPLATE": TEMPLATE, "ENABLE_PREFIX_CACHING": "false",
    "MAX_NUM_BATCHED_TOKENS": "4096", "ENABLE_CHUNKED_PREFILL": "True", "SEED": "0", "DTYPE": "auto",
    "MAX_MODEL_LEN": "auto", "KV_CACHE_DTYPE": "auto", "TRUST_REMOTE_CODE": "false", "MAX_LOGPROBS": "3",
    "DEFAULT_BATCH_SIZE": "50", "RAW_OPENAI_OUTPUT": "true", "ENFORCE_EAGER": "true", "QUANTIZATION": "None",
}  # fmt: skip


async def test_a_worker_vllm_environment_reaches_the_real_engine() -> None:
    require_model("tiny")
    app = create_app(settings_for("tiny", **WORKER_VLLM))
    try:
        text = "hello there friend"
        chat: dict[str, Any] = await app.handler(
            {
                "id": "c",
                "input": {
                    "openai_route": "/v1/chat/completions",
                    "cache": {"bypass": True},
                    "openai_input": {
                        "messages": [{"role": "user", "content": text}],
                        "max_tokens": 3,
                        "ignore_eos": True,
                    },
                },
            }
        )
        plain: dict[str, Any] = await app.handler({"id": "p", "input": {
            "openai_route": "/v1/completions", "cache": {"bypass": True},
            "openai_input": {"prompt": text, "max_tokens": 3, "ignore_eos": True}}})  # fmt: skip
    finally:
        await app.aclose()
    assert chat["choices"][0]["message"]["role"] == "bot", chat  # OPENAI_RESPONSE_ROLE reached vLLM
    # CUSTOM_CHAT_TEMPLATE reached vLLM: the chat prompt is the bare text, where the tiny model's own template
    # adds role markers (tests/test_worker_engine.py: more prompt tokens than the bare text)
    assert chat["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"], (chat["usage"], plain["usage"])
