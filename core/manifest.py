"""`manifest.json`: the schema of a model folder's manifest, and its reader.

Every model folder the builder writes (tiny-model, fetch, quantize, bake) carries one
``manifest.json`` beside the weights; the worker reads it at start-up. This module is the
only place that knows its shape; `builder.manifest` hashes, checks and writes it.

    FORMAT_VERSION                      int, bumped on an incompatible change
    MANIFEST_NAME                       "manifest.json"
    FileEntry(path, size, sha256)       one file, path relative to the folder, POSIX separators
    Source(kind, uri, revision)         kind: tiny | gguf | local | hub | s3
    Manifest(...)                       the document (fields below), frozen
    read_manifest(dir_or_file)          -> Manifest; ManifestError naming the path and problem

Manifest fields:
    format_version  FORMAT_VERSION when written; a newer one is refused when read
    name            human name or hub id ("HuggingFaceTB/SmolLM2-135M-Instruct", "tiny-llama")
    source          where the files came from. revision: the hub revision asked for; for the
                    other kinds a content id ("sha256:<GGUF file>", "sha256:<files_digest>",
                    "seed=N"), so it changes whenever the weights do (the worker's cache keys use it)
    files           size and SHA-256 of every file in the folder (manifest.json excluded)
    quantization    "" (none) or "awq"
    dtype           weight dtype written ("float16", "float32", "bfloat16"; "" unknown)
    max_model_len   optional context length the model should be served with
    created_at      UTC timestamp
    extra           free-form details: the GGUF source file (name, size, sha256), a quality
                    report, the resolved hub commit, ...
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ManifestError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

SourceKind = Literal["tiny", "gguf", "local", "hub", "s3"]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, description="path relative to the model folder, '/'-separated")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind
    uri: str = Field(description="short name, file path, folder, hf:ORG/NAME or s3://bucket/prefix")
    revision: str = ""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1)
    source: Source
    files: list[FileEntry]
    quantization: Literal["", "awq"] = ""
    dtype: str = ""
    max_model_len: int | None = Field(default=None, gt=0)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    extra: dict[str, Any] = Field(default_factory=dict)


def read_manifest(path: Path | str) -> Manifest:
    """Read a manifest from a model folder or a manifest file path."""
    path = Path(path)
    target = path / MANIFEST_NAME if path.is_dir() else path
    try:
        raw = target.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ManifestError(target, "manifest missing (was this folder written by the builder?)") from exc
    except OSError as exc:
        raise ManifestError(target, f"cannot read manifest: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError(target, f"not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise ManifestError(target, "manifest must be a JSON object")
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ManifestError(target, f"format_version {version} is newer than this code reads ({FORMAT_VERSION})")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise ManifestError(target, f"invalid field {where}: {first['msg']} ({exc.error_count()} error(s))") from exc
