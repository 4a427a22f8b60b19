"""The engine manager hands `engine_env` to the process it starts (no vLLM: a fake engine command).

`tests/test_engine_command.py` checks what `engine_env` builds; these check that
the child `EngineManager` starts really gets it. ENGINE_COMMAND runs a small
Python script that writes its environment and arguments to a file and then
answers GET /health on the port it was given, so the manager's whole start
(spawn, health wait) runs in a fraction of a second. The compile caches kept
with a model (`builder warm`: <model>/vllm-cache, torch's caches inside it) are
only used when their variables reach the child.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from handler.engine import EngineManager
from handler.engine_command import ENGINE_CACHE_FOLDER, TORCH_CACHE_FOLDERS, ModelRef
from handler.settings import load_settings

FAKE_ENGINE = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

record, args = sys.argv[1], sys.argv[2:]
with open(record + ".part", "w") as out:
    json.dump({"env": dict(os.environ), "argv": args, "pid": os.getpid()}, out)
os.replace(record + ".part", record)


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


HTTPServer((args[args.index("--host") + 1], int(args[args.index("--port") + 1])), Health).serve_forever()
"""

# The worker's own environment, without any of the variables engine_env sets (so only it can set them).
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}


async def start_fake(tmp_path: Path, model: ModelRef, base_env: Mapping[str, str], **settings: str) -> dict[str, Any]:
    """Start the fake engine through EngineManager; what it recorded about itself."""
    script, record = tmp_path / "fake_engine.py", tmp_path / "engine-record.json"
    script.write_text(FAKE_ENGINE)
    command = shlex.join([sys.executable, str(script), str(record)])
    engine_settings = load_settings({"ENGINE_COMMAND": command, "ENGINE_START_TIMEOUT": "30", **settings}).engine
    manager = EngineManager(engine_settings, model, env=base_env)
    try:
        await manager.ensure_started()
        assert manager.ready
        seen: dict[str, Any] = json.loads(record.read_text())
        assert seen["pid"] == manager.pid  # the record is the child this manager started
    finally:
        await manager.aclose()
    return seen


def kept_model(tmp_path: Path) -> tuple[ModelRef, Path]:
    """A model folder with the compile cache `builder warm` keeps in it."""
    folder = tmp_path / "model"
    cache = folder / ENGINE_CACHE_FOLDER
    cache.mkdir(parents=True)
    return ModelRef(path=str(folder), name="m"), cache


async def test_the_kept_compile_cache_reaches_the_engine_process(tmp_path: Path) -> None:
    model, cache = kept_model(tmp_path)
    seen = await start_fake(tmp_path, model, BASE_ENV, ENGINE_DEVICE="cpu")
    env = seen["env"]
    assert env["VLLM_CACHE_ROOT"] == str(cache)
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(cache / TORCH_CACHE_FOLDERS["inductor"])
    assert env["TRITON_CACHE_DIR"] == str(cache / TORCH_CACHE_FOLDERS["triton"])
    assert env["VLLM_USE_AOT_COMPILE"] == "0"  # AOT artifacts fail to load: the inductor cache is what loads
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # the CPU engine in one process, as its arguments say
    assert seen["argv"][seen["argv"].index("--distributed-executor-backend") + 1] == "uni"
    assert env["PATH"] == BASE_ENV["PATH"]  # and the worker's own environment under it


async def test_engine_cache_dir_reaches_the_engine_process_on_gpu(tmp_path: Path) -> None:
    model, _ = kept_model(tmp_path)
    chosen = tmp_path / "shared-cache"
    seen = await start_fake(tmp_path, model, BASE_ENV, ENGINE_DEVICE="cuda", ENGINE_CACHE_DIR=str(chosen))
    env = seen["env"]
    assert env["VLLM_CACHE_ROOT"] == str(chosen)  # the setting wins over the model's own folder
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(chosen / TORCH_CACHE_FOLDERS["inductor"])
    assert env["TRITON_CACHE_DIR"] == str(chosen / TORCH_CACHE_FOLDERS["triton"])
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in env  # vLLM's own layout on GPU


async def test_the_workers_own_cache_variables_reach_the_engine_unchanged(tmp_path: Path) -> None:
    model, _ = kept_model(tmp_path)
    mine = {**BASE_ENV, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine"), "VLLM_USE_AOT_COMPILE": "1"}
    seen = await start_fake(tmp_path, model, mine, ENGINE_DEVICE="cpu")
    assert seen["env"]["TORCHINDUCTOR_CACHE_DIR"] == mine["TORCHINDUCTOR_CACHE_DIR"]
    assert seen["env"]["VLLM_USE_AOT_COMPILE"] == "1"
    assert seen["env"]["VLLM_CACHE_ROOT"] == str(Path(model.path) / ENGINE_CACHE_FOLDER)
