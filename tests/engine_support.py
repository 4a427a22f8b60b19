"""Helpers for tests that run the real vLLM engine (CPU build)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from handler.settings import REPO_ROOT, Settings, load_settings
from tests.prerequisites import strict

MODELS_DIR = REPO_ROOT / "models"
# Starting vLLM compiles the model first; for the tiny model that costs more than it saves.
FAST_START_ARGS = "--enforce-eager"


def worker_env(model: str = "tiny", **overrides: str) -> dict[str, str]:
    """A worker environment that uses only what the test gives it (no baked manifest, no volume)."""
    env = {
        "EMBEDDED_MODEL": model,
        "MODELS_DIR": str(MODELS_DIR),
        "MODEL_MANIFEST": "/nonexistent/manifest.json",
        "NETWORK_VOLUME_DIR": "/nonexistent",
        "MODEL_CACHE_DIR": "/nonexistent",
        "REDIS_URL": "",
        "ENGINE_EXTRA_ARGS": FAST_START_ARGS if model == "tiny" else "",
        "ENGINE_START_TIMEOUT": "900",
    }
    env.update(overrides)
    return env


def settings_for(model: str = "tiny", **overrides: str) -> Settings:
    return load_settings(worker_env(model, **overrides))


def require_model(name: str) -> Path:
    """The built model's folder. Missing: a test is skipped, unless FRUGAL_STRICT=1 (make test), where
    it fails; outside pytest (the benchmarks) it raises."""
    folder = MODELS_DIR / name
    if not (folder / "manifest.json").is_file():
        message = f"{folder} is not built: run `make models` (make test does it)"
        if "PYTEST_CURRENT_TEST" in os.environ and not strict():
            pytest.skip(message)
        raise RuntimeError(message)
    return folder
