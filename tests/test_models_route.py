"""`/v1/models` is answered from the worker's own settings: no engine start, nothing spent."""

from __future__ import annotations

from handler.app import create_app
from tests.engine_support import settings_for


async def test_models_listing_never_starts_the_engine() -> None:
    app = create_app(settings_for("tiny", GPU_HOURLY_RATE="3.6"))
    try:
        out = await app.handler({"id": "m", "input": {"openai_route": "/v1/models", "openai_input": {}}})
        assert out["object"] == "list" and [m["id"] for m in out["data"]] == [app.model.name]
        assert out["data"][0]["max_model_len"] == (app.model.max_model_len or app.settings.max_model_len)
        assert out["cost_usd"] == 0.0 and out["cached"] is False
        assert app.engine.starts == 0 and not app.engine.running
    finally:
        await app.aclose()
