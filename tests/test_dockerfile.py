"""The Dockerfile: hadolint clean, pinned base, secret-only token, offline model, worker CMD."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "Dockerfile").read_text()


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found


def test_hadolint_passes() -> None:
    proc = subprocess.run([hadolint(), str(ROOT / "Dockerfile")], text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stages_and_base() -> None:
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", TEXT, re.M)
    assert [name for _, name in stages] == ["base", "worker-venv", "model", "cpu-engine", "cpu-warm", "cpu", "gpu"]
    assert "ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0" in TEXT
    for arg in ("MODEL_NAME", "MODEL_REVISION", "QUANTIZATION"):
        assert re.search(rf"^ARG {arg}=", TEXT, re.M)


def test_token_only_as_build_secret() -> None:
    assert "--mount=type=secret,id=hf_token" in TEXT
    for line in TEXT.splitlines():
        if line.startswith(("ARG", "ENV")) or line.strip().startswith(("HF_", "ENV")):
            assert "TOKEN" not in line, line


def test_runtime_env_and_command() -> None:
    gpu = TEXT.split("AS gpu", 1)[1]
    assert "HF_HUB_OFFLINE=1" in gpu
    assert 'ENGINE_COMMAND="python3 -m vllm.entrypoints.openai.api_server"' in gpu
    assert 'CMD ["/opt/worker-venv/bin/python", "-m", "handler"]' in gpu
    cpu = TEXT.split("AS cpu", 1)[1].split("AS gpu", 1)[0]
    assert "setup_engine.sh" in cpu and "HF_HUB_OFFLINE=1" in cpu
    assert "/opt/engine-venv/bin/python -m vllm.entrypoints.openai.api_server" in cpu


def test_the_runtime_images_carry_the_worker_alone() -> None:
    """The images RunPod runs hold `core` and `handler`: no builder, no client (issue 16)."""
    for target in ("cpu-engine", "cpu", "gpu"):
        stage = TEXT.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        copied = set(re.findall(r"^COPY (?!--from)(\S+)/ ", stage, re.M))
        assert copied <= {"core", "handler"}, (target, copied)
    assert "COPY core/ /app/core/" in TEXT.split(" AS gpu\n", 1)[1]


def test_copied_paths_exist() -> None:
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", TEXT, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "models" in ignored and ".venv" in ignored
