"""runpod.toml: valid for the runpod CLI's project commands, plus the [endpoint] section deploy reads."""

from __future__ import annotations

import tomllib
from pathlib import Path

from client.deploy import load_endpoint_config
from devtools.platform.management import check_body

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "runpod.toml"


def test_project_sections_have_what_the_runpod_cli_reads() -> None:
    data = tomllib.loads(CONFIG.read_text())
    project, runtime = data["project"], data["runtime"]
    # the keys runpod/cli/groups/project reads (start_project, create_project_endpoint, helpers)
    for key in ("uuid", "name", "base_image", "gpu_types", "gpu_count", "storage_id", "volume_mount_path", "ports",
                "container_disk_size_gb", "env_vars"):  # fmt: skip
        assert key in project, key
    for key in ("python_version", "handler_path", "requirements_path"):
        assert key in runtime, key
    assert project["volume_mount_path"] == "/runpod-volume"
    assert runtime["handler_path"] == "rp_handler.py"
    assert all(gpu.startswith("NVIDIA ") for gpu in project["gpu_types"])


def test_every_path_it_names_exists() -> None:
    data = tomllib.loads(CONFIG.read_text())
    paths = [data["runtime"]["handler_path"], data["runtime"]["requirements_path"], data["endpoint"]["dockerfile"]]
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert missing == [], f"runpod.toml names files that do not exist: {missing}"


def test_endpoint_section_has_scale_to_zero_defaults() -> None:
    config = load_endpoint_config(CONFIG)
    assert config.workers_min == 0 and config.workers_max >= 1
    assert config.scaler_type == "QUEUE_DELAY" and config.flashboot == "FLASHBOOT"
    assert config.idle_timeout <= 30
    # the image is CUDA 13 (vLLM >= 0.20 images): only hosts whose driver runs CUDA 13 may take its workers
    assert config.allowed_cuda_versions and all(v.startswith("13.") for v in config.allowed_cuda_versions)


def test_endpoint_section_makes_a_body_runpods_rest_api_accepts() -> None:
    body = load_endpoint_config(CONFIG).body()
    assert check_body(body, create=True) == body  # the local platform checks RunPod's v2 shapes
    assert body["gpu"]["pools"] == ["ADA_24", "AMPERE_24"] and body["flashboot"] == "FLASHBOOT"
    # no execution timeout in the section: the worker's engine start + request timeouts (600 + 600 s)
    assert body["timeout"] == 1_200_000 and "ENGINE_START_TIMEOUT" not in body["env"]
