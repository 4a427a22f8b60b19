"""RunPod's cached models: a hub id found in the cache's layout (lower-case folder names) is served from there."""

from __future__ import annotations

from pathlib import Path

from handler.model import resolve_model
from handler.model_cache import cached_snapshot
from handler.settings import load_settings

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def lay_out(hub: Path, commits: list[str], main: str | None) -> Path:
    repo = hub / "models--huggingfacetb--smollm2-135m-instruct"  # RunPod writes the names in lower case
    for commit in commits:
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    if main is not None:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(main + "\n")
    return repo


def test_a_cached_hub_model_is_served_from_its_snapshot(tmp_path: Path) -> None:
    repo = lay_out(tmp_path, ["c0ffee", "beef01"], main="beef01")
    settings = load_settings({"MODEL_NAME": MODEL, "MODEL_CACHE_DIR": str(tmp_path)})
    model = resolve_model(settings.model)
    assert model.path == str(repo / "snapshots" / "beef01") and model.name == MODEL
    pinned = load_settings({"MODEL_NAME": MODEL, "MODEL_CACHE_DIR": str(tmp_path), "MODEL_REVISION": "c0ffee"})
    assert resolve_model(pinned.model).path == str(repo / "snapshots" / "c0ffee")


def test_without_the_cache_vllm_gets_the_hub_id(tmp_path: Path) -> None:
    settings = load_settings({"MODEL_NAME": MODEL, "MODEL_CACHE_DIR": str(tmp_path / "absent")})
    assert resolve_model(settings.model).path == MODEL
    lay_out(tmp_path, ["aaa"], main=None)
    assert cached_snapshot(tmp_path, MODEL, "bbb") is None  # a revision the cache does not hold
    assert (
        cached_snapshot(tmp_path, MODEL)
        == tmp_path / "models--huggingfacetb--smollm2-135m-instruct" / "snapshots" / "aaa"
    )
    assert cached_snapshot(tmp_path, "not-a-hub-id") is None


def test_several_snapshots_and_no_ref_is_ambiguous(tmp_path: Path) -> None:
    lay_out(tmp_path, ["one", "two"], main=None)
    assert cached_snapshot(tmp_path, MODEL) is None
