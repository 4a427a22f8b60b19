"""The worker's entry points as users run them, in subprocesses."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from handler.settings import REPO_ROOT
from tests.engine_support import require_model, worker_env

PYTHON = sys.executable


def run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.engine
def test_test_input_flag_answers_a_real_job() -> None:
    job = {"input": {"prompt": "Hello", "sampling_params": {"max_tokens": 5, "temperature": 0}}}
    done = run(["-m", "handler", "--test_input", orjson.dumps(job).decode()], worker_env("tiny"))
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "completed successfully" in log
    assert "'completion_tokens': 5" in log
    # runpod's local mode leaves by sys.exit: the engine must not outlive the worker
    port = re.search(r"--port (\d+)", log)
    assert port is not None, log[-2000:]
    assert not engine_processes(port.group(1)), "an engine outlived its worker"


def test_file_entry_point_for_the_runpod_cli_reports_bad_input_and_exits_nonzero() -> None:
    require_model("tiny")  # the worker resolves it at start, before it reads the job (which never runs it)
    job = {"input": {"prompt": "Hello", "sampling_params": {"temperature": "hot"}}}
    done = run(["rp_handler.py", "--test_input", orjson.dumps(job).decode()], worker_env("tiny"), timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode == 1, log[-3000:]
    assert "validation_error" in log and "sampling_params.temperature" in log


def test_missing_model_stops_the_worker_at_start_with_a_hint(tmp_path: object) -> None:
    done = run(["-m", "handler"], worker_env("tiny", MODELS_DIR=str(tmp_path)), timeout=120)
    assert done.returncode == 2
    assert "builder tiny-model" in done.stderr


def test_bad_setting_stops_the_worker_naming_the_variable() -> None:
    done = run(["-m", "handler"], worker_env("tiny", MAX_CONCURRENCY="lots"), timeout=120)
    assert done.returncode == 2
    assert "MAX_CONCURRENCY" in done.stderr


@pytest.mark.engine
def test_a_baked_model_is_served_offline(tmp_path: Path) -> None:
    """What the image does: `builder bake` writes the manifest, the worker starts from it alone."""
    from builder.bake import bake

    dest = tmp_path / "baked"
    bake(REPO_ROOT / "models" / "tiny", dest, max_model_len=512)
    env = worker_env("tiny", MODEL_MANIFEST=str(dest / "manifest.json"), MODELS_DIR=str(tmp_path / "nothing-here"),
                     HF_HUB_OFFLINE="1")  # fmt: skip
    job = {"input": {"prompt": "Hello", "sampling_params": {"max_tokens": 3, "temperature": 0}}}
    done = run(["-m", "handler", "--test_input", orjson.dumps(job).decode()], env)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert f"--model {dest}" in log and "--max-model-len 512" in log  # the baked folder and its settings
    assert "'completion_tokens': 3" in log


@pytest.mark.engine
def test_rp_serve_api_answers_runsync(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log_file:
        worker = subprocess.Popen(
            [PYTHON, "-m", "handler", "--rp_serve_api", "--rp_api_port", str(port), "--rp_api_host", "127.0.0.1"],
            cwd=REPO_ROOT, env={**os.environ, **worker_env("tiny")}, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            body = {"input": {"prompt": "Hello", "sampling_params": {"max_tokens": 4, "temperature": 0}}}
            answer = post_when_up(f"http://127.0.0.1:{port}/runsync", body, worker)
        finally:
            worker.terminate()
            worker.wait(30)
    log = log_path.read_text()
    assert answer["status"] == "COMPLETED", (answer, log[-3000:])
    assert answer["output"]["usage"]["completion_tokens"] == 4
    # stopped with SIGTERM, as RunPod stops workers: it drains, settles, exits cleanly, and the engine goes with it
    assert worker.returncode == 0, log[-3000:]
    engine_port = re.search(r"--port (\d+)", log)
    assert engine_port is not None and not engine_processes(engine_port.group(1)), "an engine outlived its worker"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post_when_up(url: str, body: dict[str, object], worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.post(url, json=body, timeout=600)
            answer: dict[str, Any] = response.json()
            return answer
        except httpx.TransportError:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def engine_processes(port: str) -> list[int]:
    """Processes still running an engine on `port` (after a short grace)."""
    for _ in range(50):
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if b"vllm.entrypoints.openai.api_server" in args and port.encode() in args:
                found.append(int(cmdline.parent.name))
        if not found:
            return []
        time.sleep(0.2)
    return found
