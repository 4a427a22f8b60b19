"""The default settings with a real Redis: every input shape answers.

A worker with REDIS_URL set and no GPU price (the defaults a new user starts
from) once failed every job that reached the engine: the budget's settle script
turned a price of 0 into ``HINCRBY ... -0``, which Redis refuses. These tests
send each input shape through such a worker (the tiny model's shared engine).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from handler.app import App, create_app
from tests.engine_support import settings_for

pytestmark = [pytest.mark.engine, pytest.mark.redis]

SAMPLING = {"max_tokens": 4, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
async def default_app(tiny_app: App, redis_url: str) -> AsyncIterator[App]:
    """Default money settings (no GPU_TYPE, no GPU_HOURLY_RATE, no budget) over a real Redis."""
    namespace = f"t-defaults-{uuid.uuid4().hex[:8]}"
    settings = settings_for("tiny", REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, BUDGET_NAMESPACE=namespace)
    assert settings.gpu_hourly_rate == 0 and not settings.gpu_type and settings.daily_budget_usd == 0
    app = create_app(settings, engine=tiny_app.engine)
    yield app
    await app.aclose()


SHAPES: list[tuple[str, dict[str, Any]]] = [
    ("prompt", {"prompt": "The sky is", "sampling_params": SAMPLING}),
    ("chat", {"messages": [{"role": "user", "content": "Hi"}], "sampling_params": SAMPLING}),
    ("openai chat", {"openai_route": "/v1/chat/completions",
                     "openai_input": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                                      "ignore_eos": True, "temperature": 0}}),
    ("openai completions", {"openai_route": "/v1/completions",
                            "openai_input": {"prompt": "Hi", "max_tokens": 4, "temperature": 0, "ignore_eos": True}}),
    ("openai models", {"openai_route": "/v1/models", "openai_input": {}}),
    ("batch", {"requests": [{"prompt": "One", "sampling_params": SAMPLING},
                            {"messages": [{"role": "user", "content": "Two"}], "sampling_params": SAMPLING}]}),
]  # fmt: skip


@pytest.mark.parametrize("cache", ["fresh", "repeat"])
@pytest.mark.parametrize(("shape", "data"), SHAPES, ids=[s for s, _ in SHAPES])
async def test_every_shape_answers_with_default_settings(
    default_app: App, shape: str, data: dict[str, Any], cache: str
) -> None:
    # "fresh": the first answer (from the engine unless another shape made the same body first);
    # "repeat": the same job sent twice, the second answered from the cache
    first = await default_app.handler({"id": f"{shape}-{cache}", "input": data})
    out = first
    if cache == "repeat":
        out = await default_app.handler({"id": f"{shape}-{cache}-again", "input": data})
    assert "error" not in out, out
    if cache == "repeat" and shape == "batch":
        assert [r["cached"] for r in out["results"]] == [True, True]
        assert [r["text"] for r in out["results"]] == [r["text"] for r in first["results"]]
    elif cache == "repeat" and shape == "openai models":
        assert out["cached"] is False  # the listing is never cached
    elif cache == "repeat":
        assert out["cached"] is True, out  # the hit this case is named for
        assert out["choices"] == first["choices"] if "choices" in out else out["text"] == first["text"]
    if shape == "batch":
        assert out["failed"] == 0 and len(out["results"]) == 2
        assert all(r["usage"]["completion_tokens"] == 4 for r in out["results"])
    elif shape == "openai models":
        assert out["object"] == "list" and out["data"]
    else:
        assert out["usage"]["completion_tokens"] == 4
    assert out["cost_usd"] == 0.0


async def test_a_streamed_job_answers_with_default_settings(default_app: App) -> None:
    data = {"prompt": "Stream this", "sampling_params": SAMPLING, "stream": True, "cache": {"bypass": True}}
    pieces = [p async for p in default_app.generator_handler({"id": "stream", "input": data})]
    assert all("error" not in p for p in pieces), pieces
    final = pieces[-1]
    assert final["usage"]["completion_tokens"] == 4
    assert "".join(p["text"] for p in pieces[:-1]) == final["text"]
    state = (await (await default_app.worker()).budget.state()).to_dict()
    assert state["limit_usd"] is None and state["spent_usd"] == 0.0


async def test_a_cost_cap_without_a_price_caps_nothing(default_app: App) -> None:
    data = {"prompt": "Capped?", "sampling_params": SAMPLING, "max_cost_usd": 1e-9, "cache": {"bypass": True}}
    out = await default_app.handler({"id": "cap", "input": data})
    assert out["usage"]["completion_tokens"] == 4 and "cost_capped" not in out
