"""Answers that need no engine: `/v1/models` from the worker's settings, and an unexpected failure's typed error."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from handler.app import create_app
from handler.store.embedded import EmbeddedStore
from tests.engine_support import require_model, settings_for


async def test_models_listing_never_starts_the_engine() -> None:
    require_model("tiny")  # the app resolves it at start; the listing never starts its engine
    app = create_app(settings_for("tiny", GPU_HOURLY_RATE="3.6"))
    try:
        out = await app.handler({"id": "m", "input": {"openai_route": "/v1/models", "openai_input": {}}})
        assert out["object"] == "list" and [m["id"] for m in out["data"]] == [app.model.name]
        assert out["data"][0]["max_model_len"] == (app.model.max_model_len or app.settings.max_model_len)
        assert out["cost_usd"] == 0.0 and out["cached"] is False
        assert app.engine.starts == 0 and not app.engine.running
    finally:
        await app.aclose()


class FaultyStore(EmbeddedStore):
    """A store whose budget fails in a way nobody planned for (a bug, a library surprise)."""

    async def budget_reserve(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something nobody expected")


async def test_an_unexpected_failure_is_a_typed_error_with_an_id_and_the_worker_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_model("tiny")  # resolved at start, never run
    app = create_app(settings_for("tiny", GPU_HOURLY_RATE="3.6"), store=FaultyStore())
    caplog.set_level(logging.ERROR, logger="handler.app")
    try:
        job = {"prompt": "Hi", "sampling_params": {"max_tokens": 2}, "cache": {"bypass": True}}
        out = await app.handler({"id": "j1", "input": job})
        error = orjson.loads(out["error"])
        assert error["type"] == "internal_error" and "Traceback" not in out["error"]
        logged = [r for r in caplog.records if error["id"] in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info is not None  # the traceback is in the log, under the id
        pieces = [p async for p in app.generator_handler({"id": "j2", "input": {**job, "stream": True}})]
        assert orjson.loads(pieces[-1]["error"])["type"] == "internal_error"
        listing = await app.handler({"id": "j3", "input": {"openai_route": "/v1/models", "openai_input": {}}})
        assert listing["object"] == "list"  # the worker still serves
        assert app.engine.starts == 0
    finally:
        await app.aclose()
