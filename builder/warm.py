"""`python -m builder warm MODEL_DIR`: compile the engine once, keep vLLM's cache beside the model.

An engine's cold start is mostly compiling (torch.compile) and warming up. This
step starts the engine once on the model folder with the runtime's settings
(read from the environment, as the worker reads them: dtype, max_model_len,
max_num_seqs and the rest are part of vLLM's cache key), answers one request,
stops it, and leaves the compiled graphs in `MODEL_DIR/vllm-cache`. The
worker points vLLM there (`VLLM_CACHE_ROOT`) whenever the model folder has
that folder, so a fresh container loads the graphs instead of compiling. Run
it after `bake`, in the image build, on the same kind of device the worker
will run on (the cache is per device and vLLM version).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.errors import SourceError
from core.cli import USAGE
from core.cli import report as report_error


async def warm(model_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Start the engine on `model_dir` with its cache in `model_dir/vllm-cache`; return the start's figures."""
    # the worker's package: present where warm runs (the image's final stage), not in the model stage
    from handler.engine import EngineManager
    from handler.engine_command import ENGINE_CACHE_FOLDER
    from handler.errors import WorkerError
    from handler.model import resolve_model
    from handler.settings import load_settings

    cache = model_dir / ENGINE_CACHE_FOLDER
    cache.mkdir(parents=True, exist_ok=True)
    settings = load_settings({**env, "MODEL_NAME": str(model_dir), "ENGINE_CACHE_DIR": str(cache)})
    engine = EngineManager(settings.engine, resolve_model(settings.model), env=env)
    try:
        seconds = await engine.ensure_started()
        await engine.request("/v1/completions", {"prompt": "Hello", "max_tokens": 4, "temperature": 0})
    except WorkerError as exc:
        raise SourceError(f"the engine did not start on {model_dir}: {exc.message}") from exc
    finally:
        await engine.aclose()
    return {"model": str(model_dir), "cache": str(cache), "start_s": round(seconds, 2),
            "phases": engine.last_start_phases}  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    folder = Path(args.model_dir)
    if not (folder / "config.json").is_file():
        report_error(SourceError(f"{folder} is not a model folder (no config.json)"))
        return USAGE
    report = asyncio.run(warm(folder, os.environ))
    print(json.dumps(report))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("warm", help="start the engine once and keep its compile cache beside the model")
    parser.add_argument("model_dir", help="the model folder (as baked: the worker serves it from there)")
    parser.set_defaults(func=_run)
