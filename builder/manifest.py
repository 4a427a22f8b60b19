"""`manifest.json`: what the builder wrote into a model folder, read by the worker at start-up.

Every model folder the builder writes (tiny-model, fetch, quantize, bake) carries one
``manifest.json`` beside the weights. This module is the only place that knows its shape.
It imports only pydantic and the standard library (tqdm lazily), so the worker can read a
manifest without torch.

Stable API (other builder commands and the worker rely on it)::

    FORMAT_VERSION                      int, bumped on an incompatible change
    MANIFEST_NAME                       "manifest.json"
    FileEntry(path, size, sha256)       one file, path relative to the folder, POSIX separators
    Source(kind, uri, revision)         kind: tiny | gguf | local | hub | s3
    Manifest(...)                       the document (fields below), frozen
    hash_files(dir, only=None)          -> list[FileEntry]: every file under dir except manifest.json
                                        (or only the given relative paths), sorted by path
    sha256_file(path) -> str            streamed SHA-256 of one file
    files_digest(entries) -> str        one SHA-256 over a file list (a content id)
    check_files(dir, m, deep=False)     problems (list[str]) between the folder and m.files;
                                        sizes only, or sizes and SHA-256 when deep
    write_manifest(dir, m) -> Path      writes dir/manifest.json (atomically)
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

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20
_PROGRESS_MIN_BYTES = 64 << 20

SourceKind = Literal["tiny", "gguf", "local", "hub", "s3"]


class ManifestError(Exception):
    """A manifest is missing, unreadable or invalid; the message names the path and problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


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


def sha256_file(path: Path, progress: Any = None) -> str:
    """SHA-256 of a file, streamed; `progress` (a tqdm bar) is advanced by the bytes read."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


# Made in a model folder after its manifest, and not part of the model: `builder warm`'s compile
# cache (handler.engine_command.ENGINE_CACHE_FOLDER). Never hashed, listed or reported as extra.
DERIVED_FOLDERS = ("vllm-cache",)


def _listed(folder: Path) -> list[Path]:
    def counted(p: Path) -> bool:
        rel = p.relative_to(folder)
        return p.is_file() and rel.as_posix() != MANIFEST_NAME and rel.parts[0] not in DERIVED_FOLDERS

    return sorted((p for p in folder.rglob("*") if counted(p)), key=lambda p: p.relative_to(folder).as_posix())


def hash_files(folder: Path, only: Iterable[str] | None = None) -> list[FileEntry]:
    """Size and SHA-256 of every file under `folder` (manifest.json excluded), sorted by path.

    `only` limits it to those relative paths. Shows a progress bar (bytes) above 64 MiB.
    """
    from tqdm import tqdm

    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(folder, "not a folder")
    paths = _listed(folder) if only is None else [folder / rel for rel in sorted(set(only))]
    total = sum(p.stat().st_size for p in paths)
    entries: list[FileEntry] = []
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=f"hashing {folder.name}", disable=total < _PROGRESS_MIN_BYTES
    ) as bar:
        for path in paths:
            entries.append(
                FileEntry(
                    path=path.relative_to(folder).as_posix(),
                    size=path.stat().st_size,
                    sha256=sha256_file(path, bar),
                )
            )
    return entries


def files_digest(entries: Iterable[FileEntry]) -> str:
    """One SHA-256 over a file list (paths, sizes, hashes): a content id for sources with no revision."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        digest.update(f"{entry.path}\0{entry.size}\0{entry.sha256}\n".encode())
    return digest.hexdigest()


def check_files(folder: Path, manifest: Manifest, *, deep: bool = False) -> list[str]:
    """What differs between `folder` and `manifest.files` (empty list: intact).

    Missing files and size changes always; content (SHA-256) only when `deep`. Files in the
    folder that the manifest does not list are reported too.
    """
    folder = Path(folder)
    problems: list[str] = []
    listed = {entry.path for entry in manifest.files}
    for entry in manifest.files:
        path = folder / entry.path
        if not path.is_file():
            problems.append(f"{entry.path}: missing")
        elif (size := path.stat().st_size) != entry.size:
            problems.append(f"{entry.path}: size {size}, manifest says {entry.size}")
        elif deep and sha256_file(path) != entry.sha256:
            problems.append(f"{entry.path}: sha256 differs from the manifest")
    if folder.is_dir():
        for path in _listed(folder):
            rel = path.relative_to(folder).as_posix()
            if rel not in listed:
                problems.append(f"{rel}: not in the manifest")
    return problems


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write `folder/manifest.json` (temp file then rename, so a reader never sees half of it)."""
    folder = Path(folder)
    target = folder / MANIFEST_NAME
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
