"""bake and scripts/bake_model.sh: the baked manifest is what the worker resolves at start-up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.bake import bake
from builder.errors import SourceError
from core.manifest import read_manifest
from handler.model import resolve_model
from handler.settings import Settings
from tests.prerequisites import needs_tiny

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "models" / "tiny"

pytestmark = needs_tiny


def worker_settings(dest: Path) -> Settings:
    return Settings(model_manifest=dest / "manifest.json", network_volume_dir=dest.parent / "no-volume")


def test_bake_then_worker_resolves_it(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    manifest = bake(TINY, dest, max_model_len=512)
    assert manifest.max_model_len == 512 and manifest.quantization == ""
    assert manifest.extra["bake"]["model_path"] == str(dest.resolve())
    assert read_manifest(dest) == manifest
    ref = resolve_model(worker_settings(dest).model)
    assert (ref.path, ref.name, ref.max_model_len, ref.quantization) == (str(dest), "tiny-llama", 512, "")
    assert (dest / "model.safetensors").read_bytes() == (TINY / "model.safetensors").read_bytes()


def test_network_volume_is_preferred(tmp_path: Path) -> None:
    baked, volume = tmp_path / "models", tmp_path / "volume"
    bake(TINY, baked, max_model_len=512)
    bake(TINY, volume, max_model_len=1024)
    settings = Settings(model_manifest=baked / "manifest.json", network_volume_dir=volume)
    assert resolve_model(settings.model).max_model_len == 1024


def test_bake_refuses_a_damaged_model(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(TINY, tmp_path / "tiny"))
    with (copy / "model.safetensors").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(SourceError, match="sha256 differs"):
        bake(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def run_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "BUILDER_PYTHON": str(ROOT / ".venv" / "bin" / "python"),
        "MODELS_DEST": str(tmp_path / "models"),
        "WORK_DIR": str(tmp_path / "work"),
        **env,
    }
    return subprocess.run(
        [str(ROOT / "scripts" / "bake_model.sh")], cwd=ROOT, env=full, text=True, capture_output=True, check=False
    )


def test_bake_script_from_a_local_folder(tmp_path: Path) -> None:
    proc = run_script(tmp_path, MODEL_NAME=str(TINY), QUANTIZATION="none", MAX_MODEL_LEN="256")
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(tmp_path / "models")
    assert manifest.max_model_len == 256 and manifest.source.kind == "local"
    assert json.loads((tmp_path / "models" / "config.json").read_text())["model_type"] == "llama"
    assert not (tmp_path / "work").exists()


def test_bake_script_refuses_awq_for_an_unquantized_model(tmp_path: Path) -> None:
    proc = run_script(tmp_path, MODEL_NAME=str(TINY), QUANTIZATION="awq")
    assert proc.returncode == 3
    assert "not an AWQ checkpoint" in proc.stderr and "builder quantize" in proc.stderr
    assert not (tmp_path / "models").exists()
    bad = run_script(tmp_path, MODEL_NAME=str(TINY), QUANTIZATION="gptq")
    assert bad.returncode == 2 and "QUANTIZATION must be awq or none" in bad.stderr
