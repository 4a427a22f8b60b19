"""Which model the worker serves, decided once at start-up (fail fast).

Order: MODEL_NAME when set (a folder; or a hub id, served from RunPod's model
cache, MODEL_CACHE_DIR, when it holds it, else by vLLM from the hub); else a
model on a mounted network volume; else the manifest baked into the image
(MODEL_MANIFEST); else the embedded default built locally under MODELS_DIR
(EMBEDDED_MODEL: the converted SmolLM2, or the tiny random model the tests use).
"""

from __future__ import annotations

from pathlib import Path

from core.errors import ManifestError
from core.manifest import MANIFEST_NAME, read_manifest
from handler.engine_command import ModelRef
from handler.errors import ConfigError
from handler.model_cache import cached_snapshot
from handler.settings import ModelSettings

BUILD_HINT = {
    "smollm2": "make demo (or: .venv-engine/bin/python -m builder fetch smollm2 --out {dir})",
    "tiny": ".venv-engine/bin/python -m builder tiny-model {dir}",
}


def _from_folder(folder: Path, settings: ModelSettings) -> ModelRef:
    try:
        manifest = read_manifest(folder / MANIFEST_NAME)
    except ManifestError as exc:
        raise ConfigError(f"model folder {folder} has no usable manifest: {exc}") from exc
    return ModelRef(
        path=str(folder),
        name=manifest.name,
        revision=settings.model_revision or manifest.source.revision,
        quantization=settings.quantization or manifest.quantization,
        max_model_len=manifest.max_model_len,
    )


def resolve_model(settings: ModelSettings) -> ModelRef:
    if settings.model_name:
        folder = Path(settings.model_name)
        if (folder / MANIFEST_NAME).is_file():
            return _from_folder(folder, settings)
        cached = cached_snapshot(settings.model_cache_dir, settings.model_name, settings.model_revision)
        return ModelRef(
            path=str(cached) if cached is not None else settings.model_name,
            name=settings.model_name,
            revision=settings.model_revision,
            quantization=settings.quantization,
        )
    if (settings.network_volume_dir / MANIFEST_NAME).is_file():
        return _from_folder(settings.network_volume_dir, settings)
    if settings.model_manifest.is_file():
        return _from_folder(settings.model_manifest.parent, settings)
    folder = settings.models_dir / settings.embedded_model
    if not (folder / MANIFEST_NAME).is_file():
        hint = BUILD_HINT[settings.embedded_model].format(dir=folder)
        raise ConfigError(
            f"no model configured and the embedded default {settings.embedded_model!r} is not built at {folder}: "
            f"run {hint}, or set MODEL_NAME"
        )
    return _from_folder(folder, settings)
