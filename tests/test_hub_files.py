""".runpod/hub.json and tests.json: RunPod Hub format, in step with handler.settings.Settings."""

from __future__ import annotations

import json
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from handler.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
HUB = json.loads((ROOT / ".runpod" / "hub.json").read_text())
TESTS = json.loads((ROOT / ".runpod" / "tests.json").read_text())


def hub_type(annotation: Any) -> str:
    if annotation is bool:
        return "boolean"
    if annotation in (int, float):
        return "number"
    return "string"


def test_hub_lists_every_setting_and_nothing_else() -> None:
    keys = [entry["key"] for entry in HUB["config"]["env"]]
    assert len(keys) == len(set(keys))
    assert set(keys) == {env_name(name) for name in Settings.model_fields}


def test_hub_types_defaults_and_options_match() -> None:
    by_key = {entry["key"]: entry["input"] for entry in HUB["config"]["env"]}
    for name, field in Settings.model_fields.items():
        entry = by_key[env_name(name)]
        assert entry["type"] == hub_type(field.annotation), name
        assert entry["description"] == field.description, name
        if typing.get_origin(field.annotation) is typing.Literal:
            assert [o["value"] for o in entry["options"]] == list(typing.get_args(field.annotation)), name
        if isinstance(field.default, bool | int | float | str) and field.default != "":
            assert entry["default"] == field.default, name


def test_hub_format() -> None:
    assert HUB["type"] == "serverless" and HUB["config"]["runsOn"] == "GPU"
    assert {"title", "description", "category"} <= set(HUB)
    for entry in HUB["config"]["env"]:
        assert set(entry) == {"key", "input"} and {"name", "type", "description"} <= set(entry["input"])


def test_tests_json_jobs_and_env() -> None:
    assert TESTS["tests"] and all({"name", "input", "timeout"} <= set(t) for t in TESTS["tests"])
    settings_env = {env_name(name) for name in Settings.model_fields}
    for item in TESTS["config"]["env"]:
        assert item["key"] in settings_env and isinstance(item["value"], str)
    assert TESTS["config"]["gpuCount"] >= 1


def test_hub_cuda_versions_are_the_images() -> None:
    """The image is vLLM's (its CUDA 13 from vLLM 0.20 on): the Hub's and its test's CUDA versions are
    runpod.toml's, the one place that says which drivers run the image (they once allowed 12.8/12.9)."""
    image = re.search(r"^ARG VLLM_IMAGE=vllm/vllm-openai:v(\d+)\.(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert image is not None and (int(image[1]), int(image[2])) >= (0, 20)
    wanted = tomllib.loads((ROOT / "runpod.toml").read_text())["endpoint"]["allowed_cuda_versions"]
    assert all(float(v) >= 13.0 for v in wanted), wanted
    assert HUB["config"]["allowedCudaVersions"] == wanted
    assert TESTS["config"]["allowedCudaVersions"] == wanted
