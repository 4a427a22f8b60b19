"""Writing and checking `manifest.json` (its schema and reader are `core.manifest`).

hash_files(dir, only=None)          -> list[FileEntry]: every file under dir except manifest.json
                                    (or only the given relative paths), sorted by path
sha256_file(path) -> str            streamed SHA-256 of one file
files_digest(entries) -> str        one SHA-256 over a file list (a content id)
check_files(dir, m, deep=False)     problems (list[str]) between the folder and m.files;
                                    sizes only, or sizes and SHA-256 when deep
write_manifest(dir, m) -> Path      writes dir/manifest.json (atomically)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.errors import ManifestError
from core.manifest import MANIFEST_NAME, FileEntry, Manifest

_CHUNK = 1 << 20
_PROGRESS_MIN_BYTES = 64 << 20


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
