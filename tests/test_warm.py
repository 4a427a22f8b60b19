"""`builder warm`: the engine compiled once at build time, its cache kept beside the model, loaded by the worker.

The tiny model is compiled here (no --enforce-eager): the first start compiles, a
worker started later on a fresh copy of the folder (a new container from the same
image) loads the compiled graphs from `vllm-cache` instead of compiling again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from builder.warm import warm
from handler.engine import EngineManager
from handler.model import resolve_model
from handler.settings import load_settings
from tests.engine_support import require_model, worker_env

pytestmark = pytest.mark.engine


def test_a_warmed_model_starts_from_its_kept_compile_cache(tmp_path: Path) -> None:
    image = tmp_path / "image-model"
    shutil.copytree(require_model("tiny"), image)
    env = {**os.environ, **worker_env("tiny", ENGINE_EXTRA_ARGS="")}  # compiled, as the runtime's default
    built = asyncio.run(warm(image, env))
    assert (image / "vllm-cache").is_dir() and any((image / "vllm-cache").rglob("*"))
    assert built["phases"].get("compile_s", 0) > 0  # the first start compiled

    container = tmp_path / "container-model"  # a new container: the image's folder, copied
    shutil.copytree(image, container)
    settings = load_settings({**env, "MODEL_NAME": str(container)})

    async def start_again() -> dict[str, float]:
        engine = EngineManager(settings, resolve_model(settings), env=env)
        try:
            await engine.ensure_started()
            return engine.last_start_phases
        finally:
            await engine.aclose()

    again = asyncio.run(start_again())
    print(f"warm start {built['phases']}; from the kept cache {again}")
    # vLLM's own account of its compile time: loading the graphs takes a fraction of compiling them
    assert again.get("compile_s", 0) < built["phases"]["compile_s"] / 2
